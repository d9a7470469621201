// Element-wise activations as stateless layers: Activation<T, Kind> with one kind functor per
// non-linearity. A kind gives the value f(v) and the derivative df(s) as templates over V, so the
// same code runs on xsimd batches (the vector body) and on scalars (the tail):
//
//   ReLU       max(x, 0)                           df from the OUTPUT: 1 where y > 0 (0 at x = 0,
//                                                  as PyTorch's threshold_backward)
//   SiLU       x · σ(x)                            df = σ(x) · (1 + x · (1 - σ(x)))
//   GELU       x · Φ(x) = ½x(1 + erf(x/√2))        PyTorch's default nn.GELU(); df = Φ(x) + x·φ(x)
//   GELUTanh   ½x(1 + tanh(√(2/π)(x + 0.044715x³)))  nn.GELU(approximate="tanh")
//
// In place: forward(x, y) may take y aliasing x for every kind (each element is read before it is
// written). Backward reads x for SiLU and GELU, so those need the original input kept; ReLU's
// derivative comes from y alone (Kind::derivative_from_output), so a ReLU may run in place and
// be differentiated with backward(y, y, dy, dx). dx must not alias dy (backward adds into dx).
#ifndef DIFFUSE_NN_ACTIVATION_HPP
#define DIFFUSE_NN_ACTIVATION_HPP

#include <cstddef>

#include "diffuse/core/lanes.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

namespace act {

struct ReLU {
    static constexpr const char* name = "ReLU";
    static constexpr bool derivative_from_output = true;
    template <class V>
    static V f(V x) {
        return xsimd::max(x, V(0));
    }
    /// s is the output y: y > 0 exactly where x > 0.
    template <class V>
    static V df(V s) {
        return lanes::select(s > V(0), V(1), V(0));
    }
};

struct SiLU {
    static constexpr const char* name = "SiLU";
    static constexpr bool derivative_from_output = false;
    template <class V>
    static V sigmoid(V x) {
        return V(1) / (V(1) + xsimd::exp(-x));
    }
    template <class V>
    static V f(V x) {
        return x * sigmoid(x);
    }
    template <class V>
    static V df(V x) {
        const V s = sigmoid(x);
        return s * (V(1) + x * (V(1) - s));
    }
};

struct GELU {
    static constexpr const char* name = "GELU";
    static constexpr bool derivative_from_output = false;
    static constexpr double kRsqrt2 = 0.70710678118654752440;    // 1/√2
    static constexpr double kRsqrt2Pi = 0.39894228040143267794;  // 1/√(2π)
    template <class V>
    static V cdf(V x) {
        return V(0.5) * (V(1) + xsimd::erf(x * simd::splat<V>(kRsqrt2)));
    }
    template <class V>
    static V f(V x) {
        return x * cdf(x);
    }
    template <class V>
    static V df(V x) {
        return cdf(x) + x * simd::splat<V>(kRsqrt2Pi) * xsimd::exp(V(-0.5) * x * x);
    }
};

struct GELUTanh {
    static constexpr const char* name = "GELUTanh";
    static constexpr bool derivative_from_output = false;
    static constexpr double kSqrt2OverPi = 0.79788456080286535588;  // √(2/π)
    static constexpr double kCubic = 0.044715;
    template <class V>
    static V f(V x) {
        return V(0.5) * x * (V(1) + xsimd::tanh(V(kSqrt2OverPi) * (x + V(kCubic) * x * x * x)));
    }
    template <class V>
    static V df(V x) {
        const V t = xsimd::tanh(V(kSqrt2OverPi) * (x + V(kCubic) * x * x * x));
        return V(0.5) * (V(1) + t) + V(0.5) * x * (V(1) - t * t) * V(kSqrt2OverPi) * (V(1) + V(3 * kCubic) * x * x);
    }
};

}  // namespace act

template <class T, class Kind>
struct Activation {
    using kind = Kind;
    /// True when backward needs only y, so forward may overwrite x (see the header comment).
    static constexpr bool in_place_ok = Kind::derivative_from_output;
    /// Elements per parallel chunk: large enough that a thread's share outweighs the fork.
    static constexpr std::size_t kChunk = 1 << 14;

    template <class V>
    constexpr void visit(V&) {}  // no parameters

    template <class XShape>
    using output_shape = XShape;

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        static_assert(same_shape<shape_of<X>, shape_of<Y>>, "Activation: the output must have the input's shape");
        const T* xp = x.data();
        T* yp = y.data();
        parallel_chunks(shape_of<X>::size, kChunk,
                        [&](std::size_t b, std::size_t e) { forward_range(e - b, xp + b, yp + b); });
    }

    /// dx += dy · f'(x). Reads y for ReLU, x otherwise; a null dx does nothing.
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y& y, const DY& dy, DX&& dx) const {
        static_assert(same_shape<shape_of<X>, shape_of<Y>>, "Activation: the output must have the input's shape");
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Activation: gradients must have the shapes of their values");
        if (!dx.data()) return;
        const T* sp = Kind::derivative_from_output ? y.data() : x.data();
        const T* gp = dy.data();
        T* dp = dx.data();
        parallel_chunks(shape_of<X>::size, kChunk,
                        [&](std::size_t b, std::size_t e) { backward_range(e - b, sp + b, gp + b, dp + b); });
    }

    // The two passes over one range, on the calling thread (nn/norm.hpp's fused norm runs them item by
    // item): y[0, n) = f(x); dx[0, n) += dy · f'(s), s being x or y as in backward.
    static void forward_range(std::size_t n, const T* x, T* y) {
        simd::map(n, x, y, [](auto v) { return Kind::f(v); });
    }
    static void backward_range(std::size_t n, const T* s, const T* dy, T* dx) {
        simd::map3(n, s, dy, dx, dx, [](auto sv, auto g, auto d) { return d + g * Kind::df(sv); });
    }
};

template <class T>
using ReLU = Activation<T, act::ReLU>;
template <class T>
using SiLU = Activation<T, act::SiLU>;
template <class T>
using GELU = Activation<T, act::GELU>;
template <class T>
using GELUTanh = Activation<T, act::GELUTanh>;

}  // namespace diffuse

#endif
