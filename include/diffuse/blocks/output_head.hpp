// OutputHead: norm -> SiLU -> conv 3×3 (Cin -> Cout), [N, H, W, Cin] -> [N, H, W, Cout]: how the VAE's
// encoder (to the moments) and decoder (to the image) and the UNet (to the prediction) end.
//
// Its two layers are named norm_out and conv_out (Stable Diffusion's names); the owner visits the
// head flat, so they sit beside the owner's other children (encoder.norm_out.*, conv_out.*).
#ifndef DIFFUSE_BLOCKS_OUTPUT_HEAD_HPP
#define DIFFUSE_BLOCKS_OUTPUT_HEAD_HPP

#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/norm.hpp"

namespace diffuse {

template <class T, int Cin, int Cout, class Norm>
struct OutputHead {
    using NormT = typename Norm::template layer<T, Cin>;
    using Conv = Conv2d<T, Cin, Cout, 3>;

    NormT norm;
    Conv conv;

    template <class V>
    constexpr void visit(V& v) {
        v("norm_out", norm);
        v("conv_out", conv);
    }

    template <class XShape>
    using output_shape = ReplaceLast<XShape, Cout>;

    template <class XShape>
    struct Cache {
        TensorOf<T, XShape> h, a, dh, da;  // norm, SiLU, their gradients
        typename NormT::template Cache<XShape> norm;
        typename Conv::template Cache<XShape> conv;
    };

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y, Cache<shape_of<X>>& c) const {
        norm.template forward_activated<act::SiLU>(x, c.h, c.a, c.norm);
        conv.forward(c.a, y, c.conv);
    }
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y& y, Cache<shape_of<X>>& c, const DY& dy, DX&& dx) const {
        c.da.fill(T(0));
        conv.backward(c.a, y, c.conv, dy, c.da);
        norm.template backward_activated<act::SiLU>(x, c.h, c.norm, c.da, c.dh, dx);  // d h into dh, then dx
    }
};

}  // namespace diffuse

#endif
