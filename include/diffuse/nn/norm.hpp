// LayerNorm and GroupNorm (PyTorch semantics: biased variance, eps inside the square root, a
// per-channel affine weight "weight" starting at ones and "bias" at zeros).
//
//   LayerNorm<T, D>            x[..., D]: each row of D features is normalized on its own.
//   GroupNorm<T, C, Groups>    x[N, H, W, C] (channels-last; any [N, ..., C]): each (sample, group)
//                              is normalized over its H·W·(C/Groups) elements.
//
// Both are one computation over a NormGeometry: `outer` items (LayerNorm rows, GroupNorm samples),
// each `rows` contiguous rows of C channels (1 for LayerNorm, H·W for GroupNorm), the channels
// split into `groups` groups; a unit (item, group) is normalized over its rows·C/groups elements.
// Every pass walks an item row by row with vectors over the channels (per-channel sums first, then
// per-group sums of those), so a group narrower than a vector costs no scalar loop.
//
// Per unit, with M elements, x̂ = (x - mean) · rstd, rstd = 1/√(var + eps), g = dy · weight:
//   y  = x̂ · weight + bias
//   dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))
//   dweight[c] = Σ dy · x̂,  dbias[c] = Σ dy   over every element of channel c
// The variance is a second pass over (x - mean)², so a constant row gives var = 0 and
// rstd = 1/√eps, never NaN.
//
// A norm followed by an activation (each residual block's GroupNorm → SiLU) runs in one call each way,
// forward_activated and backward_activated: the same bits as the two layers (the activation is
// applied item by item while the item is in cache), and one parallel region fewer each way.
//
// Threads: forward runs items in parallel. Backward splits the items into a FIXED number of
// contiguous blocks (at most kNormBlocks, independent of the thread count); each block sums its
// dweight/dbias partials into the cache's scratch, and the partials are added into the parameter
// gradients in block order. So the result is bitwise the same for any thread count.
// Per-item scratch (a few C-long arrays) lives on the stack.
#ifndef DIFFUSE_NN_NORM_HPP
#define DIFFUSE_NN_NORM_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "diffuse/core/gemm.hpp"  // Accumulate
#include "diffuse/core/lanes.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"

namespace diffuse {

namespace detail {

/// Upper bound on backward's reduction blocks (each holds 2·channels partial sums).
inline constexpr int kNormBlocks = 32;

/// Outer items of Rows rows of Channels contiguous values; the channels form Groups groups.
template <int Outer, int Rows, int Channels, int Groups>
struct NormGeometry {
    static constexpr int outer = Outer, rows = Rows, channels = Channels, groups = Groups;
    static constexpr int len = Channels / Groups;  // channels per group
    static constexpr int units = Outer * Groups;   // (item, group) pairs
    static constexpr int count = Rows * len;       // elements per unit
    static constexpr std::size_t item = std::size_t(Rows) * Channels;
    static constexpr int blocks = Outer < kNormBlocks ? Outer : kNormBlocks;

