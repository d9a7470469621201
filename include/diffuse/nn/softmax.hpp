// Softmax over the last dimension: row kernels (also used by attention) and a Softmax layer.
//
//   y = softmax(scale · x),   y_i = exp(scale·x_i − m) / Σ_j exp(scale·x_j − m),   m = max_j scale·x_j
//
// Subtracting the row maximum keeps exp from overflowing. An entry of −inf (a masked attention
// score) gets probability exactly 0, and a row that is −inf everywhere (every key masked) gives
// all zeros rather than 0/0 = NaN.
//
// Backward through y = softmax(scale · x):   dx_i = scale · y_i (dy_i − Σ_j dy_j y_j)
#ifndef DIFFUSE_NN_SOFTMAX_HPP
#define DIFFUSE_NN_SOFTMAX_HPP

#include <algorithm>
#include <limits>
#include <type_traits>

#include "diffuse/core/gemm.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

/// The largest of x[0..n), in a fixed order. n > 0.
template <class T>
inline T row_max(int n, const T* x) {
    constexpr int W = int(simd::width<T>);
    T m = -std::numeric_limits<T>::infinity();
    int i = 0;
    if (n >= W) {
        simd::batch<T> acc = simd::batch<T>::load_unaligned(x);
        for (i = W; i + W <= n; i += W) acc = xsimd::max(acc, simd::batch<T>::load_unaligned(x + i));
        alignas(kAlign) T lanes[W];
        acc.store_aligned(lanes);
        for (int l = 0; l < W; ++l) m = std::max(m, lanes[l]);
    }
    for (; i < n; ++i) m = std::max(m, x[i]);
    return m;
}

/// y[0..n) = softmax(scale · x[0..n)). y may be x (in place). scale must be positive.
template <class T>
inline void softmax_row(int n, const T* x, T* y, T scale = T(1)) {
    const T m = scale * row_max(n, x);
    if (m == -std::numeric_limits<T>::infinity()) {  // every entry masked: no distribution, all zeros
        std::fill(y, y + n, T(0));
        return;
    }
    simd::map(std::size_t(n), x, y, [scale, m](auto v) { return xsimd::exp(scale * v - m); });
    const T inv = T(1) / simd::sum(std::size_t(n), y);  // >= 1 term equals exp(0) = 1, so no 0/0
    simd::map(std::size_t(n), y, y, [inv](auto v) { return v * inv; });
}

/// dx (+)= scale · y ∘ (dy − Σ dy∘y), for y = softmax(scale · x). dx may be dy (in place) when
/// acc is Accumulate::no.
template <class T>
inline void softmax_row_backward(int n, const T* y, const T* dy, T* dx, Accumulate acc, T scale = T(1)) {
    const T s = simd::dot(std::size_t(n), dy, y);
    if (acc == Accumulate::yes)
        simd::map3(std::size_t(n), y, dy, dx, dx,
                   [s, scale](auto yv, auto dyv, auto dxv) { return dxv + scale * yv * (dyv - s); });
    else simd::map2(std::size_t(n), y, dy, dx, [s, scale](auto yv, auto dyv) { return scale * yv * (dyv - s); });
}

/// Softmax over the last dimension of any tensor; rows run in parallel.
template <class T>
struct Softmax {
    template <class V>
    constexpr void visit(V&) {}

    template <class XShape>
    using output_shape = XShape;

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        check_shapes<X, Y>();
        constexpr int L = shape_of<X>::last;
        const T* xp = x.data();
        T* yp = y.data();
        parallel_for_light(shape_of<X>::rows, shape_of<X>::size,
                           [&](int r) { softmax_row(L, xp + std::size_t(r) * L, yp + std::size_t(r) * L); });
    }

    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X&, const Y& y, const DY& dy, DX&& dx) const {
        check_shapes<X, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Softmax: gradients must have the shapes of their values");
        if (!dx.data()) return;
        constexpr int L = shape_of<X>::last;
        const T *yp = y.data(), *dyp = dy.data();
        T* dxp = dx.data();
        parallel_for_light(shape_of<X>::rows, shape_of<X>::size, [&](int r) {
            const std::size_t o = std::size_t(r) * L;
            softmax_row_backward(L, yp + o, dyp + o, dxp + o, Accumulate::yes);
        });
    }

private:
    template <class X, class Y>
    static constexpr void check_shapes() {
        static_assert(std::is_same_v<typename std::remove_cvref_t<X>::value_type, T>,
                      "Softmax: the input's element type must be the layer's T");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>, "Softmax: the output must have the input's shape");
    }
};

}  // namespace diffuse

#endif
