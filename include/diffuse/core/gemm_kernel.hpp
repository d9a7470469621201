// The float GEMM kernel: C[M, N] += op(A)·op(B) on the calling thread, packed and blocked as in
// BLIS (Goto's algorithm), with an xsimd micro-kernel of MR rows × NV vectors of columns.
//
// Why our own rather than Eigen's GEBP (which core/gemm.hpp still uses for double): Eigen's AVX2
// float kernel tiles C's *columns* (our output channels) 24 at a time, so 16, 64 and 128 channels
// leave a ragged remainder on every tile row, and it reached ~58 % of the FMA peak on our shapes.
//
//   for each NC-wide block of columns, each KC-deep slice of K:    pack op(B) slice  (L3)
//     for each MC-tall block of rows (read in place, L2):
//       for each NR-wide panel of B, each MR-tall panel of A:      micro-kernel      (L1)
//       (the last loop and the micro-kernels it inlines: macro_kernel, a function of its own)
//
// The tile is chosen per product from N, among three per instruction set, sized so that the MR·NV
// accumulators, NV B vectors and one broadcast fit the register file (16 vector registers with
// AVX2, 32 with AVX-512):
//
//   NV = 1, 2, 3 vectors:   AVX2 (8 floats)  12×1,  6×2,  4×3     AVX-512 (16 floats)  12×1, 8×2, 8×3
//
// The one that pads N least to whole tiles wins, 2 vectors on a tie. So the VAE's 16 channels run a
// 12×1 tile on AVX-512 instead of half-empty 8×2 ones (×1.8 measured), and its 144-long patches
// (dW, dx) 8×3 tiles (×1.1–1.5); the wider channel counts keep the 2-vector tile (8×2 beat the 6×2
// of AVX2 by 2–8 % on every shape measured on AVX-512; 12×2 or 14×2, using more of the registers,
// lost: each tile row is one more stream of A through L1).
//
// A is packed only in wide products (pack_a_pays: N ≥ 8 tile widths, such as SGEMM 1024³ and the
// input-gradient column products), and transposed only where its depth steps lie 1 KB or more apart
// (a Linear's dW); otherwise the micro-kernel broadcasts from its rows where they lie (packing cost
// more than it saved on the conv forwards). Packing moves A, not the order of the
// sums. B panels are zero-padded to whole tiles; a partial tile is computed
// in full and only its valid part added to C. Each C element is the same sum in the same order
// whatever the tile and wherever it falls (one FMA chain per KC slice, added to C slice by slice),
// so any split of C across threads gives the same bits.
#ifndef DIFFUSE_CORE_GEMM_KERNEL_HPP
#define DIFFUSE_CORE_GEMM_KERNEL_HPP

#include "diffuse/core/intrinsics.hpp"

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "diffuse/core/aligned_buffer.hpp"

// The blocking and when A is packed, overridable for tuning runs (e.g. bench_gemm_tiles built with
// -DDIFFUSE_GEMM_KC=192 on a new kind of CPU). KC sets where each C element's sum is cut into slices,
// so it changes the bits of every product deeper than it; the others change no bits.
#ifndef DIFFUSE_GEMM_KC
#define DIFFUSE_GEMM_KC 256
#endif
#ifndef DIFFUSE_GEMM_MC_TILES
#define DIFFUSE_GEMM_MC_TILES 16  // MC = this many tiles' rows
#endif
#ifndef DIFFUSE_GEMM_PACK_A_TILES
#define DIFFUSE_GEMM_PACK_A_TILES 8  // pack A when N spans at least this many tile widths
#endif

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

/// Vector registers of the target: 32 with AVX-512, 16 with AVX2 or SSE.
template <class T>
inline constexpr int vector_registers = sizeof(xsimd::batch<T>) == 64 ? 32 : 16;

/// The register tile of NV vectors of columns, its rows MR, and the blocking around it.
template <class T, int NV_>
struct Tile {
    using V = xsimd::batch<T>;
    static constexpr int W = int(V::size);
    static constexpr int NV = NV_, NR = NV * W;
    static constexpr int MR = NV == 1 ? 12 : vector_registers<T> == 32 ? 8 : 12 / NV;  // see the top
    static_assert(MR * NV + NV + 1 <= vector_registers<T>, "Tile: accumulators must fit the registers");
    static constexpr int KC = DIFFUSE_GEMM_KC;             // one KC slice of A rows and the B panel stay in L1
    static constexpr int MC = DIFFUSE_GEMM_MC_TILES * MR;  // rows of A swept per B panel: L2
    static constexpr int NC = 64 * NR;                     // packed B slice
};

