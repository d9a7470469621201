// AttentionBlock: self-attention over the H·W positions of a feature map, with a residual,
//
//   y = x + MHA(norm(x))        x [N, H, W, C] read as tokens [N, H·W, C] (channels-last: no transpose)
//
// norm is a tag as in ResidualBlock (norm::Layer or norm::Group<G>). Any [N, ..., C] input works;
// a token sequence [N, T, C] is attended as it is.
//
// detail::PreNormAttention is the body it shares with CrossAttentionBlock (cross_attention.hpp):
// normalize, attend (queries from the normalized input; keys and values from it or from a context),
// add the input back.
#ifndef DIFFUSE_BLOCKS_ATTENTION_BLOCK_HPP
#define DIFFUSE_BLOCKS_ATTENTION_BLOCK_HPP

#include <cstddef>
#include <type_traits>

#include "diffuse/blocks/residual.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/norm.hpp"

namespace diffuse {

namespace detail {

/// Passed as the context of a self-attention block: keys and values come from norm(x) itself.
struct SelfContext {};

template <class T, class NormLayer, int C, int Heads, int Dkv>
struct PreNormAttention {
    using Attention = MultiHeadAttention<T, C, Heads, Dkv>;

    NormLayer norm;
    Attention attn;

    template <class V>
    constexpr void visit(V& v) {
        v("norm", norm);
        v("attn", attn);
    }

    template <class XShape>
    using output_shape = XShape;
    /// An [N, ..., C] input seen as tokens [N, T, C].
    template <class XShape>
    using Tokens = Shape<XShape::first, int(XShape::size / (std::size_t(XShape::first) * C)), C>;

    template <class XShape, class CShape>
    struct Cache {
        TensorOf<T, XShape> h;   // norm(x)
        TensorOf<T, XShape> dh;  // backward scratch: d norm(x)
        typename NormLayer::template Cache<XShape> norm;
        typename Attention::template Cache<Tokens<XShape>, CShape> attn;
    };

protected:
    // Called with views only (see ResidualBlock), so each shape compiles the body once.
    template <class X, class Ctx, class M, class Y, class CacheT>
    void run_forward(X x, const Ctx& context, const M& mask, Y y, CacheT& c) const {
        using TS = Tokens<shape_of<X>>;
        norm.forward(x, c.h, c.norm);
        const auto h = ViewOf<const T, TS>(c.h.data());
        const auto yt = ViewOf<T, TS>(y.data());
        if constexpr (std::is_same_v<Ctx, SelfContext>) attn.forward(h, h, mask, yt, c.attn);
        else attn.forward(h, context, mask, yt, c.attn);
        add(y, x, y);
    }

    /// dcontext is ignored for self attention. attn.backward reads y only for its shape (its own
    /// output was overwritten by the residual sum).
    template <class X, class Ctx, class M, class Y, class CacheT, class DY, class DX, class DC>
    void run_backward(X x, const Ctx& context, const M& mask, Y y, CacheT& c, DY dy, DX dx, DC dcontext) const {
        using TS = Tokens<shape_of<X>>;
        if (dx.data()) add_backward(dy, dx, ViewOf<T, shape_of<X>>());  // the residual
        c.dh.fill(T(0));
        const auto h = ViewOf<const T, TS>(c.h.data());
        const auto yt = ViewOf<const T, TS>(y.data());
        const auto dyt = ViewOf<const T, TS>(dy.data());
        const auto dht = ViewOf<T, TS>(c.dh.data());
        if constexpr (std::is_same_v<Ctx, SelfContext>) attn.backward(h, h, mask, yt, c.attn, dyt, dht, dht);
        else attn.backward(h, context, mask, yt, c.attn, dyt, dht, dcontext);
        norm.backward(x, c.h, c.norm, c.dh, dx);
    }
};

}  // namespace detail

template <class T, int C, int Heads, class Norm>
struct AttentionBlock : detail::PreNormAttention<T, typename Norm::template layer<T, C>, C, Heads, C> {
    static_assert(C > 0 && Heads > 0, "AttentionBlock: channel and head counts must be positive");
    static_assert(C % Heads == 0, "AttentionBlock: the channel count must divide by the head count");
    static_assert(C % Norm::groups == 0, "AttentionBlock: the GroupNorm group count must divide C");
    using Base = detail::PreNormAttention<T, typename Norm::template layer<T, C>, C, Heads, C>;
    static constexpr int channels = C, num_heads = Heads;

    template <class XShape>
    using Cache = typename Base::template Cache<XShape, typename Base::template Tokens<XShape>>;

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y, Cache<shape_of<X>>& cache) const {
        check<X, Y>();
        this->run_forward(cview(x), detail::SelfContext{}, no_mask, mview(y), cache);
    }

    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y& y, Cache<shape_of<X>>& cache, const DY& dy, DX&& dx) const {
        check<X, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "AttentionBlock: gradients must have the shapes of their values");
        this->run_backward(cview(x), detail::SelfContext{}, no_mask, cview(y), cache, cview(dy),
                           detail::as_view<shape_of<X>>(dx), detail::SelfContext{});
    }

private:
    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank >= 3 && shape_of<X>::last == C,
                      "AttentionBlock: the input must be [N, H, W, C] (or [N, T, C]) with C the block's channel count");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>, "AttentionBlock: the output must have the input's shape");
    }
};

}  // namespace diffuse

#endif
