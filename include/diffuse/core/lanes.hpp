// Element-wise loop building blocks beyond core/simd.hpp's map/reduce, for kernels that read or
// write more arrays than map3 allows (normalization, losses, activation backward).
//
// One loop body serves the vector part and the scalar tail: lanes::each calls body(i, V{}) with V
// either xsimd::batch<T> (i steps by the width) or T (the tail), and the body uses load<V>,
// store, splat<V> and select, which work for both. Sum<T> accumulates in a fixed order (vector
// lanes, then the tail), so a reduction is reproducible.
#ifndef DIFFUSE_CORE_LANES_HPP
#define DIFFUSE_CORE_LANES_HPP

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse::lanes {

template <class V, class T>
inline V load(const T* p) {
    if constexpr (std::is_same_v<V, T>) return *p;
    else return V::load_unaligned(p);
}
/// Call it as lanes::store: unqualified, ADL on a batch argument picks xsimd::store (aligned).
template <class T, class V>
inline void store(T* p, const V& v) {
    if constexpr (std::is_same_v<V, T>) *p = v;
    else v.store_unaligned(p);
}
/// A scalar broadcast to V (a batch, or the scalar itself).
template <class V, class S>
inline V splat(S s) {
    return V(s);
}
/// c ? a : b for a bool or a batch_bool (xsimd 8 has no scalar select).
template <class C, class V>
inline V select(const C& c, const V& a, const V& b) {
    if constexpr (std::is_same_v<C, bool>) return c ? a : b;
    else return xsimd::select(c, a, b);
}

/// body(i, V{}) over [0, n): vector steps, then the scalar tail.
template <class T, class F>
inline void each(std::size_t n, F body) {
    constexpr std::size_t w = simd::width<T>;
    const std::size_t nv = n - n % w;
    for (std::size_t i = 0; i < nv; i += w) body(i, simd::batch<T>(T(0)));
    for (std::size_t i = nv; i < n; ++i) body(i, T(0));
}

/// A sum fed by both vectors and scalars; total() adds the lanes, then the scalar part.
template <class T>
struct Sum {
    simd::batch<T> v = simd::batch<T>(T(0));  // not v{0}: that is xsimd 8's initializer-list constructor
    T s{0};
    void add(const simd::batch<T>& x) { v += x; }
    void add(T x) { s += x; }
    T total() const { return xsimd::hadd(v) + s; }
};

}  // namespace diffuse::lanes

#endif