    /// body(i, c, V{}) over one item: i the offset from the item's start, c the channel.
    template <class T, class F>
    static void each(F body) {
        for (int r = 0; r < Rows; ++r) {
            const std::size_t o = std::size_t(r) * Channels;
            lanes::each<T>(std::size_t(Channels), [&](std::size_t c, auto tag) { body(o + c, c, tag); });
        }
    }
    /// body(c, V{}) over the channels.
    template <class T, class F>
    static void each_channel(F body) {
        lanes::each<T>(std::size_t(Channels), body);
    }
    /// Per-group sums of a per-channel array, in a fixed order.
    template <class T>
    static void group_sums(const T* per_channel, T* per_group) {
        for (int g = 0; g < Groups; ++g) per_group[g] = simd::sum(std::size_t(len), per_channel + g * len);
    }
    /// A per-group value repeated over the group's channels.
    template <class T>
    static void expand(const T* per_group, T* per_channel) {
        for (int g = 0; g < Groups; ++g) std::fill(per_channel + g * len, per_channel + (g + 1) * len, per_group[g]);
    }
};

/// What backward needs from forward, plus backward's scratch for its fixed-order reduction.
template <class T, class G>
struct NormCache {
    Tensor<T, G::units> mean, rstd;                // [outer, groups]
    Tensor<T, G::blocks, 2, G::channels> partial;  // [blocks, (dweight, dbias), C]
};

/// y = normalize(x) · w + b for every item; mean/rstd may be null (inference). With an activation
/// kind Act (nn/activation.hpp's act::), also a = Act::f(y), item by item.
template <class G, class Act = void, class T>
void norm_forward(const T* x, T* y, const T* w, const T* b, T eps, T* mean, T* rstd, T* a = nullptr) {
    using lanes::load;
    constexpr int C = G::channels;
    parallel_for_light(G::outer, G::outer * G::item, [&](int o) {
        const T* xo = x + std::size_t(o) * G::item;
        T* yo = y + std::size_t(o) * G::item;
        std::array<T, C> acc, mc, scale;
        std::array<T, G::groups> gm, gr;
        // Per-channel sums of x (a single row is its own sum).
        const T* sums = xo;
        if constexpr (G::rows > 1) {
            acc.fill(T(0));
            G::template each<T>([&](std::size_t i, std::size_t c, auto tag) {
                using V = decltype(tag);
                lanes::store(acc.data() + c, load<V>(acc.data() + c) + load<V>(xo + i));
            });
            sums = acc.data();
        }
        G::group_sums(sums, gm.data());
        for (auto& m : gm) m /= T(G::count);
        G::expand(gm.data(), mc.data());
        // Per-channel sums of (x - mean)².
        acc.fill(T(0));
        G::template each<T>([&](std::size_t i, std::size_t c, auto tag) {
            using V = decltype(tag);
            const V d = load<V>(xo + i) - load<V>(mc.data() + c);
            lanes::store(acc.data() + c, load<V>(acc.data() + c) + d * d);
        });
        G::group_sums(acc.data(), gr.data());
        for (auto& r : gr) r = T(1) / std::sqrt(r / T(G::count) + eps);
        // y = (x - mean) · (rstd · w) + b
        G::expand(gr.data(), scale.data());
        G::template each_channel<T>([&](std::size_t c, auto tag) {
            using V = decltype(tag);
            lanes::store(scale.data() + c, load<V>(scale.data() + c) * load<V>(w + c));
        });
        G::template each<T>([&](std::size_t i, std::size_t c, auto tag) {
            using V = decltype(tag);
            const V xc = load<V>(xo + i) - load<V>(mc.data() + c);
            lanes::store(yo + i, xc * load<V>(scale.data() + c) + load<V>(b + c));
        });
        // The activation while the item is in cache: Activation's own pass, over the item
        if constexpr (!std::is_void_v<Act>)
            Activation<T, Act>::forward_range(G::item, yo, a + std::size_t(o) * G::item);
        if (mean) {
            std::copy(gm.begin(), gm.end(), mean + std::size_t(o) * G::groups);
            std::copy(gr.begin(), gr.end(), rstd + std::size_t(o) * G::groups);
        }
    });
}

/// How norm_backward gets dy: as given (Act void), or through the activation that followed the norm,
/// item by item: Activation::backward's pass from da into the zeroed item of dy.
template <class T>
struct NormGradIn {
    const T* dy;
    T* dy_out = nullptr;    // with Act: dy's memory, written
    const T* y = nullptr;   // the norm's output (the activation's input)
    const T* da = nullptr;  // the gradient of the activation's output
};

/// dx (+)= ..., dw += Σ dy·x̂, db += Σ dy (see the header comment); dx may be null. dx is added
/// into, or with Accumulate::no written (then it may be da's memory: an item's da is read before
/// its dx is written).
template <class G, class Act = void, class T>
void norm_backward(const T* x, NormGradIn<T> in, T* dx, Accumulate acc, const T* w, const T* mean, const T* rstd,
                   T* partial, T* dw, T* db) {
    using lanes::load;
    constexpr int C = G::channels;
    parallel_for_light(G::blocks, G::outer * G::item, [&](int blk) {
        T* pw = partial + std::size_t(blk) * 2 * C;
        T* pb = pw + C;
        std::fill(pw, pw + 2 * C, T(0));
        const int o0 = int(long(blk) * G::outer / G::blocks), o1 = int(long(blk + 1) * G::outer / G::blocks);
        std::array<T, C> mc, rc, s1, s2, k1;
        std::array<T, G::groups> sg, sgx;
        for (int o = o0; o < o1; ++o) {
            const std::size_t base = std::size_t(o) * G::item;
            const T* xo = x + base;
            const T* const go = in.dy + base;
            if constexpr (!std::is_void_v<Act>) {  // Activation's own backward pass into the zeroed item
                std::fill_n(in.dy_out + base, G::item, T(0));
                Activation<T, Act>::backward_range(G::item, in.y + base, in.da + base, in.dy_out + base);
            }
            G::expand(mean + std::size_t(o) * G::groups, mc.data());
            G::expand(rstd + std::size_t(o) * G::groups, rc.data());
            // Per-channel Σ dy and Σ dy·x̂.
            s1.fill(T(0));
            s2.fill(T(0));
            G::template each<T>([&](std::size_t i, std::size_t c, auto tag) {
                using V = decltype(tag);
                const V xh = (load<V>(xo + i) - load<V>(mc.data() + c)) * load<V>(rc.data() + c);
                const V d = load<V>(go + i);
                lanes::store(s1.data() + c, load<V>(s1.data() + c) + d);
                lanes::store(s2.data() + c, load<V>(s2.data() + c) + d * xh);
            });
            simd::add_to(std::size_t(C), s2.data(), pw);
            simd::add_to(std::size_t(C), s1.data(), pb);
            if (!dx) continue;
            // Per group: mean(g) = Σ w·s1 / M, mean(g·x̂) = Σ w·s2 / M.
            for (int g = 0; g < G::groups; ++g) {
                sg[g] = simd::dot(std::size_t(G::len), w + g * G::len, s1.data() + g * G::len) / T(G::count);
                sgx[g] = simd::dot(std::size_t(G::len), w + g * G::len, s2.data() + g * G::len) / T(G::count);
            }
            // dx = k1·dy - k2 - x̂·k3 with k1 = rstd·w, k2 = rstd·mean(g), k3 = rstd·mean(g·x̂)
            // (k2, k3 reuse s1, s2).
            G::expand(sg.data(), s1.data());
            G::expand(sgx.data(), s2.data());
            G::template each_channel<T>([&](std::size_t c, auto tag) {
                using V = decltype(tag);
                const V r = load<V>(rc.data() + c);
                lanes::store(k1.data() + c, r * load<V>(w + c));
                lanes::store(s1.data() + c, r * load<V>(s1.data() + c));
                lanes::store(s2.data() + c, r * load<V>(s2.data() + c));
            });
            T* du = dx + base;
            G::template each<T>([&](std::size_t i, std::size_t c, auto tag) {
                using V = decltype(tag);
                const V xh = (load<V>(xo + i) - load<V>(mc.data() + c)) * load<V>(rc.data() + c);
                // A run-time choice: with a compile-time zero (tried) GCC contracted k1·dy − s1 into the FMA
                // instead of before + k1·dy, and the bits differed from adding into a zeroed dx.
                const V before = acc == Accumulate::yes ? load<V>(du + i) : V(T(0));
                lanes::store(du + i, before + load<V>(k1.data() + c) * load<V>(go + i) - load<V>(s1.data() + c) -
                                         xh * load<V>(s2.data() + c));
            });
        }
    });
    for (int blk = 0; blk < G::blocks; ++blk) {
        simd::add_to(std::size_t(C), partial + std::size_t(blk) * 2 * C, dw);
        simd::add_to(std::size_t(C), partial + std::size_t(blk) * 2 * C + C, db);
    }
}

/// How LayerNorm sees its input: every row of D is an item of one row and one group.
template <int D>
struct LayerNormShapes {
    template <class XShape>
    using geometry = NormGeometry<XShape::rows, 1, D, 1>;

    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::last == D,
                      "LayerNorm: the input's last dimension must equal the normalized width D");
        static_assert(same_shape<shape_of<Y>, shape_of<X>>, "LayerNorm: the output must have the input's shape");
    }
};