/// The side of the square blocks of float that pack_b transposes in registers (transpose_block): 16 on
/// AVX-512, 8 on AVX, none elsewhere.
#if defined(__AVX512F__)
inline constexpr int kTransposeBlock = 16;
#elif defined(__AVX__)
inline constexpr int kTransposeBlock = 8;
#else
inline constexpr int kTransposeBlock = 0;
#endif

/// The depth packed by whole blocks (transpose_block) in an NR-wide panel of B stored [N, K]: all but
/// the tail of kc for float where the target has them, none elsewhere. Packing a Linear 128→512's W on a
/// Zen 4 core: 19.6 → 5.6 µs with AVX-512's 16 × 16 blocks, 18.9 → 5.2 µs with AVX2's 8 × 8.
template <int NR, class T>
constexpr int transposed_depth(int kc) {
    if constexpr (std::is_same_v<T, float> && kTransposeBlock > 0 && NR % kTransposeBlock == 0)
        return kc / kTransposeBlock * kTransposeBlock;
    return 0 * kc;
}
#if defined(__AVX512F__)
/// dst[k·ldd + j] = src[j·ld + k] for j, k < 16: 16 rows in, 16 columns out.
inline void transpose_block(const float* src, std::ptrdiff_t ld, float* dst, std::ptrdiff_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
    for (int i = 0; i < 16; i += 2) {  // 128-bit lane L of t[i]: rows i, i+1 at columns 4L, 4L+1
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    const auto lo = [](__m512 a, __m512 b) {
        return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    };
    const auto hi = [](__m512 a, __m512 b) {
        return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    };
    for (int i = 0; i < 16; i += 4) {  // lane L of r[i + c]: rows i..i+3 at column 4L + c
        r[i] = lo(t[i], t[i + 2]);
        r[i + 1] = hi(t[i], t[i + 2]);
        r[i + 2] = lo(t[i + 1], t[i + 3]);
        r[i + 3] = hi(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; ++c) {  // column 4L + c: lane L of r[c], r[4 + c], r[8 + c], r[12 + c]
        const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44),
                     u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        _mm512_storeu_ps(dst + (0 + c) * ldd, _mm512_shuffle_f32x4(u0, u2, 0x88));
        _mm512_storeu_ps(dst + (4 + c) * ldd, _mm512_shuffle_f32x4(u0, u2, 0xDD));
        _mm512_storeu_ps(dst + (8 + c) * ldd, _mm512_shuffle_f32x4(u1, u3, 0x88));
        _mm512_storeu_ps(dst + (12 + c) * ldd, _mm512_shuffle_f32x4(u1, u3, 0xDD));
    }
}
#elif defined(__AVX__)
/// dst[k·ldd + j] = src[j·ld + k] for j, k < 8: 8 rows in, 8 columns out.
inline void transpose_block(const float* src, std::ptrdiff_t ld, float* dst, std::ptrdiff_t ldd) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
    for (int i = 0; i < 8; i += 2) {  // 128-bit lane L of t[i]: rows i, i+1 at columns 4L, 4L+1
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  // lane L of r[i + c]: rows i..i+3 at column 4L + c
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {  // column c: the low lanes of r[c] and r[4 + c]; column 4 + c: the high ones
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x20));
        _mm256_storeu_ps(dst + (4 + c) * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x31));
    }
}
#endif

/// A row-major matrix's rows at a fixed stride: row r at data + r·ld (B's stored rows with T const,
/// C's with T mutable).
template <class T>
struct StridedRows {
    T* data;
    std::ptrdiff_t ld;
    T* operator()(std::ptrdiff_t r) const { return data + r * ld; }
};
/// How a product's first KC slice meets C: added to it, or stored over it unread, plus a row of N values
/// broadcast to every row (a bias) if `row` is set. A store gives the bits of zeroing C (or filling each
/// row with the row) and adding, without that pass over C (IEEE addition commutes, and acc + 0 is 0 +
/// acc, signed zeros included).
template <class T>
struct CStart {
    enum Kind { add, store } kind = add;
    const T* row = nullptr;  // the row's value at C's first column
    CStart from_column(std::ptrdiff_t j) const { return {kind, row ? row + j : row}; }
};

