// Tensor<T, D...>: owning, 64-byte aligned storage of compile-time size, held inline so that a
// struct of tensors (a layer's cache, a model's workspace) is one allocation whose byte count is
// sizeof(...), a constant. View<T, D...>: a non-owning pointer with the same static shape.
//
// Inline storage means a large Tensor must not live on the stack: create workspaces with
// diffuse::make<W>() (one heap allocation, zero-filled).
#ifndef DIFFUSE_CORE_TENSOR_HPP
#define DIFFUSE_CORE_TENSOR_HPP

#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/shape.hpp"

namespace diffuse {

inline constexpr std::size_t kAlign = 64;

template <class T, int... D>
class View {
public:
    using value_type = std::remove_const_t<T>;
    using shape = Shape<D...>;
    static constexpr std::size_t size = shape::size;

    constexpr View() = default;
    constexpr explicit View(T* p) : p_(p) {}
    /// A view of T converts to a view of const T.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr View(View<U, D...> other) : p_(other.data()) {}

    constexpr T* data() const { return p_; }
    constexpr T* begin() const { return p_; }
    constexpr T* end() const { return p_ + size; }
    /// A null view is how a caller says "I don't need this gradient".
    constexpr explicit operator bool() const { return p_ != nullptr; }
    constexpr T& operator[](std::size_t i) const { return p_[i]; }

    template <class... I>
    constexpr T& operator()(I... idx) const {
        static_assert(sizeof...(I) == shape::rank, "View: wrong number of indices");
        std::size_t off = 0, k = 0;
        ((off += std::size_t(idx) * shape::strides[k++]), ...);
        return p_[off];
    }

    /// Same memory, another shape of the same size.
    template <int... E>
    constexpr View<T, E...> reshape() const {
        static_assert(Shape<E...>::size == size, "reshape: element count must not change");
        return View<T, E...>(p_);
    }
    /// Item i of the outermost dimension.
    constexpr auto item(int i) const { return drop_first(std::make_index_sequence<shape::rank - 1>{}, i); }
    /// Items [first, first + M) of the outermost dimension: a view of M items (a slice of a batch).
    template <int M>
    constexpr auto items(int first) const {
        return first_items<M>(std::make_index_sequence<shape::rank - 1>{}, first);
    }

private:
    template <std::size_t... K>
    constexpr auto drop_first(std::index_sequence<K...>, int i) const {
        static_assert(shape::rank > 1, "item: a rank-1 view has no items");
        using Sub = View<T, shape::dims[K + 1]...>;
        return Sub(p_ + std::size_t(i) * Sub::size);
    }
    template <int M, std::size_t... K>
    constexpr auto first_items(std::index_sequence<K...>, int first) const {
        static_assert(M > 0 && M <= shape::dims[0], "items: more items than the view has");
        return View<T, M, shape::dims[K + 1]...>(p_ + std::size_t(first) * (size / shape::dims[0]));
    }
    T* p_ = nullptr;
};

template <class T, int... D>
class alignas(kAlign) Tensor {
public:
    using value_type = T;
    using shape = Shape<D...>;
    static constexpr std::size_t size = shape::size;

    T* data() { return data_; }
    const T* data() const { return data_; }
    T* begin() { return data_; }
    T* end() { return data_ + size; }
    const T* begin() const { return data_; }
    const T* end() const { return data_ + size; }
    T& operator[](std::size_t i) { return data_[i]; }
    const T& operator[](std::size_t i) const { return data_[i]; }

    template <class... I>
    T& operator()(I... idx) {
        return view()(idx...);
    }
    template <class... I>
    const T& operator()(I... idx) const {
        return view()(idx...);
    }

    View<T, D...> view() { return View<T, D...>(data_); }
    View<const T, D...> view() const { return View<const T, D...>(data_); }
    operator View<T, D...>() { return view(); }
    operator View<const T, D...>() const { return view(); }

