// Prompt-following of a text-to-image model trained on a captioned data set (an image folder), told
// by nearest neighbours: for `names` entries spread evenly over the data set, `per_name` images are
// generated from each entry's first caption, and every training image is ranked by its distance to
// each generated image. A hit at k: the entry the prompt names is among the k nearest (when several
// entries share that exact first caption, any of them counts). Chance is k / size. Beside it, the
// VAE's reconstruction PSNR over the whole data set (the ceiling on how faithful a generated image
// can be), and the time each part took.
//
// Feature spaces (FeatureSpace):
//   pixels  the images box-averaged to 16×16 (kPixelSide; smaller images, or sides 16 does not
//           divide, are used whole), channels kept: the default. It does not depend on the model
//           being judged, so two models (or two checkpoints with different VAEs) are measured with
//           one ruler, and a VAE that squeezes every image into a few latents cannot flatter or
//           spoil the score. 16×16 keeps an emoji's shape and colours and drops the pixel-level
//           detail in which a sample and its training image differ.
//   latent  the model's own encoder: posterior mean · latent scale of each image (generated images
//           are encoded again after decoding, exactly as the training images are). The space the
//           model generates in; more tolerant of small shifts and noise, but it measures the model
//           with a ruler of its own making.
//
// measure_prompt_following is what the prompt_following program runs; data is any source with
// size(), height(), width(), channels(), texts(i) and image(i, float*) (data::ImageFolder).
#ifndef DIFFUSE_APP_PROMPT_FOLLOWING_HPP
#define DIFFUSE_APP_PROMPT_FOLLOWING_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/generation.hpp"
#include "diffuse/app/nearest.hpp"
#include "diffuse/app/reconstruction.hpp"
#include "diffuse/core/rng.hpp"

namespace diffuse::app {

enum class FeatureSpace { pixels, latent };

inline const char* feature_space_name(FeatureSpace s) { return s == FeatureSpace::pixels ? "pixels" : "latent"; }

inline constexpr int kPixelSide = 16;

/// The side of the pixel features of an s × s image: kPixelSide when it divides s, else s itself.
inline int pixel_feature_side(int s) { return s > kPixelSide && s % kPixelSide == 0 ? kPixelSide : s; }

/// An image [s, s, c] box-averaged to [side, side, c]; side must divide s.
template <class T, class U>
void box_downsample(const T* src, int s, int c, int side, U* dst) {
    if (s < 1 || c < 1 || side < 1 || s % side != 0)
        throw std::invalid_argument("box_downsample: " + std::to_string(side) + " does not divide the side " +
                                    std::to_string(s));
    const int f = s / side;
    for (int y = 0; y < side; ++y)
        for (int x = 0; x < side; ++x)
            for (int k = 0; k < c; ++k) {
                double sum = 0;
                for (int dy = 0; dy < f; ++dy)
                    for (int dx = 0; dx < f; ++dx)
                        sum += double(src[(std::size_t(y * f + dy) * s + std::size_t(x * f + dx)) * c + k]);
                dst[(std::size_t(y) * side + x) * c + k] = U(sum / double(f * f));
            }
}

/// `count` indices spread evenly over 0..size-1, each in the middle of its share:
/// floor((2i + 1) · size / (2 · count)); distinct and increasing; 1 <= count <= size.
inline std::vector<int> spread_indices(int size, int count) {
    if (count < 1 || count > size)
        throw std::invalid_argument("spread_indices: cannot pick " + std::to_string(count) + " of " +
                                    std::to_string(size) + " entries");
    std::vector<int> out(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i)
        out[std::size_t(i)] = int((2 * std::int64_t(i) + 1) * size / (2 * std::int64_t(count)));
    return out;
}

struct PromptFollowingOptions {
    int names = 200;   // entries prompted, spread over the data set
    int per_name = 4;  // images generated per entry
    int top_k = 5;     // the wider hit (top-1 is always counted)
    FeatureSpace space = FeatureSpace::pixels;
};

/// One prompted entry: its prompt, the entries that count as right, and per generated image the
/// best rank of those (0: nearest) and the top_k nearest entries.
struct NameResult {
    int entry = 0;
    std::string prompt;
    std::vector<int> targets;  // entries whose first caption is the prompt (entry among them)
    std::vector<int> ranks;
    std::vector<std::vector<int>> nearest;
};

struct PromptFollowingResult {
    int data_size = 0, per_name = 0, top_k = 0, image_size = 0, image_channels = 0;
    FeatureSpace space = FeatureSpace::pixels;
    std::size_t feature_dim = 0;
    std::vector<NameResult> names;
    std::vector<float> images;  // the generated images [names · per_name, S, S, C], name by name
    int shared_names = 0;       // prompted entries whose first caption other entries share
    int truncated_prompts = 0;  // prompts cut to the text encoder's context
    double vae_psnr = 0;        // dB, mean over the data set's images (capped at 100 dB each)
    double seconds_features = 0, seconds_generation = 0, seconds_ranking = 0, seconds_reconstruction = 0;

