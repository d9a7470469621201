// The KL-regularized autoencoder of latent diffusion (Stable Diffusion's AutoencoderKL), in the
// seed's plan (CLIP_VAE_Encoder / VAE_Decoder), with as many resolution levels as its config has
// widths W_0 … W_{L-1} (each level below the first at half the side), so the latent is image / 2^(L-1).
// It composes the blocks it shares with the UNet (include/diffuse/blocks/):
//
//   Encoder  x [N, S, S, Cimg] → conv_in 3×3 (→W_0)
//            down.l, l = 0 … L-1: DownLevel = ResStack ×R (W_{l-1} → W_l; W_0 → W_0 at l = 0),
//                     then, but at the last level, conv 3×3 stride 2         S/2^l → S/2^(l+1)
//            mid: MidBlock (res, self-attention, res) at W_{L-1}
//            OutputHead: norm_out → SiLU → conv_out 3×3 (→2·latent) = moments [N, h, h, 2·latent]:
//                     mean | log-variance, h = S / 2^(L-1)
//   Sample   z = mean + exp(½·clamp(logvar, −30, 20))·ε,  ε ~ N(0, 1)   (reparameterization)
//   Decoder  z [N, h, h, latent] → conv_in 3×3 (→W_{L-1}) → mid: MidBlock at W_{L-1}
//            up.k, k = 0 … L-1, at level L-1-k: UpLevel = ResStack ×R (W_{L-k} → W_{L-1-k}; W_{L-1} →
//                     W_{L-1} at k = 0), then, but at the last, nearest 2× + conv 3×3 ("upsample")
//            OutputHead (→Cimg), linear output (images in [−1, 1])
//
// The presets have three levels: down.0 W0→W0 ↓, down.1 W0→W1 ↓, down.2 W1→W2; up.0 W2→W2 ↑,
// up.1 W2→W1 ↑, up.2 W1→W0. Levels are named in the order they run ("up.0" is the decoder's lowest
// resolution). The strided downsampler pads one pixel on each side (PyTorch's
// Conv2d(3, stride=2, padding=1)), not SD's asymmetric (0, 1) pad.
//
// Each half runs its levels and middle block as one chain (blocks/chain.hpp): the encoder's
// down.0 … down.L-1, mid; the decoder's mid, up.0 … up.L-1. Nothing is conditioned (diffuse::absent).
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
#include <tuple>
#include <type_traits>

#include "diffuse/blocks/chain.hpp"
#include "diffuse/blocks/levels.hpp"
#include "diffuse/blocks/mid_block.hpp"
#include "diffuse/blocks/output_head.hpp"
#include "diffuse/blocks/res_stack.hpp"
#include "diffuse/core/lanes.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/losses.hpp"

