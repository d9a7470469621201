// Element-wise maps and reductions through xsimd: a vector body, then the tail (maps: through the
// vector code on a padded copy; reductions: scalar). The functors are generic lambdas that work on
// both xsimd::batch<T> and T, using the
// xsimd:: math functions (which have scalar overloads), e.g.
//     simd::map(n, x, y, [](auto v) { return v * (1 / (1 + xsimd::exp(-v))); });
#ifndef DIFFUSE_CORE_SIMD_HPP
#define DIFFUSE_CORE_SIMD_HPP

#include "diffuse/core/intrinsics.hpp"

#include <algorithm>
#include <cstddef>
#include <utility>
#include <xsimd/xsimd.hpp>

namespace diffuse::simd {

template <class T>
using batch = xsimd::batch<T>;
template <class T>
inline constexpr std::size_t width = batch<T>::size;

/// The element type of V, an xsimd batch or a plain number (the two things a map's functor sees).
template <class V>
struct scalar_of_t {
    using type = V;
};
template <class T, class A>
struct scalar_of_t<xsimd::batch<T, A>> {
    using type = T;
};
template <class V>
using scalar_of = typename scalar_of_t<V>::type;

/// A double constant as V, rounded once to V's element type: said explicitly, so float code that
/// takes a constant such as 1/√2 compiles cleanly under -Wconversion.
template <class V>
constexpr V splat(double c) {
    return V(static_cast<scalar_of<V>>(c));
}

/// End of the vector part of [0, n). Computing it first (rather than testing i + width <= n)
/// also keeps GCC 12 from a false -Waggressive-loop-optimizations warning for constant n.
template <class T>
constexpr std::size_t vector_end(std::size_t n) {
    return n - n % width<T>;
}

/// The last n < width elements of a map, through the same vector code as the rest, on zero-padded
/// copies: an element's result never depends on where it lies in the array (a scalar tail would
/// round differently: xsimd's vector exp is not std::exp), so an item of a batch gets the same bits
/// at any position and in a batch of any size.
template <class T, class F, class... P, std::size_t... K>
inline void map_tail(std::size_t n, T* out, F f, std::index_sequence<K...>, const P*... in) {
    n %= width<T>;  // n < width already; saying so keeps GCC 12's -Warray-bounds from doubting it
    alignas(64) T pad[sizeof...(P) + 1][width<T>] = {};
    (std::copy_n(in, n, pad[K]), ...);
    f(batch<T>::load_aligned(pad[K])...).store_aligned(pad[sizeof...(P)]);
    std::copy_n(pad[sizeof...(P)], n, out);
}
template <class T, class F, class... P>
inline void map_tail(std::size_t n, T* out, F f, const P*... in) {
    map_tail(n, out, f, std::index_sequence_for<P...>{}, in...);
}

/// y[i] = f(x[i])
template <class T, class F>
inline void map(std::size_t n, const T* x, T* y, F f) {
    std::size_t i = 0;
    for (const std::size_t nv = vector_end<T>(n); i < nv; i += width<T>)
        f(batch<T>::load_unaligned(x + i)).store_unaligned(y + i);
    if (i < n) map_tail(n - i, y + i, f, x + i);
}

/// z[i] = f(x[i], y[i])
template <class T, class F>
inline void map2(std::size_t n, const T* x, const T* y, T* z, F f) {
    std::size_t i = 0;
    for (const std::size_t nv = vector_end<T>(n); i < nv; i += width<T>)
        f(batch<T>::load_unaligned(x + i), batch<T>::load_unaligned(y + i)).store_unaligned(z + i);
    if (i < n) map_tail(n - i, z + i, f, x + i, y + i);
}

/// w[i] = f(x[i], y[i], z[i])
template <class T, class F>
inline void map3(std::size_t n, const T* x, const T* y, const T* z, T* w, F f) {
    std::size_t i = 0;
    for (const std::size_t nv = vector_end<T>(n); i < nv; i += width<T>)
        f(batch<T>::load_unaligned(x + i), batch<T>::load_unaligned(y + i), batch<T>::load_unaligned(z + i))
            .store_unaligned(w + i);
    if (i < n) map_tail(n - i, w + i, f, x + i, y + i, z + i);
}

/// y += a * x
template <class T>
inline void axpy(std::size_t n, T a, const T* x, T* y) {
    map2(n, x, y, y, [a](auto xv, auto yv) { return yv + a * xv; });
}
/// y += x
template <class T>
inline void add_to(std::size_t n, const T* x, T* y) {
    map2(n, x, y, y, [](auto xv, auto yv) { return yv + xv; });
}

/// sum of f(x[i]) in a fixed order (vector lanes, then the tail), so the result is reproducible.
template <class T, class F>
inline T reduce(std::size_t n, const T* x, F f) {
    batch<T> acc(T(0));
    std::size_t i = 0;
    for (const std::size_t nv = vector_end<T>(n); i < nv; i += width<T>) acc += f(batch<T>::load_unaligned(x + i));
    T s = xsimd::hadd(acc);
    for (; i < n; ++i) s += f(x[i]);
    return s;
}
template <class T>
inline T sum(std::size_t n, const T* x) {
    return reduce(n, x, [](auto v) { return v; });
}
/// sum of x[i] * y[i], fixed order.
template <class T>
inline T dot(std::size_t n, const T* x, const T* y) {
    batch<T> acc(T(0));
    std::size_t i = 0;
    for (const std::size_t nv = vector_end<T>(n); i < nv; i += width<T>)
        acc = xsimd::fma(batch<T>::load_unaligned(x + i), batch<T>::load_unaligned(y + i), acc);
    T s = xsimd::hadd(acc);
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

}  // namespace diffuse::simd

#endif
