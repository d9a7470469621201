// clip::TextEncoder: prompt → context [N, Ctx, D] for the UNet's cross-attention; what the seed's
// CLIP_NLP meant (StartEndPacker + TokenAndPositionEmbedding + 12 layers + Flatten/Dense/Reshape):
//
//   ids [N, Ctx] int32, pad_mask [N, Ctx] (text::Tokenizer::encode_batch; true = padding)
//   → TokenPositionEmbedding                      embed.token.weight, embed.position.weight
//   → Cfg::layers × clip::Layer (pre-LN, GELU)    layers.<i>.*
//   → final LayerNorm                             ln_final.*
//   → [Cfg::seed_head] the seed's head: flatten [N, Ctx·D] → Linear(head_hidden) → Linear(Ctx·D)
//     → reshape [N, Ctx, D]                       head.fc1.*, head.fc2.*   (no parameters when off)
//
// The head reads padded positions as zeros, so with or without it padding never reaches a real
// position's context: the context at non-padded positions does not depend on what the padded ids are.
// (The seed's head has no non-linearity between its two Dense layers; neither has ours.)
//
// The encoder is trained jointly with the UNet: backward takes d(context) from cross-attention and
// accumulates every parameter gradient (token ids have none).
#ifndef DIFFUSE_MODELS_CLIP_HPP
#define DIFFUSE_MODELS_CLIP_HPP

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "diffuse/blocks/transformer_layer.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/norm.hpp"
#include "diffuse/text/tokenizer.hpp"

namespace diffuse::clip {

/// A text-encoder configuration. Presets below; vary one member by deriving and redeclaring it.
template <int Vocab, int Ctx, int D, int Heads, int Layers, int Hidden = 4 * D, bool SeedHead = false,
          int HeadHidden = D>
struct Config {
    static constexpr int vocab_size = Vocab;    // token ids [0, vocab_size)
    static constexpr int context_length = Ctx;  // tokens per prompt, start and end included
    static constexpr int width = D;             // context width (the UNet's cross-attention Dkv)
    static constexpr int heads = Heads;
    static constexpr int layers = Layers;
    static constexpr int mlp_hidden = Hidden;
    static constexpr bool seed_head = SeedHead;  // the seed's Flatten → Dense → Dense → Reshape
    static constexpr int head_hidden = HeadHidden;
};

/// Rows of the token table of the Fashion-MNIST presets: the first shipped model's tokenizer layout
/// (3 specials, 256 bytes, 73 words); a learned vocabulary of up to 328 words fits it as well.
inline constexpr int fashion_vocab = 332;

/// Gradient checks and parity tests: checks in seconds in double.
struct TinyConfig : Config<fashion_vocab, 6, 8, 2, 2, 16> {};
/// Fashion-MNIST prompts ("a photo of a pair of ankle boots" is 9 tokens + start/end), 2 CPU cores.
struct DefaultConfig : Config<fashion_vocab, 16, 128, 4, 4, 512> {};
/// The Default encoder for captions of a larger vocabulary (learned from a user's data set: up to 3,072
/// words) and up to 22 words per prompt.
struct LargeVocabularyConfig : Config<4 + 3072, 24, 128, 4, 4, 512> {};
/// The seed's depth (12 layers) at width 256, with its Flatten/Dense/Reshape head.
struct SeedConfig : Config<fashion_vocab, 16, 256, 8, 12, 1024, true, 256> {};

/// Base with the seed head switched on or off: WithSeedHead<TinyConfig, true>.
template <class Base, bool On>
struct WithSeedHead : Base {
    static constexpr bool seed_head = On;
};

namespace detail {

/// True where token (n, t) is padding; never for no_mask.
template <class M>
bool is_padded(const M& mask, int n, int t, int len) {
    if constexpr (std::is_same_v<M, Absent>) return false;
    else return bool(mask.data()[std::size_t(n) * len + t]);
}

template <class X>
struct is_std_array : std::false_type {};
template <class E, std::size_t K>
struct is_std_array<std::array<E, K>> : std::true_type {};

}  // namespace detail

/// The seed's head: flatten [N, Ctx, D] (padded rows read as zero) → Linear → Linear → [N, Ctx, D].
template <class T, int Ctx, int D, int Hidden>
struct SeedHead {
    static constexpr int features = Ctx * D;

    Linear<T, features, Hidden> fc1;
    Linear<T, Hidden, features> fc2;

    template <class V>
    constexpr void visit(V& v) {
        v("fc1", fc1);
        v("fc2", fc2);
    }

