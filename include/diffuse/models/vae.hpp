// The KL-regularized autoencoder of latent diffusion (Stable Diffusion's AutoencoderKL), in the
// seed's plan (CLIP_VAE_Encoder / VAE_Decoder) with three resolution levels, so the latent is
// image / 4:
//
//   Encoder  x [N, S, S, Cimg] → conv_in 3×3 (→C0)
//            down.0: res ×R (C0→C0), conv 3×3 stride 2          S   → S/2
//            down.1: res ×R (C0→C1), conv 3×3 stride 2          S/2 → S/4
//            down.2: res ×R (C1→C2)
//            mid: res, self-attention, res (C2)
//            norm_out → SiLU → conv_out 3×3 (→2L)  = moments [N, S/4, S/4, 2L]: mean | log-variance
//   Sample   z = mean + exp(½·clamp(logvar, −30, 20))·ε,  ε ~ N(0, 1)   (reparameterization)
//   Decoder  z [N, S/4, S/4, L] → conv_in 3×3 (→C2) → mid (res, attn, res)
//            up.0: res ×R (C2→C2), nearest 2× + conv 3×3          S/4 → S/2
//            up.1: res ×R (C2→C1), nearest 2× + conv 3×3          S/2 → S
//            up.2: res ×R (C1→C0)
//            norm_out → SiLU → conv_out 3×3 (→Cimg), linear output (images in [−1, 1])
//
// Levels are named in the order they run ("up.0" is the decoder's lowest resolution). The strided
// downsampler pads one pixel on each side (PyTorch's Conv2d(3, stride=2, padding=1)), not SD's
// asymmetric (0, 1) pad.
//
// Losses (AutoencoderKL::forward): reconstruction = mean over all N·S·S·Cimg elements of
// (recon − x)²; KL = ½·mean over all N·h·w·L latent elements of (mean² + var − 1 − logvar), the
// per-element mean (SD sums over the latent and averages over the batch: ours is that divided by
// h·w·L); total = reconstruction + beta·KL.
//
// Every Cache/Workspace holds the intermediates and backward's gradient scratch as Tensors, so
// sizeof() is the workspace byte count; backward zeroes its scratch before accumulating into it.
#ifndef DIFFUSE_MODELS_VAE_HPP
#define DIFFUSE_MODELS_VAE_HPP

#include <array>
#include <cstddef>
#include <type_traits>

#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/core/lanes.hpp"
#include "diffuse/nn/resample.hpp"
#include "diffuse/nn/losses.hpp"

namespace diffuse::vae {

// ---------------------------------------------------------------------------------------------
// Configurations

template <int ImageSize, int ImageChannels, int C0, int C1, int C2, int LatentChannels, int ResBlocks, class Norm,
          int Heads = 1>
struct Config {
    static_assert(ImageSize > 0 && ImageSize % 4 == 0, "vae::Config: the image size must divide by 4 (two downsamplings)");
    static_assert(ResBlocks >= 1, "vae::Config: each level needs at least one residual block");
    static constexpr int image_size = ImageSize, image_channels = ImageChannels;
    static constexpr int ch0 = C0, ch1 = C1, ch2 = C2;
    static constexpr int latent_channels = LatentChannels, latent_size = ImageSize / 4;
    static constexpr int res_blocks = ResBlocks, heads = Heads;
    using norm = Norm;
};

/// Gradient checks in double: 8×8×1 images, latent 2×2×2, GroupNorm with 2 groups.
struct TinyConfig : Config<8, 1, 4, 8, 8, 2, 1, norm::Group<2>> {};
/// The same widths with LayerNorm, two residual blocks per level and two attention heads.
struct TinyLayerNormConfig : Config<8, 1, 4, 8, 8, 2, 2, norm::Layer, 2> {};
/// Fashion-MNIST padded to 32×32×1, latent 8×8×4, GroupNorm with 8 groups. Channels 16/32/64: one
/// float training step (forward, backward, Adam) at batch 16 on one core ran at ~91 images/s,
/// against ~31 images/s for 32/64/64 (the full-resolution level dominates), and a grayscale 32×32
/// image through an 8×8×4 latent is limited by the latent, not by the encoder's width.
struct DefaultConfig : Config<32, 1, 16, 32, 64, 4, 1, norm::Group<8>> {};
/// A user's colour images at 32×32×3 (latent 8×8×4) and 64×64×3 (latent 16×16×4), Default's widths.
struct Rgb32Config : Config<32, 3, 16, 32, 64, 4, 1, norm::Group<8>> {};
struct Rgb64Config : Config<64, 3, 16, 32, 64, 4, 1, norm::Group<8>> {};
/// The seed's widths (128/256/512, LayerNorm, 2 residual blocks per level) on 32×32 RGB images, latent 8×8×4.
struct SeedConfig : Config<32, 3, 128, 256, 512, 4, 2, norm::Layer> {};

// ---------------------------------------------------------------------------------------------
// Building blocks of the levels

namespace detail {

using diffuse::detail::Absent;

/// R residual blocks, the first Cin→Cout, the others Cout→Cout; named res.0 … res.R-1.
template <class T, int Cin, int Cout, int R, class Norm>
struct ResStack {
    static_assert(R >= 1, "vae::ResStack: at least one residual block");
    using First = ResidualBlock<T, Cin, Cout, Norm>;
    using Rest = ResidualBlock<T, Cout, Cout, Norm>;

