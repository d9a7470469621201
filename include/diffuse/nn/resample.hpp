// Upsample2x: nearest-neighbour 2× upsampling, [N, H, W, C] -> [N, 2H, 2W, C] (Keras' UpSampling2D,
// PyTorch's Upsample(scale_factor=2)). Each input pixel is copied to a 2×2 block, so backward adds the
// block's four gradients back onto it.
#ifndef DIFFUSE_NN_RESAMPLE_HPP
#define DIFFUSE_NN_RESAMPLE_HPP

#include <algorithm>
#include <cstddef>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

template <class T>
struct Upsample2x {
    template <class V>
    constexpr void visit(V&) {}

    template <class XShape>
    using output_shape = Shape<XShape::first, 2 * XShape::template dim<1>, 2 * XShape::template dim<2>, XShape::last>;

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        check<X, Y>();
        for_each_block<shape_of<X>>([&](std::size_t xi, const std::size_t(&yi)[4]) {
            for (std::size_t b : yi) std::copy_n(x.data() + xi, C<X>, y.data() + b);
        });
    }

    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X&, const Y&, const DY& dy, DX&& dx) const {
        check<X, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Upsample2x: gradients must have the shapes of their values");
        if (!dx.data()) return;
        for_each_block<shape_of<X>>([&](std::size_t xi, const std::size_t(&yi)[4]) {
            for (std::size_t b : yi) simd::add_to(std::size_t(C<X>), dy.data() + b, dx.data() + xi);
        });
    }

private:
    template <class X>
    static constexpr int C = shape_of<X>::last;

    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank == 4, "Upsample2x: the input must be an image batch [N, H, W, C]");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<X>>>,
                      "Upsample2x: the output must be [N, 2H, 2W, C]");
    }

    /// f(input pixel offset, offsets of its 2×2 output block in row-major order), parallel over input rows.
    template <class XS, class F>
    static void for_each_block(F f) {
        constexpr int H = XS::template dim<1>, W = XS::template dim<2>;
        constexpr std::size_t C = XS::last, row = std::size_t(2 * W) * C;  // one output row
        parallel_for_light(XS::first * H, XS::size * 5, [&](int r) {       // r = n·H + h; reads x, writes 4× it
            for (int w = 0; w < W; ++w) {
                const std::size_t xi = (std::size_t(r) * W + w) * C;
                const std::size_t y0 = std::size_t(2 * r) * row + std::size_t(2 * w) * C;
                const std::size_t yi[4] = {y0, y0 + C, y0 + row, y0 + row + C};
                f(xi, yi);
            }
        });
    }
};

}  // namespace diffuse

#endif
