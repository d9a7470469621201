// Image-to-image and inpainting with a trained latent diffusion model (LatentDiffusion, or anything
// with its encode / generate_with / SampleWorkspace interface), and the input images they take.
//
//   img2img  the inputs' latents, noised to strength s and denoised with the prompts through the
//            last ⌈s·steps⌉ steps of the sampler's plan (sample/img2img.hpp); s = 1 is generate().
//   inpaint  the same from strength s (1 by default: pure noise), with the latent blend of
//            sample/inpaint.hpp keeping the masked-out cells on the input; `jumps` RePaint redos
//            per step; the kept pixels pasted back after decoding (on by default: the VAE does not
//            give an image back exactly, so without it the region the user asked to keep comes back
//            blurred: 23 dB PSNR on the kept half of a sneaker with the shipped model, README).
//
// Model calls (sampler callbacks): (jumps + 1) · model_calls(method, ⌈s·steps⌉).
//
// Input images of any size and format io/image.hpp reads are made ready as the image-folder loader
// does (io::fit_image: converted to the model's channels, scaled to cover and centre-cropped) to the
// model's size less its border, then padded with the border the training images had (black, −1).
// Masks the same way in gray (white = regenerate), as values in [0, 1], the border kept.
#ifndef DIFFUSE_APP_IMAGE_EDIT_HPP
#define DIFFUSE_APP_IMAGE_EDIT_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "diffuse/app/generation.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/io/byte_image.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/sample/img2img.hpp"
#include "diffuse/sample/inpaint.hpp"
#include "diffuse/sample/samplers.hpp"

