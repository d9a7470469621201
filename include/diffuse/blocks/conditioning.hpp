// Conditioning: the side inputs a block reads besides its feature map, carried as one argument
// through residual stacks, levels and the middle block (blocks/res_stack.hpp, levels.hpp, mid_block.hpp):
//
//   temb     [N, TimeDim]          the time embedding, read by time-conditioned residual blocks
//   context  [N, Tc, CtxD]         the text context: keys and values of cross-attention
//   mask     [N, Tc] bool/uint8    its key padding mask (true = padded token), or diffuse::no_mask
//
// ConditioningGrads holds the gradients backward adds into (dtemb; dcontext, where a null view skips
// it). A block that reads none of them (the VAE's) takes diffuse::absent for both.
#ifndef DIFFUSE_BLOCKS_CONDITIONING_HPP
#define DIFFUSE_BLOCKS_CONDITIONING_HPP

#include "diffuse/core/tensor.hpp"

namespace diffuse {

/// Views of temb and context; the mask by reference (it outlives the call that builds this).
template <class E, class C, class M>
struct Conditioning {
    E temb;
    C context;
    const M& mask;
};
template <class E, class C, class M>
Conditioning<E, C, M> conditioning(E temb, C context, const M& mask) {
    return {temb, context, mask};
}

/// Writable views of the gradients of temb and context.
template <class DE, class DC>
struct ConditioningGrads {
    DE dtemb;
    DC dcontext;
};
template <class DE, class DC>
ConditioningGrads<DE, DC> conditioning_grads(DE dtemb, DC dcontext) {
    return {dtemb, dcontext};
}

namespace detail {

/// A ResidualBlock's forward, with the time embedding where the block takes one.
template <class Res, class X, class Cond, class Y, class C>
void forward_res(const Res& res, const X& x, const Cond& cond, Y&& y, C& cache) {
    if constexpr (Res::has_time) res.forward(x, cond.temb, y, cache);
    else res.forward(x, y, cache);
}
/// Its backward: adds into dx, dcond.dtemb (where the block takes temb) and the parameter gradients.
template <class Res, class X, class Cond, class Y, class C, class DY, class DX, class DCond>
void backward_res(const Res& res, const X& x, const Cond& cond, const Y& y, C& cache, const DY& dy, DX&& dx,
                  const DCond& dcond) {
    if constexpr (Res::has_time) res.backward(x, cond.temb, y, cache, dy, dx, dcond.dtemb);
    else res.backward(x, y, cache, dy, dx);
}

/// Block::Cache<S...> where On, else Absent (so a block left out is never instantiated).
template <bool On, class Block, class... S>
struct CacheIf {
    using type = Absent;
};
template <class Block, class... S>
struct CacheIf<true, Block, S...> {
    using type = typename Block::template Cache<S...>;
};

}  // namespace detail
}  // namespace diffuse

#endif
