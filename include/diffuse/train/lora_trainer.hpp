// Fine-tuning a trained LatentDiffusion model through low-rank adapters (models/lora.hpp) with
// everything else frozen, on any captioned image source (an image folder, typically).
//
// The loss and its gradients are the ordinary diffusion trainer's (LatentDiffusionTrainer::
// diffusion_gradients: same data stream, noise, timesteps, caption dropout and MSE); the base
// weights' gradients are computed on the way (the input gradients need the same products) but
// nothing updates them. Only the adapters' flat buffer (and the trigger word's embedding) take Adam
// steps, after grad-norm clipping over the adapters alone, with a linear LR warm-up.
//
// The model is trained as it samples: when it has EMA weights, they are copied into its trained
// store first (both then hold the same weights, so sampling with or without EMA agrees).
#ifndef DIFFUSE_TRAIN_LORA_TRAINER_HPP
#define DIFFUSE_TRAIN_LORA_TRAINER_HPP

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <utility>

#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/models/lora.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"
#include "diffuse/train/lr_schedule.hpp"
#include "diffuse/train/progress.hpp"

namespace diffuse {

struct LoraTrainOptions {
    std::uint64_t seed = 0;
    double lr = 1e-3;
    std::int64_t warmup_steps = 20;
    double grad_clip = 1.0;
    double caption_dropout = 0.1;  // keeps the unconditional branch in the data, for guidance
};

template <class T, class Preset, int N, class Source>
class LoraTrainer {
public:
    using Model = LatentDiffusion<T, Preset>;
    using Adapters = LoraAdapters<T, Preset>;
    // The batch runs whole (Parts = 1): the adapters hook into the model's own layers, which a second
    // instance for a second half would not have.
    using Base = LatentDiffusionTrainer<T, Preset, N, Source, 1>;

    struct Stats {
        double loss = 0, grad_norm = 0, lr = 0;
    };

    /// The adapters must be fresh ones (strength 1) on `model`, and outlive the trainer.
    LoraTrainer(Model& model, Adapters& trained, Source data, LoraTrainOptions opt)
        : adapters(trained),
          options(opt),
          base(model, std::move(data), base_options(opt)),
          adam(trained.values(), trained.grads(), trained.size(), {.lr = opt.lr}) {
        if (!(opt.lr > 0)) throw std::invalid_argument("LoraTrainer: the learning rate must be positive");
        if (!(opt.grad_clip > 0)) throw std::invalid_argument("LoraTrainer: grad_clip must be positive");
        if (trained.merged() || trained.strength() != 1)
            throw std::invalid_argument("LoraTrainer: train adapters unmerged, at strength 1");
        if (model.has_ema()) model.ema.copy_to(model.diffusion_store);
        adapters.write_trigger_rows();
    }

    Adapters& adapters;
    LoraTrainOptions options;
    Base base;  // the data stream and the loss; its own optimizers are never stepped
    Adam<T> adam;

    std::int64_t steps() const { return base.diffusion_steps; }

    /// One step on the next batch.
    Stats step() {
        adapters.zero_grad();
        Stats s;
        s.loss = base.diffusion_gradients().loss;
        adapters.collect_trigger_gradient();
        s.grad_norm = clip();
        s.lr = LrSchedule{options.lr, options.warmup_steps}(base.diffusion_steps);
        adam.lr = s.lr;
        adam.step();
        adapters.write_trigger_rows();
        ++base.diffusion_steps;
        return s;
    }

    /// Steps until steps() reaches `total`, calling on_step (if any) after each (train/progress.hpp).
    void train(std::int64_t total, const TrainCallback& on_step = {}) {
        drive_phase(
            TrainPhase::lora, total, base.data.global_batch(), on_step, [&] { return steps(); },
            [&] { return step(); });
    }

private:
    static LatentDiffusionTrainOptions base_options(const LoraTrainOptions& o) {
        LatentDiffusionTrainOptions b;
        b.seed = o.seed;
        b.lr = o.lr;
        b.caption_dropout = o.caption_dropout;
        return b;
    }

    /// Scales the adapters' gradients to a global L2 norm of at most grad_clip (as clip_grad_norm);
    /// returns the norm before. Summed in double, in order.
    double clip() {
        T* g = adapters.grads();
        double sq = 0;
        for (std::size_t i = 0; i < adapters.size(); ++i) sq += double(g[i]) * double(g[i]);
        const double norm = std::sqrt(sq), scale = options.grad_clip / (norm + 1e-6);
        if (scale < 1)
            for (std::size_t i = 0; i < adapters.size(); ++i) g[i] *= T(scale);
        return norm;
    }
};

}  // namespace diffuse

#endif