/// The depths [begin, end) of a product that one call multiplies; the others count as zeros (the taps of a
/// convolution's window that fall in its padding). The sums are still cut into KC slices where the whole
/// product's are, and a zero product leaves an FMA chain's +0 or sum as it is, so the bits are those of
/// the whole product over zeros (unless a skipped B value is an infinity or NaN).
struct Depths {
    int begin = 0, end = 1 << 30;
    /// The range within a product of depth K.
    Depths within(int K) const { return {std::max(begin, 0), std::min(end, K)}; }
};

/// A product run as `count` products of the same depth, one after another into C: the s-th reads A's rows
/// s·a_step values on and packed B s·b_step values on, and is added to C as a call of its own would add
/// it (the first meets C as the call's CStart says), so the bits are those of `count` calls. A
/// convolution's kernel rows for the pixels whose window is inside the image: one micro-kernel call for
/// all of them, its tile's row pointers set up once rather than once a kernel row (nn/conv2d.hpp).
struct Segments {
    int count = 1;
    std::ptrdiff_t a_step = 0, b_step = 0;
};

/// Rows i0.. of C from column j0, as a micro-kernel's tile sees them: one type per kind of C rows,
/// so the micro-kernel is not compiled once per caller.
template <class CRows>
struct TileRows {
    CRows rows;
    std::ptrdiff_t i0, j0;
    auto* operator()(int r) const { return rows(i0 + r) + j0; }
};

/// Packs op(B)[k0 : k0+kc, j0 : j0+nc] as ⌈nc/NR⌉ panels, each [kc][NR] (column index fastest).
/// b(r) is B's stored row r: op(B)[k, j] = b(k)[j], or b(j)[k] when TransB (B stored [N, K], whose
/// rows must then be StridedRows). Rows gathered from anywhere serve as an untransposed B: the
/// windows of a convolution's input, for its weight gradient (nn/conv2d.hpp).
template <int NR, bool TransB, class T, class BRows>
void pack_b(BRows b, int k0, int kc, int j0, int nc, T* dst) {
    for (int p = 0; p < nc; p += NR, dst += std::ptrdiff_t(kc) * NR) {
        const int cols = std::min(NR, nc - p);
        if (cols < NR) std::fill_n(dst, std::ptrdiff_t(kc) * NR, T(0));
        if constexpr (TransB) {
            static_assert(std::is_same_v<BRows, StridedRows<const T>>, "pack_b: a transposed B must be strided");
            const std::ptrdiff_t ldb = b.ld;
            const T* const src = b(j0 + p) + k0;
            const int whole = cols == NR ? transposed_depth<NR, T>(kc) : 0;
#if defined(__AVX__)
            if constexpr (std::is_same_v<T, float>)
                for (int k = 0; k < whole; k += kTransposeBlock)
                    for (int j = 0; j < NR; j += kTransposeBlock)
                        transpose_block(src + j * ldb + k, ldb, dst + k * NR + j, NR);
#endif
            for (int j = 0; j < cols; ++j)
                for (int k = whole; k < kc; ++k) dst[std::ptrdiff_t(k) * NR + j] = src[j * ldb + k];
        } else if (cols == NR) {  // whole vectors: a call of memmove a row cost more than the copy (head products)
            using V = xsimd::batch<T>;
            for (int k = 0; k < kc; ++k) {
                const T* src = b(k0 + k) + j0 + p;
#pragma GCC unroll 4
                for (int j = 0; j < NR; j += int(V::size))
                    V::load_unaligned(src + j).store_aligned(dst + std::ptrdiff_t(k) * NR + j);
            }
        } else {
            for (int k = 0; k < kc; ++k) std::copy_n(b(k0 + k) + j0 + p, cols, dst + std::ptrdiff_t(k) * NR);
        }
    }
}

/// Packs op(A)[i0 : i0+mc, k0 : k0+kc] as ⌈mc/MR⌉ panels, each [kc][MR] (row index fastest), rows past
/// mc repeating the last; op(A)[i, k0 + k] at a_row(i, k0)[k·ks].
template <int MR, class T, class ARow>
void pack_a(ARow a_row, std::ptrdiff_t ks, int i0, int mc, int k0, int kc, T* dst) {
    for (int p = 0; p < mc; p += MR, dst += std::ptrdiff_t(kc) * MR) {
        const T* row[MR];
        for (int r = 0; r < MR; ++r) row[r] = a_row(i0 + p + std::min(r, mc - p - 1), k0);
        for (std::ptrdiff_t k = 0; k < kc; ++k)
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) dst[k * MR + r] = row[r][k * ks];
    }
}