    First first;
    std::array<Rest, R - 1> rest;

    template <class V>
    constexpr void visit(V& v) {
        v("res", 0, first);
        for (int j = 0; j < R - 1; ++j) v("res", j + 1, rest[std::size_t(j)]);
    }

    template <class XShape>
    using output_shape = ReplaceLast<XShape, Cout>;

    template <class XShape>
    struct Cache {
        using OS = ReplaceLast<XShape, Cout>;
        typename First::template Cache<XShape> first;
        std::array<typename Rest::template Cache<OS>, R - 1> rest;
        std::array<TensorOf<T, OS>, R - 1> out, dout;  // outputs of all blocks but the last, their gradients
    };

    template <class X, class Y, class C>
    void forward(const X& x, Y& y, C& c) const {
        using OS = ReplaceLast<shape_of<X>, Cout>;
        auto out = [&](int k) { return ViewOf<T, OS>(k == R - 1 ? y.data() : c.out[std::size_t(k)].data()); };
        first.forward(x, out(0), c.first);
        for (int k = 1; k < R; ++k) rest[std::size_t(k - 1)].forward(out(k - 1), out(k), c.rest[std::size_t(k - 1)]);
    }

    template <class X, class Y, class C, class DY, class DX>
    void backward(const X& x, const Y& y, C& c, const DY& dy, DX&& dx) const {
        using OS = ReplaceLast<shape_of<X>, Cout>;
        auto out = [&](int k) {
            return ViewOf<const T, OS>(k == R - 1 ? y.data() : c.out[std::size_t(k)].data());
        };
        auto dout = [&](int k) {
            return ViewOf<const T, OS>(k == R - 1 ? dy.data() : c.dout[std::size_t(k)].data());
        };
        for (int k = R - 1; k >= 1; --k) {
            c.dout[std::size_t(k - 1)].fill(T(0));
            rest[std::size_t(k - 1)].backward(out(k - 1), out(k), c.rest[std::size_t(k - 1)], dout(k),
                                              c.dout[std::size_t(k - 1)]);
        }
        first.backward(x, out(0), c.first, dout(0), dx);
    }
};

/// Encoder level: residual stack, then (Down) a strided 3×3 conv halving H and W.
template <class T, int Cin, int Cout, int R, class Norm, bool Down>
struct EncoderLevel {
    using Stack = ResStack<T, Cin, Cout, R, Norm>;
    using Downsample = Conv2d<T, Cout, Cout, 3, 2>;

    Stack res;
    [[no_unique_address]] std::conditional_t<Down, Downsample, Absent> downsample;

    template <class V>
    constexpr void visit(V& v) {
        res.visit(v);
        if constexpr (Down) v("downsample", downsample);
    }

    template <class XShape>
    using output_shape = std::conditional_t<Down, typename Downsample::template output_shape<ReplaceLast<XShape, Cout>>,
                                            ReplaceLast<XShape, Cout>>;

    template <class HShape>
    struct DownCache {
        TensorOf<T, HShape> h, dh;  // the stack's output and its gradient
        typename Downsample::template Cache<HShape> conv;
    };
    template <class XShape>
    struct Cache {
        typename Stack::template Cache<XShape> res;
        [[no_unique_address]] std::conditional_t<Down, DownCache<ReplaceLast<XShape, Cout>>, Absent> down;
    };

