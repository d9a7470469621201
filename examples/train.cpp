// train: the text-to-image model on Fashion-MNIST, end to end. Trains the VAE, measures the latent
// scale, then trains the text encoder and UNet together; shows progress, writes sample grids (one
// row per class prompt) and checkpoints as it goes, resumes from a checkpoint, and leaves
// OUT/diffusion.safetensors (VAE + text encoder + UNet + EMA weights) for txt2img.
//
// The batch size is a compile-time constant (kBatch): every workspace is sized by it.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "diffuse/data/captions.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

namespace {

using namespace diffuse;

constexpr int kBatch = 32;        // images per training step (compile-time: sizes every workspace)
constexpr int kGridColumns = 8;   // samples per class prompt in a grid
constexpr int kClasses = 10;

struct Args {
    std::string preset = "default", out_dir = "train_out", resume, data_dir = io::fashion_mnist_dir();
    long long vae_steps = 2000, steps = 10000, seed = 1;
    long long sample_every = 1000, checkpoint_every = 500, log_every = 20, warmup = 0;
    int threads = 0, sample_steps = 25;
    double guidance = 3;
    LatentDiffusionTrainOptions train;
};

std::string fmt_duration(double s) {
    if (!(s >= 0) || s > 1e8) return "?";
    const long long t = (long long)(s + 0.5);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    return buf;
}

/// Steps/s over the steps of this process (resumed steps do not count).
class Meter {
public:
    explicit Meter(long long first_step) : first_(first_step) {}
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
    double per_step(long long step) const { return step > first_ ? seconds() / double(step - first_) : 0; }

private:
    long long first_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

template <class Preset>
class Program {
public:
    using Model = LatentDiffusion<float, Preset>;
    using Trainer = LatentDiffusionTrainer<float, Preset, kBatch>;
    static constexpr int S = Model::image_size;

    explicit Program(const Args& a) : args_(a) {}

    int run() {
        namespace fs = std::filesystem;
        fs::create_directories(args_.out_dir);
        LatentDiffusionTrainOptions opt = args_.train;
        opt.seed = std::uint64_t(args_.seed);
        if (!args_.resume.empty()) {  // the data order and noise streams follow the checkpoint's seed
            const io::SafetensorsFile f(args_.resume);
            Model::check_config(f);  // before the data is loaded: the preset must match
            const std::string saved = io::metadata_at(f, "seed");
            if (saved != std::to_string(opt.seed))
                std::printf("resuming with the checkpoint's seed %s (not --seed %llu)\n", saved.c_str(),
                            (unsigned long long)opt.seed);
            opt.seed = std::stoull(saved);
        }
        std::printf("loading Fashion-MNIST from %s\n", args_.data_dir.c_str());
        model_ = std::make_unique<Model>(opt.seed);
        trainer_ = std::make_unique<Trainer>(*model_, io::load_fashion_mnist(io::Split::train, args_.data_dir), opt);
        Trainer& tr = *trainer_;
        if (!args_.resume.empty()) {
            load_checkpoint(args_.resume, tr);
            std::printf("resumed from %s: VAE step %lld, diffusion step %lld, epoch %lld\n", args_.resume.c_str(),
                        (long long)tr.vae_steps, (long long)tr.diffusion_steps, (long long)tr.data.epoch());
        }
        std::printf("preset %s: VAE %zu parameters, text encoder + UNet %zu; batch %d (compile-time); %d threads\n",
                    latent_diffusion::preset_name<Preset>(), model_->vae_store.count(), model_->diffusion_store.count(),
                    kBatch, omp_get_max_threads());
        std::printf("training workspaces: VAE %.1f MB, text encoder %.1f MB, UNet %.1f MB\n",
                    Model::Vae::template workspace_bytes<kBatch> / 1e6,
                    Model::Text::template workspace_bytes<kBatch> / 1e6,
                    Model::Denoiser::template workspace_bytes<kBatch> / 1e6);
        std::fflush(stdout);

        vae_phase();
        if (!tr.scale_measured) {
            const double s = tr.measure_latent_scale();
            std::printf("latent scale %.5f (1 / std of the VAE latents over %d batches)\n", s, opt.scale_batches);
            checkpoint();
        }
        diffusion_phase();
        checkpoint();
        const std::string weights = args_.out_dir + "/diffusion.safetensors";
        model_->save(weights);
        write_samples(args_.out_dir + "/samples_final.png");
        std::printf("saved %s (VAE + text encoder + UNet%s)\n", weights.c_str(), model_->has_ema() ? " + EMA" : "");
        return 0;
    }

private:
    void vae_phase() {
        Trainer& tr = *trainer_;
        const long long total = args_.vae_steps;
        if (tr.vae_steps >= total) return;
        Meter meter(tr.vae_steps);
        double loss = 0, rec = 0, kl = 0;
        int n = 0;
        while (tr.vae_steps < total) {
            const auto s = tr.vae_step();
            loss += s.loss, rec += s.reconstruction, kl += s.kl, ++n;
            const long long step = tr.vae_steps;
            if (step % args_.log_every == 0 || step == total) {
                const double per = meter.per_step(step);
                std::printf("vae  %6lld/%lld  loss %.5f (reconstruction %.5f, KL %.3f)  lr %.2e  %.0f img/s  %s left\n",
                            step, total, loss / n, rec / n, kl / n, s.lr, per > 0 ? kBatch / per : 0.0,
                            fmt_duration(per * double(total - step)).c_str());
                std::fflush(stdout);
                loss = rec = kl = 0, n = 0;
            }
            if (args_.checkpoint_every > 0 && step % args_.checkpoint_every == 0 && step < total) checkpoint();
        }
        write_reconstructions(args_.out_dir + "/vae_reconstructions.png");
        tr.scale_measured = false;  // the VAE changed: measure (and checkpoint) again
    }

