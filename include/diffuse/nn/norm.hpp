// LayerNorm and GroupNorm (PyTorch semantics: biased variance, eps inside the square root, a
// per-channel affine weight "weight" starting at ones and "bias" at zeros).
//
//   LayerNorm<T, D>            x[..., D]: each row of D features is one normalization unit.
//   GroupNorm<T, C, Groups>    x[N, H, W, C] (channels-last; any [N, ..., C]): each (sample, group)
//                              is one unit of H·W·(C/Groups) elements.
//
// Both are one computation over a NormGeometry: a unit is `segs` segments of `len` contiguous
// elements, `channels` apart, and element j of a segment uses affine channel channel0(unit) + j.
// A LayerNorm row is one segment of D; a GroupNorm group is H·W segments of C/Groups.
//
// Per unit, with M elements, x̂ = (x - mean) · rstd, rstd = 1/√(var + eps), g = dy · weight:
//   y  = x̂ · weight + bias
//   dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))
//   dweight[c] = Σ dy · x̂,  dbias[c] = Σ dy   over every element of channel c
// The variance is a second pass over (x - mean)², so a constant row gives var = 0 and
// rstd = 1/√eps, never NaN.
//
// Threads: forward runs units in parallel. Backward splits the units into a FIXED number of
// contiguous blocks (at most kNormBlocks, independent of the thread count); each block sums its
// dweight/dbias partials into the cache's scratch, and the partials are added into the parameter
// gradients in block order. So the result is bitwise the same for any thread count.
#ifndef DIFFUSE_NN_NORM_HPP
#define DIFFUSE_NN_NORM_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/lanes.hpp"

namespace diffuse {

namespace detail {

/// Upper bound on backward's reduction blocks (each holds 2·channels partial sums).
inline constexpr int kNormBlocks = 32;

/// Outer items (samples or rows), each with Groups units; a unit is Segs segments of
/// Channels/Groups contiguous elements, Channels apart.
template <int Outer, int Segs, int Channels, int Groups>
struct NormGeometry {
    static constexpr int channels = Channels, segs = Segs, len = Channels / Groups;
    static constexpr int units = Outer * Groups;
    static constexpr int count = Segs * len;  // elements per unit
    static constexpr int blocks = units < kNormBlocks ? units : kNormBlocks;

    static constexpr std::size_t offset(int u) {
        return std::size_t(u / Groups) * std::size_t(Segs) * Channels + std::size_t(u % Groups) * len;
    }
    static constexpr int channel0(int u) { return (u % Groups) * len; }

    /// body(i, j, V{}) over a unit: i is the offset from the unit's start, j the channel within the group.
    template <class T, class F>
    static void each(F body) {
        for (int s = 0; s < Segs; ++s) {
            const std::size_t o = std::size_t(s) * Channels;
            lanes::each<T>(std::size_t(len), [&](std::size_t j, auto tag) { body(o + j, j, tag); });
        }
    }
};

/// What backward needs from forward, plus backward's scratch for its fixed-order reduction.
template <class T, class G>
struct NormCache {
    Tensor<T, G::units> mean, rstd;                  // [units]
    Tensor<T, G::blocks, 2, G::channels> partial;    // [blocks, (dweight, dbias), C]
};

/// y = normalize(x) · w + b for every unit; mean/rstd may be null (inference).
template <class G, class T>
void norm_forward(const T* x, T* y, const T* w, const T* b, T eps, T* mean, T* rstd) {
    using lanes::load;
    parallel_for(G::units, [&](int u) {
        const T* xu = x + G::offset(u);
        T* yu = y + G::offset(u);
        const T* wu = w + G::channel0(u);
        const T* bu = b + G::channel0(u);
        lanes::Sum<T> s;
        G::template each<T>([&](std::size_t i, std::size_t, auto tag) { s.add(load<decltype(tag)>(xu + i)); });
        const T m = s.total() / T(G::count);
        lanes::Sum<T> q;
        G::template each<T>([&](std::size_t i, std::size_t, auto tag) {
            using V = decltype(tag);
            const V d = load<V>(xu + i) - V(m);
            q.add(d * d);
        });
        const T r = T(1) / std::sqrt(q.total() / T(G::count) + eps);
        G::template each<T>([&](std::size_t i, std::size_t j, auto tag) {
            using V = decltype(tag);
            lanes::store(yu + i, (load<V>(xu + i) - V(m)) * V(r) * load<V>(wu + j) + load<V>(bu + j));
        });
        if (mean) { mean[u] = m; rstd[u] = r; }
    });
}

/// dx += ..., dw += Σ dy·x̂, db += Σ dy (see the header comment); dx may be null.
template <class G, class T>
void norm_backward(const T* x, const T* dy, T* dx, const T* w, const T* mean, const T* rstd, T* partial, T* dw,
                   T* db) {
    using lanes::load;
    constexpr int C = G::channels;
    parallel_for(G::blocks, [&](int blk) {
        T* pw = partial + std::size_t(blk) * 2 * C;
        T* pb = pw + C;
        std::fill(pw, pw + 2 * C, T(0));
        const int u0 = int(long(blk) * G::units / G::blocks), u1 = int(long(blk + 1) * G::units / G::blocks);
        for (int u = u0; u < u1; ++u) {
            const std::size_t base = G::offset(u);
            const int c0 = G::channel0(u);
            const T* xu = x + base;
            const T* gu = dy + base;
            const T* wu = w + c0;
            const T m = mean[u], r = rstd[u];
            lanes::Sum<T> sg, sgx;
            G::template each<T>([&](std::size_t i, std::size_t j, auto tag) {
                using V = decltype(tag);
                const V xh = (load<V>(xu + i) - V(m)) * V(r);
                const V d = load<V>(gu + i);
                const V g = d * load<V>(wu + j);
                sg.add(g);
                sgx.add(g * xh);
                lanes::store(pw + c0 + j, load<V>(pw + c0 + j) + d * xh);
                lanes::store(pb + c0 + j, load<V>(pb + c0 + j) + d);
            });
            if (!dx) continue;
            T* du = dx + base;
            const T a = sg.total() / T(G::count), c = sgx.total() / T(G::count);
            G::template each<T>([&](std::size_t i, std::size_t j, auto tag) {
                using V = decltype(tag);
                const V xh = (load<V>(xu + i) - V(m)) * V(r);
                const V g = load<V>(gu + i) * load<V>(wu + j);
                lanes::store(du + i, load<V>(du + i) + V(r) * (g - V(a) - xh * V(c)));
            });
        }
    });
    for (int blk = 0; blk < G::blocks; ++blk) {
        simd::add_to(std::size_t(C), partial + std::size_t(blk) * 2 * C, dw);
        simd::add_to(std::size_t(C), partial + std::size_t(blk) * 2 * C + C, db);
    }
}

/// How LayerNorm sees its input: one unit per row of D.
template <int D>
struct LayerNormShapes {
    template <class XShape>
    using geometry = NormGeometry<XShape::rows, 1, D, 1>;

    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::last == D, "LayerNorm: the input's last dimension must equal the normalized width D");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>, "LayerNorm: the output must have the input's shape");
    }
};