    template <class X, class Y, class C>
    void forward(const X& x, Y& y, C& c) const {
        if constexpr (Down) {
            res.forward(x, c.down.h, c.res);
            downsample.forward(c.down.h, y, c.down.conv);
        } else {
            res.forward(x, y, c.res);
        }
    }
    template <class X, class Y, class C, class DY, class DX>
    void backward(const X& x, const Y& y, C& c, const DY& dy, DX&& dx) const {
        if constexpr (Down) {
            c.down.dh.fill(T(0));
            downsample.backward(c.down.h, y, c.down.conv, dy, c.down.dh);
            res.backward(x, c.down.h, c.res, c.down.dh, dx);
        } else {
            res.backward(x, y, c.res, dy, dx);
        }
    }
};

/// Decoder level: residual stack, then (Up) nearest 2× upsampling and a 3×3 conv ("upsample").
template <class T, int Cin, int Cout, int R, class Norm, bool Up>
struct DecoderLevel {
    using Stack = ResStack<T, Cin, Cout, R, Norm>;
    using UpConv = Conv2d<T, Cout, Cout, 3>;

    Stack res;
    [[no_unique_address]] std::conditional_t<Up, UpConv, Absent> upsample;

    template <class V>
    constexpr void visit(V& v) {
        res.visit(v);
        if constexpr (Up) v("upsample", upsample);
    }

    template <class XShape>
    using output_shape = std::conditional_t<Up, typename Upsample2x<T>::template output_shape<ReplaceLast<XShape, Cout>>,
                                            ReplaceLast<XShape, Cout>>;

    template <class HShape>
    struct UpCache {
        using US = typename Upsample2x<T>::template output_shape<HShape>;
        TensorOf<T, HShape> h, dh;  // the stack's output and its gradient
        TensorOf<T, US> u, du;      // upsampled, and its gradient
        typename UpConv::template Cache<US> conv;
    };
    template <class XShape>
    struct Cache {
        typename Stack::template Cache<XShape> res;
        [[no_unique_address]] std::conditional_t<Up, UpCache<ReplaceLast<XShape, Cout>>, Absent> up;
    };

    template <class X, class Y, class C>
    void forward(const X& x, Y& y, C& c) const {
        if constexpr (Up) {
            res.forward(x, c.up.h, c.res);
            Upsample2x<T>{}.forward(c.up.h, c.up.u);
            upsample.forward(c.up.u, y, c.up.conv);
        } else {
            res.forward(x, y, c.res);
        }
    }
    template <class X, class Y, class C, class DY, class DX>
    void backward(const X& x, const Y& y, C& c, const DY& dy, DX&& dx) const {
        if constexpr (Up) {
            c.up.du.fill(T(0));
            upsample.backward(c.up.u, y, c.up.conv, dy, c.up.du);
            c.up.dh.fill(T(0));
            Upsample2x<T>{}.backward(c.up.h, c.up.u, c.up.du, c.up.dh);
            res.backward(x, c.up.h, c.res, c.up.dh, dx);
        } else {
            res.backward(x, y, c.res, dy, dx);
        }
    }
};

/// The lowest-resolution block of both halves: res, self-attention, res (C channels).
template <class T, int C, int Heads, class Norm>
struct MidBlock {
    using Res = ResidualBlock<T, C, C, Norm>;
    using Attn = AttentionBlock<T, C, Heads, Norm>;

    Res res1;
    Attn attn;
    Res res2;

    template <class V>
    constexpr void visit(V& v) { v("res1", res1); v("attn", attn); v("res2", res2); }

    template <class XShape>
    struct Cache {
        typename Res::template Cache<XShape> res1, res2;
        typename Attn::template Cache<XShape> attn;
        TensorOf<T, XShape> a, b, da, db;  // res1 and attn outputs, their gradients
    };

