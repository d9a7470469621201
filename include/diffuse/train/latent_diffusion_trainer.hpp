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
// any preset) at a multiple of it, box-averaged down (Tiny: 8×8). Everything random comes from
// stateless streams keyed by (seed, purpose, step, the image's index in the global batch): shuffling,
// captions, dropout, the VAE's sampling noise, timesteps and diffusion noise. So with the same seed
// and thread count a run is bitwise reproducible; an image's draws do not depend on how a global
// batch is split across data-parallel ranks (train/data_parallel.hpp); and train/checkpoint.hpp saves
// exactly the state needed to resume bit for bit (parameters, Adam moments and step counts, EMA
// shadow and count, data position, step counters, latent scale) — there is no generator to carry.
//
// With a DataParallel of R ranks, each rank holds a replica and takes images [r·N, (r+1)·N) of every
// global batch of R·N; gradients are averaged over the ranks (with Parts = 1, the UNet's as its
// backward pass finishes each part) before clipping, so every rank takes the same step; losses are reported as the
// global batch's.
//
// A NaN or Inf in a step's loss or gradients stops training with a NumericalFault naming the step
// and the first parameter tensor that holds one (train/numerical_fault.hpp), before the update.
//
// Both phases run each batch as Parts shares (by default two halves, on two threads at once:
// train/batch_halves.hpp, train/vae_pass.hpp, train/diffusion_pass.hpp); the gradients' bits follow
// Parts, never the thread count.
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
#include "diffuse/train/batch_halves.hpp"
#include "diffuse/train/data_parallel.hpp"
#include "diffuse/train/diffusion_pass.hpp"
#include "diffuse/train/ema.hpp"
#include "diffuse/train/grad_clip.hpp"
#include "diffuse/train/lr_schedule.hpp"
#include "diffuse/train/numerical_fault.hpp"
#include "diffuse/train/progress.hpp"
#include "diffuse/train/vae_pass.hpp"

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

template <class T, class Preset, int N, class Source = data::FashionSource, int Parts = default_batch_parts<N>>
class LatentDiffusionTrainer {
public:
    using Model = LatentDiffusion<T, Preset>;
    using Vae = typename Model::Vae;
    using Text = typename Model::Text;
    using Denoiser = typename Model::Denoiser;
    using Options = LatentDiffusionTrainOptions;
    using Pass = DiffusionPass<T, Preset, N, Parts>;
    using VaeTrainPass = VaePass<T, Preset, N, Parts>;
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

