// diffuse::gemm: every transpose combination, overwrite and accumulate, row strides, sizes on both
// sides of the parallel cut, every register tile, against a double-precision loop; and the same bits
// for any thread count and whichever tile computes an element.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/gemm.hpp"
#include "diffuse/core/rng.hpp"

using namespace diffuse;

namespace {

/// Stored operands with padded rows (stride = columns + pad), filled with normal values.
struct Operands {
    int M, N, K, pad;
    std::vector<float> A, B, C;
    int lda, ldb, ldc;
    Operands(int m, int n, int k, Trans ta, Trans tb, int p, std::uint64_t seed) : M(m), N(n), K(k), pad(p) {
        const int ar = ta == Trans::N ? M : K, ac = ta == Trans::N ? K : M;
        const int br = tb == Trans::N ? K : N, bc = tb == Trans::N ? N : K;
        lda = ac + pad, ldb = bc + pad, ldc = N + pad;
        A.resize(std::size_t(ar) * lda), B.resize(std::size_t(br) * ldb), C.resize(std::size_t(M) * ldc);
        Rng rng(seed);
        for (auto* v : {&A, &B, &C})
            for (float& x : *v) x = float(rng.normal());
    }
};

template <Trans TA, Trans TB>
void check_against_loop(int M, int N, int K, Accumulate acc, int pad) {
    Operands o(M, N, K, TA, TB, pad, std::uint64_t(M * 131 + N * 17 + K));
    const std::vector<float> before = o.C;
    gemm<TA, TB>(M, N, K, o.A.data(), o.B.data(), o.C.data(), acc, o.lda, o.ldb, o.ldc);
    double worst = 0;
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            double want = acc == Accumulate::yes ? before[std::size_t(i) * o.ldc + j] : 0.0;
            for (int k = 0; k < K; ++k) {
                const float a = TA == Trans::N ? o.A[std::size_t(i) * o.lda + k] : o.A[std::size_t(k) * o.lda + i];
                const float b = TB == Trans::N ? o.B[std::size_t(k) * o.ldb + j] : o.B[std::size_t(j) * o.ldb + k];
                want += double(a) * b;
            }
            worst = std::max(worst, std::abs(want - o.C[std::size_t(i) * o.ldc + j]) / std::sqrt(double(K) + 1));
        }
    // the padding between rows is never written
    for (int i = 0; i < M; ++i)
        for (int j = N; j < o.ldc; ++j) CHECK(o.C[std::size_t(i) * o.ldc + j] == before[std::size_t(i) * o.ldc + j]);
    INFO("M=", M, " N=", N, " K=", K, " pad=", pad, " accumulate=", acc == Accumulate::yes);
    CHECK(worst < 1e-5);
}

template <Trans TA, Trans TB>
void check_shapes() {
    for (Accumulate acc : {Accumulate::no, Accumulate::yes}) {
        check_against_loop<TA, TB>(1, 1, 1, acc, 0);
        check_against_loop<TA, TB>(7, 5, 3, acc, 2);      // odd sizes, below every kernel tile
        check_against_loop<TA, TB>(16, 16, 32, acc, 1);   // an attention head's product
        check_against_loop<TA, TB>(20, 36, 100, acc, 0);  // partial tiles in both directions
        check_against_loop<TA, TB>(33, 70, 129, acc, 1);
        check_against_loop<TA, TB>(300, 130, 40, acc, 3);  // large enough to be cut into blocks of rows
        check_against_loop<TA, TB>(70, 520, 48, acc, 0);   // ... of columns
        check_against_loop<TA, TB>(100, 16, 50, acc, 1);   // 16 columns: the one-vector tile
        check_against_loop<TA, TB>(40, 144, 300, acc, 0);  // 144: the three-vector tile, two KC slices
        check_against_loop<TA, TB>(29, 8, 20, acc, 2);
        // wide enough to pack A (pack_a_pays): 12×1, 8×2 and 8×3 tiles; partial row tiles, a second
        // MC block, two KC slices
        check_against_loop<TA, TB>(500, 300, 300, acc, 1);
        check_against_loop<TA, TB>(300, 256, 270, acc, 0);
        check_against_loop<TA, TB>(450, 432, 100, acc, 2);
    }
    check_against_loop<TA, TB>(9, 4, 0, Accumulate::no, 1);  // K = 0: C = 0
}

}  // namespace