    template <class X, class Y, class Ca>
    void forward(const X& x, Y& y, Ca& c) const {
        res1.forward(x, c.a, c.res1);
        attn.forward(c.a, c.b, c.attn);
        res2.forward(c.b, y, c.res2);
    }
    template <class X, class Y, class Ca, class DY, class DX>
    void backward(const X& x, const Y& y, Ca& c, const DY& dy, DX&& dx) const {
        c.db.fill(T(0));
        res2.backward(c.b, y, c.res2, dy, c.db);
        c.da.fill(T(0));
        attn.backward(c.a, c.b, c.attn, c.db, c.da);
        res1.backward(x, c.a, c.res1, c.da, dx);
    }
};

/// norm → SiLU → conv 3×3 (Cin → Cout): the head both halves end with.
template <class T, int Cin, int Cout, class Norm>
struct OutHead {
    using NormT = typename Norm::template layer<T, Cin>;
    using Conv = Conv2d<T, Cin, Cout, 3>;

    template <class XShape>
    struct Cache {
        TensorOf<T, XShape> h, a, dh, da;  // norm, SiLU, their gradients
        typename NormT::template Cache<XShape> norm;
        typename Conv::template Cache<XShape> conv;
    };

    template <class X, class Y, class C>
    static void forward(const NormT& norm, const Conv& conv, const X& x, Y& y, C& c) {
        norm.forward(x, c.h, c.norm);
        SiLU<T>{}.forward(c.h, c.a);
        conv.forward(c.a, y, c.conv);
    }
    template <class X, class Y, class C, class DY, class DX>
    static void backward(const NormT& norm, const Conv& conv, const X& x, const Y& y, C& c, const DY& dy, DX&& dx) {
        c.da.fill(T(0));
        conv.backward(c.a, y, c.conv, dy, c.da);
        c.dh.fill(T(0));
        SiLU<T>{}.backward(c.h, c.a, c.da, c.dh);
        norm.backward(x, c.h, c.norm, c.dh, dx);
    }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Encoder

template <class T, class Cfg>
struct Encoder {
    static constexpr int S = Cfg::image_size, Cimg = Cfg::image_channels, L = Cfg::latent_channels;
    static constexpr int C0 = Cfg::ch0, C1 = Cfg::ch1, C2 = Cfg::ch2, R = Cfg::res_blocks;
    using Norm = typename Cfg::norm;
    using Head = detail::OutHead<T, C2, 2 * L, Norm>;

    using Down0 = detail::EncoderLevel<T, C0, C0, R, Norm, true>;
    using Down1 = detail::EncoderLevel<T, C0, C1, R, Norm, true>;
    using Down2 = detail::EncoderLevel<T, C1, C2, R, Norm, false>;
    using Mid = detail::MidBlock<T, C2, Cfg::heads, Norm>;

    Conv2d<T, Cimg, C0, 3> conv_in;
    Down0 down0;
    Down1 down1;
    Down2 down2;
    Mid mid;
    typename Head::NormT norm_out;
    typename Head::Conv conv_out;

    template <class V>
    constexpr void visit(V& v) {
        v("conv_in", conv_in);
        v("down", 0, down0);
        v("down", 1, down1);
        v("down", 2, down2);
        v("mid", mid);
        v("norm_out", norm_out);
        v("conv_out", conv_out);
    }

    /// Defined after the class (the type must be complete to be counted).
    static const std::size_t parameter_count;

    template <int N>
    using input_shape = Shape<N, S, S, Cimg>;
    /// mean | log-variance along the channels.
    template <int N>
    using output_shape = Shape<N, S / 4, S / 4, 2 * L>;

    template <int N>
    struct Cache {
        using S0 = Shape<N, S, S, C0>;
        using S1 = Shape<N, S / 2, S / 2, C0>;
        using S2 = Shape<N, S / 4, S / 4, C1>;
        using S3 = Shape<N, S / 4, S / 4, C2>;
        TensorOf<T, S0> h0, dh0;  // conv_in
        TensorOf<T, S1> h1, dh1;  // down.0
        TensorOf<T, S2> h2, dh2;  // down.1
        TensorOf<T, S3> h3, dh3;  // down.2
        TensorOf<T, S3> h4, dh4;  // mid
        typename Conv2d<T, Cimg, C0, 3>::template Cache<input_shape<N>> conv_in;
        typename Down0::template Cache<S0> down0;
        typename Down1::template Cache<S1> down1;
        typename Down2::template Cache<S2> down2;
        typename Mid::template Cache<S3> mid;
        typename Head::template Cache<S3> out;
    };
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Cache<N>);

