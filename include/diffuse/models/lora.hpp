// LoraAdapters<T, Preset>: low-rank adapters (nn/lora.hpp) on the attention projections (q_proj,
// k_proj, v_proj, out_proj) of a LatentDiffusion model's text encoder and UNet, and optionally a
// trigger word: a new word with its own row of the token-embedding table (textual inversion).
//
// The adapters' parameters live in their own flat buffers (values and gradients, as a ParamStore's),
// with a rank chosen at run time; the model's Linears point at their hooks while the adapters live.
// Layout per module: lora_down A [r, in], then lora_up B [out, r]; then the trigger embedding [D].
// Fresh adapters start as PEFT's: A ~ U(±1/√in), B = 0, so a fresh set changes nothing.
//
// The trigger word: the shipped tokenizers map unknown words to <unk> (id 3), and the Fashion-MNIST
// token table has 332 rows for a vocabulary of 44 words + 4 ids, so the rows past tokenizer.vocab_size()
// are free (never read in training: their gradient was always zero). The word is appended to the
// model's tokenizer, taking the first free row, and that row is trained. At strength s the row is
// <unk>'s row + s·(trained − <unk>'s row): s = 0 reads exactly what the base model reads for the word,
// so the whole model at strength 0 computes bitwise what the base model does.
//
// Files (safetensors, the common LoRA naming; <module> is the model's state-dict prefix, such as
// "unet.mid.cross.attn.q_proj"):
//   <module>.lora_down.weight  [r, in]     <module>.lora_up.weight  [out, r]     <module>.alpha  []
//   trigger_embedding [D] (only with a trigger word)
//   __metadata__: format "diffuse-lora-1", config (the preset's name), trigger_word ("" when none)
// The effective weight of a module is W + strength·(alpha / r)·up·down.
#ifndef DIFFUSE_MODELS_LORA_HPP
#define DIFFUSE_MODELS_LORA_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/gemm.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/nn/lora.hpp"
#include "diffuse/text/tokenizer.hpp"

namespace diffuse {

struct LoraOptions {
    int rank = 4;
    double alpha = 4;          // the update is scaled by alpha / rank
    bool text_encoder = true;  // adapters on the text encoder's attention projections
    bool unet = true;          // and on the UNet's (self- and cross-attention)
    std::string trigger_word;  // a new word with its own trained embedding row ("": none)
    std::uint64_t seed = 0;    // lora_down's initialisation
};

namespace lora {

inline constexpr const char* kFormat = "diffuse-lora-1";

/// Calls f(name, linear) for the q/k/v/out projections of every attention in a model part, with the
/// part's state-dict name of each ("unet.mid.cross.attn.q_proj").
template <class F>
struct ProjectionFinder {
    std::string prefix;
    F& f;
    template <class X>
    void operator()(std::string_view name, X& x) {
        const std::string full = prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
        if constexpr (is_param<X>::value) {
        } else if constexpr (requires {
                                 x.q_proj;
                                 x.k_proj;
                                 x.v_proj;
                                 x.out_proj;
                             }) {
            f(full + ".q_proj", x.q_proj);
            f(full + ".k_proj", x.k_proj);
            f(full + ".v_proj", x.v_proj);
            f(full + ".out_proj", x.out_proj);
        } else {
            ProjectionFinder<F> sub{full, f};
            x.visit(sub);
        }
    }
    template <class X>
    void operator()(std::string_view name, int index, X& x) {
        (*this)(std::string(name) + "." + std::to_string(index), x);
    }
};

template <class Part, class F>
void for_each_projection(Part& part, F&& f) {
    ProjectionFinder<F> v{"", f};
    part.visit(v);
}

}  // namespace lora

template <class T, class Preset>
class LoraAdapters {
public:
    using Model = LatentDiffusion<T, Preset>;
    static constexpr int D = Model::context_width;

    /// Where one adapted projection's hook is read: in the trained weights' text encoder and UNet
    /// and in the EMA weights' (LatentDiffusion::ema_part), which sampling runs by default.
    struct Slots {
        const LoraHook<T>** raw = nullptr;
        const LoraHook<T>** ema = nullptr;
        void set(const LoraHook<T>* hook) const { *raw = *ema = hook; }
    };

