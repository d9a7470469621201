// The float GEMM kernel: C[M, N] += op(A)·op(B) on the calling thread, packed and blocked as in
// BLIS (Goto's algorithm), with an xsimd micro-kernel of MR rows × NR = 2 vectors of columns.
//
// Why our own rather than Eigen's GEBP (which core/gemm.hpp still uses for double): Eigen's AVX2
// float kernel tiles C's *columns* (our output channels) 24 at a time, so 16, 64 and 128 channels
// leave a ragged remainder on every tile row, and it reached ~58 % of the FMA peak on our shapes.
// Here a tile is 6 pixels × 16 channels (AVX2; × 32 with AVX-512): every power-of-two channel count
// from 16 up fills whole tiles, and 12 accumulators + 2 B vectors + 1 broadcast fit 16 registers.
//
//   for each NC-wide block of columns, each KC-deep slice of K:    pack op(B) slice  (L3)
//     for each MC-tall block of rows (read in place, L2):
//       for each NR-wide panel of B, each MR-tall panel of A:      micro-kernel      (L1)
//
// A is not packed: the micro-kernel broadcasts from its rows where they lie (packing it cost more
// than it saved at our sizes). B panels are zero-padded to whole tiles; a partial tile is computed
// in full and only its valid part added to C. Each C element is the same sum in the same order wherever its tile falls
// (one FMA chain per KC slice, added to C slice by slice), so any split of C across threads gives
// the same bits.
#ifndef DIFFUSE_CORE_GEMM_KERNEL_HPP
#define DIFFUSE_CORE_GEMM_KERNEL_HPP

#include <algorithm>
#include <cstddef>
#include <xsimd/xsimd.hpp>

#include "diffuse/core/aligned_buffer.hpp"

namespace diffuse::detail {

/// One thread's packing buffers (both GEMM paths): grown to the largest product seen, never
/// shrunk, so products allocate nothing once warm.
template <class T>
struct GemmScratch {
    AlignedBuffer<T> a, b;
    static T* fit(AlignedBuffer<T>& buf, std::size_t n) {
        if (buf.size() < n) buf = AlignedBuffer<T>(n);
        return buf.data();
    }
};
template <class T>
GemmScratch<T>& gemm_scratch() {
    thread_local GemmScratch<T> s;
    return s;
}

namespace packed {

template <class T>
struct Tiling {
    using V = xsimd::batch<T>;
    static constexpr int W = int(V::size);
    static constexpr int MR = 6, NR = 2 * W;
    static constexpr int KC = 256;      // A panel (MR·KC) + B panel (KC·NR) stay in L1
    static constexpr int MC = 16 * MR;  // rows of A swept per B panel, 96: L2
    static constexpr int NC = 64 * NR;  // packed B slice
};

/// Packs op(B)[k0 : k0+kc, j0 : j0+nc] as ⌈nc/NR⌉ panels, each [kc][NR] (column index fastest).
/// op(B)[k, j] = B[k·ldb + j], or B[j·ldb + k] when TransB (B stored [N, K]).
template <bool TransB, class T>
void pack_b(const T* B, std::ptrdiff_t ldb, int k0, int kc, int j0, int nc, T* dst) {
    constexpr int NR = Tiling<T>::NR;
    for (int p = 0; p < nc; p += NR, dst += std::ptrdiff_t(kc) * NR) {
        const int cols = std::min(NR, nc - p);
        if (cols < NR) std::fill_n(dst, std::ptrdiff_t(kc) * NR, T(0));
        if constexpr (TransB) {
            for (int j = 0; j < cols; ++j) {
                const T* src = B + std::ptrdiff_t(j0 + p + j) * ldb + k0;
                for (int k = 0; k < kc; ++k) dst[std::ptrdiff_t(k) * NR + j] = src[k];
            }
        } else {
            for (int k = 0; k < kc; ++k)
                std::copy_n(B + std::ptrdiff_t(k0 + k) * ldb + j0 + p, cols, dst + std::ptrdiff_t(k) * NR);
        }
    }
}

/// C[mr, nr] += op(A)[MR rows, kc] · (B panel), for an MR × NR tile of which mr × nr is valid.
/// A is read in place, not packed: row r, depth k at a[r·rs + k·ks] (rs = lda, ks = 1 for a
/// row-major A; rs = 1, ks = lda for a transposed one). Rows past mr repeat row mr − 1 (valid
/// memory; their results are dropped).
template <class T>
inline void micro_kernel(int kc, const T* a, std::ptrdiff_t rs, std::ptrdiff_t ks, const T* b, T* c, std::ptrdiff_t ldc,
                         int mr, int nr) {
    using Tl = Tiling<T>;
    using V = typename Tl::V;
    constexpr int MR = Tl::MR, NR = Tl::NR, W = Tl::W;
    const T* row[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) row[r] = a + std::min(r, mr - 1) * rs;
    V acc0[MR], acc1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = V(T(0));
    for (std::ptrdiff_t k = 0, at = 0; k < kc; ++k, at += ks, b += NR) {
        const V b0 = V::load_aligned(b), b1 = V::load_aligned(b + W);
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
            const V ar(row[r][at]);
            acc0[r] = xsimd::fma(ar, b0, acc0[r]);
            acc1[r] = xsimd::fma(ar, b1, acc1[r]);
        }
    }
    if (mr == MR && nr == NR) {
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
            T* out = c + r * ldc;
            (V::load_unaligned(out) + acc0[r]).store_unaligned(out);
            (V::load_unaligned(out + W) + acc1[r]).store_unaligned(out + W);
        }
        return;
    }
    alignas(64) T tile[MR][NR];
    for (int r = 0; r < MR; ++r) {
        acc0[r].store_aligned(tile[r]);
        acc1[r].store_aligned(tile[r] + W);
    }
    for (int r = 0; r < mr; ++r)
        for (int j = 0; j < nr; ++j) c[r * ldc + j] += tile[r][j];
}