    template <Shaped X, Shaped M>
    void forward(const X& x, M&& moments, Cache<shape_of<X>::first>& c) const {
        check<X, M>();
        conv_in.forward(x, c.h0, c.conv_in);
        down0.forward(c.h0, c.h1, c.down0);
        down1.forward(c.h1, c.h2, c.down1);
        down2.forward(c.h2, c.h3, c.down2);
        mid.forward(c.h3, c.h4, c.mid);
        Head::forward(norm_out, conv_out, c.h4, moments, c.out);
    }

    /// A null dx view computes the parameter gradients only.
    template <Shaped X, Shaped M, Shaped DM, Shaped DX>
    void backward(const X& x, const M& moments, Cache<shape_of<X>::first>& c, const DM& dmoments, DX&& dx) const {
        check<X, M>();
        static_assert(same_shape<shape_of<DM>, shape_of<M>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "vae::Encoder: gradients must have the shapes of their values");
        c.dh4.fill(T(0));
        Head::backward(norm_out, conv_out, c.h4, moments, c.out, dmoments, c.dh4);
        c.dh3.fill(T(0));
        mid.backward(c.h3, c.h4, c.mid, c.dh4, c.dh3);
        c.dh2.fill(T(0));
        down2.backward(c.h2, c.h3, c.down2, c.dh3, c.dh2);
        c.dh1.fill(T(0));
        down1.backward(c.h1, c.h2, c.down1, c.dh2, c.dh1);
        c.dh0.fill(T(0));
        down0.backward(c.h0, c.h1, c.down0, c.dh1, c.dh0);
        conv_in.backward(x, c.h0, c.conv_in, c.dh0, dx);
    }

private:
    template <class X, class M>
    static constexpr void check() {
        static_assert(same_shape<shape_of<X>, input_shape<shape_of<X>::first>>,
                      "vae::Encoder: the input must be [N, image_size, image_size, image_channels]");
        static_assert(same_shape<shape_of<M>, output_shape<shape_of<X>::first>>,
                      "vae::Encoder: the output must be [N, image_size/4, image_size/4, 2*latent_channels]");
    }
};

// ---------------------------------------------------------------------------------------------
// Decoder

template <class T, class Cfg>
struct Decoder {
    static constexpr int S = Cfg::image_size, Cimg = Cfg::image_channels, L = Cfg::latent_channels;
    static constexpr int C0 = Cfg::ch0, C1 = Cfg::ch1, C2 = Cfg::ch2, R = Cfg::res_blocks;
    using Norm = typename Cfg::norm;
    using Head = detail::OutHead<T, C0, Cimg, Norm>;

    using Mid = detail::MidBlock<T, C2, Cfg::heads, Norm>;
    using Up0 = detail::DecoderLevel<T, C2, C2, R, Norm, true>;
    using Up1 = detail::DecoderLevel<T, C2, C1, R, Norm, true>;
    using Up2 = detail::DecoderLevel<T, C1, C0, R, Norm, false>;

    Conv2d<T, L, C2, 3> conv_in;
    Mid mid;
    Up0 up0;
    Up1 up1;
    Up2 up2;
    typename Head::NormT norm_out;
    typename Head::Conv conv_out;

    template <class V>
    constexpr void visit(V& v) {
        v("conv_in", conv_in);
        v("mid", mid);
        v("up", 0, up0);
        v("up", 1, up1);
        v("up", 2, up2);
        v("norm_out", norm_out);
        v("conv_out", conv_out);
    }

    /// Defined after the class (the type must be complete to be counted).
    static const std::size_t parameter_count;

    template <int N>
    using input_shape = Shape<N, S / 4, S / 4, L>;
    template <int N>
    using output_shape = Shape<N, S, S, Cimg>;

    template <int N>
    struct Cache {
        using S3 = Shape<N, S / 4, S / 4, C2>;
        using S2 = Shape<N, S / 2, S / 2, C2>;
        using S1 = Shape<N, S, S, C1>;
        using S0 = Shape<N, S, S, C0>;
        TensorOf<T, S3> h0, dh0;  // conv_in
        TensorOf<T, S3> h1, dh1;  // mid
        TensorOf<T, S2> h2, dh2;  // up.0
        TensorOf<T, S1> h3, dh3;  // up.1
        TensorOf<T, S0> h4, dh4;  // up.2
        typename Conv2d<T, L, C2, 3>::template Cache<input_shape<N>> conv_in;
        typename Mid::template Cache<S3> mid;
        typename Up0::template Cache<S3> up0;
        typename Up1::template Cache<S2> up1;
        typename Up2::template Cache<S1> up2;
        typename Head::template Cache<S0> out;
    };
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Cache<N>);