    template <int N>
    struct Cache {
        Tensor<T, N, features> in;   // the input flattened, padded rows zeroed
        Tensor<T, N, Hidden> h, dh;  // fc1(in) and its gradient
        Tensor<T, N, features> din;  // d(in)
    };

    template <Shaped X, class M, Shaped Y, int N>
    void forward(const X& x, const M& mask, Y&& y, Cache<N>& c) const {
        for (int n = 0; n < N; ++n)
            for (int t = 0; t < Ctx; ++t) {
                const T* src = x.data() + (std::size_t(n) * Ctx + t) * D;
                T* dst = c.in.data() + (std::size_t(n) * Ctx + t) * D;
                if (detail::is_padded(mask, n, t, Ctx)) std::fill(dst, dst + D, T(0));
                else std::copy(src, src + D, dst);
            }
        fc1.forward(c.in, c.h);
        fc2.forward(c.h, flattened(y));
    }

    /// dx += d(input) at non-padded rows (padded rows were constant zeros).
    template <Shaped X, class M, Shaped Y, int N, Shaped DY, Shaped DX>
    void backward(const X&, const M& mask, const Y& y, Cache<N>& c, const DY& dy, DX&& dx) const {
        c.dh.fill(T(0));
        fc2.backward(c.h, flattened(y), flattened(dy), c.dh);
        c.din.fill(T(0));
        fc1.backward(c.in, c.h, c.dh, c.din);
        if (!dx.data()) return;
        for (int n = 0; n < N; ++n)
            for (int t = 0; t < Ctx; ++t)
                if (!detail::is_padded(mask, n, t, Ctx)) {
                    const std::size_t o = (std::size_t(n) * Ctx + t) * D;
                    simd::add_to(std::size_t(D), c.din.data() + o, dx.data() + o);
                }
    }
};

/// No head: no parameters, an empty cache.
struct NoHead {
    template <class V>
    constexpr void visit(V&) {}
    template <int N>
    struct Cache {};
};

template <class T, class Cfg = DefaultConfig>
struct TextEncoder {
    static constexpr int vocab_size = Cfg::vocab_size, context_length = Cfg::context_length, width = Cfg::width;
    static constexpr int num_heads = Cfg::heads, num_layers = Cfg::layers, mlp_hidden = Cfg::mlp_hidden;
    static constexpr bool has_seed_head = Cfg::seed_head;
    static constexpr int Ctx = context_length, D = width, L = num_layers;
    static_assert(vocab_size > 0 && Ctx >= 2 && D > 0 && L > 0,
                  "clip::TextEncoder: vocabulary, context (>= 2 for start and end), width and depth must be positive");
    static_assert(D % num_heads == 0, "clip::TextEncoder: the width must divide by the head count");

    using LayerT = Layer<T, D, num_heads, mlp_hidden>;
    using Head = std::conditional_t<has_seed_head, SeedHead<T, Ctx, D, Cfg::head_hidden>, NoHead>;
    using Seq = Shape<1, Ctx, D>;  // one prompt's context, for shape algebra

    TokenPositionEmbedding<T, vocab_size, Ctx, D> embed;
    std::array<LayerT, L> layers;
    LayerNorm<T, D> ln_final;
    Head head;

    template <class V>
    constexpr void visit(V& v) {
        v("embed", embed);
        for (int i = 0; i < L; ++i) v("layers", i, layers[std::size_t(i)]);
        v("ln_final", ln_final);
        if constexpr (has_seed_head) v("head", head);
    }

    /// Everything forward and backward need for a batch of N prompts: one allocation
    /// (diffuse::make<Workspace<N>>()), reused every step.
    template <int N>
    struct Workspace {
        using SeqN = Shape<N, Ctx, D>;
        Tensor<std::int32_t, N, Ctx> ids;              // encode(): the prompts' token ids
        Tensor<bool, N, Ctx> pad_mask;                 // encode(): true where ids hold padding
        Tensor<T, N, Ctx, D> context;                  // encode(): the output
        std::array<Tensor<T, N, Ctx, D>, L + 1> acts;  // the embedding, then each layer's output
        std::array<typename LayerT::template Cache<SeqN>, L> layer;
        typename LayerNorm<T, D>::template Cache<SeqN> ln_final;
        [[no_unique_address]] std::conditional_t<has_seed_head, Tensor<T, N, Ctx, D>, Absent> normed;  // head input
        [[no_unique_address]] typename Head::template Cache<N> head;
        std::array<Tensor<T, N, Ctx, D>, 2> grad;  // backward's ping-pong d(activation) buffers
    };

