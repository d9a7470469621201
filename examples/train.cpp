// train: a text-to-image model on Fashion-MNIST or on a folder of captioned images (metadata.jsonl or
// metadata.csv), end to end. Learns the tokenizer from the captions, trains the VAE, measures the
// latent scale, then trains the text encoder and UNet together; shows progress, writes sample grids
// (one row per prompt: Fashion-MNIST's class prompts, or captions spread over the data set) and
// checkpoints as it goes, resumes from a checkpoint, and leaves OUT/diffusion.safetensors (VAE + text
// encoder + UNet + EMA weights + tokenizer, preset named in its metadata) for txt2img.
//
//   train --data fashion-mnist                      (the default; preset default)
//   train --data DIR --preset rgb32 --on-error skip (a folder of images + DIR/metadata.jsonl)
//   mpirun -np 4 train ...                          (data parallel, when built with MPI)
//
// The batch size is a compile-time constant (kBatch): every workspace is sized by it. Under mpirun
// each rank trains a replica on its own kBatch images of a global batch of kBatch · ranks, gradients
// averaged over the ranks (dist/mpi.hpp); rank 0 alone logs and writes grids and checkpoints.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "diffuse/data/caption_augment.hpp"
#include "diffuse/data/captions.hpp"
#include "diffuse/data/image_folder.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"
#include "diffuse/train/numerical_fault.hpp"

#include "common/cli.hpp"
#include "common/colour_flag.hpp"
#include "common/grid_flags.hpp"
#include "common/output_paths.hpp"
#include "common/progress_bar.hpp"
#include "common/training_log.hpp"

#ifdef DIFFUSE_WITH_MPI
#include "diffuse/dist/mpi.hpp"
#endif

namespace {

using namespace diffuse;

constexpr int kBatch = 32;       // images per training step (compile-time: sizes every workspace)
constexpr int kGridColumns = 8;  // samples per prompt in a grid
constexpr int kGridRows = 10;    // prompts in a grid (Fashion-MNIST: one per class)

struct Args {
    std::string preset = "default", out_dir = "train_out", resume, data = "fashion-mnist";
    std::string fashion_dir = io::fashion_mnist_dir(), on_error = "stop", background = "ffffff";
    long long vae_steps = 2000, steps = 10000, seed = 1;
    long long sample_every = 1000, checkpoint_every = 500, log_every = 20, warmup = 0;
    int threads = 0, sample_steps = 25;
    double guidance = 3;
    std::string progress = "auto";
    std::string distractor_words = "/usr/share/dict/words";  // Debian's wamerican; "" for none
    data::DistractorOptions distractor;
    LatentDiffusionTrainOptions train;
    cli::GridFlags look;  // the grids' --scale, --captions (on: each row's prompt), --font
};

constexpr bool is_fashion(const std::string& data) { return data == "fashion-mnist"; }

/// The data set the flags name, at the model's size and channels.
template <class Source, int S, int C>
Source load_data(const Args& a) {
    if constexpr (std::is_same_v<Source, data::FashionSource>) {
        std::printf("loading Fashion-MNIST from %s\n", a.fashion_dir.c_str());
        return io::load_fashion_mnist(io::Split::train, a.fashion_dir);
    } else {
        data::ImageFolderOptions o;
        o.resolution = S;
        o.channels = C;
        o.on_error = a.on_error == "skip" ? data::OnError::skip : data::OnError::stop;
        o.background = *cli::parse_rgb_hex(a.background);  // checked with the flags
        std::printf("loading the image folder %s at %dx%dx%d\n", a.data.c_str(), S, S, C);
        data::ImageFolder f(a.data, o);
        std::printf("%d images with captions (%d entries skipped)\n", f.size(), f.skipped());
        return f;
    }
}

template <class Preset, class Source>
class Program {
public:
    using Model = LatentDiffusion<float, Preset>;
    using Trainer = LatentDiffusionTrainer<float, Preset, kBatch, Source>;
    static constexpr int S = Model::image_size, C = Model::image_channels;
    static constexpr bool fashion = std::is_same_v<Source, data::FashionSource>;

    /// With `parallel`, this process is one rank of a data-parallel run (rank 0 writes the files).
    Program(const Args& a, DataParallel<float>* parallel)
        : args_(a), parallel_(parallel), display_(*cli::parse_progress(a.progress, stdout), a.log_every) {}

