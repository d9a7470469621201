// Matrix products over tensor memory, row-major, no copies:
//
//   C[M, N] (=|+=) op(A) · op(B),   op(A) is [M, K], op(B) is [K, N]
//
// float products run our packed xsimd micro-kernel (gemm_kernel.hpp); double products (gradient
// checks, references) Eigen's kernel (general_matrix_matrix_product), called directly rather than
// through an Eigen expression, whose path mallocs its packing buffers for every large product.
//   - no heap allocation per product: each thread packs into its own buffers, grown on first use
//     and kept, so a training or sampling step allocates nothing once warm;
//   - our own parallel split: outside a parallel region a large product is cut into blocks of C
//     rows (or columns), each a sequential product. For double the cut depends only on M, N, K,
//     never on the thread count (Eigen's blocking follows the block's size); for float it is one
//     block a thread, since our kernel gives an element the same bits wherever it falls. Either
//     way C is bitwise the same for any thread count.
// (A direct unpacked path for tiny products, an attention head's 16×16×32, was tried: it ran at
// half the packed kernel's speed.)
// Inside a parallel region (per-image convolutions in parallel_for) the product runs on the
// calling thread: one level of parallelism at a time.
#ifndef DIFFUSE_CORE_GEMM_HPP
#define DIFFUSE_CORE_GEMM_HPP

#include "diffuse/core/intrinsics.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "diffuse/core/gemm_kernel.hpp"
#include "diffuse/core/parallel.hpp"

