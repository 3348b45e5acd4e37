// Register spills: 48 live accumulators under a 32-register cap (compiled with
// --maxrregcount=32) must spill to local memory (STL/LDL). Twin: the same file compiled
// without the cap.
__global__ void many_accumulators(const float* __restrict__ x, float* __restrict__ y, int n) {
    float acc[48];
#pragma unroll
    for (int j = 0; j < 48; ++j) acc[j] = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = x[i];
#pragma unroll
        for (int j = 0; j < 48; ++j) acc[j] = acc[j] * v + (float)j;
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < 48; ++j) s += acc[j] * acc[(j * 7) % 48];
    y[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
