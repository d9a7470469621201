// LatentDiffusion<T, Preset>: the text-to-image pipeline of DESIGN.md §1, assembled from a preset
// (presets::Tiny / presets::Default):
//
//   prompt ─► clip::TextEncoder ─► context [N, Ctx, D] ─┐
//   noise [N, h, h, L] ─► sampler ⇄ unet::UNet(z_t, t, context) ─► z_0
//   z_0 / latent_scale ─► vae::Decoder ─► image [N, S, S, C]
//
// Parameters live in two stores: the VAE's ("vae.encoder.*", "vae.decoder.*"), trained first and
// then frozen, and the diffusion part's ("text_encoder.*", "unet.*"; one store, so one Adam, one
// clip and one EMA cover both). The model also holds the EMA weights of the diffusion store (plain
// data, core/ema_weights.hpp: sampling uses them once they have been updated at least once; the
// update rule is training's, train/ema.hpp) with a second DiffusionPart bound to them (ema_part:
// the same layers reading the averaged weights, so sampling never swaps weights and one const model
// can be sampled from on many threads at once, each with its own SampleWorkspace), the noise
// schedule and the latent scaling factor:
// a scalar measured on data after VAE training (Stable Diffusion's 0.18215) so that the latents
// the UNet sees have unit variance.
//
// The UNet's latent size/channels and context length/width are taken from the preset's VAE and
// text-encoder configs (Tiny's own UNet config is sized for standalone checks; Default's agrees).
//
// Weights files (save/load, and the first part of a training checkpoint) hold, by state-dict name:
//   vae.*, text_encoder.*, unet.*     parameters
//   ema.text_encoder.*, ema.unet.*   the EMA shadow (when it has been updated; count in metadata)
//   latent_scale                      F64 [1]
//   __metadata__: format, config (the preset's name), ema_updates, prediction, schedule, kind ("weights"),
//                 tokenizer (text::Tokenizer::to_string: the vocabulary the text encoder reads),
//                 image_border (padding around the training images, cropped off by the programs)
// A training checkpoint adds optimizer and trainer state (train/checkpoint.hpp); load() ignores it.
//
// generate() runs in parts on sampling_weights(use_ema) (ema_part or diffusion_part):
// encode_prompts (the prompts and the negative prompt into one context
// and mask of 2N items; unguided, the prompts' N alone), the sampler (sample/samplers.hpp) with ContextDenoiser, the callable that
// runs the UNet on that context for each call the sampler makes, then the decoder.
//
// Inference workspaces (SampleWorkspace<N>, CodecWorkspace<N>) are allocated once per batch size:
// pass one in to reuse it across calls, or let a call allocate one (once per call, never per step).
// With a reused SampleWorkspace, generate() allocates nothing after its first call
// (tests/test_allocations.cpp).
#ifndef DIFFUSE_MODELS_LATENT_DIFFUSION_HPP
#define DIFFUSE_MODELS_LATENT_DIFFUSION_HPP

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "diffuse/core/ema_weights.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/clip.hpp"
#include "diffuse/models/presets.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/models/vae.hpp"
#include "diffuse/sample/noise_schedule.hpp"
#include "diffuse/sample/samplers.hpp"
#include "diffuse/text/tokenizer.hpp"

