// SeedDiffusion: the seed's "Diffusion" composite, in the seed's order, made to actually train.
//
//   x [N, S, S, Cin] ──conv_ip 3×3──► [N, S, S, Cimg] ──vae::Encoder──► moments ──mean──► z [N, h, h, L]
//   ids, mask [N, Ctx] ──clip::TextEncoder──► context [N, Ctx, D]
//   t [N] ──time (the seed's learned table over all timesteps + Dense)──► [N, L], added to z at every pixel
//   z ──ca1, ca2 (CrossAttentionBlock on the h·h latent tokens, context as keys/values)
//     ──unet1, unet2, unet3 (unet::UNet, each conditioned on t and the context)
//     ──vae::Decoder──► y [N, S, S, Cimg]
//
// The seed's fit() computed a loss that never used the model output; train/seed_diffusion_training.hpp
// has a fit() that really trains this composite (MSE of the output, backward through every part, Adam).
// The encoder's moments are split as the VAE's mean | log-variance; the composite uses the mean
// (a deterministic autoencoder path, as the seed's plain encoder was).
// For the real text-to-image pipeline, see the latent-diffusion trainer; this is the seed's design.
#ifndef DIFFUSE_MODELS_SEED_DIFFUSION_HPP
#define DIFFUSE_MODELS_SEED_DIFFUSION_HPP

#include <cstdint>

#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/time_embedding.hpp"
#include "diffuse/models/clip.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/models/vae.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"

namespace diffuse {

namespace seed_diffusion {

/// The UNet of the Tiny composite: unet::TinyConfig at the Tiny VAE's 2×2 latent and the Tiny text width.
struct TinyUnetConfig : unet::TinyConfig {
    static constexpr int latent_size = vae::TinyConfig::latent_size;
    static constexpr int context_length = clip::TinyConfig::context_length, context_width = clip::TinyConfig::width;
};

/// Gradient checks in double: 8×8 images, 2×2×2 latent, a 2-layer text encoder of width 8.
struct TinyConfig {
    using vae_config = vae::TinyConfig;
    using clip_config = clip::TinyConfig;
    using unet_config = TinyUnetConfig;
    static constexpr int input_channels = 1, cross_heads = 1, timesteps = 10, time_features = 4;
};
/// The Fashion-MNIST widths of every part.
struct DefaultConfig {
    using vae_config = vae::DefaultConfig;
    using clip_config = clip::DefaultConfig;
    using unet_config = unet::DefaultConfig;
    static constexpr int input_channels = 1, cross_heads = 2, timesteps = 1000, time_features = 64;
};
/// The seed's widths: VAE 128/256/512, 12 text layers, UNets of 128/256/512.
struct SeedConfig {
    using vae_config = vae::SeedConfig;
    using clip_config = clip::SeedConfig;
    using unet_config = unet::SeedConfig;
    static constexpr int input_channels = 3, cross_heads = 2, timesteps = 1000, time_features = 128;
};

}  // namespace seed_diffusion

template <class T, class Cfg = seed_diffusion::DefaultConfig>
struct SeedDiffusion {
    using VaeCfg = typename Cfg::vae_config;
    using ClipCfg = typename Cfg::clip_config;
    using UnetCfg = typename Cfg::unet_config;
    static constexpr int S = VaeCfg::image_size, Cimg = VaeCfg::image_channels, Cin = Cfg::input_channels;
    static constexpr int h = VaeCfg::latent_size, L = VaeCfg::latent_channels;
    static constexpr int Ctx = ClipCfg::context_length, D = ClipCfg::width;

    static_assert(UnetCfg::latent_size == h && UnetCfg::latent_channels == L,
                  "SeedDiffusion: the UNet's latent size and channels must be the VAE's");
    static_assert(UnetCfg::context_length == Ctx && UnetCfg::context_width == D,
                  "SeedDiffusion: the UNet's context must be the text encoder's [Ctx, D]");
    static_assert(L % Cfg::cross_heads == 0, "SeedDiffusion: the latent channels must divide by cross_heads");