    /// One adapted Linear.
    struct Module {
        std::string name;  // state-dict prefix of the Linear
        int in = 0, out = 0, rank = 0;
        double alpha = 0;
        std::size_t down = 0, up = 0;  // offsets of A and B in the flat buffers
        Slots slots;
    };

    /// Fresh adapters of opt.rank on the chosen parts of `model` (B = 0: the model is unchanged
    /// until they are trained); with a trigger word, the word is added to model.tokenizer.
    LoraAdapters(Model& model, const LoraOptions& opt) : model_(model) {
        if (opt.rank < 1) throw std::invalid_argument("LoraAdapters: rank must be at least 1");
        if (!(opt.alpha > 0)) throw std::invalid_argument("LoraAdapters: alpha must be positive");
        if (!opt.text_encoder && !opt.unet)
            throw std::invalid_argument("LoraAdapters: adapt the text encoder, the UNet or both");
        find([&](const std::string& name, int in, int out, Slots slots) {
            const bool text = name.starts_with("text_encoder.");
            if (text ? opt.text_encoder : opt.unet) add_module(name, in, out, opt.rank, opt.alpha, slots);
        });
        if (!opt.trigger_word.empty()) add_trigger(opt.trigger_word);
        allocate();
        Rng rng(opt.seed);
        for (const Module& m : modules_) {
            const double bound = 1 / std::sqrt(double(m.in));
            for (std::size_t i = 0; i < std::size_t(m.rank) * m.in; ++i)
                values_[m.down + i] = T(rng.uniform(-bound, bound));
        }
        if (has_trigger()) {  // starts as <unk>: what the base model reads for the word
            const T* unk = token_row(model_.diffusion_store.values(), text::Tokenizer::unk_id);
            std::copy(unk, unk + D, values_.data() + trigger_offset_);
        }
        attach(1.0);
    }

    /// Adapters read from a file written by save(), acting at `strength`.
    LoraAdapters(Model& model, const io::SafetensorsFile& f, double strength) : model_(model) {
        if (io::metadata_at(f, "format") != lora::kFormat)
            f.fail("format '" + io::metadata_at(f, "format") + "', expected '" + lora::kFormat + "'");
        const std::string& config = io::metadata_at(f, "config");
        if (config != latent_diffusion::preset_name<Preset>())
            f.fail("written for the " + config + " preset; this model is " + latent_diffusion::preset_name<Preset>());
        std::size_t matched = 0;
        find([&](const std::string& name, int in, int out, Slots slots) {
            const auto* down = f.find(name + ".lora_down.weight");
            if (!down) return;
            const auto& up = f.at(name + ".lora_up.weight");
            const auto& ds = down->shape;
            if (ds.size() != 2 || ds[1] != in || ds[0] < 1 || up.shape.size() != 2 || up.shape[0] != out ||
                up.shape[1] != ds[0])
                f.fail(name + ": lora_down " + io::shape_string(ds) + " and lora_up " + io::shape_string(up.shape) +
                       " do not fit a " + std::to_string(in) + " -> " + std::to_string(out) + " projection as [r, " +
                       std::to_string(in) + "] and [" + std::to_string(out) + ", r]");
            double alpha = double(ds[0]);  // kohya's default when a file carries no alpha
            if (f.find(name + ".alpha")) f.read(name + ".alpha", &alpha, 1);
            add_module(name, in, out, int(ds[0]), alpha, slots);
            ++matched;
        });
        for (const auto& t : f.tensors())
            if (t.name.ends_with(".lora_down.weight") && !module(t.name.substr(0, t.name.size() - 17)))
                f.fail(t.name + ": this model has no attention projection of that name");
        const std::string& word = io::metadata_at(f, "trigger_word");
        if (!word.empty()) add_trigger(word);
        if (matched == 0 && word.empty()) f.fail("holds no adapters and no trigger word");
        allocate();
        for (const Module& m : modules_) {
            f.read(m.name + ".lora_down.weight", values_.data() + m.down, std::size_t(m.rank) * m.in);
            f.read(m.name + ".lora_up.weight", values_.data() + m.up, std::size_t(m.out) * m.rank);
        }
        if (has_trigger()) f.read("trigger_embedding", values_.data() + trigger_offset_, std::size_t(D));
        attach(strength);
    }

