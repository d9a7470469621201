// unet::UNet: the latent-diffusion denoiser, conditioned on a timestep and a text context.
//
//   z_t [N, h, w, c], t [N] (int32), context [N, Ctx, Dctx] (+ key padding mask [N, Ctx]) -> y [N, h, w, c]
//
//   temb = time_embedding(t)                                        [N, time_dim]
//   x    = conv_in(z_t)                                             3×3, c -> widths[0]
//   down level l = 0 .. L-1 (side h / 2^l, width W_l):
//        res_blocks × { vae::ResidualBlock(temb) [-> CrossAttentionBlock(context) where attention[l]] }
//        s_l = that output (the skip); downsample: conv 3×3 stride 2, W_l -> W_l (not at the last level)
//   mid: ResidualBlock -> vae::AttentionBlock (self) -> CrossAttentionBlock -> ResidualBlock   at W_{L-1}
//   up level l = L-1 .. 0:
//        concat(u, s_l) (u first, as diffusers' torch.cat([h, skip])) -> res_blocks × { ResidualBlock
//        [-> CrossAttentionBlock] } -> (l > 0) Upsample2x nearest -> conv 3×3, W_l -> W_l
//   out: GroupNorm (Cfg::Norm) -> SiLU -> conv 3×3, W_0 -> c                       (ε or v prediction)
//
// One skip per level (the level's output before downsampling) rather than diffusers' one per block:
// the up level's first residual block maps concat width (u + W_l) to W_l.
//
// Levels: any count, from Cfg::widths (compile-time recursion over std::tuple's of levels).
// State-dict names: time_embedding.*, conv_in.*, down.<l>.res.<i>.*, down.<l>.attn.<i>.*,
// down.<l>.downsample.*, mid.{res1,attn,cross,res2}.*, up.<l>.res.<i>.*, up.<l>.attn.<i>.*,
// up.<l>.upsample.conv.*, norm_out.*, conv_out.*; up.<l> is the up level at resolution level l
// (it consumes the skip of down.<l>), so up.0 runs last.
//
// Workspace<N>: every activation, every layer cache and every gradient buffer, as Tensors (no heap):
// sizeof is workspace_bytes<N>. Gradient flow in backward: each activation's gradient buffer sits
// beside it in the workspace; the producer of a value owns its gradient, consumers add into it.
// backward first zeroes the buffers that several consumers add into, then runs the layers in
// reverse; blocks zero their own scratch.
#ifndef DIFFUSE_MODELS_UNET_HPP
#define DIFFUSE_MODELS_UNET_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/blocks/time_embedding.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/resample.hpp"

