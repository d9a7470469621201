#include <doctest/doctest.h>

#include "diffuse/diffuse.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

template <int In, int Out, int... Lead>
void check_linear() {
    Linear<double, In, Out> layer;
    ParamStore<double> store(layer, 7);
    Rng rng(1);
    Tensor<double, Lead..., In> x, dx;
    Tensor<double, Lead..., Out> y;
    fill_normal(x, rng);
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", x, dx));
    auto rep = check_gradients(
        probes, y, [&] { layer.forward(x, y); }, [&](auto dy) { layer.backward(x, y, dy, dx); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

TEST_CASE("Linear: gradients at several shapes") {
    check_linear<5, 3, 4>();
    check_linear<8, 16, 2, 3>();
    check_linear<1, 1, 1>();
}

TEST_CASE("Linear: forward matches a direct sum, in float") {
    Linear<float, 3, 2> layer;
    ParamStore<float> store(layer, 3);
    Tensor<float, 2, 3> x;
    Tensor<float, 2, 2> y;
    for (int i = 0; i < 6; ++i) x[i] = float(i) - 2.5f;
    layer.forward(x, y);
    for (int m = 0; m < 2; ++m)
        for (int o = 0; o < 2; ++o) {
            float want = layer.bias.value()[o];
            for (int i = 0; i < 3; ++i) want += x(m, i) * layer.weight.value()(o, i);
            CHECK(y(m, o) == doctest::Approx(want).epsilon(1e-6));
        }
}

namespace {
struct Two {
    Linear<float, 4, 3> first;
    Linear<float, 3, 2> second;
    template <class V>
    constexpr void visit(V& v) {
        v("first", first);
        v("second", second);
    }
};
}  // namespace

TEST_CASE("Param visitor gives state-dict names and a constexpr count") {
    Two model;
    static_assert(param_count<Two>() == 4 * 3 + 3 + 3 * 2 + 2);
    ParamStore<float> store(model);
    REQUIRE(store.infos().size() == 4);
    CHECK(store.infos()[0].name == "first.weight");
    CHECK(store.infos()[3].name == "second.bias");
    CHECK(store.count() == param_count<Two>());
    CHECK(store.infos()[1].offset % ParamStore<float>::kPad == 0);
}

TEST_CASE("The gradient checker catches a wrong backward") {
    Linear<double, 3, 2> layer;
    ParamStore<double> store(layer, 7);
    Rng rng(2);
    Tensor<double, 4, 3> x, dx;
    Tensor<double, 4, 2> y;
    fill_normal(x, rng);
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", x, dx));
    // Overwrites dx instead of accumulating, and doubles the weight gradient.
    auto rep = check_gradients(
        probes, y, [&] { layer.forward(x, y); },
        [&](auto dy) {
            dx.fill(0);
            layer.backward(x, y, dy, dx);
            for (int i = 0; i < 6; ++i) layer.weight.grad_ptr[i] *= 2;
        });
    CHECK_FALSE(rep.clean());
    CHECK(rep.max_rel_error > 0.1);
}