    /// Detaches the hooks and, unless merged, takes the trigger word out of the tokenizer again: the
    /// model is the base model (its free row, unread, may keep the trigger's values).
    ~LoraAdapters() {
        for (const Module& m : modules_) m.slots.set(nullptr);
        if (has_trigger() && !merged_) model_.tokenizer = std::move(base_tokenizer_);
    }
    LoraAdapters(const LoraAdapters&) = delete;
    LoraAdapters& operator=(const LoraAdapters&) = delete;

    const std::vector<Module>& modules() const { return modules_; }
    const Module* module(std::string_view name) const {
        for (const Module& m : modules_)
            if (m.name == name) return &m;
        return nullptr;
    }
    bool has_trigger() const { return trigger_id_ >= 0; }
    const std::string& trigger_word() const { return trigger_word_; }
    std::int32_t trigger_id() const { return trigger_id_; }
    double strength() const { return strength_; }
    bool merged() const { return merged_; }

    T* values() { return values_.data(); }
    const T* values() const { return values_.data(); }
    T* grads() { return grads_.data(); }
    std::size_t size() const { return values_.size(); }
    void zero_grad() { std::fill(grads_.begin(), grads_.end(), T(0)); }

    /// How strongly the adapters act: 0 is the base model (bitwise), 1 as trained.
    void set_strength(double s) {
        if (merged_) throw std::logic_error("LoraAdapters: merged adapters have no strength to change");
        strength_ = s;
        for (std::size_t i = 0; i < modules_.size(); ++i) hooks_[i].scale = T(s * modules_[i].alpha / modules_[i].rank);
        write_trigger_rows();
    }

    /// After a backward pass through the model (its store's gradients): the trigger row's gradient
    /// into the adapters' gradient buffer (the adapters' own gradients are there already).
    void collect_trigger_gradient() {
        if (!has_trigger()) return;
        const T* g = token_row(model_.diffusion_store.grads(), trigger_id_);
        const T s(strength_);
        for (int j = 0; j < D; ++j) grads_[trigger_offset_ + std::size_t(j)] = s * g[j];
    }
    /// After an update of the trigger embedding: its row in the model's weights.
    void write_trigger_rows() {
        if (!has_trigger()) return;
        write_trigger_row(model_.diffusion_store.values());
        if (model_.has_ema()) write_trigger_row(model_.ema.values());
    }

    /// W += strength·(α/r)·B·A in the model's weights (and its EMA weights, which sampling uses),
    /// then detaches: the model computes the same as before within float rounding, at a plain
    /// Linear's cost. The trigger word stays in the tokenizer and table.
    void merge() {
        if (merged_) return;
        std::vector<T> delta;
        for (std::size_t i = 0; i < modules_.size(); ++i) {
            const Module& m = modules_[i];
            delta.assign(std::size_t(m.out) * m.in, T(0));
            gemm<Trans::N, Trans::N>(m.out, m.in, m.rank, values_.data() + m.up, values_.data() + m.down, delta.data(),
                                     Accumulate::no);  // B·A [out, in]
            const T s = hooks_[i].scale;
            const std::size_t w = model_.diffusion_store.info(m.name + ".weight").offset;
            for (T* base : weight_buffers())
                for (std::size_t k = 0; k < delta.size(); ++k) base[w + k] += s * delta[k];
            m.slots.set(nullptr);
        }
        merged_ = true;
    }

    /// The adapters as trained (strength not applied), in the common LoRA layout.
    void save(const std::string& path) const {
        io::SafetensorsWriter w;
        for (const Module& m : modules_) {
            w.add(m.name + ".lora_down.weight", {m.rank, m.in}, values_.data() + m.down);
            w.add(m.name + ".lora_up.weight", {m.out, m.rank}, values_.data() + m.up);
            w.add(m.name + ".alpha", {}, &m.alpha, io::dtype_of<T>());
        }
        if (has_trigger()) w.add("trigger_embedding", {D}, values_.data() + trigger_offset_);
        w.set_metadata("format", lora::kFormat);
        w.set_metadata("config", latent_diffusion::preset_name<Preset>());
        w.set_metadata("trigger_word", trigger_word_);
        w.save(path);
    }