namespace diffuse {

enum class Trans { N, T };
enum class Accumulate { no, yes };

namespace detail {

/// Each of C's M rows (N values at c_rows(i)) set to `row`, or to zeros if row is null.
template <class T, class CRows>
void fill_rows(Eigen::Index M, Eigen::Index N, const T* row, CRows c_rows) {
    for (Eigen::Index i = 0; i < M; ++i)
        if (row) std::copy_n(row, N, c_rows(i));
        else std::fill_n(c_rows(i), N, T(0));
}
/// fill_rows with C's rows at a stride ldc.
template <class T>
void fill_rows(Eigen::Index M, Eigen::Index N, const T* row, T* C, Eigen::Index ldc) {
    fill_rows(M, N, row, packed::StridedRows<T>{C, ldc});
}

/// Eigen's blocking sizes with buffers we own.
template <class T>
struct PooledBlocking : Eigen::internal::level3_blocking<T, T> {
    PooledBlocking(Eigen::Index rows, Eigen::Index cols, Eigen::Index depth) {
        Eigen::Index k = depth, m = rows, n = cols;
        Eigen::internal::computeProductBlockingSizes<T, T, 1>(k, m, n, Eigen::Index(1));
        this->m_kc = k;
        this->m_mc = m;
        this->m_nc = n;
        GemmScratch<T>& s = gemm_scratch<T>();
        this->m_blockA = GemmScratch<T>::fit(s.a, std::size_t(k) * std::size_t(m));
        this->m_blockB = GemmScratch<T>::fit(s.b, std::size_t(k) * std::size_t(n));
    }
};

/// C[M, N] += op(A)·op(B) on the calling thread. Eigen's kernel is column-major, so it computes
/// Cᵀ = op(B)ᵀ·op(A)ᵀ: a row-major [r, c] matrix read as column-major is its transpose.
template <Trans TA, Trans TB, class T>
void eigen_gemm_add(Eigen::Index M, Eigen::Index N, Eigen::Index K, const T* A, Eigen::Index lda, const T* B,
                    Eigen::Index ldb, T* C, Eigen::Index ldc) {
    // op(B)ᵀ [N, K]: B stored [K, N] row-major is column-major [N, K]; stored [N, K] is row-major.
    constexpr int lhs_order = TB == Trans::N ? Eigen::ColMajor : Eigen::RowMajor;
    constexpr int rhs_order = TA == Trans::N ? Eigen::ColMajor : Eigen::RowMajor;
    using Product = Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, lhs_order, false, T, rhs_order,
                                                                   false, Eigen::ColMajor, 1>;
    PooledBlocking<T> blocking(N, M, K);
    Product::run(N, M, K, B, ldb, A, lda, C, 1, ldc, T(1), blocking, nullptr);
}

/// C[M, N] += op(A)·op(B), or C set as `start` says (K ≥ 1). float: our packed kernel (gemm_kernel.hpp),
/// which stores C on its first depth slice without reading it; double (gradient checks, references):
/// Eigen's, after C is filled.
template <Trans TA, Trans TB, class T>
void gemm_add(Eigen::Index M, Eigen::Index N, Eigen::Index K, const T* A, Eigen::Index lda, const T* B,
              Eigen::Index ldb, T* C, Eigen::Index ldc, packed::CStart<T> start) {
    if constexpr (std::is_same_v<T, float>) {
        packed::gemm_add<TA == Trans::T, TB == Trans::T>(int(M), int(N), int(K), A, lda, B, ldb, C, ldc, start);
    } else {
        if (start.kind == packed::CStart<T>::store) fill_rows(M, N, start.row, C, ldc);
        eigen_gemm_add<TA, TB>(M, N, K, A, lda, B, ldb, C, ldc);
    }
}

/// Products below this many multiply-adds run on one thread: a parallel region costs ~1 µs with
/// spinning threads but ~40 µs under OMP_WAIT_POLICY=passive (core/parallel.hpp), about what two
/// threads save on a product of 2^22 (a UNet block's time projection, 32×256×128, is 2^20).
inline constexpr double kGemmParallelWork = 1 << 22;
/// Smallest block of C rows or columns handed to a thread, and the most blocks of one product.
inline constexpr int kGemmBlock = 64, kGemmMaxBlocks = 32;

/// How a product's first depth slice meets C for `acc`: added, or stored unread (plus `row`, if set).
template <class T>
packed::CStart<T> start_for(Accumulate acc, const T* row = nullptr) {
    using Start = packed::CStart<T>;
    return acc == Accumulate::yes ? Start{} : Start{Start::store, row};
}

/// gemm, with the first depth slice meeting C as `start` says.
template <Trans TA, Trans TB, class T>
void gemm_start(int M, int N, int K, const T* A, const T* B, T* C, packed::CStart<T> start, int lda, int ldb, int ldc) {
    if (M <= 0 || N <= 0) return;
    const Eigen::Index a_cols = TA == Trans::N ? K : M, b_cols = TB == Trans::N ? N : K;
    const Eigen::Index sa = lda ? lda : a_cols, sb = ldb ? ldb : b_cols, sc = ldc ? ldc : N;
    if (K <= 0) {
        if (start.kind == packed::CStart<T>::store) fill_rows(M, N, start.row, C, sc);
        return;
    }
    // Blocks of C rows (or columns, whichever is longer): a fixed cut, so results do not depend
    // on the thread count. op(A) rows start at A + i·sa (TA = N) or A + i (TA = T); likewise B.
    const bool by_rows = M >= N;
    const int len = by_rows ? M : N;
    int blocks = 1;  // a power of two, so that 2, 4, 8... threads share the blocks evenly
    if (double(M) * N * K >= detail::kGemmParallelWork)
        while (blocks < detail::kGemmMaxBlocks && len / (2 * blocks) >= detail::kGemmBlock) blocks *= 2;
    // float: an element's bits do not depend on the block it falls in (gemm_kernel.hpp), so one block
    // a thread: each block packs all of op(B) (or op(A)) again; SGEMM 1024³ cut into 8 blocks ran
    // 16 % slower than in one on a Zen 4 core.
    if constexpr (std::is_same_v<T, float>) blocks = std::min(blocks, num_threads());
    // Blocks of whole tiles, as even as whole tiles allow: a unit is the float tile's MR rows (its
    // tile is chosen from N, the same in every row block) or 48 columns (a multiple of every NR).
    const int unit = !std::is_same_v<T, float> ? 1 : by_rows ? detail::packed::tile_rows<T>(N) : 48;
    const int units = (len + unit - 1) / unit;
    parallel_for(blocks, [&](int b) {
        const int lo = std::min(len, unit * (b * units / blocks)),
                  n = std::min(len, unit * ((b + 1) * units / blocks)) - lo;
        if (n <= 0) return;
        if (by_rows) gemm_add<TA, TB>(n, N, K, A + (TA == Trans::N ? lo * sa : lo), sa, B, sb, C + lo * sc, sc, start);
        else
            gemm_add<TA, TB>(M, n, K, A, sa, B + (TB == Trans::N ? lo : lo * sb), sb, C + lo, sc,
                             start.from_column(lo));
    });
}

}  // namespace detail

/// Whether a product's rows may be cut between threads with no change of bits: float, whose kernel
/// gives an element the same bits wherever it falls (gemm_kernel.hpp); not double, whose blocking
/// follows the product's size (so its products split themselves, by size alone).
template <class T>
inline constexpr bool rows_cut_freely = std::is_same_v<T, float>;

/// C = op(A)·op(B) or C += op(A)·op(B). lda/ldb/ldc are row strides of the stored matrices
/// (0 means contiguous). Never allocates once each thread has seen a product this large.
template <Trans TA, Trans TB, class T>
void gemm(int M, int N, int K, const T* A, const T* B, T* C, Accumulate acc, int lda = 0, int ldb = 0, int ldc = 0) {
    detail::gemm_start<TA, TB>(M, N, K, A, B, C, detail::start_for<T>(acc), lda, ldb, ldc);
}

/// C = op(A)·op(B) + row, the N values of `row` added to every row of C (a bias): the bits of filling C
/// with the row and accumulating, without that pass over C.
template <Trans TA, Trans TB, class T>
void gemm_plus_row(int M, int N, int K, const T* A, const T* B, const T* row, T* C, int lda = 0, int ldb = 0,
                   int ldc = 0) {
    using Start = detail::packed::CStart<T>;
    detail::gemm_start<TA, TB>(M, N, K, A, B, C, Start{Start::store, row}, lda, ldb, ldc);
}

/// C[M, N] += A·op(B) on the calling thread, where row i of A (K contiguous values) starts at
/// a_row(i): A gathered from anywhere, such as the input pixels of an implicit im2col
/// (nn/conv2d.hpp). Our packed kernel for float and double alike; ldb and ldc are row strides.
template <Trans TB, class T, class ARow>
void gemm_gathered(int M, int N, int K, ARow a_row, const T* B, int ldb, T* C, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    detail::packed::gemm_add_gathered<TB == Trans::T>(M, N, K, a_row, B, ldb, detail::packed::StridedRows<T>{C, ldc});
}

/// Rows gathered through a table of pointers: row i at rows[i] (one type for every caller, so each
/// gathered product is compiled once); T const for A's or B's rows, mutable for C's.
template <class T>
struct GatheredRows {
    T* const* rows;
    T* operator()(std::ptrdiff_t i) const { return rows[i]; }
};

/// C[M, N] (+)= op(A)·B on the calling thread, row k of B (N contiguous values) at b_row(k): B gathered
/// from anywhere, such as the input windows of a convolution's weight gradient (nn/conv2d.hpp). Our
/// packed kernel for float and double alike; lda and ldc are row strides. With Accumulate::no, C is
/// stored unread, with the bits of zeroing it first.
template <Trans TA, class T, class BRow>
void gemm_gathered_b(int M, int N, int K, const T* A, int lda, BRow b_row, T* C, int ldc,
                     Accumulate acc = Accumulate::yes) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (acc == Accumulate::no) detail::fill_rows(M, N, static_cast<const T*>(nullptr), C, ldc);
        return;
    }
    detail::packed::gemm_add_gathered_b<TA == Trans::T>(M, N, K, A, lda, b_row, C, ldc, detail::start_for<T>(acc));
}