TEST_CASE("gemm: all transpose combinations against a double loop") {
    check_shapes<Trans::N, Trans::N>();
    check_shapes<Trans::N, Trans::T>();
    check_shapes<Trans::T, Trans::N>();
    check_shapes<Trans::T, Trans::T>();
}

TEST_CASE("gemm: the same bits for 1, 2 and 3 threads") {
    for (auto [M, N, K] : {std::array{512, 96, 200}, std::array{80, 700, 64}, std::array{600, 300, 300}}) {
        Operands o(M, N, K, Trans::N, Trans::T, 0, 5);
        std::vector<std::vector<float>> results;
        for (int threads : {1, 2, 3}) {
            omp_set_num_threads(threads);
            std::vector<float> c = o.C;
            gemm<Trans::N, Trans::T>(M, N, K, o.A.data(), o.B.data(), c.data(), Accumulate::yes);
            results.push_back(std::move(c));
        }
        omp_set_num_threads(1);
        CHECK(results[0] != o.C);
        CHECK(results[1] == results[0]);
        CHECK(results[2] == results[0]);
    }
}

TEST_CASE("gemm: an element has the same bits whichever register tile computes it") {
    // The tile is chosen from N: 16 columns of a 144-column product run a one-vector tile, 48 a
    // three-vector one (AVX-512) and 64 a two-vector one, each a different shape from the whole's.
    // The 280-column whole packs A (pack_a_pays; transposed too, its 300-float rows being 1 KB or more
    // apart), its narrow parts read A in place.
    for (auto [M, N] : {std::array{90, 144}, std::array{300, 280}}) {
        const int K = 600;
        const auto check = [&]<Trans TA>() {
            Operands o(M, N, K, TA, Trans::N, 0, 9);
            std::vector<float> whole(std::size_t(M) * N, 0.f);
            gemm<TA, Trans::N>(M, N, K, o.A.data(), o.B.data(), whole.data(), Accumulate::no);
            for (int cols : {8, 16, 48, 64}) {
                std::vector<float> part(std::size_t(M) * cols, 0.f);
                gemm<TA, Trans::N>(M, cols, K, o.A.data(), o.B.data(), part.data(), Accumulate::no, 0, N);
                int same = 0;
                for (int i = 0; i < M; ++i)
                    for (int j = 0; j < cols; ++j)
                        same += part[std::size_t(i) * cols + j] == whole[std::size_t(i) * N + j];
                INFO("M ", M, " N ", N, " columns ", cols, " A transposed ", TA == Trans::T);
                CHECK(same == M * cols);
            }
        };
        check.template operator()<Trans::N>();
        check.template operator()<Trans::T>();
    }
}

template <class T>
void check_plus_row(int M, int N, int K) {
    Operands o(M, N, K, Trans::N, Trans::T, 1, std::uint64_t(M + N + K));
    const std::vector<T> A(o.A.begin(), o.A.end()), B(o.B.begin(), o.B.end()), row(B.begin(), B.begin() + N);
    std::vector<T> filled(std::size_t(M) * o.ldc, T(7)), stored(filled.size(), std::numeric_limits<T>::quiet_NaN());
    for (int i = 0; i < M; ++i) std::copy(row.begin(), row.end(), filled.begin() + std::ptrdiff_t(i) * o.ldc);
    gemm<Trans::N, Trans::T>(M, N, K, A.data(), B.data(), filled.data(), Accumulate::yes, o.lda, o.ldb, o.ldc);
    gemm_plus_row<Trans::N, Trans::T>(M, N, K, A.data(), B.data(), row.data(), stored.data(), o.lda, o.ldb, o.ldc);
    int same = 0;  // C is never read: the NaN it held does not show, and the padding keeps it
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) same += stored[std::size_t(i) * o.ldc + j] == filled[std::size_t(i) * o.ldc + j];
    INFO("M ", M, " N ", N, " K ", K, " double ", std::is_same_v<T, double>);
    CHECK(same == M * N);
    CHECK(std::isnan(stored[std::size_t(o.ldc) - 1]));
}

