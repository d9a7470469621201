// Adam and AdamW over a ParamStore's flat buffers (or any flat value/gradient pair): one fused,
// vectorized, threaded loop per step.
//
// Numerics follow torch.optim.Adam / torch.optim.AdamW (amsgrad off):
//   Adam : g ← g + wd·p                       (L2 folded into the gradient)
//   AdamW: p ← p·(1 − lr·wd)                  (decoupled decay)
//   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
//   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε)
// The step counter t belongs to the optimizer and advances once per step(); the bias corrections
// are computed once per step, not per element (tiny-dnn's per-tensor counters and llm.c's powf in
// the loop are what we avoid).
//
// Work is split into fixed-size chunks handed to threads with a static schedule. Every element is
// updated independently and the chunk layout does not depend on the thread count, so results are
// bitwise the same with any number of threads.
#ifndef DIFFUSE_TRAIN_ADAM_HPP
#define DIFFUSE_TRAIN_ADAM_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse {

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;
    /// false: L2 added to the gradient (torch.optim.Adam); true: decoupled decay (torch.optim.AdamW).
    bool decoupled_weight_decay = false;
};

template <class T>
class Adam {
public:
    /// Over a model's store (the usual case; padding between parameters stays zero).
    Adam(ParamStore<T>& store, AdamOptions opt = {}) : Adam(store.values(), store.grads(), store.size(), opt) {}
    /// Over any flat pair of value/gradient buffers of n elements.
    Adam(T* values, const T* grads, std::size_t n, AdamOptions opt = {})
        : lr(opt.lr),
          beta1(opt.beta1),
          beta2(opt.beta2),
          eps(opt.eps),
          weight_decay(opt.weight_decay),
          decoupled_weight_decay(opt.decoupled_weight_decay),
          p_(values),
          g_(grads),
          m_(n),
          v_(n) {}

    /// Hyperparameters: public so a schedule can set lr (or anything else) between steps.
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled_weight_decay;

    /// One update of every parameter from its gradient (grads are read, not cleared).
    void step() {
        ++t_;
        const Coeffs c = coeffs();
        T* m = m_.data();
        T* v = v_.data();
        for_each_flat_chunk(size(), [&](std::size_t b, std::size_t e) { update(c, b, e, p_, g_, m, v); });
    }

    /// Steps taken so far (t in the bias corrections of the last step).
    std::int64_t step_count() const { return t_; }
    std::size_t size() const { return m_.size(); }

    /// Optimizer state for checkpoints: m, v (layout of the store) and the step count. Restoring
    /// all three (and the parameters) resumes bitwise exactly.
    T* m() { return m_.data(); }
    T* v() { return v_.data(); }
    const T* m() const { return m_.data(); }
    const T* v() const { return v_.data(); }
    void set_step_count(std::int64_t t) { t_ = t; }

private:
    /// Per-step constants, in the arithmetic type of the loop.
    struct Coeffs {
        T l2, decay, b1, one_minus_b1, b2, one_minus_b2, step_size, inv_sqrt_bc2, eps;
    };

    Coeffs coeffs() const {
        const double bc1 = 1 - std::pow(beta1, double(t_));
        const double bc2 = 1 - std::pow(beta2, double(t_));
        // Adam vs AdamW differ only in these two constants: one loop serves both (0·p and 1·p
        // are exact, so the unused form changes no bits).
        const double l2 = decoupled_weight_decay ? 0.0 : weight_decay;
        const double decay = decoupled_weight_decay ? 1 - lr * weight_decay : 1.0;
        return {T(l2), T(decay), T(beta1), T(1 - beta1), T(beta2), T(1 - beta2), T(lr / bc1), T(1 / std::sqrt(bc2)),
                T(eps)};
    }

    /// The fused update over [b, e): xsimd vector body, scalar tail. K is a batch or T itself.
    template <class K>
    static void update_one(const Coeffs& c, K& p, K g, K& m, K& v) {
        g = g + K(c.l2) * p;
        p = p * K(c.decay);
        m = K(c.b1) * m + K(c.one_minus_b1) * g;
        v = K(c.b2) * v + K(c.one_minus_b2) * (g * g);
        p = p - K(c.step_size) * (m / (xsimd::sqrt(v) * K(c.inv_sqrt_bc2) + K(c.eps)));
    }

    static void update(const Coeffs& c, std::size_t b, std::size_t e, T* p, const T* g, T* m, T* v) {
        using B = simd::batch<T>;
        constexpr std::size_t W = simd::width<T>;
        std::size_t i = b;
        for (; i + W <= e; i += W) {
            B pv = B::load_unaligned(p + i), mv = B::load_unaligned(m + i), vv = B::load_unaligned(v + i);
            update_one<B>(c, pv, B::load_unaligned(g + i), mv, vv);
            pv.store_unaligned(p + i);
            mv.store_unaligned(m + i);
            vv.store_unaligned(v + i);
        }
        for (; i < e; ++i) update_one<T>(c, p[i], g[i], m[i], v[i]);
    }

    T* p_;
    const T* g_;
    AlignedBuffer<T> m_, v_;
    std::int64_t t_ = 0;
};

/// AdamW: Adam with decoupled weight decay (torch.optim.AdamW, default decay 1e-2). The same
/// class and kernel; only the option differs.
template <class T>
class AdamW : public Adam<T> {
public:
    struct Options {
        double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
    };
    AdamW(ParamStore<T>& store, Options o = {}) : Adam<T>(store, adam_options(o)) {}
    AdamW(T* values, const T* grads, std::size_t n, Options o = {}) : Adam<T>(values, grads, n, adam_options(o)) {}

private:
    static AdamOptions adam_options(const Options& o) {
        return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, /*decoupled_weight_decay=*/true};
    }
};

}  // namespace diffuse

#endif