/// How GroupNorm sees its input [N, ..., C]: every sample is an item of H·W rows.
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
    constexpr void visit(V& v) {
        v("weight", weight);
        v("bias", bias);
    }

    template <class XShape>
    using output_shape = XShape;
    /// mean and rstd per (item, group), and backward's reduction scratch [blocks, 2, C].
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
        norm_forward<typename Shapes::template geometry<shape_of<X>>>(
            x.data(), y.data(), weight.value_ptr, bias.value_ptr, eps, cache.mean.data(), cache.rstd.data());
    }
    /// Reads x and the cache's mean/rstd (not y); writes the cache's scratch.
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y&, Cache<shape_of<X>>& cache, const DY& dy, DX&& dx) const {
        Shapes::template check<X, Y>();
        check_grads<X, DY, DX>();
        norm_backward<typename Shapes::template geometry<shape_of<X>>>(
            x.data(), NormGradIn<T>{dy.data()}, dx.data(), Accumulate::yes, weight.value_ptr, cache.mean.data(),
            cache.rstd.data(), cache.partial.data(), weight.grad_ptr, bias.grad_ptr);
    }

    /// The norm followed by an activation (Kind: act::SiLU, act::GELU, ... whose derivative is taken
    /// from its input), as in every residual block: y = norm(x) and a = Kind(y), each item's
    /// activation while the item is in cache, in one parallel loop where the two layers take two.
    template <class Kind, Shaped X, Shaped Y, Shaped A>
    void forward_activated(const X& x, Y&& y, A&& a, Cache<shape_of<X>>& cache) const {
        Shapes::template check<X, Y>();
        static_assert(same_shape<shape_of<A>, shape_of<X>>,
                      "Normalization: the activation must have the input's shape");
        norm_forward<typename Shapes::template geometry<shape_of<X>>, Kind>(
            x.data(), y.data(), weight.value_ptr, bias.value_ptr, eps, cache.mean.data(), cache.rstd.data(), a.data());
    }
    /// Backward of forward_activated, from da, the gradient of a: the bits of Activation::backward
    /// into a zeroed dy, then backward(x, y, cache, dy, dx), in one parallel loop. dy is scratch (written);
    /// dx is added into, or with Accumulate::no written, and may then be da's memory.
    template <class Kind, Shaped X, Shaped Y, Shaped DA, Shaped DY, Shaped DX>
    void backward_activated(const X& x, const Y& y, Cache<shape_of<X>>& cache, const DA& da, DY&& dy, DX&& dx,
                            Accumulate acc = Accumulate::yes) const {
        static_assert(!Kind::derivative_from_output, "Normalization: the activation's derivative must come from y");
        Shapes::template check<X, Y>();
        check_grads<X, DY, DX>();
        static_assert(same_shape<shape_of<DA>, shape_of<X>>, "Normalization: da must have the input's shape");
        norm_backward<typename Shapes::template geometry<shape_of<X>>, Kind>(
            x.data(), NormGradIn<T>{dy.data(), dy.data(), y.data(), da.data()}, dx.data(), acc, weight.value_ptr,
            cache.mean.data(), cache.rstd.data(), cache.partial.data(), weight.grad_ptr, bias.grad_ptr);
    }

private:
    template <class X, class DY, class DX>
    static constexpr void check_grads() {
        static_assert(same_shape<shape_of<DY>, shape_of<X>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Normalization: gradients must have the shapes of their values");
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

/// Norm tags for blocks that take their normalization as a parameter.
namespace norm {
/// LayerNorm over the channels of each pixel (Keras' LayerNormalization(axis=-1)).
struct Layer {
    static constexpr int groups = 1;
    template <class T, int C>
    using layer = LayerNorm<T, C>;
};
/// GroupNorm with G groups per sample (Stable Diffusion uses 32).
template <int G>
struct Group {
    static_assert(G > 0, "norm::Group: the group count must be positive");
    static constexpr int groups = G;
    template <class T, int C>
    using layer = GroupNorm<T, C, G>;
};
}  // namespace norm

}  // namespace diffuse

#endif
