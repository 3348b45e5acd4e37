// Four floats per thread through float4: one 128-bit LDG.E.128 and STG.E.128.
__global__ void scale_vector(const float4* __restrict__ x, float4* __restrict__ y, float a, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        float4 v = x[i];
        y[i] = make_float4(a * v.x, a * v.y, a * v.z, a * v.w);
    }
}