namespace diffuse::app {

/// How inpaint() runs besides the sampler's options.
struct InpaintOptions {
    double strength = 1;     // start from pure noise; below 1 the masked region starts from the input too
    int jumps = 0;           // RePaint redos per step
    double threshold = 0;    // a latent cell is regenerated when its mask average exceeds this
    bool paste_back = true;  // kept pixels from the input after decoding, blended by the pixel mask
};

/// An image read from a file as the model takes it: [size, size, channels] in [-1, 1] into out
/// (see the header comment; `border` pixels of −1 on every side).
template <class T>
void model_image(const io::ByteImage& src, int size, int channels, int border, T* out) {
    const int side = size - 2 * border;
    if (side < 1) throw std::invalid_argument("model_image: border too wide");
    const std::vector<std::uint8_t> px = io::fit_image(src, side, side, channels);
    std::vector<T> values(px.size());
    for (std::size_t i = 0; i < px.size(); ++i) values[i] = T(double(px[i]) / 127.5 - 1.0);
    pad_border(values.data(), side, side, channels, border, out, T(-1));
}

/// A mask image as the model takes it: [size, size] in [0, 1], 1 = regenerate, the border 0 (kept).
template <class T>
void model_mask(const io::ByteImage& src, int size, int border, T* out) {
    const int side = size - 2 * border;
    if (side < 1) throw std::invalid_argument("model_mask: border too wide");
    const std::vector<std::uint8_t> px = io::fit_image(src, side, side, 1);
    std::vector<T> values(px.size());
    for (std::size_t i = 0; i < px.size(); ++i) values[i] = T(double(px[i]) / 255.0);
    pad_border(values.data(), side, side, 1, border, out, T(0));
}

/// out = mask·generated + (1 − mask)·input per pixel, mask [pixels] over images [pixels, channels]:
/// where the mask is 0 the input comes back exactly.
template <class T>
void paste_back(const T* generated, const T* input, const T* mask, std::size_t pixels, int channels, T* out) {
    for (std::size_t p = 0; p < pixels; ++p)
        for (int c = 0; c < channels; ++c) {
            const std::size_t i = p * std::size_t(channels) + std::size_t(c);
            out[i] = mask[p] == T(0) ? input[i] : mask[p] * generated[i] + (T(1) - mask[p]) * input[i];
        }
}

/// N images [N, S, S, C] from N inputs [N, S, S, C] in [-1, 1] and N prompts at strength s ∈ (0, 1]
/// (see the header comment). Returns how many prompts were truncated.
template <class Model, class Prompts, Shaped X, Shaped Y>
int img2img(Model& model, const X& inputs, const Prompts& prompts, std::string_view negative,
            const typename Model::SampleOptions& opt, double strength, Y&& images,
            typename Model::template SampleWorkspace<shape_of<X>::first>& ws) {
    using T = typename std::remove_cvref_t<X>::value_type;
    constexpr int N = shape_of<X>::first, h = Model::latent_size, L = Model::latent_channels;
    auto latents = make<Tensor<T, N, h, h, L>>();
    const diffusion::RunControl<T> control = diffusion::img2img_start(strength, opt.sampler.steps, latents->data());
    model.encode(inputs, *latents);
    return model.generate_with(prompts, negative, opt, images, ws, [&](auto&& denoise, const auto& so) {
        diffusion::sample(model.schedule, so, N, Model::latent_elements, opt.seed, ws.latents.data(), denoise,
                          ws.sampler, control, [](const diffusion::RunLevel<T>&) {});
    });
}

/// N images [N, S, S, C] from N inputs [N, S, S, C] in [-1, 1], N masks [N, S, S] in [0, 1]
/// (1 = regenerate) and N prompts (see the header comment). Returns how many prompts were truncated.
template <class Model, class Prompts, Shaped X, Shaped M, Shaped Y>
int inpaint(Model& model, const X& inputs, const M& masks, const Prompts& prompts, std::string_view negative,
            const typename Model::SampleOptions& opt, const InpaintOptions& edit, Y&& images,
            typename Model::template SampleWorkspace<shape_of<X>::first>& ws) {
    using T = typename std::remove_cvref_t<X>::value_type;
    constexpr int N = shape_of<X>::first, S = Model::image_size, C = Model::image_channels;
    constexpr int h = Model::latent_size, L = Model::latent_channels;
    static_assert(same_shape<shape_of<M>, Shape<N, S, S>>, "inpaint: masks must be [N, image_size, image_size]");
    if (edit.jumps < 0) throw std::invalid_argument("inpaint: jumps must be >= 0, got " + std::to_string(edit.jumps));
    auto latents = make<Tensor<T, N, h, h, L>>();
    auto cells = make<Tensor<T, N, h * h>>();  // 1 = regenerate
    diffusion::RunControl<T> control = diffusion::img2img_start(edit.strength, opt.sampler.steps, latents->data());
    control.jumps = edit.jumps;
    model.encode(inputs, *latents);
    for (int i = 0; i < N; ++i)
        diffusion::latent_mask(masks.data() + std::size_t(i) * S * S, S, S, h, h,
                               cells->data() + std::size_t(i) * h * h, edit.threshold);
    const diffusion::LatentBlend<T> blend(latents->data(), cells->data(), N, h * h, L, opt.seed);
    const int truncated = model.generate_with(prompts, negative, opt, images, ws, [&](auto&& denoise, const auto& so) {
        diffusion::sample(model.schedule, so, N, Model::latent_elements, opt.seed, ws.latents.data(), denoise,
                          ws.sampler, control, blend);
    });
    if (edit.paste_back)
        for (int i = 0; i < N; ++i) {
            const std::size_t at = std::size_t(i) * S * S;
            paste_back(images.data() + at * C, inputs.data() + at * C, masks.data() + at, std::size_t(S) * S, C,
                       images.data() + at * C);
        }
    return truncated;
}

/// n edits of one input image [S, S, C] for one prompt, in batches of K (the sampling workspace's
/// compile-time size): chunk i runs edit(inputs, prompts, options, images, ws) on K copies of the
/// input with the seed app::chunk_seed(opt.seed, i), as generate_in_chunks does; the last chunk's
/// extra images are dropped. Writes [n, S, S, C] to out. Returns whether a prompt was truncated.
template <int K, class Model, class T, class Edit>
bool edit_in_chunks(const T* input, const std::string& prompt, const typename Model::SampleOptions& opt, int n, T* out,
                    Edit edit) {
    constexpr int S = Model::image_size, C = Model::image_channels;
    constexpr std::size_t image = std::size_t(S) * S * C;
    auto ws = make<typename Model::template SampleWorkspace<K>>();
    auto inputs = make<Tensor<T, K, S, S, C>>();
    auto images = make<Tensor<T, K, S, S, C>>();
    for (int k = 0; k < K; ++k) std::copy(input, input + image, inputs->data() + std::size_t(k) * image);
    std::array<std::string, K> prompts;
    prompts.fill(prompt);
    bool truncated = false;
    for (const Chunk& c : plan_chunks(n, K)) {
        typename Model::SampleOptions o = opt;
        o.seed = chunk_seed(opt.seed, c.index);
        truncated |= edit(*inputs, prompts, o, images->view(), *ws) > 0;
        std::copy(images->data(), images->data() + std::size_t(c.count) * image, out + std::size_t(c.begin) * image);
    }
    return truncated;
}

}  // namespace diffuse::app

#endif
