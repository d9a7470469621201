// Training a LatentDiffusion model on any captioned image data set (a data::CaptionedImageSource:
// Fashion-MNIST, an image folder with metadata.jsonl, or the user's own), in two phases over one
// shuffled caption stream (data::Batches, captions dropped to "" for a share of images: classifier-free
// guidance; optionally distractor words inserted, data/caption_augment.hpp):
//
//   1. VAE:   images → AutoencoderKL (reconstruction MSE + kl_weight · KL), Adam, grad-norm clip,
//             linear learning-rate warm-up.
//   2. scale: latent_scale = 1 / std of VAE latents z = mean + σ·ε over a few batches
//             (Stable Diffusion's 0.18215 was measured this way), so the UNet sees unit variance.
//   3. diffusion (VAE frozen): z0 = latent_scale · (mean + σ·ε); t ~ U[0, T), noise ε' ~ N(0, 1);
//             z_t = sqrt(ab_t)·z0 + sqrt(1 − ab_t)·ε'; the UNet (conditioned on the text encoder's
//             context of the caption) predicts ε' or v (the preset's UNet prediction); loss = mean over
//             the batch of w_i · MSE_i, w = 1 or Min-SNR-γ; text encoder and UNet trained together by
//             one Adam with grad-norm clipping and LR warm-up; EMA (with warm-up) of both after each step.
//
// Images come from the data at the model's size and channels, or (Fashion-MNIST, served at 32×32 for
// any preset) at a multiple of it, box-averaged down (Tiny: 8×8). Everything random is drawn from
// one Rng seeded by the options (VAE noise, timesteps, diffusion noise) or from stateless per-image streams (shuffling, captions, dropout):
// with the same seed and thread count a run is bitwise reproducible, and train/checkpoint.hpp
// saves exactly the state needed to resume bit for bit (parameters, Adam moments and step counts,
// EMA shadow and count, Rng state, data position, step counters, latent scale).
//
// Workspaces are allocated on a phase's first step, once; later steps allocate nothing (the
// captions are written into strings reserved for the longest one; tests/test_allocations.cpp).
#ifndef DIFFUSE_TRAIN_LATENT_DIFFUSION_TRAINER_HPP
#define DIFFUSE_TRAIN_LATENT_DIFFUSION_TRAINER_HPP

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/data/caption_augment.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/sample/noise_schedule.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/ema.hpp"
#include "diffuse/train/grad_clip.hpp"
#include "diffuse/train/lr_schedule.hpp"

namespace diffuse {

struct LatentDiffusionTrainOptions {
    std::uint64_t seed = 0;
    // VAE phase
    double vae_lr = 1e-3;
    std::int64_t vae_warmup_steps = 100;
    double kl_weight = 1e-4;  // on the per-element KL mean (vae.hpp); SD's 1e-6 on sums is ≈ 2.5e-7 here
    double vae_grad_clip = 1.0;
    // latent scale
    int scale_batches = 8;
    // diffusion phase
    double lr = 3e-4;
    std::int64_t warmup_steps = 200;
    double grad_clip = 1.0;
    double ema_decay = 0.9999;  // warmed up: min(decay, (1 + n)/(10 + n))
    double caption_dropout = 0.1;
    double min_snr_gamma = 0;  // 0: plain MSE; e.g. 5: Min-SNR-5 weighting
};

/// [N, DS, DS, C] → [N, S, S, C], each output pixel the mean of its (DS/S)² block (summed in a fixed order).
template <class T, int N, int S, int C, int DS = 32>
void box_downsample(View<const T, N, DS, DS, C> src, View<T, N, S, S, C> dst) {
    static_assert(DS % S == 0, "box_downsample: the image size must divide the data's");
    constexpr int F = DS / S;
    const T inv = T(1) / T(F * F);
    for (int n = 0; n < N; ++n)
        for (int y = 0; y < S; ++y)
            for (int x = 0; x < S; ++x)
                for (int c = 0; c < C; ++c) {
                    T s = 0;
                    for (int dy = 0; dy < F; ++dy)
                        for (int dx = 0; dx < F; ++dx) s += src(n, y * F + dy, x * F + dx, c);
                    dst(n, y, x, c) = s * inv;
                }
}

/// The side of the images a source serves: an image folder is loaded at the model's size;
/// Fashion-MNIST is 32×32 whatever the model's.
template <class Source, int ModelSide>
inline constexpr int data_side = ModelSide;
template <int ModelSide>
inline constexpr int data_side<data::FashionSource, ModelSide> = data::kPaddedSize;

template <class T, class Preset, int N, class Source = data::FashionSource>
class LatentDiffusionTrainer {
public:
    using Model = LatentDiffusion<T, Preset>;
    using Vae = typename Model::Vae;
    using Text = typename Model::Text;
    using Denoiser = typename Model::Denoiser;
    using Options = LatentDiffusionTrainOptions;
    static constexpr int batch = N;
    static constexpr int S = Model::image_size, C = Model::image_channels;
    static constexpr int h = Model::latent_size, L = Model::latent_channels;
    static constexpr int Ctx = Model::context_length, D = Model::context_width;
    static constexpr int DS = data_side<Source, S>;  // the side of the data's images
    static_assert(DS % S == 0, "LatentDiffusionTrainer: the preset's image size must divide the data's");
    using Data = data::Batches<T, N, DS, DS, C, Source>;

