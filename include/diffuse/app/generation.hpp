// What txt2img and evaluate share about a generation request: the sampler names on the command
// line, the checks on the flags, the output file names, and how a run-time count of images is
// split into the compile-time batch the model's workspace was built for.
#ifndef DIFFUSE_APP_GENERATION_HPP
#define DIFFUSE_APP_GENERATION_HPP

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/app/output_paths.hpp"
#include "diffuse/sample/samplers.hpp"

namespace diffuse::app {

/// Command-line names of the samplers.
inline constexpr std::string_view kSamplerNames = "ddpm, ddim, euler, euler_a";

inline std::optional<diffusion::Method> parse_sampler(std::string_view name) {
    if (name == "ddpm") return diffusion::Method::ddpm;
    if (name == "ddim") return diffusion::Method::ddim;
    if (name == "euler") return diffusion::Method::euler;
    if (name == "euler_a") return diffusion::Method::euler_ancestral;
    return std::nullopt;
}

/// The flags of a generation run, as typed.
struct GenerationFlags {
    std::string prompt, negative;
    int n = 16;
    int steps = 50;
    std::string sampler = "ddim";
    double guidance = 3.0;
    long long seed = 0;
    int threads = 0;  // OpenMP threads; 0 = OpenMP's default
    std::string weights, out_dir, grid;
};

/// The first problem with the flags, or "" when they are fine. `need_output`: exactly one of
/// --out-dir / --grid must be given (txt2img); evaluate writes its table and has only --grid.
inline std::string validate(const GenerationFlags& f, bool need_output = true) {
    if (need_output && f.prompt.empty()) return "--prompt is required";
    if (f.n < 1) return "--n must be at least 1, not " + std::to_string(f.n);
    if (f.steps < 1) return "--steps must be at least 1, not " + std::to_string(f.steps);
    if (!parse_sampler(f.sampler)) return "--sampler '" + f.sampler + "' is not one of " + std::string(kSamplerNames);
    if (!(f.guidance >= 0)) return "--guidance must not be negative (1 = no guidance, 0 = unconditional)";
    if (f.seed < 0) return "--seed must not be negative";
    if (f.threads < 0) return "--threads must not be negative (0: OpenMP's default)";
    if (need_output) {
        if (!f.out_dir.empty() && !f.grid.empty()) return "give either --out-dir or --grid, not both";
        if (f.out_dir.empty() && f.grid.empty()) return "give --out-dir DIR (one PNG per sample) or --grid FILE.png";
    }
    return {};
}

/// A run of `count` images starting at image `begin`, generated as one batch of the workspace size.
struct Chunk {
    int index, begin, count;
};

/// n images in batches of `batch`: full batches, then the remainder (the last chunk is padded up to
/// `batch` by the caller and its extra images dropped).
inline std::vector<Chunk> plan_chunks(int n, int batch) {
    if (n < 0 || batch < 1) throw std::invalid_argument("plan_chunks: bad sizes");
    std::vector<Chunk> out;
    for (int b = 0, i = 0; b < n; b += batch, ++i) out.push_back({i, b, std::min(batch, n - b)});
    return out;
}

/// The sampler seed of chunk i: chunk 0 uses the seed itself (one chunk gives what a direct call of
/// the model's generate gives), later chunks an independent stream, so chunks never repeat noise.
inline std::uint64_t chunk_seed(std::uint64_t seed, int chunk) {
    return chunk == 0 ? seed : stream_seed(seed, 0x7478'7432'696d'67ULL, std::uint64_t(chunk));
}

/// n images for one prompt from a model whose sampling workspace is built for batches of K
/// (LatentDiffusion or anything with its generate/SampleWorkspace interface): chunk i is sampled
/// with chunk_seed(opt.seed, i); the remainder chunk is generated as a full batch of K and its extra
/// images dropped. Writes [n, S, S, C] to out; calls progress(chunk, chunk_count) after each chunk.
/// Returns whether the prompt or the negative prompt was truncated to the context length.
template <int K, class Model, class Options, class T, class Progress>
bool generate_in_chunks(Model& model, const std::string& prompt, std::string_view negative, const Options& opt, int n,
                        T* out, Progress progress) {
    static_assert(K >= 1, "generate_in_chunks: the batch must hold at least one image");
    constexpr std::size_t image = std::size_t(Model::image_size) * Model::image_size * Model::image_channels;
    auto ws = make<typename Model::template SampleWorkspace<K>>();
    auto images = make<Tensor<T, K, Model::image_size, Model::image_size, Model::image_channels>>();
    std::array<std::string, K> prompts;
    prompts.fill(prompt);
    const auto chunks = plan_chunks(n, K);
    bool truncated = false;
    for (const Chunk& c : chunks) {
        Options o = opt;
        o.seed = chunk_seed(opt.seed, c.index);
        truncated |= model.generate(prompts, negative, o, images->view(), *ws) > 0;
        std::copy(images->data(), images->data() + std::size_t(c.count) * image, out + std::size_t(c.begin) * image);
        progress(c.index, int(chunks.size()));
    }
    return truncated;
}

}  // namespace diffuse::app

#endif
