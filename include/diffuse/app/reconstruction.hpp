// Encoding and decoding a run-time number of images through a model's VAE whose codec workspace
// is built for batches of K (LatentDiffusion's reconstruct/CodecWorkspace interface), and scoring
// what comes back.
#ifndef DIFFUSE_APP_RECONSTRUCTION_HPP
#define DIFFUSE_APP_RECONSTRUCTION_HPP

#include <algorithm>
#include <cstddef>
#include <vector>

#include "diffuse/app/generation.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::app {

namespace detail {
/// Chunk c of the images in [n, image] into batch [K, image], its last image repeated to fill it.
template <class T>
void fill_chunk(const T* in, const Chunk& c, int K, std::size_t image, T* batch) {
    for (int i = 0; i < K; ++i) {
        const T* src = in + std::size_t(c.begin + std::min(i, c.count - 1)) * image;
        std::copy(src, src + image, batch + std::size_t(i) * image);
    }
}
}  // namespace detail

/// in [n, S, S, C] → out [n, S, S, C], K at a time; the last batch is padded by repeating its last image.
template <int K, class Model, class T>
void reconstruct_in_chunks(const Model& model, const T* in, int n, T* out) {
    static_assert(K >= 1, "reconstruct_in_chunks: the batch must hold at least one image");
    constexpr int S = Model::image_size, C = Model::image_channels;
    constexpr std::size_t image = std::size_t(S) * S * C;
    auto ws = make<typename Model::template CodecWorkspace<K>>();
    auto x = make<Tensor<T, K, S, S, C>>();
    auto y = make<Tensor<T, K, S, S, C>>();
    for (const Chunk& c : plan_chunks(n, K)) {
        detail::fill_chunk(in, c, K, image, x->data());
        model.reconstruct(x->view(), y->view(), *ws);
        std::copy(y->data(), y->data() + std::size_t(c.count) * image, out + std::size_t(c.begin) * image);
    }
}

/// in [n, S, S, C] → the model's latents out [n, h, h, L] (its encode: posterior mean · latent
/// scale), K at a time, the last batch padded as in reconstruct_in_chunks.
template <int K, class Model, class T>
void encode_in_chunks(const Model& model, const T* in, int n, T* out) {
    static_assert(K >= 1, "encode_in_chunks: the batch must hold at least one image");
    constexpr int S = Model::image_size, C = Model::image_channels, h = Model::latent_size;
    constexpr std::size_t image = std::size_t(S) * S * C, latent = Model::latent_elements;
    auto ws = make<typename Model::template CodecWorkspace<K>>();
    auto x = make<Tensor<T, K, S, S, C>>();
    auto z = make<Tensor<T, K, h, h, Model::latent_channels>>();
    for (const Chunk& c : plan_chunks(n, K)) {
        detail::fill_chunk(in, c, K, image, x->data());
        model.encode(x->view(), z->view(), *ws);
        std::copy(z->data(), z->data() + std::size_t(c.count) * latent, out + std::size_t(c.begin) * latent);
    }
}

/// PSNR of each of n images of `size` values (reference a, reconstruction b clipped to [-1, 1]).
template <class T>
std::vector<double> psnr_per_image(const T* a, const T* b, int n, std::size_t size) {
    std::vector<double> out(std::size_t(std::max(n, 0)));
    for (int i = 0; i < n; ++i) out[std::size_t(i)] = psnr(a + std::size_t(i) * size, b + std::size_t(i) * size, size);
    return out;
}

/// Mean of per-image PSNRs (identical images, +inf, are counted at `cap` dB so one cannot swamp the mean).
inline double mean_psnr(const std::vector<double>& values, double cap = 100.0) {
    if (values.empty()) return 0;
    double s = 0;
    for (double v : values) s += std::min(v, cap);
    return s / double(values.size());
}

}  // namespace diffuse::app

#endif