/// Row r of a packed A panel: one type for every product, so the packed micro-kernel is compiled once
/// a tile (a lambda would make one per caller, and bench_compare.cpp compiled 50 % longer). Every
/// panel has all MR rows (pack_a repeats the last), so its rows are one pointer and constant offsets.
/// A whole tile of a transposed A read in place has its rows side by side too (StridedA, rs = 1).
template <class T>
struct PackedRows {
    const T* panel;
    const T* operator()(int r) const { return panel + r; }
};

/// op(A) of a row-major A with row stride lda, read in place: op(A)[i, k] at a + i·rs + k·ks. One type
/// for A and Aᵀ (the strides say which), so the products of every transposition share their
/// macro-kernels (a lambda a transposition compiled 4 of each tile into every file with a Linear).
template <class T>
struct StridedA {
    const T* a;
    std::ptrdiff_t rs, ks;
    StridedA(const T* a_, std::ptrdiff_t lda, bool trans) : a(a_), rs(trans ? 1 : lda), ks(trans ? lda : 1) {}
    const T* operator()(std::ptrdiff_t i, std::ptrdiff_t k) const { return a + i * rs + k * ks; }
};

/// A B panel read where its rows lie, not packed: depth k's NR values at rows[k] + col (a convolution's
/// windows for its weight gradient, GatheredRows; whole panels only).
template <class T>
struct GatheredPanel {
    const T* const* rows;
    std::ptrdiff_t col;
};