    /// The data set's images must have the preset's channels (Batches checks the shape). With
    /// `ranks`, this process is one of its ranks (it must outlive the trainer).
    LatentDiffusionTrainer(Model& m, Source source, Options opt, DataParallel<T>* ranks = nullptr)
        : model(m),
          options(opt),
          parallel(ranks),
          data(std::move(source), opt.seed,
               data::BatchOptions{opt.caption_dropout,
                                  ranks ? data::Shard{ranks->rank(), ranks->ranks()} : data::Shard{}}),
          vae_adam(m.vae_store, {.lr = opt.vae_lr}),
          diffusion_adam(m.diffusion_store, {.lr = opt.lr}),
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
    DataParallel<T>* parallel;  // null: one process
    Data data;
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
        if (!vae_ws_) {
            vae_ws_ = make<VaeWorkspace>();
            vae_pass_ = std::make_unique<VaeTrainPass>(model.vae_part, model.vae_store);
        }
        auto& ws = *vae_ws_;
        next_batch(ws.batch, ws.x);
        fill_normal_per_image(ws.eps, kVaeNoise, vae_steps);
        auto& store = model.vae_store;
        store.zero_grad();
        if (parallel) parallel->begin(store.grads(), store.size());
        const auto l = vae_pass_->step(cview(ws.x), cview(ws.eps), T(options.kl_weight));
        if (parallel) parallel->average();
        std::array<double, 3> loss{double(l.total), double(l.reconstruction), double(l.kl)};
        global_mean(loss);
        VaeStats s{loss[0], loss[1], loss[2], 0, vae_schedule()(vae_steps)};
        const T norm = grad_norm(store);
        check_finite_step("VAE", vae_steps + 1, s.loss, norm, store);  // before any update
        clip_grads_to(store, T(options.vae_grad_clip), norm);
        s.grad_norm = double(norm);
        vae_adam.lr = s.lr;
        vae_adam.step();
        ++vae_steps;
        return s;
    }

    /// Sets model.latent_scale to 1 / std of the VAE's sampled latents over options.scale_batches
    /// batches (sums in double, in order). Returns the scale.
    double measure_latent_scale() {
        auto& ws = diffusion_ws();
        std::array<double, 2> moments{};  // Σ z, Σ z²
        for (int b = 0; b < options.scale_batches; ++b) {
            next_batch(ws.batch, ws.x);
            sample_latents(ws, T(1), kScaleNoise, b);
            for (T v : ws.z0) {
                moments[0] += double(v);
                moments[1] += double(v) * double(v);
            }
        }
        global_mean(moments);  // per rank's batches: the mean over ranks is over all images
        const double n = double(options.scale_batches) * double(ws.z0.size);
        const double mean = moments[0] / n, var = moments[1] / n - mean * mean;
        if (!(var > 0)) throw std::runtime_error("measure_latent_scale: the VAE's latents have no variance");
        model.latent_scale = 1 / std::sqrt(var);
        scale_measured = true;
        return model.latent_scale;
    }

    /// One diffusion training step (text encoder + UNet) on the next batch.
    DiffusionStats diffusion_step() {
        DiffusionStats s = diffusion_gradients();
        auto& store = model.diffusion_store;
        const T norm = grad_norm(store);
        check_finite_step("diffusion", diffusion_steps + 1, s.weighted_loss, norm, store);  // before any update
        clip_grads_to(store, T(options.grad_clip), norm);
        s.grad_norm = double(norm);
        s.lr = diffusion_schedule()(diffusion_steps);
        diffusion_adam.lr = s.lr;
        diffusion_adam.step();
        ema.update(model.ema, model.diffusion_store);
        ++diffusion_steps;
        return s;
    }

    /// The first half of diffusion_step(): the loss on the next batch (of step diffusion_steps) and
    /// its gradients in model.diffusion_store (zeroed first; averaged over ranks), and no update. For
    /// trainers that update something else from them (train/lora_trainer.hpp: low-rank adapters).
    DiffusionStats diffusion_gradients() {
        auto& ws = diffusion_ws();
        next_batch(ws.batch, ws.x);
        for (int i = 0; i < N; ++i) {
            Rng r = stream_rng(options.seed, 4, std::uint64_t(diffusion_steps), first_image() + std::uint64_t(i));
            distractors.apply(captions_[std::size_t(i)], r);
        }
        sample_latents(ws, T(model.latent_scale), kLatentNoise, diffusion_steps);
        const auto& sched = model.schedule;
        draw_timesteps_and_noise(ws, sched.steps());
        diffusion::add_noise(sched, ws.z0, ws.noise, ws.t, ws.zt);
        diffusion::training_target(sched, Model::prediction, ws.z0, ws.noise, ws.t, ws.target);
        if (options.min_snr_gamma > 0)
            diffusion::min_snr_weights(sched, ws.t, options.min_snr_gamma, Model::prediction, ws.w);
        else ws.w.fill(T(1));

        Text::check_tokenizer(model.tokenizer);
        model.tokenizer.template encode_batch<N, Ctx>(captions_, ws.ids.view(), ws.pad_mask.view());
        auto& pass = *diff_pass_;
        pass.forward(cview(ws.ids), cview(ws.pad_mask), cview(ws.zt), cview(ws.t), ws.y.view());
        DiffusionStats s;
        weighted_mse(ws, s);

        auto& store = model.diffusion_store;
        store.zero_grad();
        if (parallel) parallel->begin(store.grads(), store.size());
        pass.backward(cview(ws.zt), cview(ws.t), cview(ws.y), cview(ws.dy), ReportFinished<T>{parallel});
        if (parallel) parallel->average();
        std::array<double, 2> loss{s.loss, s.weighted_loss};
        global_mean(loss);
        s.loss = loss[0], s.weighted_loss = loss[1];
        return s;
    }

    /// VAE steps until vae_steps reaches `total`, calling on_step (if any) after each with the step's
    /// loss terms, learning rate and timing (train/progress.hpp). Every rank calls it.
    void train_vae(std::int64_t total, const TrainCallback& on_step = {}) {
        drive_phase(
            TrainPhase::vae, total, data.global_batch(), on_step, [&] { return vae_steps; },
            [&] { return vae_step(); });
    }

    /// Diffusion steps until diffusion_steps reaches `total`, calling on_step (if any) after each.
    void train_diffusion(std::int64_t total, const TrainCallback& on_step = {}) {
        drive_phase(
            TrainPhase::diffusion, total, data.global_batch(), on_step, [&] { return diffusion_steps; },
            [&] { return diffusion_step(); });
    }

    /// Every rank takes rank 0's parameters, EMA shadow and Adam moments: at the start of a run and
    /// after a resume, so the replicas start equal whatever each rank read. One process: nothing.
    void synchronize() {
        if (!parallel || parallel->ranks() == 1) return;
        const auto all = [&](T* p, std::size_t n) { parallel->broadcast(p, n); };
        all(model.vae_store.values(), model.vae_store.size());
        all(model.diffusion_store.values(), model.diffusion_store.size());
        all(model.ema.values(), model.diffusion_store.size());
        for (Adam<T>* a : {&vae_adam, &diffusion_adam}) {
            all(a->m(), a->size());
            all(a->v(), a->size());
        }
    }

    /// The captions of the last batch (for logging).
    const std::array<std::string, N>& captions() const { return captions_; }

