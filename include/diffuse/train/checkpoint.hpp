// Training checkpoints of a LatentDiffusion run: one safetensors file, written atomically, holding
// the model's weights file (models/latent_diffusion.hpp: vae.*, text_encoder.*, unet.*, ema.*,
// latent_scale; so txt2img loads a checkpoint as it is) and everything else a run needs to resume
// bit for bit:
//   optim.vae.m.<name>, optim.vae.v.<name>               Adam moments of the VAE, per parameter
//   optim.diffusion.m.<name>, optim.diffusion.v.<name>   Adam moments of text encoder + UNet
//   ema.<name>                                          EMA shadow (always, even before its first update)
//   trainer.counters   I64 [7]: vae steps, diffusion steps, VAE Adam t, diffusion Adam t, EMA updates,
//                      data epoch, data position (images of the epoch's order taken, by all ranks)
//   trainer.flags      U8 [1]: latent scale measured
//   __metadata__: the weights' (format, config, ...), plus kind = "checkpoint", batch (per rank),
//                 ranks, data_position = "images", seed and the training options (for the record).
// The trainer's random draws are stateless streams (no generator state to save), and the data
// position counts images, so a run resumes with any number of data-parallel ranks. Checkpoints
// from before (data position in batches, a trainer.rng.* generator) still load.
// Loading checks the preset and every tensor's name and shape, naming the tensor that does not fit.
// The batch may differ (another per-rank batch or number of ranks): the data position counts images
// and nothing else in the state depends on the batch, so the run goes on with the new global batch.
#ifndef DIFFUSE_TRAIN_CHECKPOINT_HPP
#define DIFFUSE_TRAIN_CHECKPOINT_HPP

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>

#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

namespace diffuse {

namespace checkpoint_detail {
enum Counter {
    vae_steps,
    diffusion_steps,
    vae_adam_t,
    diffusion_adam_t,
    ema_updates,
    data_epoch,
    data_position,
    count
};
}

/// Writes model + trainer state to path (atomically: an interrupted save keeps the old file).
template <class T, class Preset, int N, class Source, int Parts>
void save_checkpoint(const std::string& path, const LatentDiffusionTrainer<T, Preset, N, Source, Parts>& tr) {
    namespace cd = checkpoint_detail;
    const auto& m = tr.model;
    io::SafetensorsWriter w;
    m.add_weights(w, /*with_ema=*/true);
    io::add_store_buffer(w, m.vae_store, tr.vae_adam.m(), "optim.vae.m.");
    io::add_store_buffer(w, m.vae_store, tr.vae_adam.v(), "optim.vae.v.");
    io::add_store_buffer(w, m.diffusion_store, tr.diffusion_adam.m(), "optim.diffusion.m.");
    io::add_store_buffer(w, m.diffusion_store, tr.diffusion_adam.v(), "optim.diffusion.v.");

    std::array<std::int64_t, cd::count> counters{};
    counters[cd::vae_steps] = tr.vae_steps;
    counters[cd::diffusion_steps] = tr.diffusion_steps;
    counters[cd::vae_adam_t] = tr.vae_adam.step_count();
    counters[cd::diffusion_adam_t] = tr.diffusion_adam.step_count();
    counters[cd::ema_updates] = m.ema.update_count();
    counters[cd::data_epoch] = tr.data.epoch();
    counters[cd::data_position] = tr.data.offset();
    w.add("trainer.counters", {cd::count}, counters.data());
    const std::uint8_t flags = tr.scale_measured ? 1 : 0;
    w.add("trainer.flags", {1}, &flags);

    w.set_metadata("kind", "checkpoint");
    w.set_metadata("batch", std::to_string(N));
    w.set_metadata("ranks", std::to_string(tr.data.shard().ranks));
    w.set_metadata("data_position", "images");
    w.set_metadata("seed", std::to_string(tr.options.seed));
    const auto& o = tr.options;  // for the record (a resumed run takes its options from its caller)
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "vae_lr=%g vae_warmup_steps=%lld kl_weight=%g vae_grad_clip=%g scale_batches=%d lr=%g "
                  "warmup_steps=%lld grad_clip=%g ema_decay=%g caption_dropout=%g min_snr_gamma=%g",
                  o.vae_lr, (long long)o.vae_warmup_steps, o.kl_weight, o.vae_grad_clip, o.scale_batches, o.lr,
                  (long long)o.warmup_steps, o.grad_clip, o.ema_decay, o.caption_dropout, o.min_snr_gamma);
    w.set_metadata("options", buf);
    w.save(path);
}

/// Restores model + trainer from a checkpoint written by save_checkpoint for the same preset. The trainer must have been built with the same data and options (seed) as the saved run.
template <class T, class Preset, int N, class Source, int Parts>
void load_checkpoint(const std::string& path, LatentDiffusionTrainer<T, Preset, N, Source, Parts>& tr) {
    namespace cd = checkpoint_detail;
    const io::SafetensorsFile f(path);
    auto& m = tr.model;
    LatentDiffusion<T, Preset>::check_config(f);
    if (io::metadata_at(f, "kind") != "checkpoint") f.fail("holds weights only, not a training checkpoint");
    const auto check = [&](const char* name, io::DType dtype, std::int64_t n) {
        const io::TensorEntry& t = f.at(name);
        if (t.dtype != dtype || t.shape != std::vector<std::int64_t>{n})
            f.fail(std::string("tensor '") + name + "' is " + io::dtype_name(t.dtype) + " " +
                   io::shape_string(t.shape) + ", expected " + io::dtype_name(dtype) + " [" + std::to_string(n) + "]");
    };
    check("trainer.counters", io::DType::I64, cd::count);
    check("trainer.flags", io::DType::U8, 1);

    m.read_weights(f);  // checks the format and preset first
    io::read_store_buffer(f, m.diffusion_store, m.ema.values(), "ema.");
    io::read_store_buffer(f, m.vae_store, tr.vae_adam.m(), "optim.vae.m.");
    io::read_store_buffer(f, m.vae_store, tr.vae_adam.v(), "optim.vae.v.");
    io::read_store_buffer(f, m.diffusion_store, tr.diffusion_adam.m(), "optim.diffusion.m.");
    io::read_store_buffer(f, m.diffusion_store, tr.diffusion_adam.v(), "optim.diffusion.v.");

    std::array<std::int64_t, cd::count> c{};
    f.read("trainer.counters", c.data(), c.size());
    std::uint8_t flags = 0;
    f.read("trainer.flags", &flags, 1);

    // Older checkpoints (one process) count the data position in batches of N.
    const auto& meta = f.metadata();
    const bool in_images = meta.contains("data_position") && meta.at("data_position") == "images";
    const std::int64_t offset = in_images ? c[cd::data_position] : c[cd::data_position] * N;
    if (offset < 0 || offset > tr.data.size() || c[cd::data_epoch] < 0)
        f.fail("data position (epoch " + std::to_string(c[cd::data_epoch]) + ", image " + std::to_string(offset) +
               ") does not fit this data set of " + std::to_string(tr.data.size()) + " images");
    tr.vae_steps = c[cd::vae_steps];
    tr.diffusion_steps = c[cd::diffusion_steps];
    tr.vae_adam.set_step_count(c[cd::vae_adam_t]);
    tr.diffusion_adam.set_step_count(c[cd::diffusion_adam_t]);
    m.ema.set_update_count(c[cd::ema_updates]);
    tr.data.seek_offset(c[cd::data_epoch], int(offset));
    tr.scale_measured = flags != 0;
}

}  // namespace diffuse

#endif
