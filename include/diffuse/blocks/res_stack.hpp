// ResStack: R residual blocks at one resolution, [N, H, W, Cin] -> [N, H, W, Cout], the body of
// every VAE and UNet level:
//
//   block i = ResidualBlock (Cin -> Cout for the first, Cout -> Cout after)
//             [-> CrossAttentionBlock(context)]             where CtxD > 0
//   time-conditioned (the residual blocks read cond.temb)  where TimeDim > 0
//
// State-dict names res.<i> and attn.<i> (the cross-attention after block i), in running order; the
// owner visits the stack flat (down.0.res.0.*, down.0.attn.0.*).
//
// forward(x, cond, y, cache) / backward(x, cond, y, cache, dy, dx, dcond) follow the layer contract
// (nn/linear.hpp): backward adds into dx, dcond and the parameter gradients. cond is a Conditioning
// (blocks/conditioning.hpp), or diffuse::absent for a stack that reads none.
#ifndef DIFFUSE_BLOCKS_RES_STACK_HPP
#define DIFFUSE_BLOCKS_RES_STACK_HPP

#include <array>
#include <cstddef>

#include "diffuse/blocks/conditioning.hpp"
#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

template <class T, int Cin, int Cout, int R, class Norm, int TimeDim = 0, int CtxD = 0, int Heads = 1>
struct ResStack {
    static_assert(R >= 1, "ResStack: at least one residual block");
    static_assert(CtxD >= 0, "ResStack: the context width must not be negative (0: no cross-attention)");
    using value_type = T;
    static constexpr int in_channels = Cin, out_channels = Cout, blocks = R;
    static constexpr bool has_cross = CtxD > 0;
    static constexpr int A = has_cross ? R : 0;

    using First = ResidualBlock<T, Cin, Cout, Norm, TimeDim>;
    using Rest = ResidualBlock<T, Cout, Cout, Norm, TimeDim>;
    using Cross = CrossAttentionBlock<T, Cout, (has_cross ? CtxD : 1), Heads>;

    First first;
    std::array<Rest, R - 1> rest;
    std::array<Cross, A> cross;

    template <class V>
    constexpr void visit(V& v) {
        for (int i = 0; i < R; ++i) {
            if (i == 0) v("res", 0, first);
            else v("res", i, rest[std::size_t(i - 1)]);
            if constexpr (has_cross) v("attn", i, cross[std::size_t(i)]);
        }
    }

    template <class XShape>
    using output_shape = ReplaceLast<XShape, Cout>;

    /// CShape: the context's shape [N, Tc, CtxD] (unused without cross-attention).
    template <class XShape, class CShape = Absent>
    struct Cache {
        using Out = ReplaceLast<XShape, Cout>;
        typename First::template Cache<XShape> first;
        std::array<typename Rest::template Cache<Out>, R - 1> rest;
        std::array<typename detail::CacheIf<has_cross, Cross, Out, CShape>::type, A> cross;
        std::array<TensorOf<T, Out>, R - 1> out, dout;  // outputs of all blocks but the last, their gradients
        std::array<TensorOf<T, Out>, A> r, dr;          // residual outputs before cross-attention, gradients
    };

    template <Shaped X, class Cond, Shaped Y, class C>
    void forward(const X& x, const Cond& cond, Y&& y, C& c) const {
        check<X, Y>();
        using Out = ReplaceLast<shape_of<X>, Cout>;
        for (int i = 0; i < R; ++i) {
            const auto k = std::size_t(i);
            const ViewOf<T, Out> o = i == R - 1 ? ViewOf<T, Out>(y.data()) : mview(c.out[k]);
            ViewOf<T, Out> ro = o;  // the residual block's output
            if constexpr (has_cross) ro = mview(c.r[k]);
            if (i == 0) detail::forward_res(first, x, cond, ro, c.first);
            else detail::forward_res(rest[k - 1], cview(c.out[k - 1]), cond, ro, c.rest[k - 1]);
            if constexpr (has_cross) cross[k].forward(cview(c.r[k]), cond.context, cond.mask, o, c.cross[k]);
        }
    }

    template <Shaped X, class Cond, Shaped Y, class C, Shaped DY, Shaped DX, class DCond>
    void backward(const X& x, const Cond& cond, const Y& y, C& c, const DY& dy, DX&& dx, const DCond& dcond) const {
        check<X, Y>();
        using Out = ReplaceLast<shape_of<X>, Cout>;
        for (auto& t : c.dr) t.fill(T(0));
        for (auto& t : c.dout) t.fill(T(0));
        for (int i = R - 1; i >= 0; --i) {
            const auto k = std::size_t(i);
            const ViewOf<const T, Out> o = i == R - 1 ? ViewOf<const T, Out>(y.data()) : cview(c.out[k]);
            const ViewOf<const T, Out> g = i == R - 1 ? ViewOf<const T, Out>(dy.data()) : cview(c.dout[k]);
            ViewOf<const T, Out> ro = o, gr = g;  // the residual block's output and its gradient
            if constexpr (has_cross) {
                cross[k].backward(cview(c.r[k]), cond.context, cond.mask, o, c.cross[k], g, c.dr[k], dcond.dcontext);
                ro = cview(c.r[k]);
                gr = cview(c.dr[k]);
            }
            if (i == 0) detail::backward_res(first, x, cond, ro, c.first, gr, dx, dcond);
            else
                detail::backward_res(rest[k - 1], cview(c.out[k - 1]), cond, ro, c.rest[k - 1], gr,
                                     mview(c.dout[k - 1]), dcond);
        }
    }

private:
    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank == 4 && shape_of<X>::last == Cin,
                      "ResStack: the input must be [N, H, W, Cin] with Cin the stack's input channel count");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<X>>>,
                      "ResStack: the output must be [N, H, W, Cout]");
    }
};

}  // namespace diffuse

#endif