/// C[mr, nr] += op(A)[MR rows, kc] · (B panel), for an MR × NR tile of which mr × nr is valid; or, as
/// `start` says, C = that product (+ start's row, from the tile's first column). Segmented: seg.count
/// such products in turn (Segments).
/// A is read in place, not packed: tile row r, depth k at row_of(r)[k·ks] (ks = 1 for a row-major
/// or gathered A, lda for a transposed one). Rows past mr repeat row mr − 1 (valid memory; their
/// results are dropped). row_of and c come by reference: by value, when this was a call of its own, GCC
/// built them on the stack with small stores and copied them with one wide load, which cannot be
/// forwarded from those stores (a stall on every call: 8 % of the 16-channel conv's time on a Zen 4).
template <class Tl, bool Segmented = false, class T, class RowOf, class BPanel, class CTile>
[[gnu::always_inline]] inline void micro_kernel(int kc, const RowOf& row_of, std::ptrdiff_t ks, const BPanel& b,
                                                const CTile& c, int mr, int nr, CStart<T> start, Segments seg = {}) {
    using V = typename Tl::V;
    constexpr int MR = Tl::MR, NV = Tl::NV, NR = Tl::NR, W = Tl::W;
    // A packed panel's rows need no clamp; clamped, each row was a pointer of its own, and the 12×1
    // tile's twelve do not fit x86's general registers (reloaded from the stack each step).
    constexpr bool whole_panel = std::is_same_v<RowOf, PackedRows<T>>;
    constexpr bool gathered_b = std::is_same_v<BPanel, GatheredPanel<T>>;
    static_assert(gathered_b || std::is_same_v<BPanel, const T*>, "micro_kernel: B is a packed panel or gathered");
    static_assert(!(gathered_b && Segmented), "micro_kernel: gathered B panels are not segmented");
    const T* row[MR];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) row[r] = row_of(whole_panel ? r : std::min(r, mr - 1));
    // Rows are read at offsets from −kc·ks up to 0: the counter ends the loop at zero and no register holds
    // its bound. The 12×1 tile's twelve row pointers, the counter, B and the bound were one more than x86's
    // 15 general registers, and GCC moved two row pointers through vector registers each step, on the FMA
    // ports (14 of their uops for 12 FMAs).
    const std::ptrdiff_t span = std::ptrdiff_t(kc) * ks;
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) row[r] += span;
    const int segments = Segmented ? seg.count : 1;
    // Segments of a whole tile carry C's running value in registers where they fit twice the accumulators
    // (the 12×1 tile on AVX-512): the same additions, without a pass over C a segment.
    constexpr bool carry = Segmented && 2 * MR * NV + NV + 1 <= vector_registers<T>;
    [[maybe_unused]] V run[carry ? MR : 1][NV];  // C's tile between segments
    for (int s = 0; s < segments; ++s, start = CStart<T>{}) {
        [[maybe_unused]] const T* bs = nullptr;
        [[maybe_unused]] const T* const* brow = nullptr;
        if constexpr (gathered_b) brow = b.rows;
        else bs = b + (Segmented ? s * seg.b_step : 0);
        V acc[MR][NV];
#pragma GCC unroll 32
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[r][v] = V(T(0));
        for (std::ptrdiff_t at = -span; at != 0; at += ks) {
            V bv[NV];
            if constexpr (gathered_b) {
                const T* const bk = *brow++ + b.col;
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) bv[v] = V::load_unaligned(bk + v * W);
            } else {
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) bv[v] = V::load_aligned(bs + v * W);
                bs += NR;
            }
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) {
                const V ar(row[r][at]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(ar, bv[v], acc[r][v]);
            }
        }
        if constexpr (Segmented) {
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) row[r] += seg.a_step;
        }
        V base[NV];  // what a stored C starts from
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) base[v] = start.row ? V::load_unaligned(start.row + v * W) : V(T(0));
        if constexpr (carry) {
            if (mr == MR && nr == NR) {
#pragma GCC unroll 32
                for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) {
                        if (s > 0) run[r][v] = run[r][v] + acc[r][v];
                        else if (start.kind == CStart<T>::add) run[r][v] = V::load_unaligned(c(r) + v * W) + acc[r][v];
                        else run[r][v] = acc[r][v] + base[v];
                        if (s == segments - 1) run[r][v].store_unaligned(c(r) + v * W);
                    }
                continue;
            }
        }
        if (mr == MR && nr == NR) {
            if (start.kind == CStart<T>::add) {
#pragma GCC unroll 32
                for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) {
                        T* out = c(r) + v * W;
                        (V::load_unaligned(out) + acc[r][v]).store_unaligned(out);
                    }
                continue;
            }
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) (acc[r][v] + base[v]).store_unaligned(c(r) + v * W);
            continue;
        }
        alignas(64) T tile[MR][NR];
        for (int r = 0; r < MR; ++r)
            for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(tile[r] + v * W);
        for (int r = 0; r < mr; ++r)
            for (int j = 0; j < nr; ++j) {
                T& out = c(r)[j];
                out = tile[r][j] + (start.kind == CStart<T>::add ? out : start.row ? start.row[j] : T(0));
            }
    }
}

/// B packed whole, once for many products with the same B (a convolution's weights, read by every
/// group of images): the slices gemm_add_rows would pack, one after another in its order (NC blocks,
/// then KC slices). The slice of block jc (nc columns), depth pc starts at packed_b_offset.
template <class Tl>
constexpr std::size_t packed_b_offset(int K, int jc, int nc, int pc) {
    const int padded = (nc + Tl::NR - 1) / Tl::NR * Tl::NR;
    return std::size_t(jc) * K + std::size_t(pc) * padded;
}
template <class Tl>
constexpr std::size_t packed_b_size(int N, int K) {
    const int last = (N - 1) / Tl::NC * Tl::NC;
    return packed_b_offset<Tl>(K, last, N - last, K);
}
template <class Tl, bool TransB, class T, class BRows>
void pack_b_whole(int N, int K, BRows b, T* dst) {
    for (int jc = 0; jc < N; jc += Tl::NC) {
        const int nc = std::min(Tl::NC, N - jc);
        for (int pc = 0; pc < K; pc += Tl::KC)
            pack_b<Tl::NR, TransB>(b, pc, std::min(Tl::KC, K - pc), jc, nc, dst + packed_b_offset<Tl>(K, jc, nc, pc));
    }
}

