// The C++ side of the side-by-side comparison with PyTorch (benchmarks/compare_torch.py drives it;
// benchmarks/compare.sh is the command). A long-lived process that reads one command per line on
// stdin and answers each with one line on stdout; fields are separated by tabs:
//
//   list                  ok <case>\t<case>...            the cases, in order
//   setup <case> <dir>    ok {json}                       frees the previous case, resets this
//         process's peak-RSS mark (writes "5" to /proc/self/clear_refs), builds the case, writes
//         <dir>/in.safetensors (the inputs, and layer weights), runs the checked computation once
//         and writes its results to <dir>/out.safetensors; the JSON describes the case (and says
//         how long all that took)
//   reset                 ok                              frees what is free, resets the peak-RSS mark
//   run <k>               ok <s> [<aux s>...]             k timed calls; seconds per call of the
//         case, then of each auxiliary timer (adam: the plain fused loop)
//   quit
// Any failure answers "error <message>".
//
//   bench_compare --threads N --model models/diffusion.safetensors
//
// Cases (batch 32 = examples/train.cpp's kBatch; the Default preset):
//   train   text encoder + UNet step: encode → UNet → MSE (ε target) → backward → Adam
//           (LatentDiffusionTrainer's step without data, VAE encoding, clipping or EMA)
//   vae     AutoencoderKL step: forward with given ε, reconstruction MSE + kl_weight·KL, backward, Adam
//   sample  16 prompts: LatentDiffusion::generate (DDIM 50, eta 0, guidance 3, EMA weights)
//   adam    one Adam step over every text-encoder and UNet parameter (given gradients; the result:
//           parameters and both moments); aux: the plain fused loop with the same memory traffic
//   layers  at the model's shapes, random weights, forward or forward + backward
#include <malloc.h>
#include <omp.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/class_prompts.hpp"
#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/nn/norm.hpp"
#include "diffuse/text/tokenizer.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "bench_util.hpp"

using namespace diffuse;
using bench::fmt;