    using ConvIp = Conv2d<T, Cin, Cimg, 3>;
    using Encoder = vae::Encoder<T, VaeCfg>;
    using Decoder = vae::Decoder<T, VaeCfg>;
    using Text = clip::TextEncoder<T, ClipCfg>;
    using Time = LearnedTimeEmbedding<T, Cfg::timesteps, Cfg::time_features, L>;
    using Cross = CrossAttentionBlock<T, L, D, Cfg::cross_heads>;
    using Unet = unet::UNet<T, UnetCfg>;

    ConvIp conv_ip;
    Encoder encoder;
    Text clip;
    Time time;
    Cross ca1, ca2;
    Unet unet1, unet2, unet3;
    Decoder decoder;

    template <class V>
    constexpr void visit(V& v) {
        v("conv_ip", conv_ip);
        v("encoder", encoder);
        v("clip", clip);
        v("time", time);
        v("ca1", ca1);
        v("ca2", ca2);
        v("unet1", unet1);
        v("unet2", unet2);
        v("unet3", unet3);
        v("decoder", decoder);
    }

    template <int N>
    struct Workspace {
        using Image = Shape<N, S, S, Cimg>;
        using Latent = Shape<N, h, h, L>;
        using Context = Shape<N, Ctx, D>;
        // Inputs (filled by the caller or fit's data sampler) and the target.
        Tensor<T, N, S, S, Cin> x;
        Tensor<std::int32_t, N, Ctx> ids;
        Tensor<bool, N, Ctx> mask;  // true = padded token
        Tensor<std::int32_t, N> t;
        TensorOf<T, Image> target;
        // Activations, each beside its gradient.
        TensorOf<T, Image> xi, dxi;                        // conv_ip
        Tensor<T, N, h, h, 2 * L> moments, dmoments;       // encoder: mean | log-variance
        TensorOf<T, Latent> mean, logvar, dmean, dlogvar;  // the split; dlogvar stays zero (only the mean is used)
        Tensor<T, N, L> temb, dtemb;                       // time
        TensorOf<T, Latent> z, dz;                         // mean + temb
        TensorOf<T, Latent> a1, da1, a2, da2;              // ca1, ca2
        TensorOf<T, Latent> u1, du1, u2, du2, u3, du3;     // unet1..3
        TensorOf<T, Image> y, dy;                          // decoder: the output
        TensorOf<T, Context> context, dcontext;
        // Layer caches.
        typename ConvIp::template Cache<Shape<N, S, S, Cin>> conv_ip;
        typename Encoder::template Cache<N> encoder;
        typename Text::template Workspace<N> clip;
        typename Time::template Cache<Shape<N>> time;
        typename Cross::template Cache<Latent, Context> ca1, ca2;
        typename Unet::template Workspace<N> unet1, unet2, unet3;
        typename Decoder::template Cache<N> decoder;
    };

    static const std::size_t parameter_count;
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Workspace<N>);

    /// ws.x, ws.ids, ws.mask, ws.t → ws.y.
    template <int N>
    void forward(Workspace<N>& ws) const {
        conv_ip.forward(ws.x, ws.xi, ws.conv_ip);
        encoder.forward(ws.xi, ws.moments, ws.encoder);
        ws.mean.fill(T(0));
        ws.logvar.fill(T(0));
        // Splitting channels is the adjoint of concatenating them.
        split_.backward(ws.mean, ws.logvar, ws.moments, ws.moments, ws.mean, ws.logvar);
        clip.forward(ws.ids, ws.mask, ws.context, ws.clip);
        time.forward(ws.t, ws.temb, ws.time);
        add_per_channel(ws.mean, ws.temb, ws.z);
        ca1.forward(ws.z, ws.context, ws.mask, ws.a1, ws.ca1);
        ca2.forward(ws.a1, ws.context, ws.mask, ws.a2, ws.ca2);
        unet1.forward(ws.a2, ws.t, ws.context, ws.mask, ws.u1, ws.unet1);
        unet2.forward(ws.u1, ws.t, ws.context, ws.mask, ws.u2, ws.unet2);
        unet3.forward(ws.u2, ws.t, ws.context, ws.mask, ws.u3, ws.unet3);
        decoder.forward(ws.u3, ws.y, ws.decoder);
    }