namespace diffuse::unet {

enum class TimeKind { learned, sinusoidal };
/// What the output is trained to be (the model itself does not care; the trainer and sampler do).
enum class Prediction { epsilon, v };

/// Gradient checks in double in seconds: latent 4×4×2, two levels of widths 4 / 8.
struct TinyConfig {
    static constexpr int latent_size = 4, latent_channels = 2;
    static constexpr std::array<int, 2> widths{4, 8};
    static constexpr std::array<bool, 2> attention{false, true};  // cross-attention per level
    static constexpr int res_blocks = 1, heads = 2;
    using Norm = diffuse::norm::Group<2>;
    static constexpr int context_length = 3, context_width = 4;
    static constexpr TimeKind time_embedding = TimeKind::sinusoidal;
    static constexpr int timesteps = 1000, time_features = 4, time_dim = 8;
    static constexpr Prediction prediction = Prediction::epsilon;
};

/// Fashion-MNIST text-to-image on 2 cores: latent 8×8×4 (from 32×32), widths 64 / 128, attention
/// at 4×4 and in the middle, the clip::DefaultConfig context (16 tokens of 128).
struct DefaultConfig {
    static constexpr int latent_size = 8, latent_channels = 4;
    static constexpr std::array<int, 2> widths{64, 128};
    static constexpr std::array<bool, 2> attention{false, true};
    static constexpr int res_blocks = 2, heads = 4;
    using Norm = diffuse::norm::Group<32>;
    static constexpr int context_length = 16, context_width = 128;
    static constexpr TimeKind time_embedding = TimeKind::sinusoidal;
    static constexpr int timesteps = 1000, time_features = 64, time_dim = 256;
    static constexpr Prediction prediction = Prediction::epsilon;
};

/// The seed's widths (128 / 256 / 512) and its learned time table; clip::SeedConfig's context.
struct SeedConfig {
    static constexpr int latent_size = 8, latent_channels = 4;
    static constexpr std::array<int, 3> widths{128, 256, 512};
    static constexpr std::array<bool, 3> attention{false, true, true};
    static constexpr int res_blocks = 2, heads = 8;
    using Norm = diffuse::norm::Group<32>;
    static constexpr int context_length = 16, context_width = 256;
    static constexpr TimeKind time_embedding = TimeKind::learned;
    static constexpr int timesteps = 1000, time_features = 128, time_dim = 512;
    static constexpr Prediction prediction = Prediction::epsilon;
};

namespace detail {

using diffuse::detail::Absent;

/// Sizes derived from a config.
template <class Cfg>
struct Geometry {
    static constexpr int levels = int(Cfg::widths.size());
    static constexpr int width(int l) { return Cfg::widths[std::size_t(l)]; }
    static constexpr int side(int l) { return Cfg::latent_size >> l; }
    /// Channels entering down level l (conv_in's output, or the previous level's downsampled map).
    static constexpr int down_in(int l) { return l == 0 ? width(0) : width(l - 1); }
    /// Channels arriving at up level l from below (the middle's output, or up level l+1's).
    static constexpr int up_in(int l) { return l == levels - 1 ? width(levels - 1) : width(l + 1); }

    static constexpr bool widths_positive() {
        for (int l = 0; l < levels; ++l)
            if (width(l) <= 0) return false;
        return true;
    }
    static constexpr bool groups_divide(int g) {
        for (int l = 0; l < levels; ++l)
            if (width(l) % g != 0 || (up_in(l) + width(l)) % g != 0) return false;
        return true;
    }
    static constexpr bool heads_divide(int h) {
        for (int l = 0; l < levels; ++l)
            if (Cfg::attention[std::size_t(l)] && width(l) % h != 0) return false;
        return width(levels - 1) % h == 0;  // the middle always attends
    }
};

template <class T, class Cfg>
using TimeEmbeddingOf =
    std::conditional_t<Cfg::time_embedding == TimeKind::learned,
                       LearnedTimeEmbedding<T, Cfg::timesteps, Cfg::time_features, Cfg::time_dim>,
                       SinusoidalTimeEmbedding<T, Cfg::time_features, Cfg::time_dim>>;

template <class Cfg, int N>
using ContextShape = Shape<N, Cfg::context_length, Cfg::context_width>;

/// res_blocks × (ResidualBlock conditioned on temb [-> CrossAttentionBlock]) at side S, Cin -> W.
/// Names: res.<i>, attn.<i> (visited flat by its level).
template <class T, class Cfg, int S, int Cin, int W, bool Attn>
struct Stack {
    static constexpr int R = Cfg::res_blocks, A = Attn ? R : 0;
    using First = vae::ResidualBlock<T, Cin, W, typename Cfg::Norm, Cfg::time_dim>;
    using Res = vae::ResidualBlock<T, W, W, typename Cfg::Norm, Cfg::time_dim>;
    using Cross = CrossAttentionBlock<T, W, Cfg::context_width, Cfg::heads>;

    First first;
    std::array<Res, R - 1> rest;
    std::array<Cross, A> cross;