/// C[M, N] += op(A)·op(B), all row-major with row strides lda, ldb, ldc.
template <bool TransA, bool TransB, class T>
void gemm_add(int M, int N, int K, const T* A, std::ptrdiff_t lda, const T* B, std::ptrdiff_t ldb, T* C,
              std::ptrdiff_t ldc) {
    using Tl = Tiling<T>;
    constexpr int MR = Tl::MR, NR = Tl::NR;
    T* const bpack = GemmScratch<T>::fit(gemm_scratch<T>().b, std::size_t(Tl::NC) * Tl::KC);
    const std::ptrdiff_t rs = TransA ? 1 : lda, ks = TransA ? lda : 1;  // op(A)[i, k] = A[i·rs + k·ks]
    for (int jc = 0; jc < N; jc += Tl::NC) {
        const int nc = std::min(Tl::NC, N - jc);
        for (int pc = 0; pc < K; pc += Tl::KC) {
            const int kc = std::min(Tl::KC, K - pc);
            pack_b<TransB>(B, ldb, pc, kc, jc, nc, bpack);
            for (int ic = 0; ic < M; ic += Tl::MC) {
                const int mc = std::min(Tl::MC, M - ic);
                for (int jr = 0; jr < nc; jr += NR) {
                    const T* bp = bpack + std::ptrdiff_t(jr / NR) * kc * NR;
                    for (int ir = ic; ir < ic + mc; ir += MR)
                        micro_kernel(kc, A + ir * rs + pc * ks, rs, ks, bp, C + std::ptrdiff_t(ir) * ldc + jc + jr, ldc,
                                     std::min(MR, ic + mc - ir), std::min(NR, nc - jr));
                }
            }
        }
    }
}

}  // namespace packed
}  // namespace diffuse::detail

#endif