namespace diffuse {

namespace latent_diffusion {

/// The preset's UNet config with its latent and context taken from the preset's VAE and text encoder.
template <class Preset>
struct UNetConfig : Preset::unet {
    static constexpr int latent_size = Preset::vae::latent_size, latent_channels = Preset::vae::latent_channels;
    static constexpr int context_length = Preset::clip::context_length, context_width = Preset::clip::width;
};

/// The name written into checkpoints (and checked when loading).
template <class Preset>
constexpr const char* preset_name() {
    if constexpr (requires { Preset::name; }) return Preset::name;
    else return "custom";
}

inline constexpr const char* kFormat = "diffuse-latent-diffusion-1";
inline constexpr const char* kScheduleName = "scaled_linear";

/// How images are drawn: the sampler's options (method, steps, guidance, eta, spacing, ...), the
/// seed, and which weights. The model sets the sampler's `prediction` (its UNet's) and
/// `batch_branches` (always on: both guidance branches run as one UNet call of 2N; guidance 1 runs
/// the prompts' branch alone, a call of N).
struct SampleOptions {
    diffusion::SamplerOptions sampler{.guidance = 3};  // DDIM, 50 steps, guidance 3, eta 0
    std::uint64_t seed = 0;
    bool use_ema = true;  // sample with the EMA weights when they exist
};

}  // namespace latent_diffusion

template <class T, class Preset = presets::Default>
class LatentDiffusion {
public:
    using preset = Preset;
    using VaeConfig = typename Preset::vae;
    using TextConfig = typename Preset::clip;
    using UNetConfig = latent_diffusion::UNetConfig<Preset>;
    using Vae = vae::AutoencoderKL<T, VaeConfig>;
    using Text = clip::TextEncoder<T, TextConfig>;
    using Denoiser = unet::UNet<T, UNetConfig>;
    using SampleOptions = latent_diffusion::SampleOptions;

    static constexpr int image_size = VaeConfig::image_size, image_channels = VaeConfig::image_channels;
    static constexpr int latent_size = VaeConfig::latent_size, latent_channels = VaeConfig::latent_channels;
    static constexpr int context_length = TextConfig::context_length, context_width = TextConfig::width;
    static constexpr diffusion::Prediction prediction = UNetConfig::prediction;
    static constexpr std::size_t latent_elements = std::size_t(latent_size) * latent_size * latent_channels;

    template <int N>
    using Images = View<T, N, image_size, image_size, image_channels>;
    template <int N>
    using Latents = View<T, N, latent_size, latent_size, latent_channels>;

    /// Parameter roots, so that state-dict names carry the part ("vae.encoder.conv_in.weight").
    struct VaePart {
        Vae vae;
        template <class V>
        constexpr void visit(V& v) {
            v("vae", vae);
        }
    };
    struct DiffusionPart {
        Text text_encoder;
        Denoiser unet;
        template <class V>
        constexpr void visit(V& v) {
            v("text_encoder", text_encoder);
            v("unet", unet);
        }
    };

    static constexpr std::size_t vae_parameter_count = Vae::parameter_count;
    static constexpr std::size_t diffusion_parameter_count = Text::parameter_count + Denoiser::parameter_count;

    /// Encode / decode through the VAE (no gradients).
    template <int N>
    struct CodecWorkspace {
        Tensor<T, N, image_size, image_size, image_channels> x;
        typename Vae::EncoderT::template Cache<N> enc;
        Tensor<T, N, latent_size, latent_size, 2 * latent_channels> moments;
        Tensor<T, N, latent_size, latent_size, latent_channels> z;
        typename Vae::DecoderT::template Cache<N> dec;
    };
    /// Everything generate() needs for N images: both contexts, the UNet's and the decoder's caches.
    template <int N>
    struct SampleWorkspace {
        typename Text::template Workspace<N> text;
        // Guided sampling runs both branches as one UNet call of 2N (deeper GEMMs, half the calls):
        // items [0, N) see the prompts, [N, 2N) the negative prompt. Unguided sampling runs N.
        Tensor<T, 2 * N, context_length, context_width> context;
        Tensor<bool, 2 * N, context_length> mask;
        // The UNet's caches, each made on first use: a call of 2N (guided), of N (unguided, or the
        // prompts' branch when two threads run the branches side by side), of N (the negative branch).
        std::unique_ptr<typename Denoiser::template Workspace<2 * N>> unet_guided;
        std::unique_ptr<typename Denoiser::template Workspace<N>> unet_unguided, unet_negative;
        Tensor<T, N, latent_size, latent_size, latent_channels> latents;
        typename Vae::DecoderT::template Cache<N> dec;
        diffusion::SamplerWorkspace<T> sampler;  // the sampler's buffers and plan, sized on the first call
    };
    /// Bytes of guided sampling: one UNet call of 2N, or on two threads two calls of N (ContextDenoiser).
    template <int N>
    static constexpr std::size_t sample_workspace_bytes =
        sizeof(SampleWorkspace<N>) + std::max(sizeof(typename Denoiser::template Workspace<2 * N>),
                                              2 * sizeof(typename Denoiser::template Workspace<N>));

