// Transcendentals in the inner loop: MUFU.EX2/SIN/COS dominate. Twin: float_literal.cu.
__global__ void wave(const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i], s = 0.0f;
        for (int k = 0; k < 16; ++k) s += __expf(v * k) * __sinf(v + k) + __cosf(v - k);
        y[i] = s;
    }
}