    int run() {
        namespace fs = std::filesystem;
        if (leader()) fs::create_directories(args_.out_dir);
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
            const auto& meta = f.metadata();  // another global batch is allowed: say so
            const long saved_global =
                std::stol(io::metadata_at(f, "batch")) * (meta.contains("ranks") ? std::stol(meta.at("ranks")) : 1L);
            if (saved_global != long(kBatch) * ranks())
                std::printf("the checkpoint was trained with a global batch of %ld; this run's is %d\n", saved_global,
                            kBatch * ranks());
        }
        model_ = std::make_unique<Model>(opt.seed);
        trainer_ = std::make_unique<Trainer>(*model_, load_data<Source, S, C>(args_), opt, parallel_);
        Trainer& tr = *trainer_;
        grid_prompts_ = grid_prompts();
        if constexpr (fashion) model_->image_border = data::kPadding;  // 28x28 images padded to 32x32
        if (!args_.resume.empty()) {                                   // restores the tokenizer too
            load_checkpoint(args_.resume, tr);
            last_checkpoint_ = describe_checkpoint(args_.resume);
            std::printf("resumed from %s: VAE step %lld, diffusion step %lld, epoch %lld\n", args_.resume.c_str(),
                        (long long)tr.vae_steps, (long long)tr.diffusion_steps, (long long)tr.data.epoch());
        } else {
            const auto captions = training_captions();
            model_->tokenizer =
                text::Tokenizer::learn(captions, std::size_t(Model::Text::vocab_size - 4));  // 4: the special ids
        }
        tr.synchronize();  // every rank from rank 0's weights, EMA and moments
        if (leader()) {    // OUT/train_log.csv: continued after a resume, without the steps to be redone
            const std::map<std::string, std::int64_t> reached{{"vae", tr.vae_steps}, {"diffusion", tr.diffusion_steps}};
            log_ = std::make_unique<cli::TrainingLog>(args_.out_dir + "/train_log.csv",
                                                      args_.resume.empty() ? nullptr : &reached);
        }
        std::printf("tokenizer: %zu words learned from the captions (room for %d)\n", model_->tokenizer.words().size(),
                    Model::Text::vocab_size - 4);
        if (!args_.distractor_words.empty() && args_.distractor.probability > 0) {
            tr.distractors = data::CaptionAugmenter(
                data::CaptionAugmenter::load_word_list(args_.distractor_words, model_->tokenizer), args_.distractor);
            std::printf("distractors: %zu words from %s in %.0f%% of captions\n", tr.distractors.size(),
                        args_.distractor_words.c_str(), 100 * args_.distractor.probability);
        }
        std::printf("preset %s: VAE %zu parameters, text encoder + UNet %zu; batch %d (compile-time)",
                    latent_diffusion::preset_name<Preset>(), model_->vae_store.count(), model_->diffusion_store.count(),
                    kBatch);
        if (ranks() > 1) std::printf(" on each of %d ranks (global batch %d)", ranks(), tr.data.global_batch());
        std::printf("; %d thread%s%s\n", omp_get_max_threads(), omp_get_max_threads() > 1 ? "s" : "",
                    ranks() > 1 ? " each" : "");
        std::printf("training workspaces: VAE %.1f MB, text encoder %.1f MB, UNet %.1f MB\n",
                    Model::Vae::template workspace_bytes<kBatch> / 1e6,
                    Model::Text::template workspace_bytes<kBatch> / 1e6,
                    Model::Denoiser::template workspace_bytes<kBatch> / 1e6);
        std::fflush(stdout);

        try {
            vae_phase();
            if (!tr.scale_measured) {
                const double s = tr.measure_latent_scale();
                std::printf("latent scale %.5f (1 / std of the VAE latents over %d batches)\n", s, opt.scale_batches);
                checkpoint();
            }
            diffusion_phase();
        } catch (const NumericalFault& e) {  // nothing was updated or saved for the bad step
            display_.finish();
            throw NumericalFault(e.what() + std::string("; ") + checkpoint_kept());
        }
        checkpoint();
        if (!leader()) return 0;
        const std::string weights = args_.out_dir + "/diffusion.safetensors";
        model_->save(weights);
        write_samples(args_.out_dir + "/samples_final.png");
        std::printf("saved %s (VAE + text encoder + UNet%s)\n", weights.c_str(), model_->has_ema() ? " + EMA" : "");
        return 0;
    }

private:
    bool leader() const { return !parallel_ || parallel_->rank() == 0; }
    int ranks() const { return parallel_ ? parallel_->ranks() : 1; }
    /// One step's report: the display, at logged steps a row of the CSV log, and every
    /// --checkpoint-every steps before the phase's last a checkpoint.
    void report(const TrainProgress& p) {
        if (const auto logged = display_.step(p); logged && log_) log_->append(*logged);
        if (args_.checkpoint_every > 0 && p.step % args_.checkpoint_every == 0 && p.step < p.total) checkpoint();
    }
    /// OUT/loss.png from the log (at the end of each phase and with each sample grid).
    void plot_losses() {
        if (log_) log_->plot(args_.out_dir + "/loss.png");
    }