    /// Fresh weights from `seed` (the two parts from independent streams).
    explicit LatentDiffusion(std::uint64_t seed = 0)
        : vae_store(vae_part, stream_seed(seed, 1)),
          diffusion_store(diffusion_part, stream_seed(seed, 2)),
          ema(diffusion_store),
          schedule(diffusion::NoiseSchedule::scaled_linear(UNetConfig::timesteps)) {
        bind_values(ema_part, diffusion_store, ema.values());
    }
    LatentDiffusion(const LatentDiffusion&) = delete;
    LatentDiffusion& operator=(const LatentDiffusion&) = delete;

    VaePart vae_part;
    DiffusionPart diffusion_part;
    ParamStore<T> vae_store;
    ParamStore<T> diffusion_store;
    EmaWeights<T> ema;  // of diffusion_store; used for sampling once update_count() > 0
    // The text encoder and UNet reading ema.values() (bound once: ema's buffer is never reallocated).
    DiffusionPart ema_part;
    diffusion::NoiseSchedule schedule;
    text::Tokenizer tokenizer;  // the vocabulary the text encoder was trained on (learned from its captions)
    int image_border = 0;       // padding the data set put around its images (Fashion-MNIST: 2), to crop off
    double latent_scale = 1;    // latent = posterior mean · latent_scale (unit variance for the UNet)

    Vae& vae() { return vae_part.vae; }
    const Vae& vae() const { return vae_part.vae; }
    Text& text_encoder() { return diffusion_part.text_encoder; }
    const Text& text_encoder() const { return diffusion_part.text_encoder; }
    Denoiser& unet() { return diffusion_part.unet; }
    const Denoiser& unet() const { return diffusion_part.unet; }
    bool has_ema() const { return ema.update_count() > 0; }
    /// The text encoder and UNet that sampling runs: the EMA weights when they exist and `use_ema`
    /// asks for them, else the trained ones. Read-only: any number of threads may sample at once.
    const DiffusionPart& sampling_weights(bool use_ema) const {
        return use_ema && has_ema() ? ema_part : diffusion_part;
    }

    // ---- Inference ---------------------------------------------------------------------------

    /// images [N, S, S, C] in [-1, 1] → latents [N, h, h, L] = posterior mean · latent_scale.
    template <Shaped X, Shaped Z>
    void encode(const X& images, Z&& latents, CodecWorkspace<shape_of<X>::first>& ws) const {
        constexpr int N = shape_of<X>::first;
        static_assert(same_shape<shape_of<X>, Shape<N, image_size, image_size, image_channels>>,
                      "LatentDiffusion::encode: images must be [N, image_size, image_size, image_channels]");
        static_assert(same_shape<shape_of<Z>, Shape<N, latent_size, latent_size, latent_channels>>,
                      "LatentDiffusion::encode: latents must be [N, latent_size, latent_size, latent_channels]");
        std::copy(images.begin(), images.end(), ws.x.begin());
        vae().encoder.forward(ws.x, ws.moments, ws.enc);
        vae::posterior_mean(ws.moments, latents);
        const T s(latent_scale);
        for (auto& v : latents) v *= s;
    }
    /// latents [N, h, h, L] → images [N, S, S, C], clamped to [-1, 1].
    template <Shaped Z, Shaped X, int N>
    void decode(const Z& latents, X&& images, typename Vae::DecoderT::template Cache<N>& dec,
                Tensor<T, N, latent_size, latent_size, latent_channels>& scratch) const {
        static_assert(same_shape<shape_of<Z>, Shape<N, latent_size, latent_size, latent_channels>>,
                      "LatentDiffusion::decode: latents must be [N, latent_size, latent_size, latent_channels]");
        static_assert(same_shape<shape_of<X>, Shape<N, image_size, image_size, image_channels>>,
                      "LatentDiffusion::decode: images must be [N, image_size, image_size, image_channels]");
        const T inv = T(1 / latent_scale);
        std::transform(latents.begin(), latents.end(), scratch.begin(), [inv](T v) { return v * inv; });
        vae().decoder.forward(scratch, images, dec);
        for (auto& v : images) v = std::clamp(v, T(-1), T(1));
    }
    template <Shaped Z, Shaped X>
    void decode(const Z& latents, X&& images, CodecWorkspace<shape_of<Z>::first>& ws) const {
        decode(latents, images, ws.dec, ws.z);
    }
    /// Encode then decode (what the VAE keeps of an image).
    template <Shaped X, Shaped Y>
    void reconstruct(const X& images, Y&& out, CodecWorkspace<shape_of<X>::first>& ws) const {
        Tensor<T, shape_of<X>::first, latent_size, latent_size, latent_channels> lat;  // small: N·h·h·L
        encode(images, lat, ws);
        decode(lat, out, ws);
    }
    /// The same, allocating a workspace for the call.
    template <Shaped X, Shaped Z>
    void encode(const X& images, Z&& latents) const {
        encode(images, latents, *make<CodecWorkspace<shape_of<X>::first>>());
    }
    template <Shaped Z, Shaped X>
    void decode(const Z& latents, X&& images) const {
        decode(latents, images, *make<CodecWorkspace<shape_of<Z>::first>>());
    }
    template <Shaped X, Shaped Y>
    void reconstruct(const X& images, Y&& out) const {
        reconstruct(images, out, *make<CodecWorkspace<shape_of<X>::first>>());
    }

