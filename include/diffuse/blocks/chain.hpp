// A chain of blocks, each one's output the next one's input: how a model strings its levels and its
// middle block together (the VAE's encoder: down.0 … down.L-1, mid; the UNet's down path and middle).
//
//   Stage<T, Block, XShape, CShape>   a block's cache, its output y and the gradient dy of y
//   Stages<T, XShape, CShape, std::tuple<B...>>   the std::tuple of the stages of blocks B... from XShape
//   chain_forward(blocks, x, cond, stages)                  stage i reads stage i-1's y (stage 0 reads x)
//   chain_backward(blocks, x, cond, stages, dx, dcond[, done])
//                                                           last block first, each from its stage's dy,
//                                                           adding into the previous stage's dy (dx);
//                                                           done(block) after each block's backward
//   zero_stage_grads(stages)                                every dy, and every block's shared grads
//
// blocks is a std::tuple of references to the blocks (chain_of(...)), each with the interface of ResStack
// (blocks/res_stack.hpp). The producer of a value owns its gradient, and every consumer adds into
// it: zero the stages before any consumer runs backward (a UNet's up path reads the down stages).
#ifndef DIFFUSE_BLOCKS_CHAIN_HPP
#define DIFFUSE_BLOCKS_CHAIN_HPP

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

template <class T, class Block, class XShape, class CShape = Absent>
struct Stage {
    using in_shape = XShape;
    using out_shape = typename Block::template output_shape<XShape>;
    typename Block::template Cache<XShape, CShape> cache;
    TensorOf<T, out_shape> y, dy;

    void zero_grads() {
        dy.fill(T(0));
        if constexpr (requires { cache.zero_shared_grads(); }) cache.zero_shared_grads();
    }
};

namespace detail {
template <class T, class XShape, class CShape, class... Blocks>
struct StagesOf {
    using type = std::tuple<>;
};
template <class T, class XShape, class CShape, class B, class... Rest>
struct StagesOf<T, XShape, CShape, B, Rest...> {
    using First = Stage<T, B, XShape, CShape>;
    using type = decltype(std::tuple_cat(
        std::declval<std::tuple<First>>(),
        std::declval<typename StagesOf<T, typename First::out_shape, CShape, Rest...>::type>()));
};
template <class T, class XShape, class CShape, class BlockTuple>
struct StagesOfTuple;
template <class T, class XShape, class CShape, class... Blocks>
struct StagesOfTuple<T, XShape, CShape, std::tuple<Blocks...>> {
    using type = typename StagesOf<T, XShape, CShape, Blocks...>::type;
};

template <template <int> class F, class Seq>
struct TupleOfImpl;
template <template <int> class F, std::size_t... I>
struct TupleOfImpl<F, std::index_sequence<I...>> {
    using type = std::tuple<F<int(I)>...>;
};

template <class X>
struct is_tuple : std::false_type {};
template <class... X>
struct is_tuple<std::tuple<X...>> : std::true_type {};
template <class X>
auto tie_flat(const X& x) {
    if constexpr (is_tuple<X>::value) return std::apply([](const auto&... e) { return std::tie(e...); }, x);
    else return std::tie(x);
}
}  // namespace detail

/// The stages of the blocks of a std::tuple type, from an input of shape XShape.
template <class T, class XShape, class CShape, class BlockTuple>
using Stages = typename detail::StagesOfTuple<T, XShape, CShape, BlockTuple>::type;

/// std::tuple<F<0>, …, F<n-1>>: the levels of a model, one type per index.
template <template <int> class F, int n>
using TupleOf = typename detail::TupleOfImpl<F, std::make_index_sequence<std::size_t(n)>>::type;

/// References to blocks and to the blocks of tuples, in order, as one flat tuple: chain_of(down, mid).
template <class... Parts>
auto chain_of(const Parts&... parts) {
    return std::tuple_cat(detail::tie_flat(parts)...);
}

/// v(name, i, level) for the levels of a tuple: state-dict names name.0, name.1, …
template <class V, class Tuple>
constexpr void visit_numbered(V& v, const char* name, Tuple& levels) {
    std::apply(
        [&](auto&... level) {
            int i = 0;
            (v(name, i++, level), ...);
        },
        levels);
}

template <class StageTuple>
void zero_stage_grads(StageTuple& stages) {
    std::apply([](auto&... s) { (s.zero_grads(), ...); }, stages);
}

template <std::size_t I = 0, class Blocks, class X, class Cond, class StageTuple>
void chain_forward(const Blocks& blocks, const X& x, const Cond& cond, StageTuple& stages) {
    auto& s = std::get<I>(stages);
    if constexpr (I == 0) std::get<0>(blocks).forward(x, cond, s.y, s.cache);
    else std::get<I>(blocks).forward(std::get<I - 1>(stages).y, cond, s.y, s.cache);
    if constexpr (I + 1 < std::tuple_size_v<StageTuple>) chain_forward<I + 1>(blocks, x, cond, stages);
}

/// Needs every stage's dy complete (the last one's from the chain's consumer).
template <class Blocks, class X, class Cond, class StageTuple, class DX, class DCond, class Done = NoGradHook>
void chain_backward(const Blocks& blocks, const X& x, const Cond& cond, StageTuple& stages, DX&& dx, const DCond& dcond,
                    const Done& done = {}) {
    constexpr std::size_t n = std::tuple_size_v<StageTuple>;
    [&]<std::size_t... K>(std::index_sequence<K...>) {
        auto step = [&]<std::size_t I>(std::integral_constant<std::size_t, I>) {
            auto& s = std::get<I>(stages);
            if constexpr (I == 0) std::get<0>(blocks).backward(x, cond, s.y, s.cache, s.dy, dx, dcond);
            else
                std::get<I>(blocks).backward(std::get<I - 1>(stages).y, cond, s.y, s.cache, s.dy,
                                             std::get<I - 1>(stages).dy, dcond);
            done(std::get<I>(blocks));
        };
        (step(std::integral_constant<std::size_t, n - 1 - K>{}), ...);
    }
    (std::make_index_sequence<n>{});
}

}  // namespace diffuse

#endif