    template <class V>
    constexpr void visit(V& v) {
        for (int i = 0; i < R; ++i) {
            if (i == 0) v("res", 0, first);
            else v("res", i, rest[std::size_t(i - 1)]);
            if constexpr (Attn) v("attn", i, cross[std::size_t(i)]);
        }
    }

    template <int N>
    struct Cache {
        using In = Shape<N, S, S, Cin>;
        using Out = Shape<N, S, S, W>;
        typename First::template Cache<In> first;
        std::array<typename Res::template Cache<Out>, R - 1> rest;
        std::array<typename Cross::template Cache<Out, ContextShape<Cfg, N>>, A> cross;
        std::array<TensorOf<T, Out>, R> r;         // residual block outputs
        std::array<TensorOf<T, Out>, A> a;         // cross-attention outputs
        std::array<TensorOf<T, Out>, A> dr;        // backward scratch: d r[i]
        std::array<TensorOf<T, Out>, R - 1> dout;  // backward scratch: d(output of block i), i < R-1

        /// Output of block i (the last one's is the stack's output).
        const TensorOf<T, Out>& out(int i = R - 1) const {
            if constexpr (Attn) return a[std::size_t(i)];
            else return r[std::size_t(i)];
        }
    };

    template <Shaped X, Shaped E, Shaped C, class M, int N>
    void forward(const X& x, const E& temb, const C& ctx, const M& mask, Cache<N>& c) const {
        for (int i = 0; i < R; ++i) {
            const auto k = std::size_t(i);
            if (i == 0) first.forward(x, temb, c.r[0], c.first);
            else rest[k - 1].forward(c.out(i - 1), temb, c.r[k], c.rest[k - 1]);
            if constexpr (Attn) cross[k].forward(c.r[k], ctx, mask, c.a[k], c.cross[k]);
        }
    }

    /// dy: gradient of the stack's output. Adds into dx, dtemb, dctx and the parameter gradients.
    template <Shaped X, Shaped E, Shaped C, class M, int N, Shaped DY, Shaped DX, Shaped DE, Shaped DC>
    void backward(const X& x, const E& temb, const C& ctx, const M& mask, Cache<N>& c, const DY& dy, DX&& dx,
                  DE&& dtemb, DC&& dctx) const {
        using Out = typename Cache<N>::Out;
        for (auto& t : c.dr) t.fill(T(0));
        for (auto& t : c.dout) t.fill(T(0));
        for (int i = R - 1; i >= 0; --i) {
            const auto k = std::size_t(i);
            const ViewOf<const T, Out> g = i == R - 1 ? ViewOf<const T, Out>(dy.data()) : cview(c.dout[k]);
            ViewOf<const T, Out> gr = g;  // gradient of the residual block's output
            if constexpr (Attn) {
                cross[k].backward(c.r[k], ctx, mask, c.a[k], c.cross[k], g, c.dr[k], dctx);
                gr = cview(c.dr[k]);
            }
            if (i == 0) first.backward(x, temb, c.r[0], c.first, gr, dx, dtemb);
            else rest[k - 1].backward(c.out(i - 1), temb, c.r[k], c.rest[k - 1], gr, mview(c.dout[k - 1]), dtemb);
        }
    }
};

/// Down level L: the stack, then (except at the last level) a stride-2 conv.
template <class T, class Cfg, int L>
struct DownLevel {
    using G = Geometry<Cfg>;
    static constexpr int S = G::side(L), Cin = G::down_in(L), W = G::width(L);
    static constexpr bool last = L == G::levels - 1;
    using Body = Stack<T, Cfg, S, Cin, W, Cfg::attention[std::size_t(L)]>;
    using Down = Conv2d<T, W, W, 3, 2>;

    Body body;
    [[no_unique_address]] std::conditional_t<last, Absent, Down> downsample;

    template <class V>
    constexpr void visit(V& v) {
        body.visit(v);
        if constexpr (!last) v("downsample", downsample);
    }