    /// The text encoder's context and padding mask for N prompts (any sized range of strings) into
    /// ws.context / ws.mask: items [0, N) the prompts, and [N, 2N) the negative prompt when `guided`
    /// (empty: the unconditional prompt). Returns how many prompts were truncated to the context
    /// length. The text encoder of `weights` (sampling_weights()); without it, the trained weights'.
    template <int N, class Prompts>
    int encode_prompts(const Prompts& prompts, std::string_view negative, bool guided, SampleWorkspace<N>& ws,
                       const DiffusionPart& weights) const {
        const Text& text = weights.text_encoder;
        const auto keep = [&](int half) {  // the text encoder's output into one half of context and mask
            std::copy(ws.text.context.begin(), ws.text.context.end(), ws.context.begin() + half * ws.text.context.size);
            std::copy(ws.text.pad_mask.begin(), ws.text.pad_mask.end(), ws.mask.begin() + half * ws.text.pad_mask.size);
        };
        int truncated = text.template encode<N>(tokenizer, prompts, ws.text);
        keep(0);
        if (guided) {
            std::array<std::string_view, N> neg;  // views, not copies: no allocation per call
            neg.fill(negative);
            truncated += text.template encode<N>(tokenizer, neg, ws.text);
            keep(1);
        }
        return truncated;
    }
    template <int N, class Prompts>
    int encode_prompts(const Prompts& prompts, std::string_view negative, bool guided, SampleWorkspace<N>& ws) const {
        return encode_prompts<N>(prompts, negative, guided, ws, diffusion_part);
    }

    /// The UNet as the sampler calls it (diffusion::DenoiseCall), on the context and mask that
    /// encode_prompts left in the workspace: a call of 2N runs both guidance branches, a call of N
    /// (unguided) the prompts' half of the context alone. On exactly two threads the two branches run
    /// side by side, one a thread, as calls of N: one parallel region a model call instead of one a
    /// layer. Every item's output is the same either way (an item's arithmetic never depends on the
    /// batch it is in), so results stay bitwise independent of the thread count.
    template <int N>
    struct ContextDenoiser {
        const Denoiser& net;
        SampleWorkspace<N>& ws;

