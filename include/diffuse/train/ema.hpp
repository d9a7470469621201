// Exponential moving average of a model's flat parameter buffer, for sampling with smoothed weights:
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
#include <stdexcept>
#include <string>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/train/adam.hpp"

namespace diffuse {

struct EmaOptions {
    double decay = 0.9999;
    bool warmup = true;    // (1 + n)/(10 + n) ramp; false: constant decay (the #1772 pitfall)
    double min_decay = 0;  // floor of the warmed-up decay (diffusers' min_decay)
};

template <class T>
class Ema {
public:
    /// The shadow starts as a copy of the parameters.
    Ema(const ParamStore<T>& store, EmaOptions opt = {}) : Ema(store.values(), store.size(), opt) {}
    Ema(const T* params, std::size_t n, EmaOptions opt = {}) : options(opt), shadow_(n) {
        std::copy(params, params + n, shadow_.data());
    }

    EmaOptions options;

    /// The decay used by update number n (n earlier updates).
    double decay_at(std::int64_t n) const {
        if (!options.warmup) return options.decay;
        if (n <= 0) return 0;
        const double ramp = (1.0 + double(n)) / (10.0 + double(n));
        return std::max(std::min(ramp, options.decay), options.min_decay);
    }
    /// The decay the next update will use.
    double current_decay() const { return decay_at(n_); }

    /// One update from the current parameters (after an optimizer step).
    void update(const T* params) {
        const T c(1 - decay_at(n_));
        ++n_;
        T* s = shadow_.data();
        for_each_flat_chunk(size(), [&](std::size_t b, std::size_t e) {
            simd::map2(e - b, s + b, params + b, s + b, [c](auto sv, auto pv) { return sv - decltype(sv)(c) * (sv - pv); });
        });
    }
    void update(const ParamStore<T>& store) { check(store.size()); update(store.values()); }

    /// Writes the averaged weights into params (to sample with them).
    void copy_to(T* params) const { std::copy(shadow_.begin(), shadow_.end(), params); }
    void copy_to(ParamStore<T>& store) const { check(store.size()); copy_to(store.values()); }
    /// Exchanges shadow and params in place: sample with the average, then swap back to train on.
    void swap_with(T* params) {
        T* s = shadow_.data();
        for_each_flat_chunk(size(), [&](std::size_t b, std::size_t e) { std::swap_ranges(s + b, s + e, params + b); });
    }
    void swap_with(ParamStore<T>& store) { check(store.size()); swap_with(store.values()); }

    /// Checkpoint state: the shadow buffer (the store's layout) and the update count. Restoring both
    /// resumes bitwise exactly.
    T* shadow() { return shadow_.data(); }
    const T* shadow() const { return shadow_.data(); }
    std::size_t size() const { return shadow_.size(); }
    std::int64_t update_count() const { return n_; }
    void set_update_count(std::int64_t n) { n_ = n; }

private:
    void check(std::size_t n) const {
        if (n != size()) throw std::invalid_argument("Ema: a parameter buffer of " + std::to_string(n) +
                                                     " elements for a shadow of " + std::to_string(size()));
    }
    AlignedBuffer<T> shadow_;
    std::int64_t n_ = 0;
};

}  // namespace diffuse

#endif
