// A matmul on tensor cores through WMMA (fp16 in, fp32 accumulate): HMMA instructions.
#include <mma.h>
using namespace nvcuda;

__global__ void wmma_matmul(const half* A, const half* B, float* C, int N) {
    int tile_row = blockIdx.y * 16, tile_col = blockIdx.x * 16;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
    wmma::fill_fragment(c, 0.0f);
    for (int k = 0; k < N; k += 16) {
        wmma::load_matrix_sync(a, A + tile_row * N + k, N);
        wmma::load_matrix_sync(b, B + k * N + tile_col, N);
        wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + tile_row * N + tile_col, c, N, wmma::mem_row_major);
}