namespace {

using Model = LatentDiffusion<float, presets::Default>;
constexpr int kTrainBatch = 32;   // examples/train.cpp kBatch
constexpr int kSampleBatch = 16;  // txt2img's compile-time batch

// ---- Files for the driver ----------------------------------------------------------------------

/// A safetensors file being assembled (the data must stay alive until save()).
class Writer {
public:
    template <class T, int... D>
    void add(const std::string& name, const Tensor<T, D...>& t) {
        w_.add(name, {std::int64_t(D)...}, t.data());
    }
    void scalar(const std::string& name, double v) {
        scalars_.push_back(v);
        w_.add(name, {1}, &scalars_.back());
    }
    /// Every parameter of the store, read from `buf` (values or grads), as prefix + name.
    void params(const ParamStore<float>& s, const float* buf, const std::string& prefix) {
        for (const auto& i : s.infos())
            w_.add(prefix + i.name, std::vector<std::int64_t>(i.dims.begin(), i.dims.end()), buf + i.offset);
    }
    void meta(const std::string& k, const std::string& v) { w_.set_metadata(k, v); }
    void save(const std::string& path) const { w_.save(path); }

private:
    io::SafetensorsWriter w_;
    std::deque<double> scalars_;  // stable addresses
};

/// "key":value pairs into a JSON object.
struct Json {
    std::string s;
    Json& num(const char* k, double v) { return raw(k, fmt("%.17g", v)); }
    Json& str(const char* k, const std::string& v) { return raw(k, "\"" + v + "\""); }
    Json& raw(const char* k, const std::string& v) {
        s += (s.empty() ? "" : ",") + fmt("\"%s\":", k) + v;
        return *this;
    }
    std::string done() const { return "{" + s + "}"; }
};

template <class A>
std::string json_list(const A& a) {
    std::string s = "[";
    for (std::size_t i = 0; i < a.size(); ++i) s += (i ? "," : "") + fmt("%d", int(a[i]));
    return s + "]";
}

/// The Default preset's configs, in the fields of tools/reference/common.py's VaeConfig,
/// ClipConfig and UnetConfig (the driver builds its torch modules from them).
std::string configs_json() {
    using V = Model::VaeConfig;
    using C = Model::TextConfig;
    using U = Model::UNetConfig;
    Json vae, clip, unet;
    vae.num("image_size", V::image_size)
        .num("image_channels", V::image_channels)
        .raw("channels", json_list(V::widths))
        .num("latent_channels", V::latent_channels)
        .num("res_blocks", V::res_blocks)
        .num("groups", V::norm::groups)
        .num("heads", V::heads);
    clip.num("vocab", C::vocab_size)
        .num("context_length", C::context_length)
        .num("width", C::width)
        .num("heads", C::heads)
        .num("layers", C::layers)
        .num("hidden", C::mlp_hidden);
    unet.num("latent_size", U::latent_size)
        .num("latent_channels", U::latent_channels)
        .raw("widths", json_list(U::widths))
        .raw("attention", json_list(U::attention))
        .num("res_blocks", U::res_blocks)
        .num("heads", U::heads)
        .num("groups", U::Norm::groups)
        .num("context_length", U::context_length)
        .num("context_width", U::context_width)
        .num("time_features", U::time_features)
        .num("time_dim", U::time_dim);
    static_assert(!C::seed_head && U::time_embedding == unet::TimeKind::sinusoidal &&
                      U::prediction == diffusion::Prediction::epsilon,
                  "bench_compare: the torch side builds the Default preset's kinds of text encoder and UNet");
    return Json{}.raw("vae", vae.done()).raw("clip", clip.done()).raw("unet", unet.done()).done();
}

// ---- Cases ---------------------------------------------------------------------------------

struct Case {
    virtual ~Case() = default;
    /// Builds everything, writes in/out files into dir; returns the JSON description.
    virtual std::string setup(const std::string& dir, const std::string& model_path) = 0;
    /// The timed call.
    virtual void run() = 0;
    /// Further timed calls reported beside the case (same count per round).
    virtual std::vector<std::function<void()>> aux() { return {}; }
};

/// `n` prompts as the trainer sees them: class captions, every 8th dropped to "" (CFG dropout).
template <int N>
std::array<std::string, N> training_prompts() {
    std::array<std::string, N> p;
    for (int i = 0; i < N; ++i) p[std::size_t(i)] = i % 8 == 7 ? "" : app::class_prompt(i % app::kClassCount);
    return p;
}

/// The text encoder and UNet with the shipped raw (non-EMA) weights, as the trainer's store.
struct DiffusionWeights {
    Model::DiffusionPart part;
    ParamStore<float> store;
    text::Tokenizer tokenizer;  // the weights file's vocabulary
    void load(const std::string& path) {
        store.bind(part, 0);
        const io::SafetensorsFile f(path);
        io::read_store_buffer(f, store, store.values(), "");
        tokenizer = text::Tokenizer::from_string(io::metadata_at(f, "tokenizer"));
    }
    static constexpr std::size_t count = Model::diffusion_parameter_count;
};

/// train: one text-encoder + UNet step at the training batch, from given inputs.
struct TrainCase : Case {
    static constexpr int N = kTrainBatch, h = Model::latent_size, L = Model::latent_channels;
    static constexpr int Ctx = Model::context_length;
    using Pass = LatentDiffusionTrainer<float, presets::Default, N>::Pass;  // the trainer's: two halves
    struct Work {
        Tensor<std::int32_t, N, Ctx> ids;
        Tensor<bool, N, Ctx> pad_mask;
        Tensor<float, N, h, h, L> zt, target, y, dy;
        Tensor<std::int32_t, N> t;
    };
    DiffusionWeights m;
    std::unique_ptr<Work> w = make<Work>();
    std::unique_ptr<Pass> pass;
    std::unique_ptr<Adam<float>> adam;

    /// Forward and backward; leaves the gradients in the store; returns the loss.
    float forward_backward() {
        pass->forward(cview(w->ids), cview(w->pad_mask), cview(w->zt), cview(w->t), w->y.view());
        w->dy.fill(0);
        const float loss = mse_loss(w->y, w->target, w->dy);
        m.store.zero_grad();
        pass->backward(cview(w->zt), cview(w->t), cview(w->y), cview(w->dy));
        return loss;
    }

