// CrossAttentionBlock: image (or token) features attend to a text context, with a residual,
//
//   y = x + MHA(query = LN(x), key = value = context)
//
//   x        [N, H, W, C] (read as [N, H·W, C] tokens) or [N, T, C]
//   context  [N, Tc, CtxD], with an optional key padding mask [N, Tc] (true = padded token, ignored)
//
// The seed's Cross_Attention_Block sat before the UNet with no residual; this is the UNet-internal
// block of latent diffusion. Backward adds into dx and dcontext (the context feeds many blocks).
#ifndef DIFFUSE_BLOCKS_CROSS_ATTENTION_HPP
#define DIFFUSE_BLOCKS_CROSS_ATTENTION_HPP

#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/norm.hpp"

namespace diffuse {

template <class T, int C, int CtxD, int Heads>
struct CrossAttentionBlock : detail::PreNormAttention<T, LayerNorm<T, C>, C, Heads, CtxD> {
    static_assert(C > 0 && CtxD > 0 && Heads > 0, "CrossAttentionBlock: widths and head count must be positive");
    static_assert(C % Heads == 0, "CrossAttentionBlock: the channel count must divide by the head count");
    using Base = detail::PreNormAttention<T, LayerNorm<T, C>, C, Heads, CtxD>;
    static constexpr int channels = C, context_width = CtxD, num_heads = Heads;

    template <class XShape, class CShape>
    using Cache = typename Base::template Cache<XShape, CShape>;

    /// mask: a [N, Tc] bool/uint8 tensor or view (true = padded), or diffuse::no_mask.
    template <Shaped X, Shaped Ctx, class M, Shaped Y>
    void forward(const X& x, const Ctx& context, const M& mask, Y&& y, Cache<shape_of<X>, shape_of<Ctx>>& cache) const {
        check<X, Ctx, Y>();
        this->run_forward(cview(x), cview(context), mask, mview(y), cache);
    }

    /// A null dx or dcontext view skips that gradient.
    template <Shaped X, Shaped Ctx, class M, Shaped Y, Shaped DY, Shaped DX, Shaped DC>
    void backward(const X& x, const Ctx& context, const M& mask, const Y& y, Cache<shape_of<X>, shape_of<Ctx>>& cache,
                  const DY& dy, DX&& dx, DC&& dcontext) const {
        check<X, Ctx, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>> &&
                          same_shape<shape_of<DC>, shape_of<Ctx>>,
                      "CrossAttentionBlock: gradients must have the shapes of their values");
        this->run_backward(cview(x), cview(context), mask, cview(y), cache, cview(dy), detail::as_view<shape_of<X>>(dx),
                           detail::as_view<shape_of<Ctx>>(dcontext));
    }

private:
    template <class X, class Ctx, class Y>
    static constexpr void check() {
        static_assert(
            shape_of<X>::rank >= 3 && shape_of<X>::last == C,
            "CrossAttentionBlock: the input must be [N, H, W, C] or [N, T, C] with C the block's channel count");
        static_assert(shape_of<Ctx>::rank == 3 && shape_of<Ctx>::last == CtxD,
                      "CrossAttentionBlock: the context must be [N, Tc, CtxD]");
        static_assert(shape_of<Ctx>::first == shape_of<X>::first,
                      "CrossAttentionBlock: input and context must have the same batch size");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>,
                      "CrossAttentionBlock: the output must have the input's shape");
    }
};

}  // namespace diffuse

#endif