        void operator()(const diffusion::DenoiseCall<T>& call) const {
            if (call.batch != 2 * N) {
                run(call, 0, ws.unet_unguided);  // the prompts' branch alone
            } else if (num_threads() != 2) {
                if (!ws.unet_guided) ws.unet_guided = make<typename Denoiser::template Workspace<2 * N>>();
                net.forward(call.template input<2 * N, latent_size, latent_size, latent_channels>(),
                            call.template timestep_view<2 * N>(), ws.context, ws.mask,
                            call.template output<2 * N, latent_size, latent_size, latent_channels>(), *ws.unet_guided);
            } else {
                const diffusion::DenoiseCall<T> prompts = branch(call, 0), negative = branch(call, 1);
                for (auto* w : {&ws.unet_unguided, &ws.unet_negative})
                    if (!*w) *w = make<typename Denoiser::template Workspace<N>>();  // not inside the region
                run_pair([&] { run(prompts, 0, ws.unet_unguided); }, [&] { run(negative, N, ws.unet_negative); });
            }
        }
        /// Half `b` of a call of 2N as a call of N.
        static diffusion::DenoiseCall<T> branch(diffusion::DenoiseCall<T> call, int b) {
            const std::size_t items = std::size_t(b) * N;
            call.z += items * call.item_size;
            call.out += items * call.item_size;
            call.timesteps += items;
            call.batch = N;
            return call;
        }
        /// A call of N on the context and mask items [first, first + N).
        void run(const diffusion::DenoiseCall<T>& call, int first,
                 std::unique_ptr<typename Denoiser::template Workspace<N>>& unet_ws) const {
            if (!unet_ws) unet_ws = make<typename Denoiser::template Workspace<N>>();
            net.forward(call.template input<N, latent_size, latent_size, latent_channels>(),
                        call.template timestep_view<N>(),
                        View<const T, N, context_length, context_width>(
                            ws.context.data() + std::size_t(first) * context_length * context_width),
                        View<const bool, N, context_length>(ws.mask.data() + std::size_t(first) * context_length),
                        call.template output<N, latent_size, latent_size, latent_channels>(), *unet_ws);
        }
    };

    /// The sampler's options as this model runs them: the caller's, with the UNet's prediction.
    static diffusion::SamplerOptions sampler_options(const SampleOptions& opt) {
        diffusion::SamplerOptions so = opt.sampler;
        so.prediction = prediction;
        so.batch_branches = true;
        return so;
    }

    /// N images [N, S, S, C] in [-1, 1] for N prompts (any sized range of strings), guided away from
    /// `negative` (empty: the unconditional prompt). Uses the EMA weights when present and asked for
    /// (sampling_weights). Changes nothing in the model: threads may call it at once on one model,
    /// each with its own workspace, and get the serial results bit for bit. Image i depends
    /// only on (weights, prompt i, negative, options, i): not on the other prompts. Returns how
    /// many prompts were truncated to the context length.
    template <class Prompts, Shaped Y>
    int generate(const Prompts& prompts, std::string_view negative, const SampleOptions& opt, Y&& images,
                 SampleWorkspace<shape_of<Y>::first>& ws) const {
        return generate_with(prompts, negative, opt, images, ws, [&](const auto& denoise, const auto& so) {
            diffusion::sample(schedule, so, opt.seed, ws.latents, denoise, ws.sampler);
        });
    }
    template <class Prompts, Shaped Y>
    int generate(const Prompts& prompts, std::string_view negative, const SampleOptions& opt, Y&& images) const {
        return generate(prompts, negative, opt, images, *make<SampleWorkspace<shape_of<Y>::first>>());
    }

    /// generate() with its sampling step given (img2img and inpainting, app/image_edit.hpp): once the
    /// prompts are encoded and the weights chosen, sample_latents(ContextDenoiser<N>, SamplerOptions)
    /// writes ws.latents [N, h, h, L], which are then decoded into images.
    template <class Prompts, Shaped Y, class SampleLatents>
    int generate_with(const Prompts& prompts, std::string_view negative, const SampleOptions& opt, Y&& images,
                      SampleWorkspace<shape_of<Y>::first>& ws, SampleLatents&& sample_latents) const {
        constexpr int N = shape_of<Y>::first;
        static_assert(same_shape<shape_of<Y>, Shape<N, image_size, image_size, image_channels>>,
                      "LatentDiffusion::generate: images must be [N, image_size, image_size, image_channels]");
        if (opt.sampler.steps < 1 || opt.sampler.steps > schedule.steps())
            throw std::invalid_argument("generate: steps must be in [1, " + std::to_string(schedule.steps()) +
                                        "], got " + std::to_string(opt.sampler.steps));
        const DiffusionPart& weights = sampling_weights(opt.use_ema);
        const int truncated = encode_prompts<N>(prompts, negative, opt.sampler.guidance != 1, ws, weights);
        sample_latents(ContextDenoiser<N>{weights.unet, ws}, sampler_options(opt));
        decode(ws.latents, images, ws.dec, ws.latents);  // unscales the latents in place: they are spent
        return truncated;
    }