    /// Every caption the data set can give an image (what the tokenizer learns from).
    std::vector<std::string> training_captions() const {
        std::vector<std::string> out;
        if constexpr (fashion) {
            out = data::all_fashion_captions();
        } else {
            const auto& src = trainer_->data.source();
            for (int i = 0; i < src.size(); ++i)
                for (const auto& t : src.texts(i)) out.push_back(t);
        }
        return out;
    }

    /// The rows of a sample grid: Fashion-MNIST's class prompts, or the first caption of images spread
    /// evenly over the data set.
    std::vector<std::string> grid_prompts() const {
        std::vector<std::string> out;
        if constexpr (fashion) {
            for (int c = 0; c < kGridRows; ++c)
                out.push_back(data::format_caption("a photo of {a}", data::class_names(c).names[0]));
        } else {
            const auto& src = trainer_->data.source();
            const int rows = std::min(kGridRows, src.size());
            for (int r = 0; r < rows; ++r) out.push_back(src.texts(int(std::int64_t(r) * src.size() / rows)).front());
        }
        return out;
    }

    void vae_phase() {
        Trainer& tr = *trainer_;
        const long long total = args_.vae_steps;
        if (tr.vae_steps >= total) return;
        tr.train_vae(total, [&](const TrainProgress& p) { report(p); });
        display_.finish();
        plot_losses();
        if (leader()) write_reconstructions(args_.out_dir + "/vae_reconstructions.png");
        tr.scale_measured = false;  // the VAE changed: measure (and checkpoint) again
    }

    void diffusion_phase() {
        Trainer& tr = *trainer_;
        const long long total = args_.steps;
        tr.train_diffusion(total, [&](const TrainProgress& p) {
            report(p);
            if (leader() && args_.sample_every > 0 && p.step % args_.sample_every == 0 && p.step < total) {
                char name[64];
                std::snprintf(name, sizeof name, "/samples_%07lld.png", (long long)p.step);
                write_samples(args_.out_dir + name);
            }
        });
        display_.finish();
        plot_losses();
    }

    /// "PATH (VAE step a, diffusion step b)" for the checkpoint of the trainer's current state.
    std::string describe_checkpoint(const std::string& path) const {
        return path + " (VAE step " + std::to_string(trainer_->vae_steps) + ", diffusion step " +
               std::to_string(trainer_->diffusion_steps) + ")";
    }
    /// What an error message says about the last good checkpoint.
    std::string checkpoint_kept() const {
        return last_checkpoint_.empty() ? "no checkpoint had been written yet"
                                        : "the last good checkpoint " + last_checkpoint_ + " is intact";
    }

    void checkpoint() {
        if (!leader()) return;
        const std::string path = args_.out_dir + "/checkpoint.safetensors";
        try {  // written to a temporary file, flushed, then renamed over the old one (io/atomic_file.hpp)
            save_checkpoint(path, *trainer_);
        } catch (const std::exception& e) {
            throw std::runtime_error(e.what() + std::string("; ") + checkpoint_kept());
        }
        last_checkpoint_ = describe_checkpoint(path);
        display_.clear();
        std::printf("checkpoint %s (VAE step %lld, diffusion step %lld)\n", path.c_str(),
                    (long long)trainer_->vae_steps, (long long)trainer_->diffusion_steps);
        std::fflush(stdout);
    }