    struct VaeStats {
        double loss = 0, reconstruction = 0, kl = 0, grad_norm = 0, lr = 0;
    };
    struct DiffusionStats {
        double loss = 0;           // plain MSE of the prediction
        double weighted_loss = 0;  // what was minimized (= loss without Min-SNR)
        double grad_norm = 0, lr = 0;
    };

    /// The data set's images must have the preset's channels (Batches checks the shape).
    LatentDiffusionTrainer(Model& model, Source data, Options opt)
        : model(model),
          options(opt),
          data(std::move(data), opt.seed, data::BatchOptions{opt.caption_dropout}),
          rng(stream_seed(opt.seed, 3)),
          vae_adam(model.vae_store, {.lr = opt.vae_lr}),
          diffusion_adam(model.diffusion_store, {.lr = opt.lr}),
          ema(EmaOptions{.decay = opt.ema_decay, .warmup = true}) {
        const auto require = [](bool ok, const char* what) {
            if (!ok) throw std::invalid_argument(std::string("LatentDiffusionTrainer: ") + what);
        };
        require(opt.vae_lr > 0 && opt.lr > 0, "learning rates must be positive");
        require(opt.ema_decay >= 0 && opt.ema_decay < 1, "ema_decay must be in [0, 1)");
        require(opt.scale_batches >= 1, "scale_batches must be at least 1");
        require(opt.min_snr_gamma >= 0, "min_snr_gamma must not be negative (0: off)");
    }

    Model& model;
    Options options;
    Data data;
    Rng rng;
    Adam<T> vae_adam, diffusion_adam;
    Ema ema;                                          // the rule that averages model.ema, the model's EMA weights
    std::int64_t vae_steps = 0, diffusion_steps = 0;  // steps taken in each phase
    bool scale_measured = false;
    /// Distractor words for the diffusion phase's captions (off unless given a word list); each
    /// caption's draw is keyed by (seed, step, index), so a resumed run draws the same.
    data::CaptionAugmenter distractors;

    LrSchedule vae_schedule() const { return {options.vae_lr, options.vae_warmup_steps}; }
    LrSchedule diffusion_schedule() const { return {options.lr, options.warmup_steps}; }

    /// One VAE training step on the next batch.
    VaeStats vae_step() {
        if (!vae_ws_) vae_ws_ = make<VaeWorkspace>();
        auto& ws = *vae_ws_;
        next_batch(ws.batch, ws.vae.x);
        Vae::draw_noise(ws.vae, rng);
        const Vae& vae = model.vae();
        const T beta(options.kl_weight);
        const auto l = vae.forward(ws.vae, beta);
        model.vae_store.zero_grad();
        vae.backward(ws.vae, beta);
        VaeStats s{double(l.total), double(l.reconstruction), double(l.kl), 0, vae_schedule()(vae_steps)};
        s.grad_norm = double(clip_grad_norm(model.vae_store, T(options.vae_grad_clip)));
        vae_adam.lr = s.lr;
        vae_adam.step();
        ++vae_steps;
        return s;
    }

    /// Sets model.latent_scale to 1 / std of the VAE's sampled latents over options.scale_batches
    /// batches (sums in double, in order). Returns the scale.
    double measure_latent_scale() {
        auto& ws = diffusion_ws();
        double sum = 0, sq = 0;
        for (int b = 0; b < options.scale_batches; ++b) {
            next_batch(ws.batch, ws.x);
            sample_latents(ws, T(1));
            for (T v : ws.z0) {
                sum += double(v);
                sq += double(v) * double(v);
            }
        }
        const double n = double(options.scale_batches) * double(ws.z0.size);
        const double var = sq / n - (sum / n) * (sum / n);
        if (!(var > 0)) throw std::runtime_error("measure_latent_scale: the VAE's latents have no variance");
        model.latent_scale = 1 / std::sqrt(var);
        scale_measured = true;
        return model.latent_scale;
    }

