// TimeEmbedding: diffusion timesteps t [N] (int32) -> conditioning vectors [N, Out], in two forms that
// share one composite (features, then a head):
//
//   LearnedTimeEmbedding<T, Steps, D, Out>   the seed's Time_Embedding made to work: a learned table
//       over ALL Steps timesteps (Embedding<Steps, D>, the seed's Embedding(1, d) only knew t = 0),
//       then Dense: y = table[t] · Wᵀ + b. Names: embedding.weight, linear.{weight,bias}.
//   SinusoidalTimeEmbedding<T, D, Out>       the standard DDPM / Stable Diffusion form: fixed sinusoidal
//       features, then an MLP Linear -> SiLU -> Linear (diffusers' TimestepEmbedding).
//       Names: linear_1.{weight,bias}, linear_2.{weight,bias}.
//
// Sinusoidal features are diffusers' get_timestep_embedding(t, D, flip_sin_to_cos=True,
// downscale_freq_shift=0, max_period=10000): with half = D/2, f_i = exp(-ln(10000) · i / half),
//   features[n] = [cos(t_n f_0), ..., cos(t_n f_{half-1}), sin(t_n f_0), ..., sin(t_n f_{half-1})].
// They are computed in double and rounded to T.
//
// A timestep is data: the learned table checks 0 <= t < Steps at run time and throws
// std::out_of_range naming the timestep (before anything is written). The sinusoidal form takes any t.
// Backward gives parameter gradients only: timesteps carry no gradient.
#ifndef DIFFUSE_BLOCKS_TIME_EMBEDDING_HPP
#define DIFFUSE_BLOCKS_TIME_EMBEDDING_HPP

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/linear.hpp"

namespace diffuse {

namespace time_embedding {

/// Feature source: the learned table, one row per timestep.
template <class T, int Steps, int D>
struct LearnedTable {
    static_assert(Steps > 0 && D > 0, "LearnedTimeEmbedding: step count and table width must be positive");
    static constexpr int width = D;
    static constexpr bool trainable = true;

    Embedding<T, Steps, D> embedding;

    template <class V>
    constexpr void visit(V& v) {
        v("embedding", embedding);
    }

    template <Shaped TS, Shaped F>
    void forward(const TS& t, F&& f) const {
        check(t);
        embedding.forward(t, f);
    }
    template <Shaped TS, Shaped F, Shaped DF>
    void backward(const TS& t, const F& f, const DF& df) const {
        check(t);
        embedding.backward(t, f, df);
    }

    /// Throws std::out_of_range naming the first timestep outside [0, Steps).
    template <Shaped TS>
    static void check(const TS& t) {
        for (std::size_t n = 0; n < shape_of<TS>::size; ++n)
            if (t.data()[n] < 0 || t.data()[n] >= Steps)
                throw std::out_of_range("LearnedTimeEmbedding: timestep " + std::to_string(t.data()[n]) +
                                        " (batch item " + std::to_string(n) + ") is outside the table's [0, " +
                                        std::to_string(Steps) + ")");
    }
};

/// Feature source: fixed sinusoids (see the header comment), no parameters.
template <class T, int D>
struct Sinusoid {
    static_assert(D > 0 && D % 2 == 0, "SinusoidalTimeEmbedding: the feature width D must be even and positive");
    static constexpr int width = D;
    static constexpr bool trainable = false;

    template <class V>
    constexpr void visit(V&) {}

    template <Shaped TS, Shaped F>
    void forward(const TS& t, F&& f) const {
        constexpr int half = D / 2;
        for (int n = 0; n < shape_of<TS>::first; ++n)
            for (int i = 0; i < half; ++i) {
                const double arg = double(t.data()[n]) * std::exp(-std::log(10000.0) * i / half);
                f(n, i) = T(std::cos(arg));
                f(n, half + i) = T(std::sin(arg));
            }
    }
};

/// Head of the learned form: one Linear.
template <class T, int D, int Out>
struct DenseHead {
    static constexpr int out_features = Out;
    Linear<T, D, Out> linear;

    template <class V>
    constexpr void visit(V& v) {
        v("linear", linear);
    }

    template <int N>
    struct Cache {};