    std::string setup(const std::string& dir, const std::string& model_path) override {
        m.load(model_path);
        pass = std::make_unique<Pass>(m.part, m.store);
        adam = std::make_unique<Adam<float>>(m.store, AdamOptions{.lr = LatentDiffusionTrainOptions{}.lr});
        m.tokenizer.encode_batch<N, Ctx>(training_prompts<N>(), w->ids.view(), w->pad_mask.view());
        Rng rng(101);
        fill_normal(w->zt, rng);
        fill_normal(w->target, rng);
        diffusion::draw_timesteps(diffusion::NoiseSchedule::scaled_linear(), rng, w->t);
        Writer in;
        in.add("zt", w->zt);
        in.add("t", w->t);
        in.add("ids", w->ids);
        in.add("mask", w->pad_mask);
        in.add("target", w->target);
        in.save(dir + "/in.safetensors");
        Writer out;
        out.scalar("loss", forward_backward());
        out.params(m.store, m.store.grads(), "grad.");
        out.save(dir + "/out.safetensors");
        // Parameters, gradients (the second half's too), Adam's m and v; inputs, outputs, workspaces.
        const double bytes = (4.0 + (Pass::parts - 1)) * sizeof(float) * DiffusionWeights::count + sizeof(Work) +
                             double(Pass::workspace_bytes);
        return Json{}
            .str("kind", "train")
            .num("batch", N)
            .num("lr", adam->lr)
            .num("parameters", double(m.count))
            .num("constexpr_bytes", bytes)
            .raw("config", configs_json())
            .done();
    }
    void run() override {
        forward_backward();
        adam->step();
    }
};

/// vae: one AutoencoderKL training step at the training batch, from given images and ε.
struct VaeCase : Case {
    static constexpr int N = kTrainBatch;
    using Vae = Model::Vae;
    using Pass = LatentDiffusionTrainer<float, presets::Default, N>::VaeTrainPass;  // the trainer's: two halves
    struct Work {
        Tensor<float, N, Model::image_size, Model::image_size, Model::image_channels> x;
        Tensor<float, N, Model::latent_size, Model::latent_size, Model::latent_channels> eps;
    };
    Model::VaePart part;
    ParamStore<float> store;
    std::unique_ptr<Work> w = make<Work>();
    std::unique_ptr<Pass> pass;
    std::unique_ptr<Adam<float>> adam;
    const float beta = float(LatentDiffusionTrainOptions{}.kl_weight);

    Vae::Losses forward_backward() {
        store.zero_grad();
        return pass->step(cview(w->x), cview(w->eps), beta);
    }

    std::string setup(const std::string& dir, const std::string& model_path) override {
        store.bind(part, 0);
        io::read_store_buffer(io::SafetensorsFile(model_path), store, store.values(), "");
        pass = std::make_unique<Pass>(part, store);
        adam = std::make_unique<Adam<float>>(store, AdamOptions{.lr = LatentDiffusionTrainOptions{}.vae_lr});
        Rng rng(102);
        fill_uniform(w->x, rng, -1, 1);
        fill_normal(w->eps, rng);
        Writer in;
        in.add("x", w->x);
        in.add("eps", w->eps);
        in.save(dir + "/in.safetensors");
        const auto l = forward_backward();
        Writer out;
        out.scalar("loss", l.total);
        out.scalar("reconstruction", l.reconstruction);
        out.scalar("kl", l.kl);
        out.params(store, store.grads(), "grad.");
        out.save(dir + "/out.safetensors");
        // Parameters, gradients (the second half's too), Adam's m and v; inputs, workspaces.
        const double bytes = (4.0 + (Pass::parts - 1)) * sizeof(float) * Vae::parameter_count + sizeof(Work) +
                             double(Pass::workspace_bytes);
        return Json{}
            .str("kind", "vae")
            .num("batch", N)
            .num("lr", adam->lr)
            .num("kl_weight", beta)
            .num("parameters", double(Vae::parameter_count))
            .num("constexpr_bytes", bytes)
            .raw("config", configs_json())
            .done();
    }
    void run() override {
        forward_backward();
        adam->step();
    }
};

/// sample: LatentDiffusion::generate for 16 prompts with a reused workspace.
struct SampleCase : Case {
    static constexpr int N = kSampleBatch, S = Model::image_size, C = Model::image_channels;
    static constexpr int h = Model::latent_size, L = Model::latent_channels, Ctx = Model::context_length;
    std::unique_ptr<Model> model = std::make_unique<Model>();
    std::unique_ptr<Model::SampleWorkspace<N>> ws = make<Model::SampleWorkspace<N>>();
    std::unique_ptr<Tensor<float, N, S, S, C>> images = make<Tensor<float, N, S, S, C>>();
    std::array<std::string, N> prompts;
    Model::SampleOptions opt;  // DDIM, 50 steps, guidance 3, eta 0, seed 0, EMA weights