    /// One diffusion training step (text encoder + UNet) on the next batch.
    DiffusionStats diffusion_step() {
        auto& ws = diffusion_ws();
        next_batch(ws.batch, ws.x);
        for (int i = 0; i < N; ++i) {
            Rng r = stream_rng(options.seed, 4, std::uint64_t(diffusion_steps), std::uint64_t(i));
            distractors.apply(captions_[std::size_t(i)], r);
        }
        sample_latents(ws, T(model.latent_scale));
        const auto& sched = model.schedule;
        diffusion::draw_timesteps(sched, rng, ws.t);
        fill_normal(ws.noise, rng);
        diffusion::add_noise(sched, ws.z0, ws.noise, ws.t, ws.zt);
        diffusion::training_target(sched, Model::prediction, ws.z0, ws.noise, ws.t, ws.target);
        if (options.min_snr_gamma > 0)
            diffusion::min_snr_weights(sched, ws.t, options.min_snr_gamma, Model::prediction, ws.w);
        else ws.w.fill(T(1));

        const Text& text = model.text_encoder();
        const Denoiser& net = model.unet();
        text.template encode<N>(model.tokenizer, captions_, ws.text);
        net.forward(ws.zt, ws.t, ws.text.context, ws.text.pad_mask, ws.y, ws.unet);
        DiffusionStats s;
        weighted_mse(ws, s);

        model.diffusion_store.zero_grad();
        ws.dctx.fill(T(0));
        net.backward(ws.zt, ws.t, ws.text.context, ws.text.pad_mask, ws.y, ws.unet, ws.dy, View<T, N, h, h, L>(),
                     ws.dctx);
        text.encode_backward(ws.text, ws.dctx);
        s.grad_norm = double(clip_grad_norm(model.diffusion_store, T(options.grad_clip)));
        s.lr = diffusion_schedule()(diffusion_steps);
        diffusion_adam.lr = s.lr;
        diffusion_adam.step();
        ema.update(model.ema, model.diffusion_store);
        ++diffusion_steps;
        return s;
    }

    /// The captions of the last batch (for logging).
    const std::array<std::string, N>& captions() const { return captions_; }

private:
    struct VaeWorkspace {
        Tensor<T, N, DS, DS, C> batch;
        typename Vae::template Workspace<N> vae;
    };
    struct DiffusionWorkspace {
        Tensor<T, N, DS, DS, C> batch;
        Tensor<T, N, S, S, C> x;  // images at the model's size
        typename Vae::EncoderT::template Cache<N> enc;
        Tensor<T, N, h, h, 2 * L> moments;
        Tensor<T, N, h, h, L> eps, z0, noise, zt, target, y, dy;  // eps: the VAE's sampling noise
        Tensor<std::int32_t, N> t;
        Tensor<T, N> w;  // per-sample loss weights
        typename Text::template Workspace<N> text;
        Tensor<T, N, Ctx, D> dctx;
        typename Denoiser::template Workspace<N> unet;
    };

    DiffusionWorkspace& diffusion_ws() {
        if (!diff_ws_) diff_ws_ = make<DiffusionWorkspace>();
        return *diff_ws_;
    }

    /// The next data batch into `full` [N, DS, DS, C], and at the model's size into x.
    template <class X>
    void next_batch(Tensor<T, N, DS, DS, C>& full, X& x) {
        data.next(full.view(), captions_);
        if constexpr (S == DS) std::copy(full.begin(), full.end(), x.begin());
        else box_downsample<T, N, S, C, DS>(cview(full), mview(x));
    }

    /// ws.z0 = scale · (mean + σ·ε) from the frozen encoder.
    void sample_latents(DiffusionWorkspace& ws, T scale) {
        model.vae().encoder.forward(ws.x, ws.moments, ws.enc);
        fill_normal(ws.eps, rng);
        vae::reparameterize(ws.moments, ws.eps, ws.z0);
        for (auto& v : ws.z0) v *= scale;
    }

    /// loss = (1/N)·Σ_i w_i·mean_j (y − target)²; dy = its gradient. Sums in double, in order.
    static void weighted_mse(DiffusionWorkspace& ws, DiffusionStats& s) {
        constexpr std::size_t item = std::size_t(h) * h * L;
        double plain = 0, weighted = 0;
        for (int i = 0; i < N; ++i) {
            const T* y = ws.y.data() + std::size_t(i) * item;
            const T* g = ws.target.data() + std::size_t(i) * item;
            T* d = ws.dy.data() + std::size_t(i) * item;
            const T wi = ws.w[std::size_t(i)];
            const T k = T(2) * wi / T(double(N) * double(item));
            double e = 0;
            for (std::size_t j = 0; j < item; ++j) {
                const T diff = y[j] - g[j];
                e += double(diff) * double(diff);
                d[j] = k * diff;
            }
            e /= double(item);
            plain += e;
            weighted += double(wi) * e;
        }
        s.loss = plain / N;
        s.weighted_loss = weighted / N;
    }

    std::array<std::string, N> captions_;
    std::unique_ptr<VaeWorkspace> vae_ws_;
    std::unique_ptr<DiffusionWorkspace> diff_ws_;
};

}  // namespace diffuse

#endif
