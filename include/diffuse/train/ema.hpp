// The exponential-moving-average rule, applied to a model's EmaWeights (core/ema_weights.hpp)
// after each optimizer step:
//   shadow ← shadow − (1 − d_n)·(shadow − params)       (diffusers' EMAModel.step, term for term)
// with a warmed-up decay (the default)
//   d_n = 0 for the first update (the shadow becomes the parameters), then min(decay, (1 + n)/(10 + n))
// where n counts earlier updates: diffusers' EMAModel(use_ema_warmup=False, update_after_step=0).
// Without warm-up a short run keeps most of the random initialization (decay 0.999 still holds half
// of it after 700 steps) and samples come out as noise: the diffusers #1772 pitfall. warmup = false
// gives that constant decay, for comparison only.
//
// The loop is the optimizer's: fixed chunks over threads (for_each_flat_chunk), xsimd inside; each
// element is independent, so the result is bitwise the same with any thread count.
#ifndef DIFFUSE_TRAIN_EMA_HPP
#define DIFFUSE_TRAIN_EMA_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "diffuse/core/ema_weights.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse {

struct EmaOptions {
    double decay = 0.9999;
    bool warmup = true;    // (1 + n)/(10 + n) ramp; false: constant decay (the #1772 pitfall)
    double min_decay = 0;  // floor of the warmed-up decay (diffusers' min_decay)
};

/// The update rule; the weights it averages are the caller's (a model's EmaWeights).
class Ema {
public:
    explicit Ema(EmaOptions opt = {}) : options(opt) {}

    EmaOptions options;

    /// The decay used by update number n (n earlier updates).
    double decay_at(std::int64_t n) const {
        if (!options.warmup) return options.decay;
        if (n <= 0) return 0;
        const double ramp = (1.0 + double(n)) / (10.0 + double(n));
        return std::max(std::min(ramp, options.decay), options.min_decay);
    }
    /// The decay the next update of w will use.
    template <class T>
    double next_decay(const EmaWeights<T>& w) const {
        return decay_at(w.update_count());
    }

    /// One update of w from the current parameters (after an optimizer step).
    template <class T>
    void update(EmaWeights<T>& w, const T* params) const {
        const T c = T(1 - decay_at(w.update_count()));
        w.count_update();
        T* s = w.values();
        for_each_flat_chunk(w.size(), [&](std::size_t b, std::size_t e) {
            simd::map2(e - b, s + b, params + b, s + b,
                       [c](auto sv, auto pv) { return sv - decltype(sv)(c) * (sv - pv); });
        });
    }
    template <class T>
    void update(EmaWeights<T>& w, const ParamStore<T>& store) const {
        w.check(store.size());
        update(w, store.values());
    }
};

}  // namespace diffuse

#endif
