// unet::UNet: the latent-diffusion denoiser, conditioned on a timestep and a text context.
//
//   z_t [N, h, w, c], t [N] (int32), context [N, Ctx, Dctx] (+ key padding mask [N, Ctx]) -> y [N, h, w, c]
//
//   temb = time_embedding(t)                                        [N, time_dim]
//   x    = conv_in(z_t)                                             3×3, c -> widths[0]
//   down level l = 0 .. L-1 (side h / 2^l, width W_l), a DownLevel:
//        ResStack: res_blocks × { ResidualBlock(temb) [-> CrossAttentionBlock(context) where attention[l]] }
//        s_l = that output (the skip); downsample: conv 3×3 stride 2, W_l -> W_l (not at the last level)
//   mid: MidBlock: ResidualBlock -> AttentionBlock (self) -> CrossAttentionBlock -> ResidualBlock, at W_{L-1}
//   up level l = L-1 .. 0, a SkipUpLevel:
//        concat(u, s_l) (u first, as diffusers' torch.cat([h, skip])) -> UpLevel: the ResStack as above
//        -> (l > 0) UpsampleConv: Upsample2x nearest -> conv 3×3, W_l -> W_l
//   out: OutputHead: GroupNorm (Cfg::Norm) -> SiLU -> conv 3×3, W_0 -> c            (ε or v prediction)
//
// The blocks are the ones the VAE is made of (include/diffuse/blocks/), here time-conditioned and
// cross-attending; this header adds the configuration, the skip concatenation and the wiring. One
// skip per level (the level's output before downsampling) rather than diffusers' one per block: the
// up level's first residual block maps concat width (u + W_l) to W_l.
//
// Levels: any count, from Cfg::widths (compile-time recursion over std::tuple's of levels).
// State-dict names: time_embedding.*, conv_in.*, down.<l>.res.<i>.*, down.<l>.attn.<i>.*,
// down.<l>.downsample.*, mid.{res1,attn,cross,res2}.*, up.<l>.res.<i>.*, up.<l>.attn.<i>.*,
// up.<l>.upsample.conv.*, norm_out.*, conv_out.*; up.<l> is the up level at resolution level l
// (it consumes the skip of down.<l>), so up.0 runs last.
//
// Workspace<N>: every activation, every layer cache and every gradient buffer, as Tensors (no heap):
// sizeof is workspace_bytes<N>. The down levels and the middle run as one chain (blocks/chain.hpp);
// each block's Stage holds its output and that output's gradient, the up levels' too. Gradient flow
// in backward: the producer of a value owns its gradient, consumers add into it (a skip is read by
// the next block down the chain and by an up level). backward first zeroes every such buffer, then
// runs the blocks in reverse, each from its output's gradient dy (the layer contract of
// nn/linear.hpp); blocks zero their own scratch.
#ifndef DIFFUSE_MODELS_UNET_HPP
#define DIFFUSE_MODELS_UNET_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "diffuse/blocks/chain.hpp"
#include "diffuse/blocks/conditioning.hpp"
#include "diffuse/blocks/levels.hpp"
#include "diffuse/blocks/mid_block.hpp"
#include "diffuse/blocks/output_head.hpp"
#include "diffuse/blocks/res_stack.hpp"
#include "diffuse/blocks/time_embedding.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/sample/noise_schedule.hpp"

namespace diffuse::unet {

enum class TimeKind { learned, sinusoidal };
// A config's `prediction` (a diffusion::Prediction) is what the output is trained to be: the model
// itself does not care; the trainer and sampler do.

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
    static constexpr diffusion::Prediction prediction = diffusion::Prediction::epsilon;
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
    static constexpr diffusion::Prediction prediction = diffusion::Prediction::epsilon;
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
    static constexpr diffusion::Prediction prediction = diffusion::Prediction::epsilon;
};

