#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <type_traits>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/pool.hpp"
#include "diffuse/nn/resample.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

void require_clean(const testing::GradCheckReport& rep, const std::string& what) {
    INFO(what, ": ", rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

template <int K, int S, int N, int H, int W, int C, int Ho, int Wo>
void check_maxpool() {
    using L = MaxPool2d<double, K, S>;
    using XS = Shape<N, H, W, C>;
    static_assert(same_shape<typename L::template output_shape<XS>, Shape<N, Ho, Wo, C>>);
    L pool;
    Rng rng(4);
    Tensor<double, N, H, W, C> x, dx;
    Tensor<double, N, Ho, Wo, C> y;
    typename L::template Cache<XS> cache;
    fill_normal(x, rng);  // distinct values: no ties for the finite differences to straddle
    auto rep = check_gradients(
        {testing::probe("x", x, dx)}, y, [&] { pool.forward(x, y, cache); },
        [&](auto dy) { pool.backward(x, y, cache, dy, dx); });
    require_clean(rep, "MaxPool2d<" + std::to_string(K) + ", " + std::to_string(S) + ">");
}

template <int N, int H, int W, int C>
void check_upsample() {
    Upsample2x<double> up;
    Rng rng(6);
    Tensor<double, N, H, W, C> x, dx;
    Tensor<double, N, 2 * H, 2 * W, C> y;
    fill_normal(x, rng);
    auto rep = check_gradients(
        {testing::probe("x", x, dx)}, y, [&] { up.forward(x, y); }, [&](auto dy) { up.backward(x, y, dy, dx); });
    require_clean(rep, "Upsample2x");
}

template <int C1, int C2, int... Lead>
void check_concat() {
    Concat<double> cat;
    Rng rng(7);
    Tensor<double, Lead..., C1> a, da;
    Tensor<double, Lead..., C2> b, db;
    Tensor<double, Lead..., C1 + C2> y;
    fill_normal(a, rng);
    fill_normal(b, rng);
    auto rep = check_gradients(
        {testing::probe("a", a, da), testing::probe("b", b, db)}, y, [&] { cat.forward(a, b, y); },
        [&](auto dy) { cat.backward(a, b, y, dy, da, db); });
    require_clean(rep, "Concat");
}

template <int... D>
void check_add() {
    Rng rng(8);
    Tensor<double, D...> a, b, da, db, y;
    fill_normal(a, rng);
    fill_normal(b, rng);
    auto rep = check_gradients(
        {testing::probe("a", a, da), testing::probe("b", b, db)}, y, [&] { add(a, b, y); },
        [&](auto dy) { add_backward(dy, da, db); });
    require_clean(rep, "add");
}

}  // namespace

TEST_CASE("MaxPool2d: gradients at several shapes") {
    check_maxpool<2, 2, 2, 4, 6, 3, 2, 3>();
    check_maxpool<2, 2, 1, 5, 5, 2, 2, 2>();  // odd size: the last row and column are dropped
    check_maxpool<3, 2, 2, 7, 5, 2, 3, 2>();  // overlapping windows share winners
}

TEST_CASE("MaxPool2d: forward matches a direct maximum, in float, with and without a cache") {
    using L = MaxPool2d<float, 3, 2>;
    using XS = Shape<2, 9, 8, 3>;
    L pool;
    Rng rng(2);
    Tensor<float, 2, 9, 8, 3> x;
    Tensor<float, 2, 4, 3, 3> y, y2;
    L::Cache<XS> cache;
    fill_normal(x, rng);
    pool.forward(x, y, cache);
    pool.forward(x, y2);
    CHECK(std::equal(y.begin(), y.end(), y2.begin()));
    for (int n = 0; n < 2; ++n)
        for (int oh = 0; oh < 4; ++oh)
            for (int ow = 0; ow < 3; ++ow)
                for (int c = 0; c < 3; ++c) {
                    float m = -1e30f;
                    for (int kh = 0; kh < 3; ++kh)
                        for (int kw = 0; kw < 3; ++kw) m = std::max(m, x(n, 2 * oh + kh, 2 * ow + kw, c));
                    CHECK(y(n, oh, ow, c) == m);
                }
}

TEST_CASE("MaxPool2d: on ties the gradient goes to the first element of the window") {
    MaxPool2d<float> pool;
    Tensor<float, 1, 2, 4, 1> x, dx;
    Tensor<float, 1, 1, 2, 1> y, dy;
    MaxPool2d<float>::Cache<Shape<1, 2, 4, 1>> cache;
    // Window 0 all equal; window 1 ties between its second and fourth element.
    const float v[8] = {1, 1, 0, 5, 1, 1, -1, 5};
    std::copy(v, v + 8, x.begin());
    dx.fill(0);
    dy[0] = 2;
    dy[1] = 3;
    pool.forward(x, y, cache);
    pool.backward(x, y, cache, dy, dx);
    CHECK(y[0] == 1);
    CHECK(y[1] == 5);
    const float want[8] = {2, 0, 0, 3, 0, 0, 0, 0};
    for (int i = 0; i < 8; ++i) CHECK(dx[i] == want[i]);
}

TEST_CASE("Upsample2x: gradients at several shapes") {
    check_upsample<2, 3, 2, 3>();
    check_upsample<1, 1, 4, 5>();
}

TEST_CASE("Upsample2x: forward copies each pixel to its 2x2 block, in float") {
    Upsample2x<float> up;
    Rng rng(3);
    Tensor<float, 2, 3, 4, 5> x;
    Tensor<float, 2, 6, 8, 5> y;
    fill_normal(x, rng);
    y.fill(std::numeric_limits<float>::quiet_NaN());
    up.forward(x, y);
    for (int n = 0; n < 2; ++n)
        for (int h = 0; h < 6; ++h)
            for (int w = 0; w < 8; ++w)
                for (int c = 0; c < 5; ++c) CHECK(y(n, h, w, c) == x(n, h / 2, w / 2, c));
}

TEST_CASE("Concat: gradients, images and token sequences") {
    check_concat<3, 2, 2, 3, 4>();  // [2, 3, 4, 3] ++ [2, 3, 4, 2]
    check_concat<1, 5, 3, 2>();     // [3, 2, 1] ++ [3, 2, 5]
}

TEST_CASE("Concat: forward places a's channels first, in float; null views skip gradients") {
    Concat<float> cat;
    Rng rng(1);
    Tensor<float, 2, 2, 3, 4> a;
    Tensor<float, 2, 2, 3, 2> b, db;
    Tensor<float, 2, 2, 3, 6> y, dy;
    static_assert(same_shape<Concat<float>::output_shape<Shape<2, 2, 3, 4>, Shape<2, 2, 3, 2>>, Shape<2, 2, 3, 6>>);
    fill_normal(a, rng);
    fill_normal(b, rng);
    fill_normal(dy, rng);
    cat.forward(a, b, y);
    for (int n = 0; n < 2; ++n)
        for (int h = 0; h < 2; ++h)
            for (int w = 0; w < 3; ++w)
                for (int c = 0; c < 6; ++c) CHECK(y(n, h, w, c) == (c < 4 ? a(n, h, w, c) : b(n, h, w, c - 4)));
    db.fill(0);
    cat.backward(a, b, y, dy, View<float, 2, 2, 3, 4>(), db);
    for (int m = 0; m < 12; ++m)
        for (int c = 0; c < 2; ++c) CHECK(db[m * 2 + c] == dy[m * 6 + 4 + c]);
}

TEST_CASE("add: gradients at several shapes, and the sum itself in float") {
    check_add<2, 3, 4, 5>();
    check_add<3, 7>();
    Tensor<float, 2, 3, 17> a, b, y;
    Rng rng(9);
    fill_normal(a, rng);
    fill_normal(b, rng);
    add(a, b, y);
    for (std::size_t i = 0; i < y.size; ++i) CHECK(y[i] == a[i] + b[i]);
}

TEST_CASE("flattened: a batch of maps as [N, features] over the same memory") {
    Tensor<float, 2, 3, 4, 5> x;
    auto f = flattened(x);
    static_assert(same_shape<shape_of<decltype(f)>, Shape<2, 60>>);
    CHECK(f.data() == x.data());
    const Tensor<float, 2, 3, 4, 5>& cx = x;
    static_assert(std::is_const_v<std::remove_reference_t<decltype(*flattened(cx).data())>>);
}
