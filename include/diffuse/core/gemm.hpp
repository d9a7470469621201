// Matrix products through Eigen::Map over tensor memory: no copies, row-major, noalias.
//
//   C[M, N] (=|+=) op(A) · op(B),   op(A) is [M, K], op(B) is [K, N]
//
// Eigen parallelizes a large product itself with OpenMP when called outside a parallel region,
// and runs it on the calling thread inside one: one level of parallelism at a time.
#ifndef DIFFUSE_CORE_GEMM_HPP
#define DIFFUSE_CORE_GEMM_HPP

#include <Eigen/Core>

namespace diffuse {

enum class Trans { N, T };
enum class Accumulate { no, yes };

template <class T>
using RowMajorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                               Eigen::OuterStride<>>;
template <class T>
using ConstRowMajorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                                    Eigen::Unaligned, Eigen::OuterStride<>>;

/// C = op(A)·op(B) or C += op(A)·op(B). lda/ldb/ldc are row strides of the stored matrices
/// (0 means contiguous).
template <Trans TA, Trans TB, class T>
void gemm(int M, int N, int K, const T* A, const T* B, T* C, Accumulate acc, int lda = 0, int ldb = 0,
          int ldc = 0) {
    const int ar = TA == Trans::N ? M : K, ac = TA == Trans::N ? K : M;
    const int br = TB == Trans::N ? K : N, bc = TB == Trans::N ? N : K;
    ConstRowMajorMap<T> a(A, ar, ac, Eigen::OuterStride<>(lda ? lda : ac));
    ConstRowMajorMap<T> b(B, br, bc, Eigen::OuterStride<>(ldb ? ldb : bc));
    RowMajorMap<T> c(C, M, N, Eigen::OuterStride<>(ldc ? ldc : N));
    auto run = [&](const auto& x, const auto& y) {
        if (acc == Accumulate::yes) c.noalias() += x * y;
        else c.noalias() = x * y;
    };
    if constexpr (TA == Trans::N && TB == Trans::N) run(a, b);
    else if constexpr (TA == Trans::N && TB == Trans::T) run(a, b.transpose());
    else if constexpr (TA == Trans::T && TB == Trans::N) run(a.transpose(), b);
    else run(a.transpose(), b.transpose());
}

}  // namespace diffuse

#endif