    /// One row per grid prompt, kGridColumns samples each; the same seed every time, so grids from
    /// different steps compare.
    void write_samples(const std::string& path) {
        if (!sample_ws_) sample_ws_ = make<typename Model::template SampleWorkspace<kGridColumns>>();
        const int rows = int(grid_prompts_.size());
        constexpr std::size_t image = std::size_t(S) * S * C;
        std::vector<float> grid(std::size_t(rows) * kGridColumns * image);
        typename Model::SampleOptions so;
        so.sampler.method = diffusion::Method::ddim;
        so.sampler.steps = args_.sample_steps;
        so.sampler.guidance = args_.guidance;
        so.seed = std::uint64_t(args_.seed);
        const auto start = std::chrono::steady_clock::now();
        for (int r = 0; r < rows; ++r) {
            std::array<std::string, kGridColumns> prompts;
            prompts.fill(grid_prompts_[std::size_t(r)]);
            View<float, kGridColumns, S, S, C> out(grid.data() + std::size_t(r) * kGridColumns * image);
            model_->generate(prompts, "", so, out, *sample_ws_);
        }
        cli::write_grid(path, grid.data(), rows * kGridColumns, S, S, C, rows, kGridColumns, grid_prompts_, args_.look);
        display_.clear();
        std::printf("samples %s (DDIM %d steps, guidance %.1f, %s weights, %.1f s)\n", path.c_str(), so.sampler.steps,
                    so.sampler.guidance, model_->has_ema() ? "EMA" : "raw",
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        std::fflush(stdout);
        plot_losses();
    }

    /// Two rows: images (Fashion-MNIST's test images, or the data set's first), and what the VAE makes of them.
    void write_reconstructions(const std::string& path) {
        constexpr int DS = Trainer::DS;
        auto full = make<Tensor<float, kGridColumns, DS, DS, C>>();
        if constexpr (fashion) {
            data::CaptionedBatches<float, kGridColumns> batches(
                io::load_fashion_mnist(io::Split::test, args_.fashion_dir), 0);
            std::array<std::string, kGridColumns> captions;
            batches.next(full->view(), captions);
        } else {
            const auto& src = trainer_->data.source();
            for (int i = 0; i < kGridColumns; ++i) src.image(i % src.size(), full->item(i).data());
        }
        constexpr std::size_t image = std::size_t(S) * S * C;
        std::vector<float> grid(std::size_t(2) * kGridColumns * image);
        View<float, kGridColumns, S, S, C> x(grid.data()), y(grid.data() + std::size_t(kGridColumns) * image);
        if constexpr (S == DS) std::copy(full->begin(), full->end(), x.begin());
        else box_downsample<float, kGridColumns, S, C, DS>(cview(*full), x);
        model_->reconstruct(x, y);
        double mse = 0;
        for (std::size_t i = 0; i < x.size; ++i) mse += double(x[i] - y[i]) * double(x[i] - y[i]);
        cli::write_grid(path, grid.data(), 2 * kGridColumns, S, S, C, 2, kGridColumns, {"input", "reconstruction"},
                        args_.look);
        std::printf("VAE reconstructions %s (images above, reconstructions below; MSE %.5f)\n", path.c_str(),
                    mse / double(x.size));
    }

    Args args_;
    DataParallel<float>* parallel_;
    std::vector<std::string> grid_prompts_;
    std::string last_checkpoint_;  // the last checkpoint written or resumed from (describe_checkpoint)
    std::unique_ptr<Model> model_;
    std::unique_ptr<Trainer> trainer_;
    std::unique_ptr<typename Model::template SampleWorkspace<kGridColumns>> sample_ws_;
    cli::TrainDisplay display_;              // progress: a bar on a terminal, lines in a log (--progress)
    std::unique_ptr<cli::TrainingLog> log_;  // OUT/train_log.csv and loss.png; rank 0 only
};

}  // namespace