    // ---- Weights files -----------------------------------------------------------------------

    /// Adds the weights (and their metadata) to a writer; the model must outlive w.save(). The EMA
    /// shadow is written once it has been updated, or always with with_ema (training checkpoints).
    /// `as`: the stored element type (F16/BF16 halve the file; loading converts back to T).
    void add_weights(io::SafetensorsWriter& w, bool with_ema = false, io::DType as = io::dtype_of<T>()) const {
        io::add_store_buffer(w, vae_store, vae_store.values(), "", as);
        io::add_store_buffer(w, diffusion_store, diffusion_store.values(), "", as);
        if (with_ema || has_ema()) io::add_store_buffer(w, diffusion_store, ema.values(), "ema.", as);
        w.add("latent_scale", {1}, &latent_scale);
        w.set_metadata("format", latent_diffusion::kFormat);
        w.set_metadata("config", latent_diffusion::preset_name<Preset>());
        w.set_metadata("ema_updates", std::to_string(ema.update_count()));
        w.set_metadata("prediction", prediction == diffusion::Prediction::v ? "v" : "epsilon");
        w.set_metadata("schedule", latent_diffusion::kScheduleName);
        w.set_metadata("kind", "weights");
        w.set_metadata("tokenizer", tokenizer.to_string());
        w.set_metadata("image_border", std::to_string(image_border));
    }
    void save(const std::string& path, io::DType as = io::dtype_of<T>()) const {
        io::SafetensorsWriter w;
        add_weights(w, false, as);
        w.save(path);
    }

    /// Reads the weights written by add_weights (extra tensors, such as a training checkpoint's
    /// optimizer state, are ignored). Throws naming the file and the tensor on any mismatch.
    void read_weights(const io::SafetensorsFile& f) {
        check_config(f);
        const std::string& updates = io::metadata_at(f, "ema_updates");
        std::int64_t n = 0;
        try {
            n = std::stoll(updates);
        } catch (const std::exception&) { f.fail("ema_updates '" + updates + "' is not a number"); }
        io::read_store_buffer(f, vae_store, vae_store.values(), "");
        io::read_store_buffer(f, diffusion_store, diffusion_store.values(), "");
        if (n > 0) io::read_store_buffer(f, diffusion_store, ema.values(), "ema.");
        else std::copy(diffusion_store.values(), diffusion_store.values() + diffusion_store.size(), ema.values());
        ema.set_update_count(n);
        f.read("latent_scale", &latent_scale, 1);
        try {
            text::Tokenizer t = text::Tokenizer::from_string(io::metadata_at(f, "tokenizer"));
            Text::check_tokenizer(t);
            tokenizer = std::move(t);
        } catch (const std::invalid_argument& e) { f.fail(std::string("tokenizer: ") + e.what()); }
        const auto border = f.metadata().find("image_border");  // absent: no padding
        image_border = border == f.metadata().end() ? 0 : std::atoi(border->second.c_str());
        if (image_border < 0 || 2 * image_border >= image_size)
            f.fail("image_border " + std::to_string(image_border) + " does not fit the " + std::to_string(image_size) +
                   "-pixel images");
        if (!(latent_scale > 0)) f.fail("latent_scale " + std::to_string(latent_scale) + " is not positive");
    }
    void load(const std::string& path) { read_weights(io::SafetensorsFile(path)); }

    /// Throws unless the file was written by this pipeline for this preset.
    static void check_config(const io::SafetensorsFile& f) {
        const std::string& format = io::metadata_at(f, "format");
        if (format != latent_diffusion::kFormat)
            f.fail("format '" + format + "', expected '" + latent_diffusion::kFormat + "'");
        const std::string& config = io::metadata_at(f, "config");
        if (config != latent_diffusion::preset_name<Preset>())
            f.fail("written for the " + config + " preset; this model is " + latent_diffusion::preset_name<Preset>());
    }
};

}  // namespace diffuse

#endif
