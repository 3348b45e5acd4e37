// One global atomic per element inside the loop: every thread hammers out[0].
// Twin: atomic_once.cu (reduce in registers, one atomic per thread).
__global__ void sum_atomic_loop(const float* __restrict__ x, float* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        atomicAdd(out, x[i]);
}