    template <int N>
    struct Sampled {
        TensorOf<T, Shape<N, S / 2, S / 2, W>> y, dy;  // downsampled map (next level's input), its gradient
        typename Down::template Cache<Shape<N, S, S, W>> conv;
    };
    template <int N>
    struct Cache {
        typename Body::template Cache<N> body;
        TensorOf<T, Shape<N, S, S, W>> ds;  // gradient of the body's output: from the up path and from below
        [[no_unique_address]] std::conditional_t<last, Absent, Sampled<N>> sampled;

        /// Gradients that other parts add into: zeroed by UNet::backward before anything runs.
        void zero_shared_grads() {
            ds.fill(T(0));
            if constexpr (!last) sampled.dy.fill(T(0));
        }
    };

    template <Shaped X, Shaped E, Shaped C, class M, int N>
    void forward(const X& x, const E& temb, const C& ctx, const M& mask, Cache<N>& c) const {
        body.forward(x, temb, ctx, mask, c.body);
        if constexpr (!last) downsample.forward(c.body.out(), c.sampled.y, c.sampled.conv);
    }

    /// Needs c.ds complete from the up path (and c.sampled.dy from the next level down).
    template <Shaped X, Shaped E, Shaped C, class M, int N, Shaped DX, Shaped DE, Shaped DC>
    void backward(const X& x, const E& temb, const C& ctx, const M& mask, Cache<N>& c, DX&& dx, DE&& dtemb,
                  DC&& dctx) const {
        if constexpr (!last) downsample.backward(c.body.out(), c.sampled.y, c.sampled.conv, c.sampled.dy, c.ds);
        body.backward(x, temb, ctx, mask, c.body, c.ds, dx, dtemb, dctx);
    }
};

/// Up level L: concat(u, skip), the stack, then (except at level 0) Upsample2x and a 3×3 conv.
template <class T, class Cfg, int L>
struct UpLevel {
    using G = Geometry<Cfg>;
    static constexpr int S = G::side(L), W = G::width(L), Uin = G::up_in(L), Ccat = Uin + W;
    static constexpr bool top = L == 0;
    using Body = Stack<T, Cfg, S, Ccat, W, Cfg::attention[std::size_t(L)]>;
    using UpConv = Conv2d<T, W, W, 3>;
    struct Upsampler {
        UpConv conv;
        template <class V>
        constexpr void visit(V& v) { v("conv", conv); }
    };

    Body body;
    [[no_unique_address]] std::conditional_t<top, Absent, Upsampler> upsample;

    template <class V>
    constexpr void visit(V& v) {
        body.visit(v);
        if constexpr (!top) v("upsample", upsample);
    }

    template <int N>
    struct Sampled {
        using Big = Shape<N, 2 * S, 2 * S, W>;
        TensorOf<T, Big> up, dup;  // nearest-upsampled body output, its gradient (scratch)
        TensorOf<T, Big> y, dy;    // conv output (the next up level's u), its gradient
        typename UpConv::template Cache<Big> conv;
    };
    template <int N>
    struct Cache {
        TensorOf<T, Shape<N, S, S, Ccat>> cat, dcat;  // concat(u, skip), its gradient (scratch)
        typename Body::template Cache<N> body;
        TensorOf<T, Shape<N, S, S, W>> dbody;  // gradient of the body's output (level 0: from the output head)
        [[no_unique_address]] std::conditional_t<top, Absent, Sampled<N>> sampled;

        /// The level's output and its gradient buffer.
        const auto& y() const {
            if constexpr (top) return body.out();
            else return sampled.y;
        }
        auto& dy() {
            if constexpr (top) return dbody;
            else return sampled.dy;
        }
        void zero_shared_grads() { dy().fill(T(0)); }
    };

