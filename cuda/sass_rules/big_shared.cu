// 48 KiB of static shared memory per 128-thread block: shared memory, not warps, bounds
// occupancy (4 blocks x 4 warps = 16 of 64 warps on sm_90). Twin: scalar_loads.cu.
__global__ void __launch_bounds__(128) stage_through_shared(const float* __restrict__ x,
                                                            float* __restrict__ y, int n) {
    __shared__ float tile[12288];
    int base = blockIdx.x * 12288;
    for (int j = threadIdx.x; j < 12288; j += blockDim.x)
        tile[j] = base + j < n ? x[base + j] : 0.0f;
    __syncthreads();
    for (int j = threadIdx.x; j < 12288; j += blockDim.x)
        if (base + j < n) y[base + j] = tile[12287 - j];
}