private:
    // The purposes of the per-image random streams (data::Batches uses 0, 1 and 2; 3 was a shared
    // generator before the streams).
    enum Stream : std::uint64_t { kVaeNoise = 5, kScaleNoise = 6, kLatentNoise = 7, kTimestepNoise = 8 };

    /// The index in the global batch of this rank's first image.
    std::uint64_t first_image() const { return std::uint64_t(data.shard().rank) * N; }

    /// Item i of x [N, ...] ~ N(0, 1) from stream (seed, purpose, step, global index of image i).
    template <class X>
    void fill_normal_per_image(X& x, Stream purpose, std::int64_t step) const {
        constexpr std::size_t item = shape_of<X>::size / N;
        for (int i = 0; i < N; ++i) {
            Rng r = stream_rng(options.seed, purpose, std::uint64_t(step), first_image() + std::uint64_t(i));
            T* p = x.data() + std::size_t(i) * item;
            for (std::size_t j = 0; j < item; ++j) p[j] = T(r.normal());
        }
    }

    /// v ← its mean over the ranks (each rank's v a mean over its images: the global batch's mean).
    template <std::size_t K>
    void global_mean(std::array<double, K>& v) const {
        if (!parallel || parallel->ranks() == 1) return;
        parallel->sum(v.data(), int(K));
        for (double& x : v) x /= parallel->ranks();
    }

    struct VaeWorkspace {
        Tensor<T, N, DS, DS, C> batch;
        Tensor<T, N, S, S, C> x;    // images at the model's size
        Tensor<T, N, h, h, L> eps;  // the VAE's sampling noise
    };
    struct DiffusionWorkspace {
        Tensor<T, N, DS, DS, C> batch;
        Tensor<T, N, S, S, C> x;                                                   // images at the model's size
        std::array<typename Vae::EncoderT::template Cache<N / Parts>, Parts> enc;  // a share's each
        Tensor<T, N, h, h, 2 * L> moments;
        Tensor<T, N, h, h, L> eps, z0, noise, zt, target, y, dy;  // eps: the VAE's sampling noise
        Tensor<std::int32_t, N> t;
        Tensor<T, N> w;                    // per-sample loss weights
        Tensor<std::int32_t, N, Ctx> ids;  // the captions' tokens
        Tensor<bool, N, Ctx> pad_mask;
    };

    DiffusionWorkspace& diffusion_ws() {
        if (!diff_ws_) {
            diff_ws_ = make<DiffusionWorkspace>();
            diff_pass_ = std::make_unique<Pass>(model.diffusion_part, model.diffusion_store);
        }
        return *diff_ws_;
    }

    /// Per image: its timestep, then its diffusion noise, from one stream of (step, global index).
    void draw_timesteps_and_noise(DiffusionWorkspace& ws, int steps) const {
        constexpr std::size_t item = std::size_t(h) * h * L;
        for (int i = 0; i < N; ++i) {
            Rng r = stream_rng(options.seed, kTimestepNoise, std::uint64_t(diffusion_steps),
                               first_image() + std::uint64_t(i));
            ws.t[std::size_t(i)] = std::int32_t(r.below(std::uint64_t(steps)));
            T* p = ws.noise.data() + std::size_t(i) * item;
            for (std::size_t j = 0; j < item; ++j) p[j] = T(r.normal());
        }
    }

    /// The next data batch into `full` [N, DS, DS, C], and at the model's size into x.
    template <class X>
    void next_batch(Tensor<T, N, DS, DS, C>& full, X& x) {
        data.next(full.view(), captions_);
        if constexpr (S == DS) std::copy(full.begin(), full.end(), x.begin());
        else box_downsample<T, N, S, C, DS>(cview(full), mview(x));
    }

    /// ws.z0 = scale · (mean + σ·ε) from the frozen encoder, ε from stream (purpose, step). The encoder runs
    /// the passes' shares, at once on two threads (its forward is per image: the same bits as one batch).
    void sample_latents(DiffusionWorkspace& ws, T scale, Stream purpose, std::int64_t step) {
        constexpr int P = N / Parts;
        run_shares<Parts>([&](int k) {
            model.vae().encoder.forward(ws.x.template items<P>(k * P), ws.moments.template items<P>(k * P),
                                        ws.enc[std::size_t(k)]);
        });
        fill_normal_per_image(ws.eps, purpose, step);
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
    std::unique_ptr<VaeTrainPass> vae_pass_;  // the VAE's workspaces, with vae_ws_
    std::unique_ptr<DiffusionWorkspace> diff_ws_;
    std::unique_ptr<Pass> diff_pass_;  // the text encoder and UNet's workspaces, with diff_ws_
};

}  // namespace diffuse

#endif