    template <Shaped U, Shaped K, Shaped E, Shaped C, class M, int N>
    void forward(const U& u, const K& skip, const E& temb, const C& ctx, const M& mask, Cache<N>& c) const {
        Concat<T>{}.forward(u, skip, c.cat);
        body.forward(c.cat, temb, ctx, mask, c.body);
        if constexpr (!top) {
            Upsample2x<T>{}.forward(c.body.out(), c.sampled.up);
            upsample.conv.forward(c.sampled.up, c.sampled.y, c.sampled.conv);
        }
    }

    /// From c.dy() (complete), adds into du, dskip, dtemb, dctx and the parameter gradients.
    template <Shaped U, Shaped K, Shaped E, Shaped C, class M, int N, Shaped DU, Shaped DK, Shaped DE, Shaped DC>
    void backward(const U& u, const K& skip, const E& temb, const C& ctx, const M& mask, Cache<N>& c, DU&& du,
                  DK&& dskip, DE&& dtemb, DC&& dctx) const {
        if constexpr (!top) {
            c.sampled.dup.fill(T(0));
            upsample.conv.backward(c.sampled.up, c.sampled.y, c.sampled.conv, c.sampled.dy, c.sampled.dup);
            c.dbody.fill(T(0));
            Upsample2x<T>{}.backward(c.body.out(), c.sampled.up, c.sampled.dup, c.dbody);
        }
        c.dcat.fill(T(0));
        body.backward(c.cat, temb, ctx, mask, c.body, c.dbody, c.dcat, dtemb, dctx);
        Concat<T>{}.backward(u, skip, c.cat, c.dcat, du, dskip);
    }
};

/// The middle: ResidualBlock -> self-attention -> cross-attention -> ResidualBlock at the last level.
template <class T, class Cfg>
struct Mid {
    using G = Geometry<Cfg>;
    static constexpr int S = G::side(G::levels - 1), W = G::width(G::levels - 1);
    using Res = vae::ResidualBlock<T, W, W, typename Cfg::Norm, Cfg::time_dim>;
    using Self = vae::AttentionBlock<T, W, Cfg::heads, typename Cfg::Norm>;
    using Cross = CrossAttentionBlock<T, W, Cfg::context_width, Cfg::heads>;

    Res res1;
    Self attn;
    Cross cross;
    Res res2;

    template <class V>
    constexpr void visit(V& v) { v("res1", res1); v("attn", attn); v("cross", cross); v("res2", res2); }

    template <int N>
    struct Cache {
        using Map = Shape<N, S, S, W>;
        TensorOf<T, Map> r1, a, x, y;      // res1, self-attention, cross-attention, res2 outputs
        TensorOf<T, Map> dr1, da, dx, dy;  // their gradients (dy: from the up path; the rest scratch)
        typename Res::template Cache<Map> res1, res2;
        typename Self::template Cache<Map> attn;
        typename Cross::template Cache<Map, ContextShape<Cfg, N>> cross;
        void zero_shared_grads() { dy.fill(T(0)); }
    };

    template <Shaped X, Shaped E, Shaped C, class M, int N>
    void forward(const X& x, const E& temb, const C& ctx, const M& mask, Cache<N>& c) const {
        res1.forward(x, temb, c.r1, c.res1);
        attn.forward(c.r1, c.a, c.attn);
        cross.forward(c.a, ctx, mask, c.x, c.cross);
        res2.forward(c.x, temb, c.y, c.res2);
    }