    int images_ranked() const { return int(names.size()) * per_name; }
    /// Generated images whose named entry is among the k nearest (rank < k).
    int hits(int k) const {
        int h = 0;
        for (const NameResult& n : names)
            for (int r : n.ranks) h += r < k ? 1 : 0;
        return h;
    }
    double rate(int k) const { return images_ranked() ? double(hits(k)) / images_ranked() : 0.0; }
    double chance(int k) const { return data_size ? double(k) / data_size : 0.0; }
};

namespace detail {
inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Features [n, dim] of images [n, S, S, C] in the chosen space.
template <int CodecBatch, class Model>
std::vector<float> features(const Model& model, FeatureSpace space, const float* images, int n, std::size_t& dim) {
    constexpr int S = Model::image_size, C = Model::image_channels;
    constexpr std::size_t image = std::size_t(S) * S * C;
    std::vector<float> out;
    if (space == FeatureSpace::latent) {
        dim = Model::latent_elements;
        out.resize(std::size_t(n) * dim);
        encode_in_chunks<CodecBatch>(model, images, n, out.data());
    } else {
        const int side = pixel_feature_side(S);
        dim = std::size_t(side) * side * C;
        out.resize(std::size_t(n) * dim);
        for (int i = 0; i < n; ++i)
            box_downsample(images + std::size_t(i) * image, S, C, side, out.data() + std::size_t(i) * dim);
    }
    return out;
}
}  // namespace detail

/// The measurement described at the top of this file. `sample` sets the sampler (steps, guidance,
/// method) and the base seed; entry i of the picks is sampled with the seed
/// stream_seed(sample.seed, "prompt", i), so every name draws its own noise and a run is repeatable.
/// Images are generated SampleBatch at a time and encoded CodecBatch at a time. progress(done, total)
/// is called after each name. Throws std::invalid_argument when the data set's images are not the
/// model's size and channels, or the counts are out of range (names in 1..size, per_name >= 1,
/// top_k in 1..size).
template <int SampleBatch, int CodecBatch, class Model, class Source, class Progress>
PromptFollowingResult measure_prompt_following(Model& model, const Source& data, const PromptFollowingOptions& opt,
                                               const typename Model::SampleOptions& sample, Progress progress) {
    constexpr int S = Model::image_size, C = Model::image_channels;
    constexpr std::size_t image = std::size_t(S) * S * C;
    const int n = data.size();
    if (data.height() != S || data.width() != S || data.channels() != C)
        throw std::invalid_argument("prompt following: the data set's images are " + std::to_string(data.width()) +
                                    "x" + std::to_string(data.height()) + "x" + std::to_string(data.channels()) +
                                    ", the model's " + std::to_string(S) + "x" + std::to_string(S) + "x" +
                                    std::to_string(C));
    if (opt.per_name < 1) throw std::invalid_argument("prompt following: per_name must be at least 1");
    if (opt.top_k < 1 || opt.top_k > n)
        throw std::invalid_argument("prompt following: top_k must be in 1.." + std::to_string(n));
    const std::vector<int> picks = spread_indices(n, opt.names);

    PromptFollowingResult r;
    r.data_size = n;
    r.per_name = opt.per_name;
    r.top_k = opt.top_k;
    r.image_size = S;
    r.image_channels = C;
    r.space = opt.space;

    // The data set's images: features for ranking, and the VAE's reconstruction of each.
    std::vector<float> train(std::size_t(n) * image);
    for (int i = 0; i < n; ++i) data.image(i, train.data() + std::size_t(i) * image);
    auto t = std::chrono::steady_clock::now();
    const std::vector<float> train_features =
        detail::features<CodecBatch>(model, opt.space, train.data(), n, r.feature_dim);
    r.seconds_features = detail::seconds_since(t);
    t = std::chrono::steady_clock::now();
    {
        std::vector<float> rec(train.size());
        reconstruct_in_chunks<CodecBatch>(model, train.data(), n, rec.data());
        r.vae_psnr = mean_psnr(psnr_per_image(train.data(), rec.data(), n, image));
    }
    r.seconds_reconstruction = detail::seconds_since(t);

    std::map<std::string, std::vector<int>> by_caption;  // first caption → entries
    for (int i = 0; i < n; ++i) by_caption[data.texts(i).front()].push_back(i);

    const int per = opt.per_name;
    r.images.resize(picks.size() * std::size_t(per) * image);
    for (std::size_t p = 0; p < picks.size(); ++p) {
        NameResult name;
        name.entry = picks[p];
        name.prompt = data.texts(name.entry).front();
        name.targets = by_caption.at(name.prompt);
        r.shared_names += name.targets.size() > 1 ? 1 : 0;

        float* out = r.images.data() + p * std::size_t(per) * image;
        typename Model::SampleOptions o = sample;
        o.seed = stream_seed(sample.seed, 0x70726f6d7074ULL, std::uint64_t(p));  // "prompt"
        t = std::chrono::steady_clock::now();
        r.truncated_prompts +=
            generate_in_chunks<SampleBatch>(model, name.prompt, "", o, per, out, [](int, int) {}) ? 1 : 0;
        r.seconds_generation += detail::seconds_since(t);

        t = std::chrono::steady_clock::now();
        std::size_t dim = 0;
        const std::vector<float> f = detail::features<CodecBatch>(model, opt.space, out, per, dim);
        for (int j = 0; j < per; ++j) {
            const std::vector<double> d = distances(f.data() + std::size_t(j) * dim, train_features.data(), n, dim);
            name.ranks.push_back(best_rank(d, name.targets));
            name.nearest.push_back(top_k(d, opt.top_k));
        }
        r.seconds_ranking += detail::seconds_since(t);
        r.names.push_back(std::move(name));
        progress(int(p) + 1, int(picks.size()));
    }
    return r;
}

namespace detail {
inline std::string fixed(double v, int digits) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return b;
}
}  // namespace detail