    void diffusion_phase() {
        Trainer& tr = *trainer_;
        const long long total = args_.steps;
        Meter meter(tr.diffusion_steps);
        double loss = 0, norm = 0;
        int n = 0;
        while (tr.diffusion_steps < total) {
            const auto s = tr.diffusion_step();
            loss += s.loss, norm += s.grad_norm, ++n;
            const long long step = tr.diffusion_steps;
            if (step % args_.log_every == 0 || step == total) {
                const double per = meter.per_step(step);
                std::printf("diff %6lld/%lld  loss %.5f  grad norm %.3f  lr %.2e  %.0f img/s  %s left\n", step, total,
                            loss / n, norm / n, s.lr, per > 0 ? kBatch / per : 0.0,
                            fmt_duration(per * double(total - step)).c_str());
                std::fflush(stdout);
                loss = norm = 0, n = 0;
            }
            if (args_.checkpoint_every > 0 && step % args_.checkpoint_every == 0 && step < total) checkpoint();
            if (args_.sample_every > 0 && step % args_.sample_every == 0 && step < total) {
                char name[64];
                std::snprintf(name, sizeof name, "/samples_%07lld.png", step);
                write_samples(args_.out_dir + name);
            }
        }
    }

    void checkpoint() {
        const std::string path = args_.out_dir + "/checkpoint.safetensors";
        save_checkpoint(path, *trainer_);
        std::printf("checkpoint %s (VAE step %lld, diffusion step %lld)\n", path.c_str(),
                    (long long)trainer_->vae_steps, (long long)trainer_->diffusion_steps);
        std::fflush(stdout);
    }