    template <Shaped Z, Shaped Y>
    void forward(const Z& z, Y&& y, Cache<shape_of<Z>::first>& c) const {
        check<Z, Y>();
        conv_in.forward(z, c.h0, c.conv_in);
        mid.forward(c.h0, c.h1, c.mid);
        up0.forward(c.h1, c.h2, c.up0);
        up1.forward(c.h2, c.h3, c.up1);
        up2.forward(c.h3, c.h4, c.up2);
        Head::forward(norm_out, conv_out, c.h4, y, c.out);
    }

    /// A null dz view computes the parameter gradients only.
    template <Shaped Z, Shaped Y, Shaped DY, Shaped DZ>
    void backward(const Z& z, const Y& y, Cache<shape_of<Z>::first>& c, const DY& dy, DZ&& dz) const {
        check<Z, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DZ>, shape_of<Z>>,
                      "vae::Decoder: gradients must have the shapes of their values");
        c.dh4.fill(T(0));
        Head::backward(norm_out, conv_out, c.h4, y, c.out, dy, c.dh4);
        c.dh3.fill(T(0));
        up2.backward(c.h3, c.h4, c.up2, c.dh4, c.dh3);
        c.dh2.fill(T(0));
        up1.backward(c.h2, c.h3, c.up1, c.dh3, c.dh2);
        c.dh1.fill(T(0));
        up0.backward(c.h1, c.h2, c.up0, c.dh2, c.dh1);
        c.dh0.fill(T(0));
        mid.backward(c.h0, c.h1, c.mid, c.dh1, c.dh0);
        conv_in.backward(z, c.h0, c.conv_in, c.dh0, dz);
    }

private:
    template <class Z, class Y>
    static constexpr void check() {
        static_assert(same_shape<shape_of<Z>, input_shape<shape_of<Z>::first>>,
                      "vae::Decoder: the latent must be [N, image_size/4, image_size/4, latent_channels]");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<Z>::first>>,
                      "vae::Decoder: the output must be [N, image_size, image_size, image_channels]");
    }
};

// ---------------------------------------------------------------------------------------------
// The diagonal Gaussian posterior: moments [N, h, w, 2L] hold the mean in channels [0, L) and the
// log-variance in [L, 2L) of each latent pixel (SD's DiagonalGaussianDistribution, channels-last).

inline constexpr double logvar_min = -30, logvar_max = 20;

namespace detail {
template <class M, class Z>
constexpr void check_moments() {
    static_assert(shape_of<M>::last == 2 * shape_of<Z>::last && same_shape<ReplaceLast<shape_of<M>, 1>, ReplaceLast<shape_of<Z>, 1>>,
                  "vae::Gaussian: the moments must be the latent's shape with twice its channels (mean | log-variance)");
}
/// body(mean, logvar, i, V{}) over every latent element: mean/logvar point at the pixel's halves,
/// i the element's offset in the latent.
template <class T, int Pixels, int L, class F>
void each_latent(F body) {
    for (int p = 0; p < Pixels; ++p)
        lanes::each<T>(std::size_t(L), [&](std::size_t c, auto tag) {
            body(std::size_t(p) * 2 * L + c, std::size_t(p) * 2 * L + L + c, std::size_t(p) * L + c, tag);
        });
}
/// clamp(v, logvar_min, logvar_max), and whether v is inside (where the gradient passes).
template <class V>
V clamp_logvar(V v) {
    return lanes::select(v < V(logvar_min), V(logvar_min), lanes::select(v > V(logvar_max), V(logvar_max), v));
}
template <class V>
V inside_logvar(V v, V g) {
    return lanes::select(v < V(logvar_min), V(0), lanes::select(v > V(logvar_max), V(0), g));
}
}  // namespace detail

