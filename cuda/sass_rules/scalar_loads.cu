// Four floats per thread, one 32-bit LDG/STG each: nothing tells the compiler the pointers are
// 16-byte aligned, so it cannot merge them. Twin: vector_loads.cu (float4).
__global__ void scale_scalar(const float* __restrict__ x, float* __restrict__ y, float a, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
#pragma unroll
        for (int j = 0; j < 4; ++j) y[4 * i + j] = a * x[4 * i + j];
    }
}
