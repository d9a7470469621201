// Joining activations: residual add (skip connections), channel Concat (UNet skips), and flattened()
// (a [N, ...] batch seen as [N, features] for a Linear head; any other reshape is reshaped<>()).
// All work on any rank; the leading dimension is the batch, split across threads.
#ifndef DIFFUSE_NN_COMBINE_HPP
#define DIFFUSE_NN_COMBINE_HPP

#include <algorithm>
#include <cstddef>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

/// y = a + b (residual connection).
template <Shaped A, Shaped B, Shaped Y>
void add(const A& a, const B& b, Y&& y) {
    static_assert(same_shape<shape_of<A>, shape_of<B>>, "Add: operands must have the same shape");
    static_assert(same_shape<shape_of<Y>, shape_of<A>>, "Add: the output must have the operands' shape");
    constexpr std::size_t item = shape_of<A>::size / shape_of<A>::first;
    parallel_for_light(shape_of<A>::first, shape_of<A>::size, [&](int n) {
        const std::size_t o = std::size_t(n) * item;
        simd::map2(item, a.data() + o, b.data() + o, y.data() + o, [](auto u, auto v) { return u + v; });
    });
}

/// da += dy, db += dy; a null view skips its gradient.
template <Shaped DY, Shaped DA, Shaped DB>
void add_backward(const DY& dy, DA&& da, DB&& db) {
    static_assert(same_shape<shape_of<DA>, shape_of<DB>>, "Add: operands must have the same shape");
    static_assert(same_shape<shape_of<DY>, shape_of<DA>>, "Add: gradients must have the shapes of their values");
    constexpr std::size_t item = shape_of<DY>::size / shape_of<DY>::first;
    parallel_for_light(shape_of<DY>::first, shape_of<DY>::size, [&](int n) {
        const std::size_t o = std::size_t(n) * item;
        if (da.data()) simd::add_to(item, dy.data() + o, da.data() + o);
        if (db.data()) simd::add_to(item, dy.data() + o, db.data() + o);
    });
}

/// Concatenation along the last dimension: [..., C1] and [..., C2] -> [..., C1 + C2], a first.
template <class T>
struct Concat {
    template <class V>
    constexpr void visit(V&) {}

    template <class AShape, class BShape>
    using output_shape = ReplaceLast<AShape, AShape::last + BShape::last>;

    template <Shaped A, Shaped B, Shaped Y>
    void forward(const A& a, const B& b, Y&& y) const {
        check<A, B, Y>();
        each_row<A, B>([&](std::size_t m, std::size_t ca, std::size_t cb) {
            std::copy_n(a.data() + m * ca, ca, y.data() + m * (ca + cb));
            std::copy_n(b.data() + m * cb, cb, y.data() + m * (ca + cb) + ca);
        });
    }

    /// da += dy[..., :C1], db += dy[..., C1:]; a null view skips its gradient.
    template <Shaped A, Shaped B, Shaped Y, Shaped DY, Shaped DA, Shaped DB>
    void backward(const A&, const B&, const Y&, const DY& dy, DA&& da, DB&& db) const {
        check<A, B, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DA>, shape_of<A>> &&
                          same_shape<shape_of<DB>, shape_of<B>>,
                      "Concat: gradients must have the shapes of their values");
        each_row<A, B>([&](std::size_t m, std::size_t ca, std::size_t cb) {
            if (da.data()) simd::add_to(ca, dy.data() + m * (ca + cb), da.data() + m * ca);
            if (db.data()) simd::add_to(cb, dy.data() + m * (ca + cb) + ca, db.data() + m * cb);
        });
    }

private:
    template <class A, class B, class Y>
    static constexpr void check() {
        using AS = shape_of<A>;
        using BS = shape_of<B>;
        static_assert(AS::rank >= 2, "Concat: operands need a leading batch dimension");
        static_assert(same_shape<ReplaceLast<AS, 1>, ReplaceLast<BS, 1>>,
                      "Concat: operands must agree in every dimension but the last");
        static_assert(same_shape<shape_of<Y>, output_shape<AS, BS>>,
                      "Concat: the output must have the operands' shape with the last dimensions summed");
    }
    /// f(row, C1, C2) for every row of the operands, parallel over the batch.
    template <class A, class B, class F>
    static void each_row(F f) {
        using AS = shape_of<A>;
        constexpr int per_item = AS::rows / AS::first;
        parallel_for_light(AS::first, std::size_t(AS::rows) * (AS::last + shape_of<B>::last), [&](int n) {
#if defined(__clang__)  // unrolled (a constant count of constant-size copies), each shape cost clang 4–15 s of -O3
#pragma clang loop unroll(disable)
#endif
            for (int r = 0; r < per_item; ++r)
                f(std::size_t(n) * per_item + r, std::size_t(AS::last), std::size_t(shape_of<B>::last));
        });
    }
};

/// A [N, ...] batch as [N, features] over the same memory (Keras' Flatten).
template <Shaped X>
constexpr auto flattened(X&& x) {
    using S = shape_of<X>;
    return reshaped<S::first, int(S::size / S::first)>(x);
}

}  // namespace diffuse

#endif