/// z = mean + exp(½·clamp(logvar))·eps.
template <Shaped M, Shaped E, Shaped Z>
void reparameterize(const M& moments, const E& eps, Z&& z) {
    detail::check_moments<M, Z>();
    static_assert(same_shape<shape_of<E>, shape_of<Z>>, "vae::reparameterize: eps must have the latent's shape");
    using T = std::remove_cv_t<typename std::remove_cvref_t<M>::value_type>;
    constexpr int L = shape_of<Z>::last;
    const T *m = moments.data(), *e = eps.data();
    T* zp = z.data();
    detail::each_latent<T, shape_of<Z>::rows, L>([&](std::size_t mi, std::size_t li, std::size_t i, auto tag) {
        using V = decltype(tag);
        const V sd = xsimd::exp(V(0.5) * detail::clamp_logvar(lanes::load<V>(m + li)));
        lanes::store(zp + i, lanes::load<V>(m + mi) + sd * lanes::load<V>(e + i));
    });
}

/// dmean += dz, dlogvar += dz·eps·½·std (zero where logvar was clamped).
template <Shaped M, Shaped E, Shaped DZ, Shaped DM>
void reparameterize_backward(const M& moments, const E& eps, const DZ& dz, DM&& dmoments) {
    detail::check_moments<M, DZ>();
    static_assert(same_shape<shape_of<E>, shape_of<DZ>> && same_shape<shape_of<DM>, shape_of<M>>,
                  "vae::reparameterize: gradients must have the shapes of their values");
    using T = std::remove_cv_t<typename std::remove_cvref_t<M>::value_type>;
    constexpr int L = shape_of<DZ>::last;
    const T *m = moments.data(), *e = eps.data(), *g = dz.data();
    T* dm = dmoments.data();
    detail::each_latent<T, shape_of<DZ>::rows, L>([&](std::size_t mi, std::size_t li, std::size_t i, auto tag) {
        using V = decltype(tag);
        const V lv = lanes::load<V>(m + li), gz = lanes::load<V>(g + i);
        const V sd = xsimd::exp(V(0.5) * detail::clamp_logvar(lv));
        lanes::store(dm + mi, lanes::load<V>(dm + mi) + gz);
        lanes::store(dm + li, lanes::load<V>(dm + li) + detail::inside_logvar(lv, gz * lanes::load<V>(e + i) * V(0.5) * sd));
    });
}

/// KL(N(mean, var) ‖ N(0, 1)) = ½·mean over the N·h·w·L latent elements of (mean² + var − 1 − logvar),
/// logvar clamped. Given a non-null dmoments, adds dkl · its gradient (zero for a clamped logvar).
/// The sum runs in element order, in double.
template <Shaped M, Shaped DM>
auto kl_divergence(const M& moments, DM&& dmoments, typename std::remove_cvref_t<M>::value_type dkl = 1) {
    using T = std::remove_cv_t<typename std::remove_cvref_t<M>::value_type>;
    static_assert(same_shape<shape_of<DM>, shape_of<M>>, "vae::kl_divergence: the gradient must have the moments' shape");
    static_assert(shape_of<M>::last % 2 == 0, "vae::kl_divergence: the moments need an even channel count (mean | log-variance)");
    constexpr int L = shape_of<M>::last / 2;
    constexpr std::size_t n = shape_of<M>::size / 2;
    const T* m = moments.data();
    double total = 0;
    detail::each_latent<T, shape_of<M>::rows, L>([&](std::size_t mi, std::size_t li, std::size_t, auto tag) {
        using V = decltype(tag);
        const V mu = lanes::load<V>(m + mi), lv = detail::clamp_logvar(lanes::load<V>(m + li));
        const V term = mu * mu + xsimd::exp(lv) - V(1) - lv;
        if constexpr (std::is_same_v<V, T>) total += double(term);
        else total += double(xsimd::hadd(term));
    });
    if (T* dm = dmoments.data()) {
        const T k = dkl / T(n);
        detail::each_latent<T, shape_of<M>::rows, L>([&](std::size_t mi, std::size_t li, std::size_t, auto tag) {
            using V = decltype(tag);
            const V mu = lanes::load<V>(m + mi), lv = lanes::load<V>(m + li);
            lanes::store(dm + mi, lanes::load<V>(dm + mi) + V(k) * mu);
            const V g = V(0.5) * V(k) * (xsimd::exp(detail::clamp_logvar(lv)) - V(1));
            lanes::store(dm + li, lanes::load<V>(dm + li) + detail::inside_logvar(lv, g));
        });
    }
    return T(0.5 * total / double(n));
}
template <Shaped M>
auto kl_divergence(const M& moments) {
    using T = std::remove_cv_t<typename std::remove_cvref_t<M>::value_type>;
    return kl_divergence(moments, ViewOf<T, shape_of<M>>());
}