    /// From ws.dy (d loss / d y), accumulates every parameter gradient.
    template <int N>
    void backward(Workspace<N>& ws) const {
        for (auto* g : {&ws.du3, &ws.du2, &ws.du1, &ws.da2, &ws.da1, &ws.dz, &ws.dmean}) g->fill(T(0));
        ws.dcontext.fill(T(0));
        ws.dtemb.fill(T(0));
        ws.dxi.fill(T(0));
        decoder.backward(ws.u3, ws.y, ws.decoder, ws.dy, ws.du3);
        unet3.backward(ws.u2, ws.t, ws.context, ws.mask, ws.u3, ws.unet3, ws.du3, ws.du2, ws.dcontext);
        unet2.backward(ws.u1, ws.t, ws.context, ws.mask, ws.u2, ws.unet2, ws.du2, ws.du1, ws.dcontext);
        unet1.backward(ws.a2, ws.t, ws.context, ws.mask, ws.u1, ws.unet1, ws.du1, ws.da2, ws.dcontext);
        ca2.backward(ws.a1, ws.context, ws.mask, ws.a2, ws.ca2, ws.da2, ws.da1, ws.dcontext);
        ca1.backward(ws.z, ws.context, ws.mask, ws.a1, ws.ca1, ws.da1, ws.dz, ws.dcontext);
        add_per_channel_backward(ws.dz, ws.dmean, ws.dtemb);
        time.backward(ws.t, ws.temb, ws.time, ws.dtemb);
        clip.backward(ws.ids, ws.mask, ws.context, ws.clip, ws.dcontext);
        ws.dlogvar.fill(T(0));
        split_.forward(ws.dmean, ws.dlogvar, ws.dmoments);
        encoder.backward(ws.xi, ws.moments, ws.encoder, ws.dmoments, ws.dxi);
        conv_ip.backward(ws.x, ws.xi, ws.conv_ip, ws.dxi, View<T, N, S, S, Cin>());
    }

private:
    Concat<T> split_;

    /// z[n, p, c] = mean[n, p, c] + temb[n, c] at every pixel p.
    template <class M, class E, class Z>
    static void add_per_channel(const M& mean, const E& temb, Z& z) {
        constexpr int N = shape_of<M>::first, P = h * h;
        for (int n = 0; n < N; ++n)
            for (int p = 0; p < P; ++p)
                for (int c = 0; c < L; ++c)
                    z.data()[(std::size_t(n) * P + p) * L + c] =
                        mean.data()[(std::size_t(n) * P + p) * L + c] + temb.data()[n * L + c];
    }
    template <class DZ, class DM, class DE>
    static void add_per_channel_backward(const DZ& dz, DM& dmean, DE& dtemb) {
        constexpr int N = shape_of<DZ>::first, P = h * h;
        for (int n = 0; n < N; ++n)
            for (int p = 0; p < P; ++p)
                for (int c = 0; c < L; ++c) {
                    const T g = dz.data()[(std::size_t(n) * P + p) * L + c];
                    dmean.data()[(std::size_t(n) * P + p) * L + c] += g;
                    dtemb.data()[n * L + c] += g;
                }
    }
};

template <class T, class Cfg>
constexpr std::size_t SeedDiffusion<T, Cfg>::parameter_count = param_count<SeedDiffusion<T, Cfg>>();

}  // namespace diffuse

#endif
