// The README's "How to add a layer": a layer of your own, and its gradients checked against central
// differences with the shipped checker. tests/readme/check.cmake keeps the README's copy identical.
#include <doctest/doctest.h>

#include <diffuse/diffuse.hpp>

using namespace diffuse;

/// y[..., c] = x[..., c] · scale[c]: a per-channel gain, the smallest layer with a parameter.
template <class T, int C>
struct ChannelScale {
    Param<T, C> scale{Init::Ones()};

    template <class V>
    constexpr void visit(V& v) {
        v("scale", scale);
    }
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        static_assert(shape_of<X>::last == C, "ChannelScale: the input's last dimension must be C");
        for (std::size_t i = 0; i < shape_of<X>::size; ++i) y.data()[i] = x.data()[i] * scale.value_ptr[i % C];
    }
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y&, const DY& dy, DX&& dx) const {  // adds, as every backward does
        for (std::size_t i = 0; i < shape_of<X>::size; ++i) {
            scale.grad_ptr[i % C] += dy.data()[i] * x.data()[i];
            if (dx.data()) dx.data()[i] += dy.data()[i] * scale.value_ptr[i % C];
        }
    }
};

TEST_CASE("ChannelScale: gradients against central differences") {
    ChannelScale<double, 3> layer;
    ParamStore<double> store(layer, /*seed=*/1);
    Rng rng(2);
    Tensor<double, 4, 3> x, dx, y;
    fill_normal(x, rng);
    auto probes = testing::probes(store);          // every parameter...
    probes.push_back(testing::probe("x", x, dx));  // ...and the input
    const auto report = testing::check_gradients(
        probes, y, [&] { layer.forward(x, y); }, [&](auto dy) { layer.backward(x, y, dy, dx); });
    INFO(report.summary());
    CHECK(report.clean());  // forward wrote all of y, backward added, nothing came back NaN
    CHECK(report.max_rel_error < 1e-7);
}