/// How GroupNorm sees its input [N, ..., C]: one unit per (sample, group), H·W segments each.
template <int C, int Groups>
struct GroupNormShapes {
    template <class XShape>
    using geometry = NormGeometry<XShape::first, int(XShape::size / (std::size_t(XShape::first) * C)), C, Groups>;

    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank >= 2 && shape_of<X>::last == C,
                      "GroupNorm: the input must be channels-last [N, H, W, C] with C the layer's channel count");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>, "GroupNorm: the output must have the input's shape");
    }
};

/// The layer body both norms share; Shapes supplies geometry<XShape> and check<X, Y>().
template <class Shapes, class T, int C>
struct Normalization {
    Param<T, C> weight{Init::Ones()};
    Param<T, C> bias{Init::Zeros()};
    T eps = T(1e-5);

    template <class V>
    constexpr void visit(V& v) { v("weight", weight); v("bias", bias); }

    template <class XShape>
    using output_shape = XShape;
    /// mean and rstd per unit [units], and backward's reduction scratch [blocks, 2, C].
    template <class XShape>
    using Cache = NormCache<T, typename Shapes::template geometry<XShape>>;

    /// Inference: no cache.
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        Shapes::template check<X, Y>();
        norm_forward<typename Shapes::template geometry<shape_of<X>>>(x.data(), y.data(), weight.value_ptr,
                                                                     bias.value_ptr, eps, static_cast<T*>(nullptr),
                                                                     static_cast<T*>(nullptr));
    }
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y, Cache<shape_of<X>>& cache) const {
        Shapes::template check<X, Y>();
        norm_forward<typename Shapes::template geometry<shape_of<X>>>(x.data(), y.data(), weight.value_ptr,
                                                                     bias.value_ptr, eps, cache.mean.data(),
                                                                     cache.rstd.data());
    }
    /// Reads x and the cache's mean/rstd (not y); writes the cache's scratch.
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y&, Cache<shape_of<X>>& cache, const DY& dy, DX&& dx) const {
        Shapes::template check<X, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Normalization: gradients must have the shapes of their values");
        norm_backward<typename Shapes::template geometry<shape_of<X>>>(
            x.data(), dy.data(), dx.data(), weight.value_ptr, cache.mean.data(), cache.rstd.data(),
            cache.partial.data(), weight.grad_ptr, bias.grad_ptr);
    }
};

}  // namespace detail

/// Normalizes each row of D features: x[..., D] -> y[..., D].
template <class T, int D>
struct LayerNorm : detail::Normalization<detail::LayerNormShapes<D>, T, D> {
    static_assert(D > 0, "LayerNorm: width must be positive");
    static constexpr int normalized_features = D;
};

/// Normalizes each (sample, group) of a channels-last x[N, H, W, C] (or any [N, ..., C]).
template <class T, int C, int Groups>
struct GroupNorm : detail::Normalization<detail::GroupNormShapes<C, Groups>, T, C> {
    static_assert(C > 0 && Groups > 0, "GroupNorm: channel and group counts must be positive");
    static_assert(C % Groups == 0, "GroupNorm: channel count must divide by the group count");
    static constexpr int num_channels = C, num_groups = Groups;
};

}  // namespace diffuse

#endif
