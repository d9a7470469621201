// Inpainting with an ordinary denoiser, on the sampler level (the latent blend of diffusers'
// StableDiffusionInpaintPipeline for 4-channel UNets, and RePaint's resampling through
// RunControl::jumps).
//
// The mask. Pixels in [0, 1], 1 (white) = regenerate, 0 (black) = keep, [H, W], downsampled to the
// latent grid [h, w] by area (each cell averages its (H/h)·(W/w) pixels), then thresholded: a cell
// is regenerated when its average exceeds `threshold` (0 by default: any pixel to regenerate). Not a
// soft blend, because a cell mixed a : 1 − a from two noisy latents has noise of variance
// a² + (1 − a)² < 1, off the level the model expects, and it would pull the new content towards the
// input's. Cells that straddle the edge are regenerated whole; pasting the kept pixels back after
// decoding (app/image_edit.hpp) restores those.
//
// The blend. Each time the run reaches a noise level (RunLevel: after the start, after every step,
// after every RePaint redo) the kept cells are set to the input's latents noised to that level,
// sqrt(ab)·z0 + sqrt(1 − ab)·e, with one fixed noise e per item (as diffusers does; drawn from
// stream_rng(seed, item, kKnownNoiseStream), apart from the sampler's streams), so at the end
// (ab = 1) they are the input's latents exactly.
#ifndef DIFFUSE_SAMPLE_INPAINT_HPP
#define DIFFUSE_SAMPLE_INPAINT_HPP

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/sample/samplers.hpp"

namespace diffuse::diffusion {

/// The key of the kept region's noise stream (stream_rng(seed, item, key)).
inline constexpr std::uint64_t kKnownNoiseStream = 0x696e'7061'696e'74ULL;

/// A pixel mask [H, W] (1 = regenerate) downsampled to the latent grid [h, w]: 1 where a cell's
/// area average exceeds threshold, else 0. H and W must be multiples of h and w.
template <class T>
void latent_mask(const T* pixels, int H, int W, int h, int w, T* out, double threshold = 0) {
    if (h < 1 || w < 1 || H % h != 0 || W % w != 0)
        throw std::invalid_argument("latent_mask: a " + std::to_string(W) + "x" + std::to_string(H) +
                                    " mask does not divide into a " + std::to_string(w) + "x" + std::to_string(h) +
                                    " grid");
    const int fy = H / h, fx = W / w;
    for (int cy = 0; cy < h; ++cy)
        for (int cx = 0; cx < w; ++cx) {
            double sum = 0;
            for (int y = cy * fy; y < (cy + 1) * fy; ++y)
                for (int x = cx * fx; x < (cx + 1) * fx; ++x) sum += double(pixels[std::size_t(y) * W + x]);
            out[std::size_t(cy) * w + cx] = sum / (fy * fx) > threshold ? T(1) : T(0);
        }
}

/// The latent-blend hook for diffusion::sample: keeps the cells where mask is 0 on the input's
/// latents noised to the run's current level (see the header comment).
template <class T>
class LatentBlend {
public:
    /// known [batch, cells·channels] the input's latents, mask [batch, cells] 1 = regenerate.
    LatentBlend(const T* known, const T* mask, int batch, int cells, int channels, std::uint64_t seed)
        : known_(known),
          mask_(mask),
          batch_(batch),
          cells_(cells),
          channels_(channels),
          noise_(std::size_t(batch) * std::size_t(cells) * std::size_t(channels)) {
        const std::size_t item = std::size_t(cells) * std::size_t(channels);
        for (int i = 0; i < batch; ++i) {
            Rng rng = stream_rng(seed, i, kKnownNoiseStream);
            for (std::size_t k = 0; k < item; ++k) noise_[std::size_t(i) * item + k] = T(rng.normal());
        }
    }

    /// The kept cells' value at noise level ab, in the form x = scale·z: into x [batch, item].
    void operator()(const RunLevel<T>& level) const {
        const std::size_t item = std::size_t(cells_) * std::size_t(channels_);
        if (level.batch != batch_ || level.item_size != item)
            throw std::invalid_argument("LatentBlend: a run of " + std::to_string(level.batch) + " x " +
                                        std::to_string(level.item_size) + " for a blend of " + std::to_string(batch_) +
                                        " x " + std::to_string(item));
        const T a(level.scale * std::sqrt(level.alpha_bar)), b(level.scale * std::sqrt(1 - level.alpha_bar));
        for (int i = 0; i < batch_; ++i)
            for (int c = 0; c < cells_; ++c) {
                if (mask_[std::size_t(i) * std::size_t(cells_) + std::size_t(c)] != T(0)) continue;
                const std::size_t at = std::size_t(i) * item + std::size_t(c) * std::size_t(channels_);
                for (int k = 0; k < channels_; ++k) level.x[at + k] = a * known_[at + k] + b * noise_[at + k];
            }
    }

    /// The fixed noise of the kept region [batch, item].
    const std::vector<T>& noise() const { return noise_; }

private:
    const T* known_;
    const T* mask_;
    int batch_, cells_, channels_;
    std::vector<T> noise_;
};

}  // namespace diffuse::diffusion

#endif