namespace detail {

/// Sizes derived from a config.
template <class Cfg>
struct Geometry : LevelWidths<Cfg::widths> {
    using W = LevelWidths<Cfg::widths>;
    using W::levels;
    using W::width;
    static constexpr int side(int l) { return Cfg::latent_size >> l; }
    /// Channels arriving at up level l from below (the middle's output, or up level l+1's).
    static constexpr int up_in(int l) { return l == levels - 1 ? width(levels - 1) : width(l + 1); }

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
using TimeEmbeddingOf = std::conditional_t<Cfg::time_embedding == TimeKind::learned,
                                           LearnedTimeEmbedding<T, Cfg::timesteps, Cfg::time_features, Cfg::time_dim>,
                                           SinusoidalTimeEmbedding<T, Cfg::time_features, Cfg::time_dim>>;

template <class Cfg, int N>
using ContextShape = Shape<N, Cfg::context_length, Cfg::context_width>;

/// Level L's residual stack from Cin channels to W_L: time-conditioned, cross-attending where attention[L].
template <class T, class Cfg, int Cin, int L>
using StackOf = ResStack<T, Cin, Geometry<Cfg>::width(L), Cfg::res_blocks, typename Cfg::Norm, Cfg::time_dim,
                         (Cfg::attention[std::size_t(L)] ? Cfg::context_width : 0), Cfg::heads>;

/// Down level L: the stack, then (except at the last level) a stride-2 conv.
template <class T, class Cfg, int L>
using DownLevelOf = DownLevel<StackOf<T, Cfg, Geometry<Cfg>::down_in(L), L>, (L + 1 < Geometry<Cfg>::levels)>;

/// The middle at the last level's width: res, self-attention, cross-attention, res.
template <class T, class Cfg>
using MidOf = MidBlock<T, Geometry<Cfg>::width(Geometry<Cfg>::levels - 1), Cfg::heads, typename Cfg::Norm,
                       Cfg::time_dim, Cfg::context_width>;

/// Up level L: concat(u, skip), then an UpLevel (the stack from the concatenation's width, and but at
/// level 0 the upsampler). Visited flat: the UpLevel's names.
template <class T, class Cfg, int L>
struct SkipUpLevel {
    using G = Geometry<Cfg>;
    static constexpr int W = G::width(L), Uin = G::up_in(L), Ccat = Uin + W;
    using Level = UpLevel<StackOf<T, Cfg, Ccat, L>, (L > 0)>;

    Level level;

    template <class V>
    constexpr void visit(V& v) {
        level.visit(v);
    }

    /// UShape: the input from below [N, S, S, Uin]; the skip is [N, S, S, W].
    template <class UShape>
    using cat_shape = ReplaceLast<UShape, Ccat>;
    template <class UShape>
    using output_shape = typename Level::template output_shape<cat_shape<UShape>>;

    template <class UShape, class CShape>
    struct Cache {
        TensorOf<T, cat_shape<UShape>> cat, dcat;  // concat(u, skip), its gradient (scratch)
        typename Level::template Cache<cat_shape<UShape>, CShape> level;
    };

    template <Shaped U, Shaped K, class Cond, Shaped Y, class Ca>
    void forward(const U& u, const K& skip, const Cond& cond, Y&& y, Ca& c) const {
        Concat<T>{}.forward(u, skip, c.cat);
        level.forward(c.cat, cond, y, c.level);
    }

    /// Adds into du, dskip, dcond and the parameter gradients.
    template <Shaped U, Shaped K, class Cond, Shaped Y, class Ca, Shaped DY, Shaped DU, Shaped DK, class DCond>
    void backward(const U& u, const K& skip, const Cond& cond, const Y& y, Ca& c, const DY& dy, DU&& du, DK&& dskip,
                  const DCond& dcond) const {
        c.dcat.fill(T(0));
        level.backward(c.cat, cond, y, c.level, dy, c.dcat, dcond);
        Concat<T>{}.backward(u, skip, c.cat, c.dcat, du, dskip);
    }
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
    template <int L>
    using Down = detail::DownLevelOf<T, Cfg, L>;
    template <int L>
    using Up = detail::SkipUpLevel<T, Cfg, L>;
    using DownLevels = TupleOf<Down, levels>;
    using UpLevels = TupleOf<Up, levels>;
    using Mid = detail::MidOf<T, Cfg>;
    using Head = OutputHead<T, G::width(0), latent_channels, typename Cfg::Norm>;
    /// The chain from conv_in's output: down.0 … down.L-1, mid.
    using Body = decltype(std::tuple_cat(std::declval<DownLevels>(), std::declval<std::tuple<Mid>>()));

    TimeEmbedding time_embedding;
    ConvIn conv_in;
    DownLevels down;
    Mid mid;
    UpLevels up;
    Head out;

    template <class V>
    constexpr void visit(V& v) {
        v("time_embedding", time_embedding);
        v("conv_in", conv_in);
        visit_numbered(v, "down", down);
        v("mid", mid);
        visit_numbered(v, "up", up);
        out.visit(v);
    }

    template <int N>
    struct UpStages {
        /// Up level L's stage: its input from below is [N, side, side, up_in(L)].
        template <int L>
        using StageOf = Stage<T, Up<L>, Shape<N, G::side(L), G::side(L), G::up_in(L)>, detail::ContextShape<Cfg, N>>;
        using type = TupleOf<StageOf, levels>;
    };