    template <Shaped X, Shaped E, Shaped C, class M, int N, Shaped DX, Shaped DE, Shaped DC>
    void backward(const X& x, const E& temb, const C& ctx, const M& mask, Cache<N>& c, DX&& dx, DE&& dtemb,
                  DC&& dctx) const {
        c.dx.fill(T(0));
        c.da.fill(T(0));
        c.dr1.fill(T(0));
        res2.backward(c.x, temb, c.y, c.res2, c.dy, c.dx, dtemb);
        cross.backward(c.a, ctx, mask, c.x, c.cross, c.dx, c.da, dctx);
        attn.backward(c.r1, c.a, c.attn, c.da, c.dr1);
        res1.backward(x, temb, c.r1, c.res1, c.dr1, dx, dtemb);
    }
};

template <class T, class Cfg, class Seq>
struct Levels;
template <class T, class Cfg, std::size_t... I>
struct Levels<T, Cfg, std::index_sequence<I...>> {
    using Down = std::tuple<DownLevel<T, Cfg, int(I)>...>;
    using Up = std::tuple<UpLevel<T, Cfg, int(I)>...>;
    template <int N>
    using DownCaches = std::tuple<typename DownLevel<T, Cfg, int(I)>::template Cache<N>...>;
    template <int N>
    using UpCaches = std::tuple<typename UpLevel<T, Cfg, int(I)>::template Cache<N>...>;
};

}  // namespace detail

template <class T, class Cfg = DefaultConfig>
struct UNet {
    using config = Cfg;
    using G = detail::Geometry<Cfg>;
    static constexpr int levels = G::levels;
    static constexpr int latent_size = Cfg::latent_size, latent_channels = Cfg::latent_channels;
    static constexpr int context_length = Cfg::context_length, context_width = Cfg::context_width;

    // Shape rules of the configuration, checked before any member is built.
    static_assert(levels >= 1 && Cfg::attention.size() == Cfg::widths.size(),
                  "unet::UNet: the config needs at least one level and one attention flag per level width");
    static_assert(G::widths_positive() && latent_channels > 0 && Cfg::res_blocks >= 1 && Cfg::heads >= 1,
                  "unet::UNet: widths, latent channels, res_blocks and heads must be positive");
    static_assert(latent_size > 0 && latent_size % (1 << (levels - 1)) == 0,
                  "unet::UNet: the latent size must divide by 2^(levels-1) (each downsampler halves it)");
    static_assert(G::groups_divide(Cfg::Norm::groups),
                  "unet::UNet: the GroupNorm group count must divide every level width and every up-path "
                  "concatenation width");
    static_assert(G::heads_divide(Cfg::heads),
                  "unet::UNet: the head count must divide the width of every attention level and of the middle");
    static_assert(context_length > 0 && context_width > 0, "unet::UNet: the text context must be non-empty");
    static_assert(Cfg::time_embedding == TimeKind::learned || Cfg::time_features % 2 == 0,
                  "unet::UNet: sinusoidal time features must be of even width");

    using TimeEmbedding = detail::TimeEmbeddingOf<T, Cfg>;
    using ConvIn = Conv2d<T, latent_channels, G::width(0), 3>;
    using LevelTypes = detail::Levels<T, Cfg, std::make_index_sequence<std::size_t(levels)>>;
    using Mid = detail::Mid<T, Cfg>;
    using NormOut = typename Cfg::Norm::template layer<T, G::width(0)>;
    using ConvOut = Conv2d<T, G::width(0), latent_channels, 3>;

    TimeEmbedding time_embedding;
    ConvIn conv_in;
    typename LevelTypes::Down down;
    Mid mid;
    typename LevelTypes::Up up;
    NormOut norm_out;
    ConvOut conv_out;

    template <class V>
    constexpr void visit(V& v) {
        v("time_embedding", time_embedding);
        v("conv_in", conv_in);
        visit_levels(v, "down", down);
        v("mid", mid);
        visit_levels(v, "up", up);
        v("norm_out", norm_out);
        v("conv_out", conv_out);
    }

