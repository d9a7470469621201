// EmaWeights<T>: a second set of a model's weights, laid out like its ParamStore, and how many
// updates have made it: the weights a model samples from once they have been averaged (an
// exponential moving average of the trained ones). This is plain data: the update rule (decay with
// warm-up) belongs to training, train/ema.hpp; a model only holds, saves, loads and swaps these.
#ifndef DIFFUSE_CORE_EMA_WEIGHTS_HPP
#define DIFFUSE_CORE_EMA_WEIGHTS_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"

namespace diffuse {

template <class T>
class EmaWeights {
public:
    /// Starts as a copy of the parameters, with no updates.
    explicit EmaWeights(const ParamStore<T>& store) : EmaWeights(store.values(), store.size()) {}
    EmaWeights(const T* params, std::size_t n) : values_(n) { std::copy(params, params + n, values_.data()); }

    /// The averaged weights (the store's layout) and how many updates made them; restoring both
    /// resumes an average bitwise exactly.
    T* values() { return values_.data(); }
    const T* values() const { return values_.data(); }
    std::size_t size() const { return values_.size(); }
    std::int64_t update_count() const { return n_; }
    void set_update_count(std::int64_t n) { n_ = n; }
    /// Counts one update (the rule that changed values() calls it).
    void count_update() { ++n_; }

    /// Writes the averaged weights into params.
    void copy_to(T* params) const { std::copy(values_.begin(), values_.end(), params); }
    void copy_to(ParamStore<T>& store) const {
        check(store.size());
        copy_to(store.values());
    }
    /// Exchanges these weights and params in place: sample with the average, then swap back.
    void swap_with(T* params) {
        T* s = values_.data();
        for_each_flat_chunk(size(), [&](std::size_t b, std::size_t e) { std::swap_ranges(s + b, s + e, params + b); });
    }
    void swap_with(ParamStore<T>& store) {
        check(store.size());
        swap_with(store.values());
    }

    /// Throws unless a buffer of n elements has this layout's size.
    void check(std::size_t n) const {
        if (n != size())
            throw std::invalid_argument("EmaWeights: a parameter buffer of " + std::to_string(n) +
                                        " elements for averaged weights of " + std::to_string(size()));
    }

private:
    AlignedBuffer<T> values_;
    std::int64_t n_ = 0;
};

}  // namespace diffuse

#endif