    /// Number of trained values (adapters and trigger embedding).
    std::size_t parameter_count() const { return values_.size(); }

private:
    template <class F>
    void find(F&& f) {
        std::vector<const LoraHook<T>**> ema_slots;  // the same projections, in the same order
        lora::for_each_projection(model_.ema_part,
                                  [&](const std::string&, auto& linear) { ema_slots.push_back(&linear.lora); });
        std::size_t i = 0;
        lora::for_each_projection(model_.diffusion_part, [&](const std::string& name, auto& linear) {
            using L = std::remove_reference_t<decltype(linear)>;
            f(name, L::in_features, L::out_features, Slots{&linear.lora, ema_slots[i++]});
        });
    }

    void add_module(const std::string& name, int in, int out, int rank, double alpha, Slots slots) {
        if (!(alpha > 0) || !std::isfinite(alpha))
            throw std::invalid_argument("LoraAdapters: " + name + ": alpha must be positive");
        Module m{name, in, out, rank, alpha, next_, next_ + std::size_t(rank) * in, slots};
        next_ += std::size_t(rank) * (in + out);
        modules_.push_back(std::move(m));
    }

    void add_trigger(const std::string& word) {
        const text::Tokenizer& base = model_.tokenizer;
        if (base.unknown() != text::Tokenizer::Unknown::token)
            throw std::invalid_argument(
                "LoraAdapters: a trigger word needs a tokenizer that reads unknown words as "
                "<unk> (the words+unk layout)");
        if (base.word_id(word) >= 0)
            throw std::invalid_argument("LoraAdapters: the trigger word '" + word +
                                        "' is already in the vocabulary; pick a word the model does not know");
        const std::int32_t id = base.vocab_size();
        if (id >= Model::Text::vocab_size)
            throw std::invalid_argument("LoraAdapters: the token table (" + std::to_string(Model::Text::vocab_size) +
                                        " rows) has no free row for the trigger word");
        std::vector<std::string> words = base.words();
        words.push_back(word);
        text::Tokenizer with(std::move(words), base.unknown());  // throws unless one lower-case word
        base_tokenizer_ = std::move(model_.tokenizer);
        model_.tokenizer = std::move(with);
        trigger_word_ = word;
        trigger_id_ = id;
        trigger_offset_ = next_;
        next_ += D;
        token_offset_ = model_.diffusion_store.info("text_encoder.embed.token.weight").offset;
    }

    void allocate() {
        values_ = AlignedBuffer<T>(next_);
        grads_ = AlignedBuffer<T>(next_);
    }

    /// Points every module's Linear at its hook and sets the strength.
    void attach(double strength) {
        hooks_.assign(modules_.size(), LoraHook<T>{});
        for (std::size_t i = 0; i < modules_.size(); ++i) {
            const Module& m = modules_[i];
            hooks_[i] = {m.rank,
                         T(0),
                         values_.data() + m.down,
                         values_.data() + m.up,
                         grads_.data() + m.down,
                         grads_.data() + m.up};
            m.slots.set(&hooks_[i]);
        }
        set_strength(strength);
    }

    T* token_row(T* buffer, std::int32_t id) const { return buffer + token_offset_ + std::size_t(id) * D; }

    void write_trigger_row(T* buffer) {
        const T* unk = token_row(buffer, text::Tokenizer::unk_id);
        T* row = token_row(buffer, trigger_id_);
        const T* trained = values_.data() + trigger_offset_;
        const T s(strength_);
        for (int j = 0; j < D; ++j) row[j] = unk[j] + s * (trained[j] - unk[j]);
    }

    std::vector<T*> weight_buffers() {
        std::vector<T*> b{model_.diffusion_store.values()};
        if (model_.has_ema()) b.push_back(model_.ema.values());
        return b;
    }

    Model& model_;
    std::vector<Module> modules_;
    std::vector<LoraHook<T>> hooks_;
    AlignedBuffer<T> values_, grads_;
    std::size_t next_ = 0;  // buffer length so far
    std::string trigger_word_;
    text::Tokenizer base_tokenizer_;  // the model's before the trigger word, restored by the destructor
    std::int32_t trigger_id_ = -1;
    std::size_t trigger_offset_ = 0, token_offset_ = 0;
    double strength_ = 1;
    bool merged_ = false;
};

}  // namespace diffuse

#endif
