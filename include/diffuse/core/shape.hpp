// Compile-time shapes: every tensor dimension is a template argument, so a shape
// mismatch between layers is a compile error rather than a run-time surprise.
#ifndef DIFFUSE_CORE_SHAPE_HPP
#define DIFFUSE_CORE_SHAPE_HPP

#include <array>
#include <cstddef>
#include <utility>

namespace diffuse {

template <int... D>
struct Shape {
    static_assert(sizeof...(D) > 0, "Shape: a tensor needs at least one dimension");
    static_assert(((D > 0) && ...), "Shape: every dimension must be positive");

    static constexpr int rank = sizeof...(D);
    static constexpr std::array<int, rank> dims{D...};
    static constexpr std::size_t size = (std::size_t{1} * ... * std::size_t(D));
    /// The innermost (contiguous) dimension: features, channels.
    static constexpr int last = dims[rank - 1];
    /// Everything before the last dimension, flattened: the "rows" a dense op sees.
    static constexpr int rows = int(size / std::size_t(last));
    /// The outermost dimension: the batch for images [N, H, W, C].
    static constexpr int first = dims[0];

    template <int I>
    static constexpr int dim = dims[I];

    /// Row-major strides.
    static constexpr std::array<std::size_t, rank> strides = [] {
        std::array<std::size_t, rank> s{};
        std::size_t acc = 1;
        for (int i = rank - 1; i >= 0; --i) {
            s[i] = acc;
            acc *= std::size_t(dims[i]);
        }
        return s;
    }();
};

namespace detail {
template <class S, int NewLast, class Seq>
struct ReplaceLastImpl;
template <class S, int NewLast, std::size_t... I>
struct ReplaceLastImpl<S, NewLast, std::index_sequence<I...>> {
    using type = Shape<S::dims[I]..., NewLast>;
};
template <class S, int NewLast, class Seq>
struct AppendLastImpl;
template <class S, int NewLast, std::size_t... I>
struct AppendLastImpl<S, NewLast, std::index_sequence<I...>> {
    using type = Shape<S::dims[I]..., NewLast>;
};
template <class S, class Seq>
struct DropFirstImpl;
template <class S, std::size_t... I>
struct DropFirstImpl<S, std::index_sequence<I...>> {
    using type = Shape<S::dims[I + 1]...>;
};
}  // namespace detail

/// Same shape with the last dimension replaced: Linear<In, Out> maps [..., In] to [..., Out].
template <class S, int NewLast>
using ReplaceLast = typename detail::ReplaceLastImpl<S, NewLast, std::make_index_sequence<S::rank - 1>>::type;

/// The shape with one more, innermost dimension: ids [N, T] -> vectors [N, T, D].
template <class S, int NewLast>
using AppendLast = typename detail::AppendLastImpl<S, NewLast, std::make_index_sequence<S::rank>>::type;

/// The shape of one item of the outermost dimension: [N, H, W, C] -> [H, W, C].
template <class S>
using DropFirst = typename detail::DropFirstImpl<S, std::make_index_sequence<S::rank - 1>>::type;

template <class A, class B>
inline constexpr bool same_shape = A::dims.size() == B::dims.size() && A::dims == B::dims;

}  // namespace diffuse

#endif
