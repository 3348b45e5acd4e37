// NVIDIA's occupancy calculator (cuda_occupancy.h, header-only, no GPU needed) as a command:
//   occupancy_reference MAJOR MINOR REGS THREADS STATIC_SMEM DYNAMIC_SMEM
// prints "blocks regs_limit smem_limit warps_limit blocks_limit limiting_factors".
// The tests compile it with g++ and compare kernelpro/profile/occupancy.py against it.
#include <cstdio>
#include <cstdlib>
#include "cuda_occupancy.h"

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s MAJOR MINOR REGS THREADS STATIC_SMEM DYNAMIC_SMEM\n", argv[0]);
        return 2;
    }
    int major = std::atoi(argv[1]), minor = std::atoi(argv[2]);
    cudaOccDeviceProp prop;
    prop.computeMajor = major;
    prop.computeMinor = minor;
    prop.warpSize = 32;
    prop.maxThreadsPerBlock = 1024;
    prop.regsPerBlock = 65536;
    prop.regsPerMultiprocessor = 65536;
    prop.numSms = 1;
    prop.reservedSharedMemPerBlock = 1024;
    prop.sharedMemPerBlock = 48 * 1024;
    if (major == 8 && minor == 0) {
        prop.maxThreadsPerMultiprocessor = 2048;
        prop.sharedMemPerMultiprocessor = 164 * 1024;
        prop.sharedMemPerBlockOptin = 163 * 1024;
    } else if (major == 8) {  // 8.6, 8.9
        prop.maxThreadsPerMultiprocessor = 1536;
        prop.sharedMemPerMultiprocessor = 100 * 1024;
        prop.sharedMemPerBlockOptin = 99 * 1024;
    } else {  // 9.0, 10.0
        prop.maxThreadsPerMultiprocessor = 2048;
        prop.sharedMemPerMultiprocessor = 228 * 1024;
        prop.sharedMemPerBlockOptin = 227 * 1024;
    }
    cudaOccFuncAttributes attr;
    attr.maxThreadsPerBlock = 1024;
    attr.numRegs = std::atoi(argv[3]);
    attr.sharedSizeBytes = std::atoi(argv[5]);
    attr.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN;  // kernels using > 48 KB have opted in
    attr.maxDynamicSharedSizeBytes = prop.sharedMemPerBlockOptin - attr.sharedSizeBytes;
    cudaOccDeviceState state;
    cudaOccResult result;
    cudaOccError err = cudaOccMaxActiveBlocksPerMultiprocessor(
        &result, &prop, &attr, &state, std::atoi(argv[4]), std::atoi(argv[6]));
    if (err != CUDA_OCC_SUCCESS) {
        std::printf("error %d\n", (int)err);
        return 1;
    }
    std::printf("%d %d %d %d %d %u\n", result.activeBlocksPerMultiprocessor,
                result.blockLimitRegs, result.blockLimitSharedMem, result.blockLimitWarps,
                result.blockLimitBlocks, result.limitingFactors);
    return 0;
}