int main(int argc, char** argv) {
    Args a;
    auto& t = a.train;
    a.warmup = t.warmup_steps;
    cli::Parser cli("train",
                    "train a text-to-image model (VAE, then text encoder + UNet) on Fashion-MNIST or on a\n"
                    "folder of captioned images; batch " +
                        std::to_string(kBatch) + " is fixed at compile time (kBatch in examples/train.cpp)");
    cli.option("--data", a.data, "fashion-mnist, or a folder of images with metadata.jsonl (or metadata.csv)")
        .option("--preset", a.preset,
                "model: default (32x32 gray), rgb32 (32x32 colour), rgb64 (64x64 colour), tiny (8x8 gray, smoke runs)")
        .option("--on-error", a.on_error, "a missing or corrupt image or caption in the folder: stop or skip")
        .option("--background", a.background, "RRGGBB colour that transparent pixels are composited over")
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
        .option("--log-every", a.log_every, "print progress (and a row of OUT/train_log.csv) every N steps")
        .option("--progress", a.progress, cli::kProgressHelp)
        .option("--threads", a.threads, "OpenMP threads (0: OpenMP's default)")
        .option("--distractor-words", a.distractor_words,
                "word list of distractors inserted into captions, so unknown words are ignored (\"\": none)")
        .option("--distractor-prob", a.distractor.probability, "share of captions that get distractor words")
        .option("--fashion-dir", a.fashion_dir, "directory of the Fashion-MNIST IDX files");
    cli::add_grid_options(cli, a.look, "on: each row's prompt");
    cli.parse(argc, argv);
    cli::settle_captions(a.look, true);
    if (const std::string p = cli::grid_problem(a.look, true); !p.empty()) cli.fail(p);
    if (a.preset != "default" && a.preset != "tiny" && a.preset != "rgb32" && a.preset != "rgb64")
        cli.fail("--preset must be default, rgb32, rgb64 or tiny, not '" + a.preset + "'");
    if (is_fashion(a.data) && a.preset.starts_with("rgb"))
        cli.fail("--preset " + a.preset + " needs colour images: Fashion-MNIST is grayscale (use --data DIR)");
    if (!is_fashion(a.data) && !std::filesystem::is_directory(a.data))
        cli.fail("--data must be fashion-mnist or a folder, and '" + a.data + "' is neither");
    if (a.on_error != "stop" && a.on_error != "skip")
        cli.fail("--on-error must be stop or skip, not '" + a.on_error + "'");
    if (!cli::parse_rgb_hex(a.background))
        cli.fail("--background must be six hex digits (RRGGBB), not '" + a.background + "'");
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
    if (const std::string p = cli::progress_problem(a.progress); !p.empty()) cli.fail(p);
    if (a.sample_steps < 1 || a.sample_steps > 1000) cli.fail("--sample-steps must be in [1, 1000]");
    if (!(a.guidance >= 0)) cli.fail("--guidance must not be negative");
    if (a.threads < 0) cli.fail("--threads must not be negative");
    if (!(a.distractor.probability >= 0 && a.distractor.probability <= 1))
        cli.fail("--distractor-prob must be in [0, 1]");
    if (a.out_dir.empty()) cli.fail("--out-dir must not be empty");
    if (const std::string p = cli::unwritable_directory(a.out_dir); !p.empty()) cli.fail("--out-dir: " + p);
    if (!a.resume.empty() && !std::ifstream(a.resume, std::ios::binary))
        cli.fail("--resume " + a.resume + ": cannot be read");
    if (a.threads > 0) omp_set_num_threads(a.threads);
    // A file size limit (ulimit -f) makes a write fail with EFBIG, reported like a full disk, instead
    // of killing the program by SIGXFSZ halfway through a save.
    std::signal(SIGXFSZ, SIG_IGN);

    // Flags are checked first, on every rank; MPI starts only under mpirun (a plain run needs none).
    DataParallel<float>* parallel = nullptr;
#ifdef DIFFUSE_WITH_MPI
    std::unique_ptr<dist::Mpi> mpi;
    std::unique_ptr<dist::MpiDataParallel<float>> mpi_parallel;
    if (dist::launched_by_mpirun()) {
        mpi = std::make_unique<dist::Mpi>(argc, argv);
        if (mpi->size() > 1) {
            mpi_parallel = std::make_unique<dist::MpiDataParallel<float>>();
            parallel = mpi_parallel.get();
            std::fprintf(stderr, "rank %d of %d: pid %ld, OpenMP threads %d\n", mpi->rank(), mpi->size(),
                         (long)getpid(), omp_get_max_threads());
            if (mpi->rank() != 0 && !std::freopen("/dev/null", "w", stdout))  // rank 0 alone logs
                mpi->abort("cannot silence stdout");
        }
    }
#endif

    try {
        if (is_fashion(a.data)) {
            if (a.preset == "tiny") return Program<presets::Tiny, data::FashionSource>(a, parallel).run();
            return Program<presets::Default, data::FashionSource>(a, parallel).run();
        }
        if (a.preset == "tiny") return Program<presets::Tiny, data::ImageFolder>(a, parallel).run();
        if (a.preset == "rgb32") return Program<presets::Rgb32, data::ImageFolder>(a, parallel).run();
        if (a.preset == "rgb64") return Program<presets::Rgb64, data::ImageFolder>(a, parallel).run();
        return Program<presets::Default, data::ImageFolder>(a, parallel).run();
    } catch (const std::exception& e) {
#ifdef DIFFUSE_WITH_MPI
        if (parallel) mpi->abort(std::string("train: ") + e.what());  // the other ranks must not wait
#endif
        std::fprintf(stderr, "train: %s\n", e.what());
        return 1;
    }
}