namespace diffuse::vae {

// ---------------------------------------------------------------------------------------------
// Configurations

/// Widths: a std::array<int, levels> of channel counts, full resolution first (std::array{16, 32, 64}).
template <int ImageSize, int ImageChannels, auto Widths, int LatentChannels, int ResBlocks, class Norm, int Heads = 1>
struct Config {
    static constexpr int image_size = ImageSize, image_channels = ImageChannels;
    static constexpr auto widths = Widths;
    static constexpr int levels = int(widths.size());
    static_assert(levels >= 1 && ImageSize > 0 && ImageSize % (1 << (levels - 1)) == 0,
                  "vae::Config: the image size must divide by 2^(levels-1) (each level below the first halves it)");
    static_assert(ResBlocks >= 1, "vae::Config: each level needs at least one residual block");
    static constexpr int latent_channels = LatentChannels, latent_size = ImageSize >> (levels - 1);
    static constexpr int res_blocks = ResBlocks, heads = Heads;
    using norm = Norm;
};

/// Gradient checks in double: 8×8×1 images, latent 2×2×2, GroupNorm with 2 groups.
struct TinyConfig : Config<8, 1, std::array{4, 8, 8}, 2, 1, norm::Group<2>> {};
/// The same widths with LayerNorm, two residual blocks per level and two attention heads.
struct TinyLayerNormConfig : Config<8, 1, std::array{4, 8, 8}, 2, 2, norm::Layer, 2> {};
/// Fashion-MNIST padded to 32×32×1, latent 8×8×4, GroupNorm with 8 groups. Channels 16/32/64: one
/// float training step (forward, backward, Adam) at batch 16 on one core ran at ~91 images/s,
/// against ~31 images/s for 32/64/64 (the full-resolution level dominates), and a grayscale 32×32
/// image through an 8×8×4 latent is limited by the latent, not by the encoder's width.
struct DefaultConfig : Config<32, 1, std::array{16, 32, 64}, 4, 1, norm::Group<8>> {};
/// A user's colour images at 32×32×3 (latent 8×8×4) and 64×64×3 (latent 16×16×4), Default's widths.
struct Rgb32Config : Config<32, 3, std::array{16, 32, 64}, 4, 1, norm::Group<8>> {};
struct Rgb64Config : Config<64, 3, std::array{16, 32, 64}, 4, 1, norm::Group<8>> {};
/// The seed's widths (128/256/512, LayerNorm, 2 residual blocks per level) on 32×32 RGB images,
/// latent 8×8×4.
struct SeedConfig : Config<32, 3, std::array{128, 256, 512}, 4, 2, norm::Layer> {};

namespace detail {

/// Sizes derived from a config, and its shape rules (checked by both halves).
template <class Cfg>
struct Geometry : LevelWidths<Cfg::widths> {
    using W = LevelWidths<Cfg::widths>;
    static constexpr int levels = W::levels, last = W::width(W::levels - 1);
    static_assert(levels >= 1 && W::widths_positive() && Cfg::latent_channels > 0 && Cfg::res_blocks >= 1 &&
                      Cfg::heads >= 1,
                  "vae: the config needs a level, and positive widths, latent channels, res_blocks and heads");
    static_assert(Cfg::image_size > 0 && Cfg::image_size % (1 << (levels - 1)) == 0 &&
                      Cfg::latent_size == Cfg::image_size >> (levels - 1),
                  "vae: the image size must divide by 2^(levels-1), and latent_size be image_size / 2^(levels-1)");
    static constexpr int latent_size = Cfg::latent_size;
    /// Decoder level k runs at resolution level L-1-k: W_{L-1} (k = 0) or W_{L-k} in, W_{L-1-k} out.
    static constexpr int up_in(int k) { return W::width(k == 0 ? levels - 1 : levels - k); }
    static constexpr int up_out(int k) { return W::width(levels - 1 - k); }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Encoder

template <class T, class Cfg>
struct Encoder {
    using G = detail::Geometry<Cfg>;
    static constexpr int S = Cfg::image_size, Cimg = Cfg::image_channels, L = Cfg::latent_channels;
    static constexpr int levels = G::levels, h = G::latent_size;
    using Norm = typename Cfg::norm;

    using ConvIn = Conv2d<T, Cimg, G::width(0), 3>;
    template <int I>
    using Level = DownLevel<ResStack<T, G::down_in(I), G::width(I), Cfg::res_blocks, Norm>, (I + 1 < levels)>;
    using Levels = TupleOf<Level, levels>;
    using Mid = MidBlock<T, G::last, Cfg::heads, Norm>;
    using Head = OutputHead<T, G::last, 2 * L, Norm>;
    /// What runs between conv_in and the head: down.0 … down.L-1, mid.
    using Body = decltype(std::tuple_cat(std::declval<Levels>(), std::declval<std::tuple<Mid>>()));

    ConvIn conv_in;
    Levels down;
    Mid mid;
    Head out;

