// MidBlock: the lowest-resolution block of the VAE's encoder and decoder and of the UNet, at C channels,
//
//   ResidualBlock -> AttentionBlock (self) [-> CrossAttentionBlock(context), where CtxD > 0] -> ResidualBlock
//
// with time-conditioned residual blocks where TimeDim > 0 (the UNet's). State-dict names res1, attn,
// cross, res2. forward(x, cond, y, cache) / backward(x, cond, y, cache, dy, dx, dcond) as ResStack's
// (blocks/res_stack.hpp); cond is diffuse::absent for the VAE's.
#ifndef DIFFUSE_BLOCKS_MID_BLOCK_HPP
#define DIFFUSE_BLOCKS_MID_BLOCK_HPP

#include <type_traits>

#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/blocks/conditioning.hpp"
#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

template <class T, int C, int Heads, class Norm, int TimeDim = 0, int CtxD = 0>
struct MidBlock {
    static_assert(CtxD >= 0, "MidBlock: the context width must not be negative (0: no cross-attention)");
    using value_type = T;
    static constexpr int channels = C;
    static constexpr bool has_cross = CtxD > 0;
    using Res = ResidualBlock<T, C, C, Norm, TimeDim>;
    using Self = AttentionBlock<T, C, Heads, Norm>;
    using Cross = std::conditional_t<has_cross, CrossAttentionBlock<T, C, (has_cross ? CtxD : 1), Heads>, Absent>;

    Res res1;
    Self attn;
    [[no_unique_address]] Cross cross;
    Res res2;

    template <class V>
    constexpr void visit(V& v) {
        v("res1", res1);
        v("attn", attn);
        if constexpr (has_cross) v("cross", cross);
        v("res2", res2);
    }

    template <class XShape>
    using output_shape = XShape;

    /// The cross-attention's part of the cache: its output, that output's gradient, its own cache.
    struct CrossPart {
        template <class XShape, class CShape>
        struct Cache {
            TensorOf<T, XShape> x, dx;
            typename Cross::template Cache<XShape, CShape> cache;
        };
    };
    /// CShape: the context's shape [N, Tc, CtxD] (unused without cross-attention).
    template <class XShape, class CShape = Absent>
    struct Cache {
        typename Res::template Cache<XShape> res1, res2;
        typename Self::template Cache<XShape> attn;
        TensorOf<T, XShape> r1, a, dr1, da;  // res1 and self-attention outputs, their gradients
        [[no_unique_address]] typename detail::CacheIf<has_cross, CrossPart, XShape, CShape>::type cross;
    };

    template <Shaped X, class Cond, Shaped Y, class Ca>
    void forward(const X& x, const Cond& cond, Y&& y, Ca& c) const {
        check<X, Y>();
        detail::forward_res(res1, x, cond, c.r1, c.res1);
        attn.forward(c.r1, c.a, c.attn);
        if constexpr (has_cross) {
            cross.forward(c.a, cond.context, cond.mask, c.cross.x, c.cross.cache);
            detail::forward_res(res2, c.cross.x, cond, y, c.res2);
        } else {
            detail::forward_res(res2, c.a, cond, y, c.res2);
        }
    }

    template <Shaped X, class Cond, Shaped Y, class Ca, Shaped DY, Shaped DX, class DCond>
    void backward(const X& x, const Cond& cond, const Y& y, Ca& c, const DY& dy, DX&& dx, const DCond& dcond) const {
        check<X, Y>();
        c.da.fill(T(0));
        c.dr1.fill(T(0));
        if constexpr (has_cross) {
            c.cross.dx.fill(T(0));
            detail::backward_res(res2, c.cross.x, cond, y, c.res2, dy, c.cross.dx, dcond);
            cross.backward(c.a, cond.context, cond.mask, c.cross.x, c.cross.cache, c.cross.dx, c.da, dcond.dcontext);
        } else {
            detail::backward_res(res2, c.a, cond, y, c.res2, dy, c.da, dcond);
        }
        attn.backward(c.r1, c.a, c.attn, c.da, c.dr1);
        detail::backward_res(res1, x, cond, c.r1, c.res1, c.dr1, dx, dcond);
    }

private:
    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank == 4 && shape_of<X>::last == C,
                      "MidBlock: the input must be [N, H, W, C] with C the block's channel count");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>, "MidBlock: the output must have the input's shape");
    }
};

}  // namespace diffuse

#endif