    /// One row per class ("a photo of {a}" with the class's name), kGridColumns samples each; the
    /// same seed every time, so grids from different steps compare.
    void write_samples(const std::string& path) {
        if (!sample_ws_) sample_ws_ = make<typename Model::template SampleWorkspace<kGridColumns>>();
        std::vector<float> grid(std::size_t(kClasses) * kGridColumns * S * S);
        typename Model::SampleOptions so;
        so.sampler.method = diffusion::Method::ddim;
        so.sampler.steps = args_.sample_steps;
        so.sampler.guidance = args_.guidance;
        so.seed = std::uint64_t(args_.seed);
        const auto start = std::chrono::steady_clock::now();
        for (int c = 0; c < kClasses; ++c) {
            std::array<std::string, kGridColumns> prompts;
            prompts.fill(data::format_caption("a photo of {a}", data::class_names(c).names[0]));
            View<float, kGridColumns, S, S, 1> out(grid.data() + std::size_t(c) * kGridColumns * S * S);
            model_->generate(prompts, "", so, out, *sample_ws_);
        }
        io::write_png_grid(path, grid.data(), kClasses * kGridColumns, S, S, 1, kClasses, kGridColumns);
        std::printf("samples %s (DDIM %d steps, guidance %.1f, %s weights, %.1f s)\n", path.c_str(), so.sampler.steps,
                    so.sampler.guidance, model_->has_ema() ? "EMA" : "raw",
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        std::fflush(stdout);
    }

    /// Two rows: test images, and what the VAE makes of them.
    void write_reconstructions(const std::string& path) {
        const io::FashionMnist test = io::load_fashion_mnist(io::Split::test, args_.data_dir);
        data::CaptionedBatches<float, kGridColumns> batches(test, 0);
        auto full = make<Tensor<float, kGridColumns, 32, 32, 1>>();
        std::array<std::string, kGridColumns> captions;
        batches.next(full->view(), captions);
        std::vector<float> grid(std::size_t(2) * kGridColumns * S * S);
        View<float, kGridColumns, S, S, 1> x(grid.data()), y(grid.data() + std::size_t(kGridColumns) * S * S);
        if constexpr (S == 32) std::copy(full->begin(), full->end(), x.begin());
        else box_downsample<float, kGridColumns, S, 1>(cview(*full), x);
        model_->reconstruct(x, y);
        double mse = 0;
        for (std::size_t i = 0; i < x.size; ++i) mse += double(x[i] - y[i]) * double(x[i] - y[i]);
        io::write_png_grid(path, grid.data(), 2 * kGridColumns, S, S, 1, 2, kGridColumns);
        std::printf("VAE reconstructions %s (test images above, reconstructions below; MSE %.5f)\n", path.c_str(),
                    mse / double(x.size));
    }

    Args args_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Trainer> trainer_;
    std::unique_ptr<typename Model::template SampleWorkspace<kGridColumns>> sample_ws_;
};

}  // namespace

int main(int argc, char** argv) {
    Args a;
    auto& t = a.train;
    a.warmup = t.warmup_steps;
    cli::Parser cli("train", "train the Fashion-MNIST text-to-image model (VAE, then text encoder + UNet); batch " +
                                 std::to_string(kBatch) + " is fixed at compile time (kBatch in examples/train.cpp)");
    cli.option("--preset", a.preset, "model size: default, or tiny (8x8 images, for a quick smoke run)")
        .option("--vae-steps", a.vae_steps, "VAE training steps")
        .option("--steps", a.steps, "diffusion (text encoder + UNet) training steps")
        .option("--lr", t.lr, "diffusion Adam learning rate (after warm-up)")
        .option("--vae-lr", t.vae_lr, "VAE Adam learning rate (after warm-up)")
        .option("--warmup", a.warmup, "diffusion learning-rate warm-up steps")
        .option("--kl-weight", t.kl_weight, "weight of the VAE's KL term (per-element mean)")
        .option("--ema-decay", t.ema_decay, "EMA decay of the diffusion weights (warmed up)")
        .option("--min-snr", t.min_snr_gamma, "Min-SNR-gamma loss weighting (0: off)")
        .option("--seed", a.seed, "seed of initialization, data order, captions and noise")
        .option("--out-dir", a.out_dir, "where checkpoints, sample grids and the final weights go")
        .option("--resume", a.resume, "continue from this checkpoint (OUT/checkpoint.safetensors)")
        .option("--sample-every", a.sample_every, "write a sample grid every N diffusion steps (0: only at the end)")
        .option("--sample-steps", a.sample_steps, "DDIM steps for the sample grids")
        .option("--guidance", a.guidance, "classifier-free guidance scale of the sample grids")
        .option("--checkpoint-every", a.checkpoint_every,
                "write OUT/checkpoint.safetensors every N steps (0: at phase ends)")
        .option("--log-every", a.log_every, "print progress every N steps")
        .option("--threads", a.threads, "OpenMP threads (0: OpenMP's default)")
        .option("--data", a.data_dir, "directory of the Fashion-MNIST IDX files");
    cli.parse(argc, argv);
    if (a.preset != "default" && a.preset != "tiny")
        cli.fail("--preset must be 'default' or 'tiny', not '" + a.preset + "'");
    if (a.vae_steps < 0 || a.steps < 0) cli.fail("--vae-steps and --steps must not be negative");
    if (!(t.lr > 0) || !(t.vae_lr > 0)) cli.fail("--lr and --vae-lr must be positive");
    if (a.warmup < 0) cli.fail("--warmup must not be negative");
    t.warmup_steps = a.warmup;
    if (!(t.kl_weight >= 0)) cli.fail("--kl-weight must not be negative");
    if (!(t.ema_decay >= 0 && t.ema_decay < 1)) cli.fail("--ema-decay must be in [0, 1)");
    if (!(t.min_snr_gamma >= 0)) cli.fail("--min-snr must not be negative");
    if (a.sample_every < 0 || a.checkpoint_every < 0)
        cli.fail("--sample-every and --checkpoint-every must not be negative");
    if (a.log_every < 1) cli.fail("--log-every must be at least 1");
    if (a.sample_steps < 1 || a.sample_steps > 1000) cli.fail("--sample-steps must be in [1, 1000]");
    if (!(a.guidance >= 0)) cli.fail("--guidance must not be negative");
    if (a.threads < 0) cli.fail("--threads must not be negative");
    if (a.out_dir.empty()) cli.fail("--out-dir must not be empty");
    if (a.threads > 0) omp_set_num_threads(a.threads);

    try {
        if (a.preset == "tiny") return Program<presets::Tiny>(a).run();
        return Program<presets::Default>(a).run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "train: %s\n", e.what());
        return 1;
    }
}