/// Whether to pack A (pack_a) rather than read its rows in place: in wide products, where each packed
/// slice is swept by 8+ B panels, for row-major A, or transposed A whose depth steps lie 1 KB or more
/// apart (a Linear's dW = dyᵀ·x over 256+ outputs): the KC steps of a tile then fall in at most 4 of
/// L1's 64 sets and evict one another. Measured on one Zen 4 core (CPU time): SGEMM 1024³ 66 → 87
/// GFLOP/s with the 8×2 tile; its dW (transposed A, 4 KB steps) 63 → 86 with AVX2's 6×2 (95 → 98 with
/// 8×2); conv dx 256×576×64 70 → 94. The narrow conv forwards (N = 64, 128) and the convs' dW
/// (transposed A with 256–768 B steps) lost 2–10 % when packed.
template <class T>
bool pack_a_pays(int N, int NR, std::ptrdiff_t ks) {
    return N >= DIFFUSE_GEMM_PACK_A_TILES * NR && (ks == 1 || ks * std::ptrdiff_t(sizeof(T)) >= 1024);
}

/// The tiles of rows [ic, ic + mc) against one B panel bp (C's columns from j0, nr of them valid): A
/// from the packed panels at apack, or in place (apack null). A function of its own, its micro-kernels
/// inlined: inlined into the whole product, GCC's AVX2 build kept the tile's row pointers on the stack
/// (5 reloads in the 6×2 tile's 13 loads a step, for 12 FMAs), and a call per tile cost the 16-channel
/// conv 6 % (a Zen 4, x86-64-v3 build).
template <class Tl, bool MayPackA, bool Segmented = false, class ARow, class CRows, class T, class BPanel>
[[gnu::noinline]] void macro_kernel(int kc, const ARow& a_row, std::ptrdiff_t ks, const T* apack, int pc, int ic,
                                    int mc, const BPanel& bp, const CRows& c_rows, std::ptrdiff_t j0, int nr,
                                    CStart<T> first, Segments seg = {}) {
    constexpr int MR = Tl::MR;
    // A transposed A read in place has a whole tile's rows side by side: one pointer, as in a packed panel.
    // As MR pointers (+ the counter, B and the depth step) they left too few general registers, and GCC
    // moved rows through vector registers and the stack each step (a conv's weight gradient, dyᵀ·windows).
    constexpr bool strided = std::is_same_v<ARow, StridedA<T>> && !Segmented;
    bool side_by_side = false;
    if constexpr (strided) side_by_side = a_row.rs == 1;
    for (int ir = ic; ir < ic + mc; ir += MR) {
        const TileRows<CRows> c{c_rows, ir, j0};
        const int mr = std::min(MR, ic + mc - ir);
        if (MayPackA && apack) {
            const T* ap = apack + std::ptrdiff_t(ir - ic) * kc;  // panel (ir − ic)/MR
            micro_kernel<Tl>(kc, PackedRows<T>{ap}, MR, bp, c, mr, nr, first);
        } else if (side_by_side && mr == MR) {
            if constexpr (strided) micro_kernel<Tl>(kc, PackedRows<T>{a_row(ir, pc)}, ks, bp, c, mr, nr, first);
        } else {
            micro_kernel<Tl, Segmented>(
                kc, [&](int r) { return a_row(ir + r, pc); }, ks, bp, c, mr, nr, first, seg);
        }
    }
}

/// C[M, N] += op(A)·op(B) with register tile Tl: B's stored rows b (pack_b), row i of C at c(i) (N
/// contiguous values), op(A)[i, k] at a_row(i, k)[0] and op(A)[i, k + j] at a_row(i, k)[j·ks].
/// With `prepacked` (pack_b_whole's layout), B is not packed again: its slices are read from there.
/// MayPackA = false (gathered rows: the convolutions' narrow products) leaves pack_a out of the build.
/// Only the depths in `depths` are multiplied (1 ≤ their count). The first KC slice that holds some
/// meets C as `start` says (CStart); the others are added.
template <class Tl, bool TransB, bool MayPackA = true, class ARow, class BRows, class CRows,
          class T = typename Tl::V::value_type>