    template <Shaped F, Shaped Y, class C>
    void forward(const F& f, Y&& y, C&) const {
        linear.forward(f, y);
    }
    template <Shaped F, Shaped Y, class C, Shaped DY, Shaped DF>
    void backward(const F& f, const Y& y, C&, const DY& dy, DF&& df) const {
        linear.backward(f, y, dy, df);
    }
};

/// Head of the sinusoidal form: Linear -> SiLU -> Linear.
template <class T, int D, int Out>
struct MlpHead {
    static constexpr int out_features = Out;
    Linear<T, D, Out> linear_1;
    SiLU<T> act;
    Linear<T, Out, Out> linear_2;

    template <class V>
    constexpr void visit(V& v) {
        v("linear_1", linear_1);
        v("linear_2", linear_2);
    }

    template <int N>
    struct Cache {
        Tensor<T, N, Out> h, a;    // linear_1 output, its SiLU
        Tensor<T, N, Out> dh, da;  // backward scratch
    };

    template <Shaped F, Shaped Y, class C>
    void forward(const F& f, Y&& y, C& c) const {
        linear_1.forward(f, c.h);
        act.forward(c.h, c.a);
        linear_2.forward(c.a, y);
    }
    template <Shaped F, Shaped Y, class C, Shaped DY, Shaped DF>
    void backward(const F& f, const Y& y, C& c, const DY& dy, DF&& df) const {
        c.da.fill(T(0));
        c.dh.fill(T(0));
        linear_2.backward(c.a, y, dy, c.da);
        act.backward(c.h, c.a, c.da, c.dh);
        linear_1.backward(f, c.h, c.dh, df);
    }
};

}  // namespace time_embedding

/// Timestep features followed by a head; the two public forms below are aliases of it.
template <class T, class Features, class Head>
struct TimeEmbedding {
    static constexpr int feature_width = Features::width, out_features = Head::out_features;

    Features features;
    Head head;

    /// Flat names: the features' and the head's parameters sit side by side (embedding, linear).
    template <class V>
    constexpr void visit(V& v) {
        features.visit(v);
        head.visit(v);
    }

    template <class TShape>
    using output_shape = Shape<TShape::first, out_features>;

    template <class TShape>
    struct Cache {
        static constexpr int N = TShape::first;
        Tensor<T, N, feature_width> f, df;  // features, and their gradient (learned table only)
        typename Head::template Cache<N> head;
    };

    template <Shaped TS, Shaped Y>
    void forward(const TS& t, Y&& y, Cache<shape_of<TS>>& cache) const {
        check<TS, Y>();
        features.forward(t, cache.f);
        head.forward(cache.f, y, cache.head);
    }

    /// Parameter gradients only (timesteps have none).
    template <Shaped TS, Shaped Y, Shaped DY>
    void backward(const TS& t, const Y& y, Cache<shape_of<TS>>& cache, const DY& dy) const {
        check<TS, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>>,
                      "TimeEmbedding: the gradient must have the output's shape");
        constexpr int N = shape_of<TS>::first;
        if constexpr (Features::trainable) {
            cache.df.fill(T(0));
            head.backward(cache.f, y, cache.head, dy, cache.df);
            features.backward(t, cache.f, cache.df);
        } else {
            head.backward(cache.f, y, cache.head, dy, View<T, N, feature_width>());
        }
    }

private:
    template <class TS, class Y>
    static constexpr void check() {
        static_assert(shape_of<TS>::rank == 1, "TimeEmbedding: the timesteps must be a vector [N]");
        static_assert(std::is_same_v<std::remove_const_t<typename std::remove_cvref_t<TS>::value_type>, std::int32_t>,
                      "TimeEmbedding: the timesteps must be int32");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<TS>>>,
                      "TimeEmbedding: the output must be [N, Out]");
    }
};

/// The seed's learned table over all Steps timesteps, then Dense.
template <class T, int Steps, int D, int Out>
using LearnedTimeEmbedding =
    TimeEmbedding<T, time_embedding::LearnedTable<T, Steps, D>, time_embedding::DenseHead<T, D, Out>>;

/// Sinusoidal features of width D, then Linear -> SiLU -> Linear to Out.
template <class T, int D, int Out>
using SinusoidalTimeEmbedding = TimeEmbedding<T, time_embedding::Sinusoid<T, D>, time_embedding::MlpHead<T, D, Out>>;

}  // namespace diffuse

#endif