/// op(B) [K, N] packed once for many gemm_gathered_packed calls with the same B (a convolution's
/// weights, read by every group of images): packed_b_size<T>(N, K) values at dst, 64-byte aligned.
template <class T>
std::size_t packed_b_size(int N, int K) {
    return detail::packed::packed_b_size_for<T>(N, K);
}
template <Trans TB, class T>
void pack_b(int N, int K, const T* B, int ldb, T* dst) {
    if (N > 0 && K > 0)
        detail::packed::pack_b_for_gathered<TB == Trans::T>(N, K, detail::packed::StridedRows<const T>{B, ldb}, dst);
}
/// pack_b with op(B)'s rows gathered from anywhere: row k (N contiguous values) at b_row(k), such as a
/// convolution's weights read in flipped order for its input gradient.
template <class T, class BRow>
void pack_b_rows(int N, int K, BRow b_row, T* dst) {
    if (N > 0 && K > 0) detail::packed::pack_b_for_gathered<false>(N, K, b_row, dst);
}
/// The depths [begin, end) of K that gemm_gathered_packed multiplies, the others counting as zeros.
using detail::packed::Depths;
/// gemm_gathered with op(B) packed by pack_b: the same bits, without packing B again. Row i of C at
/// c_rows(i) (N contiguous values): rows gathered (GatheredRows, such as the output pixels of a
/// convolution whose window rows are not all zero) or strided. With Accumulate::no, C = A·op(B) + row
/// (row: N values added to every row of C, or none), C unread: the bits of filling C's rows with `row`
/// and accumulating. With `depths`, only those depths are multiplied, row i of A holding their values
/// at a_row(i): the bits of the whole product with zeros elsewhere in A (a convolution's edge pixels,
/// whose windows leave the image).
template <class T, class ARow, class CRows>
requires std::is_same_v<CRows, GatheredRows<T>> || std::is_same_v<CRows, detail::packed::StridedRows<T>>
void gemm_gathered_packed(int M, int N, int K, ARow a_row, const T* packed_b, CRows c_rows,
                          Accumulate acc = Accumulate::yes, const T* row = nullptr, Depths depths = {}) {
    if (M <= 0 || N <= 0) return;
    if (const Depths d = depths.within(K); d.end <= d.begin) {
        if (acc == Accumulate::no) detail::fill_rows(M, N, row, c_rows);
        return;
    }
    detail::packed::gemm_add_gathered<false>(M, N, K, a_row, packed_b, 0, c_rows, packed_b, detail::start_for(acc, row),
                                             depths);
}
/// The depth below which gemm_gathered_packed_segments runs (one KC slice).
inline constexpr int kGemmDepthSlice = DIFFUSE_GEMM_KC;
using detail::packed::Segments;
/// gemm_gathered_packed of depth K (≤ kGemmDepthSlice) run seg.count times, the s-th on A's rows
/// s·seg.a_step values on and packed B s·seg.b_step values on: the bits of seg.count calls, the first
/// with `acc` and `row`, the others accumulating (a convolution's kernel rows, nn/conv2d.hpp).
template <class T>
void gemm_gathered_packed_segments(int M, int N, int K, GatheredRows<const T> a_rows, const T* packed_b,
                                   GatheredRows<T> c_rows, Accumulate acc, const T* row, Segments seg) {
    if (M <= 0 || N <= 0) return;
    detail::packed::gemm_add_gathered_segments(M, N, K, a_rows, packed_b, c_rows, detail::start_for(acc, row), seg);
}
/// gemm_gathered_packed into C with row stride ldc.
template <class T, class ARow>
void gemm_gathered_packed(int M, int N, int K, ARow a_row, const T* packed_b, T* C, int ldc,
                          Accumulate acc = Accumulate::yes, const T* row = nullptr, Depths depths = {}) {
    gemm_gathered_packed(M, N, K, a_row, packed_b, detail::packed::StridedRows<T>{C, ldc}, acc, row, depths);
}

}  // namespace diffuse

#endif