    template <int... E>
    View<T, E...> reshape() {
        return view().template reshape<E...>();
    }
    template <int... E>
    View<const T, E...> reshape() const {
        return view().template reshape<E...>();
    }
    auto item(int i) { return view().item(i); }
    auto item(int i) const { return view().item(i); }
    template <int M>
    auto items(int first) {
        return view().template items<M>(first);
    }
    template <int M>
    auto items(int first) const {
        return view().template items<M>(first);
    }

    /// Every value set to v, by every thread where the tensor is large (parallel_fill): the gradient
    /// buffers zeroed before each backward pass were 3.5 % of a 2-thread training step run by one thread.
    void fill(T v) { parallel_fill(data_, size, v); }

private:
    alignas(kAlign) T data_[size];
};

namespace detail {
template <class T, class S>
struct ViewOfShapeImpl;
template <class T, int... D>
struct ViewOfShapeImpl<T, Shape<D...>> {
    using type = View<T, D...>;
};
template <class T, class S>
struct TensorOfShapeImpl;
template <class T, int... D>
struct TensorOfShapeImpl<T, Shape<D...>> {
    using type = Tensor<T, D...>;
};
}  // namespace detail

/// View / Tensor types from a Shape computed by shape algebra: TensorOf<T, Linear::output_shape<S>>.
template <class T, class S>
using ViewOf = typename detail::ViewOfShapeImpl<T, S>::type;
template <class T, class S>
using TensorOf = typename detail::TensorOfShapeImpl<T, S>::type;

/// The one placeholder for something absent: a child layer or cache part a configuration leaves out
/// (no time projection, an identity skip), an input not given (diffuse::no_mask in nn/attention.hpp,
/// diffuse::absent for a block's conditioning). Empty: under [[no_unique_address]] it takes no space.
struct Absent {
    /// As a child it has no parameters.
    template <class V>
    constexpr void visit(V&) {}
};
inline constexpr Absent absent{};

/// Type traits for generic layer signatures.
template <class X>
struct is_shaped : std::false_type {};
template <class T, int... D>
struct is_shaped<View<T, D...>> : std::true_type {};
template <class T, int... D>
struct is_shaped<Tensor<T, D...>> : std::true_type {};
template <class X>
concept Shaped = is_shaped<std::remove_cvref_t<X>>::value;

/// The shape of a tensor or view argument.
template <Shaped X>
using shape_of = typename std::remove_cvref_t<X>::shape;

/// A read-only view of a tensor or view, of the same shape.
template <class T, int... D>
constexpr View<const T, D...> cview(const Tensor<T, D...>& t) {
    return t.view();
}
template <class T, int... D>
constexpr View<const std::remove_const_t<T>, D...> cview(View<T, D...> v) {
    return View<const std::remove_const_t<T>, D...>(v.data());
}
/// A writable view of a tensor or writable view.
template <class T, int... D>
constexpr View<T, D...> mview(Tensor<T, D...>& t) {
    return t.view();
}
template <class T, int... D>
constexpr View<T, D...> mview(View<T, D...> v) {
    static_assert(!std::is_const_v<T>, "mview: view is read-only");
    return v;
}

/// A view of the given shape over the same memory as x: for handing [N, H, W, C] maps to
/// layers that see [N, H*W, C] tokens.
template <int... E, Shaped X>
constexpr auto reshaped(X&& x) {
    static_assert(Shape<E...>::size == shape_of<X>::size, "reshaped: element count must not change");
    using P = std::remove_reference_t<decltype(*x.data())>;
    return View<P, E...>(x.data());
}

namespace detail {
/// A writable view of a gradient argument, null when the caller passed a null view.
template <class S, class X>
ViewOf<std::remove_pointer_t<decltype(std::declval<X&>().data())>, S> as_view(X&& x) {
    return ViewOf<std::remove_pointer_t<decltype(std::declval<X&>().data())>, S>(x.data());
}

}  // namespace detail

/// One heap allocation of a (possibly huge) tensor or workspace struct, zero-filled.
template <class W>
std::unique_ptr<W> make() {
    return std::make_unique<W>();
}

}  // namespace diffuse

#endif