    std::string setup(const std::string& dir, const std::string& model_path) override {
        model->load(model_path);
        for (int i = 0; i < N; ++i) prompts[std::size_t(i)] = app::class_prompt(i % app::kClassCount);
        // What generate() computes inside, for the torch side: token ids and masks of both
        // branches, and z_T (item i from stream_rng(seed, i), as diffusion::sample draws it).
        struct Inputs {
            Tensor<std::int32_t, N, Ctx> ids_cond, ids_uncond;
            Tensor<bool, N, Ctx> mask_cond, mask_uncond;
            Tensor<float, N, h, h, L> noise;
        };
        auto in_t = make<Inputs>();
        std::array<std::string, N> uncond;
        model->tokenizer.encode_batch<N, Ctx>(prompts, in_t->ids_cond.view(), in_t->mask_cond.view());
        model->tokenizer.encode_batch<N, Ctx>(uncond, in_t->ids_uncond.view(), in_t->mask_uncond.view());
        constexpr std::size_t item = Model::latent_elements;
        for (int i = 0; i < N; ++i) {
            Rng r = stream_rng(opt.seed, i);
            for (std::size_t k = 0; k < item; ++k) in_t->noise[std::size_t(i) * item + k] = float(r.normal());
        }
        Writer in;
        in.add("ids_cond", in_t->ids_cond);
        in.add("mask_cond", in_t->mask_cond);
        in.add("ids_uncond", in_t->ids_uncond);
        in.add("mask_uncond", in_t->mask_uncond);
        in.add("noise", in_t->noise);
        in.save(dir + "/in.safetensors");
        run();
        Writer out;
        out.add("images", *images);
        out.save(dir + "/out.safetensors");
        return Json{}
            .str("kind", "sample")
            .num("batch", N)
            .num("steps", opt.sampler.steps)
            .num("guidance", opt.sampler.guidance)
            .num("eta", opt.sampler.eta)
            .str("sampler", "ddim")
            .str("spacing", "trailing")
            .num("timesteps", model->schedule.steps())
            .str("weights", model->has_ema() ? "ema" : "raw")
            .num("latent_scale", model->latent_scale)
            .raw("config", configs_json())
            .done();
    }
    void run() override {
        if (opt.sampler.method != diffusion::Method::ddim || opt.sampler.eta != 0)
            throw std::logic_error("sample: the torch side implements DDIM with eta 0");
        model->generate(prompts, "", opt, *images, *ws);
    }
};

/// adam: one Adam step over the text encoder and UNet, from given gradients (written: parameters,
/// m and v after it); aux: the plain fused loop over buffers of the same size.
struct AdamCase : Case {
    DiffusionWeights m;
    std::unique_ptr<Adam<float>> adam;
    AlignedBuffer<float> p, g, mm, v;