TEST_CASE("gemm_plus_row: the bits of filling C's rows with the row and accumulating, C unread") {
    for (auto [M, N, K] :
         {std::array{20, 36, 100}, std::array{300, 130, 300}, std::array{70, 520, 48}, std::array{9, 4, 0}})
        check_plus_row<float>(M, N, K), check_plus_row<double>(M, N, K);
}

TEST_CASE("gemm_gathered_packed: B packed once gives gemm_gathered's bits") {
    // rows gathered backwards with a stride, as a convolution's padded pixels; N = 64 and 16 (the
    // two- and one-vector tiles on AVX-512), K = 300 (two KC slices), B stored [N, K] and [K, N]
    for (int N : {64, 16}) {
        const int M = 70, K = 300, lda = 320;
        Operands o(M, N, K, Trans::N, Trans::T, 0, 11);
        std::vector<float> a(std::size_t(M) * lda);
        Rng rng(12);
        for (float& x : a) x = float(rng.normal());
        const auto row = [&](int i) { return a.data() + std::size_t(M - 1 - i) * lda; };
        std::vector<float> direct = o.C, packed_c = o.C;
        AlignedBuffer<float> packed_b(packed_b_size<float>(N, K));  // the kernel loads it aligned
        gemm_gathered<Trans::T>(M, N, K, row, o.B.data(), o.ldb, direct.data(), N);
        pack_b<Trans::T>(N, K, o.B.data(), o.ldb, packed_b.data());
        gemm_gathered_packed(M, N, K, row, packed_b.data(), packed_c.data(), N);
        CHECK(direct != o.C);
        CHECK(packed_c == direct);
        std::vector<float> bt(std::size_t(K) * N), from_bt = o.C;  // the same B stored [K, N]
        for (int k = 0; k < K; ++k)
            for (int j = 0; j < N; ++j) bt[std::size_t(k) * N + j] = o.B[std::size_t(j) * o.ldb + k];
        pack_b<Trans::N>(N, K, bt.data(), N, packed_b.data());
        gemm_gathered_packed(M, N, K, row, packed_b.data(), from_bt.data(), N);
        CHECK(from_bt == direct);
    }
}

TEST_CASE("gemm_gathered_packed: a range of depths gives the bits of the whole product over zeros") {
    // a convolution's edge pixels multiply only their window's taps inside the image: A's rows hold the
    // depths [begin, end), the product must equal the one over all K with zeros elsewhere in A, for
    // ranges that start and end inside a KC slice (256), on its bounds, across two, and inside one
    const int M = 37, K = 600;
    for (int N : {64, 16})
        for (auto [begin, end] : {std::array{100, 500}, std::array{256, 300}, std::array{0, 200}, std::array{300, 600},
                                  std::array{511, 513}, std::array{-5, 700}})
            for (Accumulate acc : {Accumulate::yes, Accumulate::no}) {
                Operands o(M, N, K, Trans::N, Trans::T, 0, std::uint64_t(17 + N + begin));
                const int b = std::max(begin, 0), e = std::min(end, K);
                std::vector<float> zeroed(o.A.size(), 0.0f), bias(static_cast<std::size_t>(N));
                for (int i = 0; i < M; ++i)
                    std::copy(o.A.begin() + i * o.lda + b, o.A.begin() + i * o.lda + e, zeroed.begin() + i * o.lda + b);
                for (int j = 0; j < N; ++j) bias[std::size_t(j)] = float(j) - 7.5f;
                AlignedBuffer<float> packed_b(packed_b_size<float>(N, K));
                pack_b<Trans::T>(N, K, o.B.data(), o.ldb, packed_b.data());
                std::vector<float> whole = o.C, ranged = o.C;
                gemm_gathered_packed(
                    M, N, K, [&](int i) { return zeroed.data() + std::size_t(i) * o.lda; }, packed_b.data(),
                    whole.data(), N, acc, bias.data());
                gemm_gathered_packed(
                    M, N, K, [&](int i) { return o.A.data() + std::size_t(i) * o.lda + b; }, packed_b.data(),
                    ranged.data(), N, acc, bias.data(), Depths{begin, end});
                INFO("N=", N, " depths [", begin, ", ", end, ") accumulate=", acc == Accumulate::yes);
                CHECK(whole != o.C);
                CHECK(ranged == whole);
            }
}

