// An fp32 kernel with a double literal: 0.5 promotes the product to FP64 (DMUL + F2F).
// Twin: float_literal.cu.
__global__ void half_it(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * 0.5 + 1.0;
}