    std::string setup(const std::string& dir, const std::string& model_path) override {
        m.load(model_path);
        Rng rng(103);
        for (const auto& i : m.store.infos())
            for (std::size_t k = 0; k < i.size; ++k) m.store.grads()[i.offset + k] = float(1e-3 * rng.normal());
        Writer in;
        in.params(m.store, m.store.grads(), "grad.");
        in.save(dir + "/in.safetensors");
        adam = std::make_unique<Adam<float>>(m.store, AdamOptions{});
        adam->step();
        Writer out;
        out.params(m.store, m.store.values(), "param.");
        out.params(m.store, adam->m(), "m.");
        out.params(m.store, adam->v(), "v.");
        out.save(dir + "/out.safetensors");
        const std::size_t n = m.store.size();
        for (auto* b : {&p, &g, &mm, &v}) *b = AlignedBuffer<float>(n);
        std::copy(m.store.values(), m.store.values() + n, p.data());
        std::copy(m.store.grads(), m.store.grads() + n, g.data());
        return Json{}
            .str("kind", "adam")
            .num("lr", adam->lr)
            .num("beta1", adam->beta1)
            .num("beta2", adam->beta2)
            .num("eps", adam->eps)
            .num("parameters", double(m.count))
            .num("buffer", double(n))
            .raw("aux", "[\"plain fused loop\"]")
            .raw("config", configs_json())
            .done();
    }
    void run() override { adam->step(); }
    std::vector<std::function<void()>> aux() override {
        return {[this] { bench::plain_fused(p.size(), 1e-6f, p.data(), g.data(), mm.data(), v.data()); }};
    }
};

// ---- Layers --------------------------------------------------------------------------------

/// Random weights in our layout: matrices N(0, 1/fan_in), norm scales 1 + 0.2·N, biases 0.2·N
/// (tools/reference/common.py's initialize_f32), so that no default hides a layout mistake.
void randomize(ParamStore<float>& s, Rng& rng) {
    for (const auto& i : s.infos()) {
        float* p = s.values() + i.offset;
        const bool matrix = i.dims.size() > 1;
        const bool scale = !matrix && i.name.size() >= 6 && i.name.compare(i.name.size() - 6, 6, "weight") == 0;
        const double sd = matrix ? 1 / std::sqrt(double(i.size / std::size_t(i.dims[0]))) : 0.2;
        for (std::size_t k = 0; k < i.size; ++k) p[k] = float((scale ? 1.0 : 0.0) + sd * rng.normal());
    }
}

template <class L, class XS>
struct CacheOf {
    struct None {};
    static auto pick() {
        if constexpr (requires { typename L::template Cache<XS>; })
            return std::type_identity<typename L::template Cache<XS>>{};
        else return std::type_identity<None>{};
    }
    using type = typename decltype(pick())::type;
};

/// A layer from x [XS] to y [YS] (conv, norms, linear).
template <class L, class XS, class YS>
struct Unary {
    using Layer = L;
    static constexpr bool cached = !std::is_empty_v<typename CacheOf<L, XS>::type>;
    struct Work {
        TensorOf<float, XS> x, dx;
        TensorOf<float, YS> y, dy;
        typename CacheOf<L, XS>::type cache;
    };
    static void fill(Work& w, Rng& r) {
        fill_normal(w.x, r);
        fill_normal(w.dy, r);
    }
    static void forward(const L& l, Work& w) {
        if constexpr (cached) l.forward(w.x, w.y, w.cache);
        else l.forward(w.x, w.y);
    }
    static void backward(const L& l, Work& w) {
        if constexpr (cached) l.backward(w.x, w.y, w.cache, w.dy, w.dx);
        else l.backward(w.x, w.y, w.dy, w.dx);
    }
    static void inputs(Writer& o, const Work& w) {
        o.add("x", w.x);
        o.add("dy", w.dy);
    }
    static void outputs(Writer& o, const Work& w, bool bwd) {
        o.add("y", w.y);
        if (bwd) o.add("dx", w.dx);
    }
};

template <int N, int H, int Cin, int Cout>
struct ConvK : Unary<Conv2d<float, Cin, Cout, 3>, Shape<N, H, H, Cin>, Shape<N, H, H, Cout>> {
    static std::string name() { return fmt("conv3x3 %d→%d %d×%d", Cin, Cout, H, H); }
    static Json info() { return Json{}.str("kind", "conv").num("n", N).num("h", H).num("cin", Cin).num("cout", Cout); }
};
template <int N, int H, int C, int G>
struct GroupNormK : Unary<GroupNorm<float, C, G>, Shape<N, H, H, C>, Shape<N, H, H, C>> {
    static std::string name() { return fmt("GroupNorm %d groups %d ch %d×%d", G, C, H, H); }
    static Json info() { return Json{}.str("kind", "groupnorm").num("groups", G).num("channels", C); }
};
template <int N, int T, int D>
struct LayerNormK : Unary<LayerNorm<float, D>, Shape<N, T, D>, Shape<N, T, D>> {
    static std::string name() { return fmt("LayerNorm %d over %d·%d tokens", D, N, T); }
    static Json info() { return Json{}.str("kind", "layernorm").num("width", D); }
};
template <int N, int T, int In, int Out>
struct LinearK : Unary<Linear<float, In, Out>, Shape<N * T, In>, Shape<N * T, Out>> {
    static std::string name() { return fmt("Linear %d→%d over %d·%d tokens", In, Out, N, T); }
    static Json info() { return Json{}.str("kind", "linear").num("in", In).num("out", Out); }
};

/// SGEMM 1024³ side by side with torch's BLAS: a Linear 1024→1024 over 1024 rows is one such product
/// forward (torch: addmm → OpenBLAS sgemm), and three backward (dX, dW; db is a column sum).
struct SgemmK : LinearK<1, 1024, 1024, 1024> {
    static std::string name() { return "SGEMM 1024³ (Linear 1024→1024 over 1024 rows)"; }
};

/// MultiHeadAttention: self (context = x) or cross, with or without a key padding mask.
template <int N, int Tq, int Tk, int D, int Heads, bool Self, bool Masked>
struct AttnK {
    static_assert(!Self || Tq == Tk, "AttnK: self attention reads its own tokens");
    using Layer = MultiHeadAttention<float, D, Heads>;
    using XS = Shape<N, Tq, D>;
    using CS = Shape<N, Tk, D>;
    struct Work {
        TensorOf<float, XS> x, dx, y, dy;
        TensorOf<float, CS> c, dc;
        Tensor<bool, N, Tk> mask;
        typename Layer::template Cache<XS, CS> cache;
    };
    static std::string name() {
        return fmt("%s %d×%d%s %d heads%s", Self ? "self-attention" : "cross-attention", Tq, D,
                   Self ? "" : fmt(" ← %d×%d", Tk, D).c_str(), Heads, Masked ? " masked" : "");
    }
    static Json info() {
        return Json{}
            .str("kind", "attention")
            .num("width", D)
            .num("heads", Heads)
            .num("self", Self)
            .num("masked", Masked);
    }
    static void fill(Work& w, Rng& r) {
        fill_normal(w.x, r);
        fill_normal(w.c, r);
        fill_normal(w.dy, r);
        for (int n = 0; n < N; ++n) {  // a prompt's length: at least start and end are real tokens
            const int len = 2 + int(r.below(Tk - 1));
            for (int j = 0; j < Tk; ++j) w.mask(n, j) = Masked && j >= len;
        }
    }
    template <class F>
    static void with_mask(const Work& w, F f) {
        if constexpr (Masked) f(w.mask);
        else f(no_mask);
    }
    static void forward(const Layer& l, Work& w) {
        with_mask(w, [&](const auto& m) {
            if constexpr (Self) l.forward_self(w.x, m, w.y, w.cache);
            else l.forward(w.x, w.c, m, w.y, w.cache);
        });
    }
    static void backward(const Layer& l, Work& w) {
        with_mask(w, [&](const auto& m) {
            if constexpr (Self) l.backward_self(w.x, m, w.y, w.cache, w.dy, w.dx);
            else l.backward(w.x, w.c, m, w.y, w.cache, w.dy, w.dx, w.dc);
        });
    }
    static void inputs(Writer& o, const Work& w) {
        o.add("x", w.x);
        if (!Self) o.add("context", w.c);
        if (Masked) o.add("mask", w.mask);
        o.add("dy", w.dy);
    }
    static void outputs(Writer& o, const Work& w, bool bwd) {
        o.add("y", w.y);
        if (bwd) o.add("dx", w.dx);
        if (bwd && !Self) o.add("dcontext", w.dc);
    }
};

/// One layer case: random weights and inputs; forward, or forward then backward. Parameters are
/// named "layer.<name>"; their gradients "grad.layer.<name>".
template <class K>
struct LayerCase : Case {
    explicit LayerCase(bool bwd) : backward(bwd) {}
    bool backward;
    typename K::Layer layer;
    ParamStore<float> store;
    std::unique_ptr<typename K::Work> w = make<typename K::Work>();