void gemm_add_rows(int M, int N, int K, ARow a_row, std::ptrdiff_t ks, BRows b, CRows c_rows,
                   const T* prepacked = nullptr, CStart<T> start = {}, Depths depths = {}) {
    constexpr int MR = Tl::MR, NR = Tl::NR;
    // Gathered rows of B (a convolution's windows, for its weight gradient) are read where they lie when
    // every panel is whole and few row tiles read them: packing copied each value once for ⌈M/MR⌉ tiles (2
    // at 16 output channels), into a slice of KC·N values that left L1 for L2.
    constexpr bool gathered_b = !TransB && requires(const BRows& r) {
        requires std::is_same_v<decltype(r.rows), const T* const*>;
    };
    const bool b_in_place = gathered_b && !prepacked && N % NR == 0 && M <= 8 * MR;
    GemmScratch<T>& scratch = gemm_scratch<T>();
    T* const bpack = prepacked || b_in_place ? nullptr : GemmScratch<T>::fit(scratch.b, std::size_t(Tl::NC) * Tl::KC);
    const bool packs_a = MayPackA && pack_a_pays<T>(N, NR, ks);
    T* const apack = packs_a ? GemmScratch<T>::fit(scratch.a, std::size_t(Tl::MC) * Tl::KC) : nullptr;
    const auto [k0, k1] = depths.within(K);
    for (int jc = 0; jc < N; jc += Tl::NC) {
        const int nc = std::min(Tl::NC, N - jc);
        for (int pc = k0 / Tl::KC * Tl::KC; pc < k1; pc += Tl::KC) {
            // slice [pc, pc + KC) of K, of which depths [lo, lo + kc) are multiplied
            const int lo = std::max(pc, k0), kc = std::min(pc + Tl::KC, k1) - lo;
            const T* bslice = bpack;
            std::ptrdiff_t panel = std::ptrdiff_t(kc) * NR;  // from one B panel to the next
            if (prepacked) {
                panel = std::ptrdiff_t(std::min(Tl::KC, K - pc)) * NR;
                bslice = prepacked + packed_b_offset<Tl>(K, jc, nc, pc) + std::ptrdiff_t(lo - pc) * NR;
            } else if (!b_in_place) {
                pack_b<NR, TransB>(b, lo, kc, jc, nc, bpack);
            }
            for (int ic = 0; ic < M; ic += Tl::MC) {
                const int mc = std::min(Tl::MC, M - ic);
                if constexpr (MayPackA)
                    if (packs_a) pack_a<MR>(a_row, ks, ic, mc, lo, kc, apack);
                for (int jr = 0; jr < nc; jr += NR) {
                    const CStart<T> first = lo == k0 ? start.from_column(jc + jr) : CStart<T>{};
                    const auto run = [&](const auto& bp) {
                        macro_kernel<Tl, MayPackA>(kc, a_row, ks, packs_a ? apack : nullptr, lo, ic, mc, bp, c_rows,
                                                   jc + jr, std::min(NR, nc - jr), first);
                    };
                    if constexpr (gathered_b)
                        if (b_in_place) {
                            run(GatheredPanel<T>{b.rows + lo, jc + jr});
                            continue;
                        }
                    run(bslice + jr / NR * panel);
                }
            }
        }
    }
}

/// C[M, N] += op(A)·op(B) with register tile Tl, all row-major with row strides lda, ldb, ldc (or C
/// stored as `start` says).
template <class Tl, bool TransA, bool TransB, class T>
void gemm_add_tiled(int M, int N, int K, const T* A, std::ptrdiff_t lda, const T* B, std::ptrdiff_t ldb, T* C,
                    std::ptrdiff_t ldc, CStart<T> start = {}) {
    const StridedA<T> a(A, lda, TransA);
    gemm_add_rows<Tl, TransB>(M, N, K, a, a.ks, StridedRows<const T>{B, ldb}, StridedRows<T>{C, ldc},
                              static_cast<const T*>(nullptr), start);
}

/// The tile's vectors for N columns: the fewest padded columns, 2 vectors on a tie (see the top).
template <class T>
constexpr int tile_vectors(int N) {
    constexpr int W = int(xsimd::batch<T>::size);
    const auto padded = [&](int nv) { return (N + nv * W - 1) / (nv * W) * (nv * W); };
    int best = 2;
    for (int nv : {3, 1})
        if (padded(nv) < padded(best)) best = nv;
    return best;
}

/// f.template operator()<Tile<T, NV>>() for the tile of N columns: the one place NV becomes a type.
template <class T, class F>
decltype(auto) with_tile(int N, F f) {
    switch (tile_vectors<T>(N)) {
        case 1:
            return f.template operator()<Tile<T, 1>>();
        case 3:
            return f.template operator()<Tile<T, 3>>();
        default:
            return f.template operator()<Tile<T, 2>>();
    }
}

/// The rows MR of the tile for N columns.
template <class T>
int tile_rows(int N) {
    return with_tile<T>(N, []<class Tl>() { return Tl::MR; });
}

