// Generating a run-time number of images with a model whose sampling workspace is built for a
// compile-time batch: the plan of chunks, each chunk's sampler seed, and the chunked generation.
#ifndef DIFFUSE_APP_GENERATION_HPP
#define DIFFUSE_APP_GENERATION_HPP

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::app {

/// A run of `count` images starting at image `begin`, generated as one batch of the workspace size.
struct Chunk {
    int index, begin, count;
};

/// n images in batches of `batch`: full batches, then the remainder (generate_in_chunks draws it
/// one image per call: exactly n images are made).
inline std::vector<Chunk> plan_chunks(int n, int batch) {
    if (n < 0 || batch < 1)
        throw std::invalid_argument("plan_chunks: need n >= 0 images and a batch of at least 1, got n = " +
                                    std::to_string(n) + ", batch = " + std::to_string(batch));
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
/// with chunk_seed(opt.seed, i); a full chunk as one call of K, the remainder chunk (fewer than K)
/// one image per call, image j of it as item j of the chunk (opt.sampler.first_item = j), so
/// exactly n images are made, and they are those a call of K would make (an item's image does not
/// depend on the batch: samplers.hpp). Writes [n, S, S, C] to out; calls progress(chunk,
/// chunk_count) after each chunk. Returns whether the prompt or the negative prompt was truncated
/// to the context length.
template <int K, class Model, class Options, class T, class Progress>
bool generate_in_chunks(Model& model, const std::string& prompt, std::string_view negative, const Options& opt, int n,
                        T* out, Progress progress) {
    static_assert(K >= 1, "generate_in_chunks: the batch must hold at least one image");
    constexpr int S = Model::image_size, C = Model::image_channels;
    constexpr std::size_t image = std::size_t(S) * S * C;
    const auto chunks = plan_chunks(n, K);
    std::unique_ptr<typename Model::template SampleWorkspace<K>> ws;  // made when a full chunk comes
    std::unique_ptr<typename Model::template SampleWorkspace<1>> ws1;
    std::array<std::string, K> prompts;
    prompts.fill(prompt);
    const std::array<std::string, 1> one{prompt};
    bool truncated = false;
    for (const Chunk& c : chunks) {
        Options o = opt;
        o.seed = chunk_seed(opt.seed, c.index);
        T* dst = out + std::size_t(c.begin) * image;
        if (c.count == K) {
            if (!ws) ws = make<typename Model::template SampleWorkspace<K>>();
            truncated |= model.generate(prompts, negative, o, View<T, K, S, S, C>(dst), *ws) > 0;
        } else {
            if (!ws1) ws1 = make<typename Model::template SampleWorkspace<1>>();
            for (int j = 0; j < c.count; ++j) {
                o.sampler.first_item = std::uint64_t(j);
                truncated |=
                    model.generate(one, negative, o, View<T, 1, S, S, C>(dst + std::size_t(j) * image), *ws1) > 0;
            }
        }
        progress(c.index, int(chunks.size()));
    }
    return truncated;
}

}  // namespace diffuse::app

#endif