TEST_CASE("gemm_gathered_packed_segments: the bits of one call a segment") {
    // a convolution's kernel rows in one call: segment s reads A's rows s·a_step values on and the s-th
    // packed B; it must equal a call a segment, the first with `acc` and the bias, the others adding.
    // M = 37 (a partial tile), N = 20 (a partial panel), 16 and 64; C's rows gathered out of order
    const int M = 37, K = 48, segments = 3, a_step = 7 * K + 3;
    for (int N : {16, 20, 64})
        for (Accumulate acc : {Accumulate::yes, Accumulate::no}) {
            Rng rng(std::uint64_t(31 + N));
            std::vector<float> a(std::size_t(M + 2) * a_step * segments), b(std::size_t(segments) * N * K),
                bias(static_cast<std::size_t>(N)), c(std::size_t(M) * N);
            for (auto* v : {&a, &b, &bias, &c})
                for (float& x : *v) x = float(rng.normal());
            const std::size_t block = packed_b_size<float>(N, K);
            AlignedBuffer<float> packed(block * segments);
            for (int s = 0; s < segments; ++s)
                pack_b<Trans::T>(N, K, b.data() + std::size_t(s) * N * K, K, packed.data() + s * block);
            std::vector<const float*> a_rows(static_cast<std::size_t>(M));
            std::vector<float*> want_rows(static_cast<std::size_t>(M)), got_rows(static_cast<std::size_t>(M));
            std::vector<float> want = c, got = c;
            for (int i = 0; i < M; ++i) {
                a_rows[std::size_t(i)] = a.data() + std::size_t(i) * (K + 1);  // overlapping rows, as windows
                const std::size_t at = std::size_t((i * 5) % M) * N;
                want_rows[std::size_t(i)] = want.data() + at, got_rows[std::size_t(i)] = got.data() + at;
            }
            for (int s = 0; s < segments; ++s) {
                std::vector<const float*> shifted(a_rows);
                for (const float*& r : shifted) r += s * a_step;
                gemm_gathered_packed(M, N, K, GatheredRows<const float>{shifted.data()}, packed.data() + s * block,
                                     GatheredRows<float>{want_rows.data()}, s == 0 ? acc : Accumulate::yes,
                                     s == 0 ? bias.data() : nullptr);
            }
            gemm_gathered_packed_segments(M, N, K, GatheredRows<const float>{a_rows.data()}, packed.data(),
                                          GatheredRows<float>{got_rows.data()}, acc, bias.data(),
                                          Segments{segments, a_step, std::ptrdiff_t(block)});
            INFO("N=", N, " accumulate=", acc == Accumulate::yes);
            CHECK(want != c);
            CHECK(got == want);
        }
}

TEST_CASE("gemm_gathered_b: B's rows gathered from anywhere give gemm's bits") {
    // A transposed (a convolution's dyᵀ), B's rows gathered backwards from a strided buffer and one
    // row repeated (its windows, the zero window shared); K = 600 (three KC slices), N = 48 and 144
    for (int N : {48, 144}) {
        const int M = 32, K = 600, ldb = N + 5;
        Operands o(M, N, K, Trans::T, Trans::N, 0, 13);
        std::vector<float> b(std::size_t(K) * ldb), contiguous(std::size_t(K) * N);
        Rng rng(14);
        for (float& x : b) x = float(rng.normal());
        std::vector<const float*> rows(K, nullptr);
        for (int k = 0; k < K; ++k) {
            rows[std::size_t(k)] = b.data() + std::size_t(k % 7 == 3 ? 0 : K - 1 - k) * ldb;
            std::copy_n(rows[std::size_t(k)], N, contiguous.data() + std::size_t(k) * N);
        }
        std::vector<float> want = o.C, got = o.C;
        gemm<Trans::T, Trans::N>(M, N, K, o.A.data(), contiguous.data(), want.data(), Accumulate::yes, o.lda);
        gemm_gathered_b<Trans::T>(M, N, K, o.A.data(), o.lda, GatheredRows<const float>{rows.data()}, got.data(), N);
        CHECK(want != o.C);
        CHECK(got == want);
    }
}