    std::string setup(const std::string& dir, const std::string&) override {
        store.bind(layer, 0);
        Rng rng(104);
        randomize(store, rng);
        K::fill(*w, rng);
        Writer in;
        K::inputs(in, *w);
        in.params(store, store.values(), "layer.");
        in.save(dir + "/in.safetensors");
        store.zero_grad();
        run();
        Writer out;
        K::outputs(out, *w, backward);
        if (backward) out.params(store, store.grads(), "grad.layer.");
        out.save(dir + "/out.safetensors");
        return K::info().num("backward", backward).num("batch", kTrainBatch).done();
    }
    void run() override {
        K::forward(layer, *w);
        if (backward) K::backward(layer, *w);
    }
};

struct Entry {
    std::string name;
    std::function<std::unique_ptr<Case>()> make;
};

template <class K>
void add_layer(std::vector<Entry>& list) {
    for (bool bwd : {false, true})
        list.push_back(
            {K::name() + (bwd ? " fwd+bwd" : " fwd"), [bwd] { return std::make_unique<LayerCase<K>>(bwd); }});
}

std::vector<Entry> cases() {
    constexpr int N = kTrainBatch, Ctx = Model::context_length, D = Model::context_width;
    std::vector<Entry> list{
        {"train", [] { return std::make_unique<TrainCase>(); }},
        {"vae", [] { return std::make_unique<VaeCase>(); }},
        {"sample", [] { return std::make_unique<SampleCase>(); }},
        {"adam", [] { return std::make_unique<AdamCase>(); }},
    };
    add_layer<ConvK<N, 8, 64, 64>>(list);                     // UNet level 0
    add_layer<ConvK<N, 4, 128, 128>>(list);                   // UNet level 1 and middle
    add_layer<ConvK<N, 8, 192, 64>>(list);                    // UNet up path: concat(128 from below, 64 skip)
    add_layer<ConvK<N, 32, 16, 16>>(list);                    // VAE full resolution
    add_layer<AttnK<N, 16, 16, 128, 4, true, false>>(list);   // UNet middle, 4×4 tokens
    add_layer<AttnK<N, 16, Ctx, 128, 4, false, true>>(list);  // UNet cross-attention to the text
    add_layer<AttnK<N, Ctx, Ctx, D, 4, true, true>>(list);    // text encoder layers
    add_layer<GroupNormK<N, 8, 64, 32>>(list);
    add_layer<LayerNormK<N, Ctx, D>>(list);
    add_layer<LinearK<N, Ctx, D, 4 * D>>(list);  // text encoder MLP fc1
    add_layer<SgemmK>(list);                     // issue #15's SGEMM target against OpenBLAS
    return list;
}

// ---- The loop ------------------------------------------------------------------------------

/// Frees what the process no longer uses and restarts its peak-RSS (VmHWM) mark from here.
void reset_peak_rss() {
    malloc_trim(0);
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    if (!f) throw std::runtime_error("cannot write /proc/self/clear_refs (peak RSS would be wrong)");
}

std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> out;
    std::stringstream ss(line);
    std::string f;
    while (std::getline(ss, f, '\t')) out.push_back(f);
    return out;
}