    template <int N>
    struct Workspace {
        using Latent = Shape<N, latent_size, latent_size, latent_channels>;
        using Top = Shape<N, latent_size, latent_size, G::width(0)>;
        typename TimeEmbedding::template Cache<Shape<N>> time;
        Tensor<T, N, Cfg::time_dim> temb, dtemb;  // time embedding, its gradient (from every residual block)
        typename ConvIn::template Cache<Latent> conv_in;
        TensorOf<T, Top> h, dh;  // conv_in output, its gradient
        typename LevelTypes::template DownCaches<N> down;
        typename Mid::template Cache<N> mid;
        typename LevelTypes::template UpCaches<N> up;
        typename NormOut::template Cache<Top> norm_out;
        TensorOf<T, Top> hn, an, dhn, dan;  // norm_out, SiLU outputs and their gradients
        typename ConvOut::template Cache<Top> conv_out;
    };

    static const std::size_t parameter_count;
    template <int N>
    static constexpr std::size_t workspace_bytes = sizeof(Workspace<N>);

    /// z [N, h, w, c], t [N] int32, context [N, Ctx, Dctx], mask [N, Ctx] bool/uint8 (true = padded)
    /// or diffuse::no_mask; writes y [N, h, w, c].
    template <Shaped Z, Shaped TS, Shaped C, class M, Shaped Y, int N>
    void forward(const Z& z, const TS& t, const C& context, const M& mask, Y&& y, Workspace<N>& ws) const {
        check<Z, TS, C, Y, N>();
        time_embedding.forward(t, ws.temb, ws.time);
        conv_in.forward(z, ws.h, ws.conv_in);
        down_forward<0>(context, mask, ws);
        mid.forward(std::get<levels - 1>(ws.down).body.out(), ws.temb, context, mask, ws.mid);
        up_forward<levels - 1>(context, mask, ws);
        norm_out.forward(std::get<0>(ws.up).y(), ws.hn, ws.norm_out);
        SiLU<T>{}.forward(ws.hn, ws.an);
        conv_out.forward(ws.an, y, ws.conv_out);
    }

    /// Mirrors forward (ws as forward left it). Adds into dz, dcontext and every parameter gradient;
    /// a null dz or dcontext view skips it. Timesteps and the mask get none.
    template <Shaped Z, Shaped TS, Shaped C, class M, Shaped Y, int N, Shaped DY, Shaped DZ, Shaped DC>
    void backward(const Z& z, const TS& t, const C& context, const M& mask, const Y& y, Workspace<N>& ws, const DY& dy,
                  DZ&& dz, DC&& dcontext) const {
        check<Z, TS, C, Y, N>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DZ>, shape_of<Z>> &&
                          same_shape<shape_of<DC>, shape_of<C>>,
                      "unet::UNet: gradients must have the shapes of their values");
        ws.dtemb.fill(T(0));
        ws.dh.fill(T(0));
        std::apply([](auto&... c) { (c.zero_shared_grads(), ...); }, ws.down);
        std::apply([](auto&... c) { (c.zero_shared_grads(), ...); }, ws.up);
        ws.mid.zero_shared_grads();

        ws.dan.fill(T(0));
        conv_out.backward(ws.an, y, ws.conv_out, dy, ws.dan);
        ws.dhn.fill(T(0));
        SiLU<T>{}.backward(ws.hn, ws.an, ws.dan, ws.dhn);
        norm_out.backward(std::get<0>(ws.up).y(), ws.hn, ws.norm_out, ws.dhn, std::get<0>(ws.up).dy());
        const auto dctx = ViewOf<T, shape_of<C>>(dcontext.data());
        up_backward<0>(context, mask, ws, dctx);
        mid.backward(std::get<levels - 1>(ws.down).body.out(), ws.temb, context, mask, ws.mid,
                     mview(std::get<levels - 1>(ws.down).ds), ws.dtemb, dctx);
        down_backward<levels - 1>(context, mask, ws, dctx);
        conv_in.backward(z, ws.h, ws.conv_in, ws.dh, dz);
        time_embedding.backward(t, ws.temb, ws.time, ws.dtemb);
    }

private:
    template <class V, class Tuple>
    static constexpr void visit_levels(V& v, const char* name, Tuple& levels_) {
        std::apply([&](auto&... level) {
            int i = 0;
            (v(name, i++, level), ...);
        }, levels_);
    }