    template <int N>
    struct Workspace {
        using Latent = Shape<N, latent_size, latent_size, latent_channels>;
        using Top = Shape<N, latent_size, latent_size, G::width(0)>;
        typename TimeEmbedding::template Cache<Shape<N>> time;
        Tensor<T, N, Cfg::time_dim> temb, dtemb;  // time embedding, its gradient (from every residual block)
        typename ConvIn::template Cache<Latent> conv_in;
        TensorOf<T, Top> h, dh;                                   // conv_in output, its gradient
        Stages<T, Top, detail::ContextShape<Cfg, N>, Body> body;  // down levels and mid: outputs, gradients
        typename UpStages<N>::type up;                            // up levels, up.0 (the head's input) first
        typename Head::template Cache<Top> out;
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
        const auto cond = conditioning(cview(ws.temb), cview(context), mask);
        chain_forward(chain_of(down, mid), ws.h, cond, ws.body);
        up_forward<levels - 1>(cond, ws);
        out.forward(std::get<0>(ws.up).y, y, ws.out);
    }

    /// Mirrors forward (ws as forward left it). Adds into dz, dcontext and every parameter gradient;
    /// a null dz or dcontext view skips it. Timesteps and the mask get none. done(part) is called as
    /// each part's gradients are final (out, each up level, mid, each down level, conv_in,
    /// time_embedding): data-parallel training starts reducing them while the rest runs.
    template <Shaped Z, Shaped TS, Shaped C, class M, Shaped Y, int N, Shaped DY, Shaped DZ, Shaped DC,
              class Done = NoGradHook>
    void backward(const Z& z, const TS& t, const C& context, const M& mask, const Y& y, Workspace<N>& ws, const DY& dy,
                  DZ&& dz, DC&& dcontext, const Done& done = {}) const {
        check<Z, TS, C, Y, N>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DZ>, shape_of<Z>> &&
                          same_shape<shape_of<DC>, shape_of<C>>,
                      "unet::UNet: gradients must have the shapes of their values");
        ws.dtemb.fill(T(0));
        ws.dh.fill(T(0));
        zero_stage_grads(ws.body);
        zero_stage_grads(ws.up);

        auto& top = std::get<0>(ws.up);
        out.backward(top.y, y, ws.out, dy, top.dy);
        done(out);
        const auto cond = conditioning(cview(ws.temb), cview(context), mask);
        const auto dcond = conditioning_grads(mview(ws.dtemb), ViewOf<T, shape_of<C>>(dcontext.data()));
        up_backward<0>(cond, ws, dcond, done);
        chain_backward(chain_of(down, mid), ws.h, cond, ws.body, ws.dh, dcond, done);
        conv_in.backward(z, ws.h, ws.conv_in, ws.dh, dz);
        done(conv_in);
        time_embedding.backward(t, ws.temb, ws.time, ws.dtemb);
        done(time_embedding);
    }

private:
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

    /// The skip of down level L (its stack's output) and the skip's gradient.
    template <int L, int N>
    static auto& skip(Workspace<N>& ws) {
        auto& s = std::get<L>(ws.body);
        if constexpr (Down<L>::downsamples) return s.cache.down.h;
        else return s.y;
    }
    template <int L, int N>
    static auto& skip_grad(Workspace<N>& ws) {
        auto& s = std::get<L>(ws.body);
        if constexpr (Down<L>::downsamples) return s.cache.down.dh;
        else return s.dy;
    }
    /// The stage below up level L: the middle (after the last down level) or up level L+1.
    template <int L, int N>
    static auto& below(Workspace<N>& ws) {
        if constexpr (L == levels - 1) return std::get<levels>(ws.body);
        else return std::get<L + 1>(ws.up);
    }

    template <int L, class Cond, int N>
    void up_forward(const Cond& cond, Workspace<N>& ws) const {
        auto& s = std::get<L>(ws.up);
        std::get<L>(up).forward(below<L>(ws).y, skip<L>(ws), cond, s.y, s.cache);
        if constexpr (L > 0) up_forward<L - 1>(cond, ws);
    }
    /// Up levels in reverse execution order: level 0 first.
    template <int L, class Cond, int N, class DCond, class Done>
    void up_backward(const Cond& cond, Workspace<N>& ws, const DCond& dcond, const Done& done) const {
        auto& s = std::get<L>(ws.up);
        std::get<L>(up).backward(below<L>(ws).y, skip<L>(ws), cond, s.y, s.cache, s.dy, mview(below<L>(ws).dy),
                                 mview(skip_grad<L>(ws)), dcond);
        done(std::get<L>(up));
        if constexpr (L + 1 < levels) up_backward<L + 1>(cond, ws, dcond, done);
    }
};

template <class T, class Cfg>
constexpr std::size_t UNet<T, Cfg>::parameter_count = param_count<UNet<T, Cfg>>();

}  // namespace diffuse::unet

#endif