/// The summary as a Markdown table: top-1 and top-k rates beside chance, the VAE's PSNR, timing.
inline std::string markdown_report(const PromptFollowingResult& r) {
    using detail::fixed;
    using std::to_string;
    const int total = r.images_ranked();
    const std::string k = to_string(r.top_k), size = to_string(r.data_size), s = to_string(r.image_size);
    std::string out = "| measure | value |\n|---|---:|\n";
    const auto row = [&out](const std::string& what, const std::string& value) {
        out += "| " + what + " | " + value + " |\n";
    };
    row("names prompted x images each",
        to_string(r.names.size()) + " x " + to_string(r.per_name) + " = " + to_string(total));
    row("data set entries ranked", size);
    row("feature space", std::string(feature_space_name(r.space)) + " (" + to_string(r.feature_dim) + " values)");
    row("**top-1: the named entry is the nearest**", "**" + fixed(r.rate(1), 3) + "** (" + to_string(r.hits(1)) + ")");
    row("**top-" + k + ": the named entry is among the " + k + " nearest**",
        "**" + fixed(r.rate(r.top_k), 3) + "** (" + to_string(r.hits(r.top_k)) + ")");
    row("chance, top-1 (1/" + size + ")", fixed(r.chance(1), 4));
    row("chance, top-" + k + " (" + k + "/" + size + ")", fixed(r.chance(r.top_k), 4));
    row("names whose caption other entries share (a hit on any of them counts)", to_string(r.shared_names));
    row("VAE reconstruction PSNR, mean over all " + size + " images (" + s + "x" + s + "x" +
            to_string(r.image_channels) + ", [-1, 1])",
        fixed(r.vae_psnr, 2) + " dB");
    row("time: generation", fixed(r.seconds_generation, 1) + " s (" +
                                fixed(total ? r.seconds_generation / total : 0.0, 2) + " s per image)");
    row("time: features of the data set, ranking",
        fixed(r.seconds_features, 1) + " s, " + fixed(r.seconds_ranking, 1) + " s");
    row("time: VAE reconstruction of the data set", fixed(r.seconds_reconstruction, 1) + " s");
    if (r.truncated_prompts) row("prompts cut to the context length", to_string(r.truncated_prompts));
    return out;
}

}  // namespace diffuse::app

#endif