/// The mean half of the moments: the deterministic latent (what latent diffusion encodes with).
template <Shaped M, Shaped Z>
void posterior_mean(const M& moments, Z&& mean) {
    detail::check_moments<M, Z>();
    constexpr int L = shape_of<Z>::last;
    for (int p = 0; p < shape_of<Z>::rows; ++p)
        std::copy_n(moments.data() + std::size_t(p) * 2 * L, L, mean.data() + std::size_t(p) * L);
}

// ---------------------------------------------------------------------------------------------
// The whole autoencoder with its training loss

template <class T, class Cfg>
struct AutoencoderKL {
    using EncoderT = Encoder<T, Cfg>;
    using DecoderT = Decoder<T, Cfg>;
    static constexpr int S = Cfg::image_size, Cimg = Cfg::image_channels;
    static constexpr int h = Cfg::latent_size, L = Cfg::latent_channels;

    EncoderT encoder;
    DecoderT decoder;

    template <class V>
    constexpr void visit(V& v) { v("encoder", encoder); v("decoder", decoder); }

    /// Defined after the class (the type must be complete to be counted).
    static const std::size_t parameter_count;

    template <int N>
    struct Workspace {
        Tensor<T, N, S, S, Cimg> x;              // input images in [-1, 1]
        Tensor<T, N, h, h, 2 * L> moments;       // mean | log-variance
        Tensor<T, N, h, h, L> eps, z;            // noise, sampled latent
        Tensor<T, N, S, S, Cimg> recon;          // decoded
        typename EncoderT::template Cache<N> enc;
        typename DecoderT::template Cache<N> dec;
        Tensor<T, N, S, S, Cimg> drecon;
        Tensor<T, N, h, h, L> dz;
        Tensor<T, N, h, h, 2 * L> dmoments;
    };
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Workspace<N>);

    struct Losses {
        T reconstruction = 0, kl = 0, total = 0;
    };

    /// Fresh ε ~ N(0, 1) for the next forward (kept for backward).
    template <int N>
    static void draw_noise(Workspace<N>& ws, Rng& rng) { fill_normal(ws.eps, rng); }

    /// ws.x → moments → z (with ws.eps) → recon; returns the losses (see the header comment).
    template <int N>
    Losses forward(Workspace<N>& ws, T beta) const {
        encoder.forward(ws.x, ws.moments, ws.enc);
        reparameterize(ws.moments, ws.eps, ws.z);
        decoder.forward(ws.z, ws.recon, ws.dec);
        Losses l;
        l.reconstruction = mse_loss(ws.recon, ws.x, View<T, N, S, S, Cimg>());
        l.kl = kl_divergence(ws.moments);
        l.total = l.reconstruction + beta * l.kl;
        return l;
    }

    /// Adds dloss · d(total)/d(parameters) into the parameter gradients (the images get none).
    template <int N>
    void backward(Workspace<N>& ws, T beta, T dloss = 1) const {
        ws.drecon.fill(T(0));
        mse_loss(ws.recon, ws.x, ws.drecon, dloss);
        ws.dz.fill(T(0));
        decoder.backward(ws.z, ws.recon, ws.dec, ws.drecon, ws.dz);
        ws.dmoments.fill(T(0));
        reparameterize_backward(ws.moments, ws.eps, ws.dz, ws.dmoments);
        kl_divergence(ws.moments, ws.dmoments, beta * dloss);
        encoder.backward(ws.x, ws.moments, ws.enc, ws.dmoments, View<T, N, S, S, Cimg>());
    }
};

template <class T, class Cfg>
constexpr std::size_t Encoder<T, Cfg>::parameter_count = param_count<Encoder<T, Cfg>>();
template <class T, class Cfg>
constexpr std::size_t Decoder<T, Cfg>::parameter_count = param_count<Decoder<T, Cfg>>();
template <class T, class Cfg>
constexpr std::size_t AutoencoderKL<T, Cfg>::parameter_count = param_count<AutoencoderKL<T, Cfg>>();

}  // namespace diffuse::vae

#endif