    static const std::size_t parameter_count;
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Workspace<N>);

    /// ids [N, Ctx] int32 and mask ([N, Ctx] bool/uint8, true = padded, or no_mask) → context [N, Ctx, D].
    template <Shaped Ids, class M, Shaped Y, int N>
    void forward(const Ids& ids, const M& mask, Y&& context, Workspace<N>& ws) const {
        check_shapes<Ids, Y, N>();
        embed.forward(ids, ws.acts[0]);
        for (std::size_t l = 0; l < L; ++l) layers[l].forward(ws.acts[l], mask, ws.acts[l + 1], ws.layer[l]);
        if constexpr (has_seed_head) {
            ln_final.forward(ws.acts[L], ws.normed, ws.ln_final);
            head.forward(ws.normed, mask, context, ws.head);
        } else {
            ln_final.forward(ws.acts[L], context, ws.ln_final);
        }
    }

    /// Mirrors forward: from d(context), accumulates every parameter gradient.
    template <Shaped Ids, class M, Shaped Y, int N, Shaped DY>
    void backward(const Ids& ids, const M& mask, const Y& context, Workspace<N>& ws, const DY& dcontext) const {
        check_shapes<Ids, Y, N>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>>,
                      "clip::TextEncoder: d(context) must have the context's shape [N, Ctx, D]");
        auto* d = &ws.grad[0];  // d(current activation)
        auto* spare = &ws.grad[1];
        d->fill(T(0));
        if constexpr (has_seed_head) {
            spare->fill(T(0));
            head.backward(ws.normed, mask, context, ws.head, dcontext, *spare);
            ln_final.backward(ws.acts[L], ws.normed, ws.ln_final, *spare, *d);
        } else {
            ln_final.backward(ws.acts[L], context, ws.ln_final, dcontext, *d);
        }
        for (std::size_t l = L; l-- > 0;) {
            spare->fill(T(0));
            layers[l].backward(ws.acts[l], mask, ws.acts[l + 1], ws.layer[l], *d, *spare);
            std::swap(d, spare);
        }
        embed.backward(ids, ws.acts[0], *d);
    }

    /// Tokenizes a batch of N prompts (std::vector<std::string>, std::array<const char*, N>, ...)
    /// into ws.ids / ws.pad_mask and encodes them into ws.context. Returns how many were truncated.
    /// Throws if the tokenizer has more ids than the token table has rows.
    template <int N, class Prompts>
    int encode(const text::Tokenizer& tokenizer, const Prompts& prompts, Workspace<N>& ws) const {
        check_tokenizer(tokenizer);
        if constexpr (detail::is_std_array<Prompts>::value)
            static_assert(std::tuple_size_v<Prompts> == std::size_t(N),
                          "clip::TextEncoder: the number of prompts must equal the workspace's batch N");
        const int truncated = tokenizer.encode_batch<N, Ctx>(prompts, ws.ids.view(), ws.pad_mask.view());
        forward(ws.ids, ws.pad_mask, ws.context, ws);
        return truncated;
    }

    static void check_tokenizer(const text::Tokenizer& tokenizer) {
        if (tokenizer.vocab_size() > vocab_size)
            throw std::invalid_argument("clip::TextEncoder: the tokenizer has " +
                                        std::to_string(tokenizer.vocab_size()) + " ids, the token table " +
                                        std::to_string(vocab_size) + " rows");
    }

    /// Backward after encode(): d(context) for ws.context.
    template <int N, Shaped DY>
    void encode_backward(Workspace<N>& ws, const DY& dcontext) const {
        backward(ws.ids, ws.pad_mask, ws.context, ws, dcontext);
    }

private:
    template <class Ids, class Y, int N>
    static constexpr void check_shapes() {
        static_assert(std::is_same_v<typename std::remove_cvref_t<Ids>::value_type, std::int32_t> &&
                          same_shape<shape_of<Ids>, Shape<N, Ctx>>,
                      "clip::TextEncoder: token ids must be int32 [N, Ctx] with the workspace's batch N");
        static_assert(shape_of<Y>::rank == 3 && shape_of<Y>::last == D,
                      "clip::TextEncoder: the context's last dimension must equal the encoder width D");
        static_assert(same_shape<shape_of<Y>, Shape<N, Ctx, D>>,
                      "clip::TextEncoder: the context must be [N, Ctx, D] with the workspace's batch N");
    }
};

template <class T, class Cfg>
constexpr std::size_t TextEncoder<T, Cfg>::parameter_count = param_count<TextEncoder<T, Cfg>>();

}  // namespace diffuse::clip

#endif