    template <class V>
    constexpr void visit(V& v) {
        v("conv_in", conv_in);
        visit_numbered(v, "down", down);
        v("mid", mid);
        out.visit(v);
    }

    /// Defined after the class (the type must be complete to be counted).
    static const std::size_t parameter_count;

    template <int N>
    using input_shape = Shape<N, S, S, Cimg>;
    /// mean | log-variance along the channels.
    template <int N>
    using output_shape = Shape<N, h, h, 2 * L>;

    template <int N>
    struct Cache {
        using Top = Shape<N, S, S, G::width(0)>;
        typename ConvIn::template Cache<input_shape<N>> conv_in;
        TensorOf<T, Top> x0, dx0;  // conv_in's output, its gradient
        Stages<T, Top, Absent, Body> body;
        typename Head::template Cache<Shape<N, h, h, G::last>> out;
    };
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Cache<N>);

    template <Shaped X, Shaped M>
    void forward(const X& x, M&& moments, Cache<shape_of<X>::first>& c) const {
        check<X, M>();
        conv_in.forward(x, c.x0, c.conv_in);
        chain_forward(chain_of(down, mid), c.x0, absent, c.body);
        out.forward(std::get<levels>(c.body).y, moments, c.out);
    }

    /// A null dx view computes the parameter gradients only.
    template <Shaped X, Shaped M, Shaped DM, Shaped DX>
    void backward(const X& x, const M& moments, Cache<shape_of<X>::first>& c, const DM& dmoments, DX&& dx) const {
        check<X, M>();
        static_assert(same_shape<shape_of<DM>, shape_of<M>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "vae::Encoder: gradients must have the shapes of their values");
        zero_stage_grads(c.body);
        c.dx0.fill(T(0));
        auto& m = std::get<levels>(c.body);
        out.backward(m.y, moments, c.out, dmoments, m.dy);
        chain_backward(chain_of(down, mid), c.x0, absent, c.body, c.dx0, absent);
        conv_in.backward(x, c.x0, c.conv_in, c.dx0, dx);
    }

private:
    template <class X, class M>
    static constexpr void check() {
        static_assert(same_shape<shape_of<X>, input_shape<shape_of<X>::first>>,
                      "vae::Encoder: the input must be [N, image_size, image_size, image_channels]");
        static_assert(same_shape<shape_of<M>, output_shape<shape_of<X>::first>>,
                      "vae::Encoder: the output must be [N, latent_size, latent_size, 2*latent_channels]");
    }
};

// ---------------------------------------------------------------------------------------------
// Decoder

template <class T, class Cfg>
struct Decoder {
    using G = detail::Geometry<Cfg>;
    static constexpr int S = Cfg::image_size, Cimg = Cfg::image_channels, L = Cfg::latent_channels;
    static constexpr int levels = G::levels, h = G::latent_size;
    using Norm = typename Cfg::norm;

    using ConvIn = Conv2d<T, L, G::last, 3>;
    using Mid = MidBlock<T, G::last, Cfg::heads, Norm>;
    template <int K>
    using Level =
        UpLevel<ResStack<T, G::up_in(K), G::up_out(K), Cfg::res_blocks, Norm>, (K + 1 < levels), UpsampleNames::flat>;
    using Levels = TupleOf<Level, levels>;
    using Head = OutputHead<T, G::width(0), Cimg, Norm>;
    /// What runs between conv_in and the head: mid, up.0 … up.L-1.
    using Body = decltype(std::tuple_cat(std::declval<std::tuple<Mid>>(), std::declval<Levels>()));

    ConvIn conv_in;
    Mid mid;
    Levels up;
    Head out;

    template <class V>
    constexpr void visit(V& v) {
        v("conv_in", conv_in);
        v("mid", mid);
        visit_numbered(v, "up", up);
        out.visit(v);
    }

    /// Defined after the class (the type must be complete to be counted).
    static const std::size_t parameter_count;