int usage() {
    std::fprintf(stderr, "usage: bench_compare --threads N --model PATH   (driven by benchmarks/compare_torch.py)\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_path;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--threads") omp_set_num_threads(std::atoi(argv[i + 1]));
        else if (k == "--model") model_path = argv[i + 1];
        else return usage();
    }
    if (argc % 2 == 0 || model_path.empty()) return usage();

    const std::vector<Entry> list = cases();
    std::unique_ptr<Case> current;
    std::string line;
    while (std::getline(std::cin, line)) {
        const std::vector<std::string> f = split(line);
        std::string reply;
        try {
            if (f.empty()) throw std::invalid_argument("empty command");
            if (f[0] == "quit") break;
            if (f[0] == "isa") {  // the instruction set the kernels were compiled for
                reply = xsimd::default_arch::name();
            } else if (f[0] == "list") {
                for (const auto& e : list) reply += (reply.empty() ? "" : "\t") + e.name;
            } else if (f[0] == "setup" && f.size() == 3) {
                current.reset();
                reset_peak_rss();
                const Entry* e = nullptr;
                for (const auto& c : list)
                    if (c.name == f[1]) e = &c;
                if (!e) throw std::invalid_argument("no case named '" + f[1] + "'");
                auto c = e->make();
                const double s = bench::seconds([&] { reply = c->setup(f[2], model_path); });
                reply.back() = ',';
                reply += fmt("\"setup_seconds\":%.6g}", s);
                current = std::move(c);
            } else if (f[0] == "reset") {
                reset_peak_rss();
            } else if (f[0] == "run" && f.size() == 2) {
                if (!current) throw std::logic_error("run before setup");
                const int k = std::max(1, std::atoi(f[1].c_str()));
                auto timed = [k](const std::function<void()>& fn) {
                    return bench::seconds([&] {
                               for (int i = 0; i < k; ++i) fn();
                           }) /
                           k;
                };
                reply = fmt("%.9g", timed([&] { current->run(); }));
                for (const auto& fn : current->aux()) reply += fmt(" %.9g", timed(fn));
            } else {
                throw std::invalid_argument("unknown command '" + line + "'");
            }
            std::printf("ok %s\n", reply.c_str());
        } catch (const std::exception& ex) {
            std::string msg = ex.what();
            for (auto& ch : msg)
                if (ch == '\n') ch = ' ';
            std::printf("error %s\n", msg.c_str());
        }
        std::fflush(stdout);
    }
    return 0;
}