    template <class Z, class TS, class C, class Y, int N>
    static constexpr void check() {
        static_assert(same_shape<shape_of<Z>, Shape<N, latent_size, latent_size, latent_channels>>,
                      "unet::UNet: the input must be a latent batch [N, latent_size, latent_size, latent_channels] "
                      "matching the workspace's N");
        static_assert(same_shape<shape_of<TS>, Shape<N>>, "unet::UNet: the timesteps must be [N]");
        static_assert(same_shape<shape_of<C>, detail::ContextShape<Cfg, N>>,
                      "unet::UNet: the context must be [N, context_length, context_width]");
        static_assert(same_shape<shape_of<Y>, shape_of<Z>>, "unet::UNet: the output must have the input's shape");
    }

    /// Input of down level L: conv_in's output or the previous level's downsampled map.
    template <int L, int N>
    static auto& down_input(Workspace<N>& ws) {
        if constexpr (L == 0) return ws.h;
        else return std::get<L - 1>(ws.down).sampled.y;
    }
    template <int L, int N>
    static auto& down_input_grad(Workspace<N>& ws) {
        if constexpr (L == 0) return ws.dh;
        else return std::get<L - 1>(ws.down).sampled.dy;
    }
    /// Input of up level L from below: the middle's output or up level L+1's.
    template <int L, int N>
    static auto& up_input(Workspace<N>& ws) {
        if constexpr (L == levels - 1) return ws.mid.y;
        else return std::get<L + 1>(ws.up).sampled.y;
    }
    template <int L, int N>
    static auto& up_input_grad(Workspace<N>& ws) {
        if constexpr (L == levels - 1) return ws.mid.dy;
        else return std::get<L + 1>(ws.up).sampled.dy;
    }

    template <int L, class C, class M, int N>
    void down_forward(const C& context, const M& mask, Workspace<N>& ws) const {
        std::get<L>(down).forward(down_input<L>(ws), ws.temb, context, mask, std::get<L>(ws.down));
        if constexpr (L + 1 < levels) down_forward<L + 1>(context, mask, ws);
    }
    template <int L, class C, class M, int N>
    void up_forward(const C& context, const M& mask, Workspace<N>& ws) const {
        std::get<L>(up).forward(up_input<L>(ws), std::get<L>(ws.down).body.out(), ws.temb, context, mask,
                                std::get<L>(ws.up));
        if constexpr (L > 0) up_forward<L - 1>(context, mask, ws);
    }
    /// Up levels in reverse execution order: level 0 first.
    template <int L, class C, class M, int N, class DC>
    void up_backward(const C& context, const M& mask, Workspace<N>& ws, const DC& dctx) const {
        std::get<L>(up).backward(up_input<L>(ws), std::get<L>(ws.down).body.out(), ws.temb, context, mask,
                                 std::get<L>(ws.up), mview(up_input_grad<L>(ws)), mview(std::get<L>(ws.down).ds),
                                 ws.dtemb, dctx);
        if constexpr (L + 1 < levels) up_backward<L + 1>(context, mask, ws, dctx);
    }
    /// Down levels deepest first: level L's input gradient is level L-1's downsampled-map gradient.
    template <int L, class C, class M, int N, class DC>
    void down_backward(const C& context, const M& mask, Workspace<N>& ws, const DC& dctx) const {
        std::get<L>(down).backward(down_input<L>(ws), ws.temb, context, mask, std::get<L>(ws.down),
                                   mview(down_input_grad<L>(ws)), ws.dtemb, dctx);
        if constexpr (L > 0) down_backward<L - 1>(context, mask, ws, dctx);
    }
};

template <class T, class Cfg>
constexpr std::size_t UNet<T, Cfg>::parameter_count = param_count<UNet<T, Cfg>>();

}  // namespace diffuse::unet

#endif