    template <int N>
    using input_shape = Shape<N, h, h, L>;
    template <int N>
    using output_shape = Shape<N, S, S, Cimg>;

    template <int N>
    struct Cache {
        using Bottom = Shape<N, h, h, G::last>;
        typename ConvIn::template Cache<input_shape<N>> conv_in;
        TensorOf<T, Bottom> x0, dx0;  // conv_in's output, its gradient
        Stages<T, Bottom, Absent, Body> body;
        typename Head::template Cache<Shape<N, S, S, G::width(0)>> out;
    };
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Cache<N>);

    template <Shaped Z, Shaped Y>
    void forward(const Z& z, Y&& y, Cache<shape_of<Z>::first>& c) const {
        check<Z, Y>();
        conv_in.forward(z, c.x0, c.conv_in);
        chain_forward(chain_of(mid, up), c.x0, absent, c.body);
        out.forward(std::get<levels>(c.body).y, y, c.out);
    }

    /// A null dz view computes the parameter gradients only.
    template <Shaped Z, Shaped Y, Shaped DY, Shaped DZ>
    void backward(const Z& z, const Y& y, Cache<shape_of<Z>::first>& c, const DY& dy, DZ&& dz) const {
        check<Z, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DZ>, shape_of<Z>>,
                      "vae::Decoder: gradients must have the shapes of their values");
        zero_stage_grads(c.body);
        c.dx0.fill(T(0));
        auto& last = std::get<levels>(c.body);
        out.backward(last.y, y, c.out, dy, last.dy);
        chain_backward(chain_of(mid, up), c.x0, absent, c.body, c.dx0, absent);
        conv_in.backward(z, c.x0, c.conv_in, c.dx0, dz);
    }

private:
    template <class Z, class Y>
    static constexpr void check() {
        static_assert(same_shape<shape_of<Z>, input_shape<shape_of<Z>::first>>,
                      "vae::Decoder: the latent must be [N, latent_size, latent_size, latent_channels]");
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
    static_assert(
        shape_of<M>::last == 2 * shape_of<Z>::last &&
            same_shape<ReplaceLast<shape_of<M>, 1>, ReplaceLast<shape_of<Z>, 1>>,
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
        lanes::store(dm + li,
                     lanes::load<V>(dm + li) + detail::inside_logvar(lv, gz * lanes::load<V>(e + i) * V(0.5) * sd));
    });
}

/// KL(N(mean, var) ‖ N(0, 1)) = ½·mean over the N·h·w·L latent elements of (mean² + var − 1 − logvar),
/// logvar clamped. Given a non-null dmoments, adds dkl · its gradient (zero for a clamped logvar).
/// The sum runs in element order, in double.
template <Shaped M, Shaped DM>
auto kl_divergence(const M& moments, DM&& dmoments, typename std::remove_cvref_t<M>::value_type dkl = 1) {
    using T = std::remove_cv_t<typename std::remove_cvref_t<M>::value_type>;
    static_assert(same_shape<shape_of<DM>, shape_of<M>>,
                  "vae::kl_divergence: the gradient must have the moments' shape");
    static_assert(shape_of<M>::last % 2 == 0,
                  "vae::kl_divergence: the moments need an even channel count (mean | log-variance)");
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
    constexpr void visit(V& v) {
        v("encoder", encoder);
        v("decoder", decoder);
    }

    /// Defined after the class (the type must be complete to be counted).
    static const std::size_t parameter_count;

    template <int N>
    struct Workspace {
        Tensor<T, N, S, S, Cimg> x;         // input images in [-1, 1]
        Tensor<T, N, h, h, 2 * L> moments;  // mean | log-variance
        Tensor<T, N, h, h, L> eps, z;       // noise, sampled latent
        Tensor<T, N, S, S, Cimg> recon;     // decoded
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
    static void draw_noise(Workspace<N>& ws, Rng& rng) {
        fill_normal(ws.eps, rng);
    }

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