/// C[M, N] += op(A)·op(B), all row-major with row strides lda, ldb, ldc (or C stored as `start` says;
/// K ≥ 1).
template <bool TransA, bool TransB, class T>
void gemm_add(int M, int N, int K, const T* A, std::ptrdiff_t lda, const T* B, std::ptrdiff_t ldb, T* C,
              std::ptrdiff_t ldc, CStart<T> start = {}) {
    with_tile<T>(N, [&]<class Tl>() { gemm_add_tiled<Tl, TransA, TransB>(M, N, K, A, lda, B, ldb, C, ldc, start); });
}

/// C[M, N] += A·op(B) over `depths` of K, row i of A being their values, contiguous, at a_row(i): rows
/// gathered from anywhere (nn/conv2d.hpp's implicit im2col). Any T: the same packed kernel for float
/// and double. With `prepacked` (pack_b_for_gathered's output for this N, K), B and ldb are unused. C
/// met as `start` says.
template <bool TransB, class T, class ARow, class CRows>
void gemm_add_gathered(int M, int N, int K, ARow a_row, const T* B, std::ptrdiff_t ldb, CRows c_rows,
                       const T* prepacked = nullptr, CStart<T> start = {}, Depths depths = {}) {
    const int k0 = depths.within(K).begin;
    const auto row = [&](int i, int k) { return a_row(i) + (k - k0); };
    with_tile<T>(N, [&]<class Tl>() {
        gemm_add_rows<Tl, TransB, false>(M, N, K, row, 1, StridedRows<const T>{B, ldb}, c_rows, prepacked, start,
                                         depths);
    });
}

/// gemm_add_gathered over prepacked B in seg.count segments (Segments) of depth K ≤ KC each, row i of
/// A's first at a_row(i): the bits of seg.count calls, the first meeting C as `start` says.
template <class T, class ARow, class CRows>
void gemm_add_gathered_segments(int M, int N, int K, ARow a_row, const T* prepacked, CRows c_rows, CStart<T> start,
                                Segments seg) {
    const auto row = [&](int i, int) { return a_row(i); };
    with_tile<T>(N, [&]<class Tl>() {
        for (int jc = 0; jc < N; jc += Tl::NC) {
            const int nc = std::min(Tl::NC, N - jc);
            const T* const bslice = prepacked + packed_b_offset<Tl>(K, jc, nc, 0);
            for (int ic = 0; ic < M; ic += Tl::MC)
                for (int jr = 0; jr < nc; jr += Tl::NR)
                    macro_kernel<Tl, false, true>(K, row, 1, static_cast<const T*>(nullptr), 0, ic,
                                                  std::min(Tl::MC, M - ic), bslice + std::ptrdiff_t(jr) * K, c_rows,
                                                  jc + jr, std::min(Tl::NR, nc - jr), start.from_column(jc + jr), seg);
        }
    });
}

/// C[M, N] += op(A)·B, row k of B (N contiguous values) at b_row(k): B gathered from anywhere, such as
/// the input windows of a convolution's weight gradient (nn/conv2d.hpp). op(A) as in gemm_add; C met
/// as `start` says.
template <bool TransA, class T, class BRow>
void gemm_add_gathered_b(int M, int N, int K, const T* A, std::ptrdiff_t lda, BRow b_row, T* C, std::ptrdiff_t ldc,
                         CStart<T> start = {}) {
    const StridedA<T> a(A, lda, TransA);
    with_tile<T>(N, [&]<class Tl>() {
        gemm_add_rows<Tl, false>(M, N, K, a, a.ks, b_row, StridedRows<T>{C, ldc}, static_cast<const T*>(nullptr),
                                 start);
    });
}

/// Values in op(B) [K, N] packed whole for the tile of N columns.
template <class T>
std::size_t packed_b_size_for(int N, int K) {
    return with_tile<T>(N, [&]<class Tl>() { return packed_b_size<Tl>(N, K); });
}
/// op(B) [K, N] packed whole for gemm_add_gathered's `prepacked`: packed_b_size_for(N, K) values at dst.
/// B's stored rows b as in pack_b.
template <bool TransB, class T, class BRows>
void pack_b_for_gathered(int N, int K, BRows b, T* dst) {
    with_tile<T>(N, [&]<class Tl>() { pack_b_whole<Tl, TransB>(N, K, b, dst); });
}

}  // namespace packed
}  // namespace diffuse::detail

#endif
