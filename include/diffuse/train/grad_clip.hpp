// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2).
//
// The squared norm is summed per fixed chunk (the chunks of the optimizer's loop), then the
// partial sums are combined in chunk order: the result does not depend on the thread count.
#ifndef DIFFUSE_TRAIN_GRAD_CLIP_HPP
#define DIFFUSE_TRAIN_GRAD_CLIP_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse {

/// The L2 norm of all gradients of the store, summed in a fixed order.
///
/// The partial sums live on the stack (no allocation per step): chunks are taken in groups of
/// kGroup, each group's chunks summed in parallel, then added to the total in chunk order, so the
/// result is the same as summing every chunk first and then all partials in order.
template <class T>
T grad_norm(const ParamStore<T>& store) {
    constexpr std::size_t kGroup = 1024;  // 16 M elements of kFlatChunk per group
    const std::size_t n = store.size();
    const T* g = store.grads();
    T partial[kGroup];
    T total = 0;
    for (std::size_t begin = 0; begin < n; begin += kGroup * kFlatChunk) {
        const std::size_t len = std::min(n - begin, kGroup * kFlatChunk);
        for_each_flat_chunk(len, [&](std::size_t b, std::size_t e) {
            partial[b / kFlatChunk] = simd::reduce(e - b, g + begin + b, [](auto x) { return x * x; });
        });
        const std::size_t chunks = std::size_t(flat_chunk_count(len));
        for (std::size_t c = 0; c < chunks; ++c) total += partial[c];
    }
    return std::sqrt(total);
}

/// The clipping of clip_grad_norm with the norm already measured (grad_norm(store)): for a caller
/// that inspects the norm first (train/numerical_fault.hpp stops on a non-finite one).
template <class T>
void clip_grads_to(ParamStore<T>& store, std::type_identity_t<T> max_norm, std::type_identity_t<T> norm) {
    const T scale = max_norm / (norm + T(1e-6));
    if (scale < T(1)) {
        T* g = store.grads();
        for_each_flat_chunk(store.size(), [&](std::size_t b, std::size_t e) {
            simd::map(e - b, g + b, g + b, [scale](auto x) { return x * decltype(x)(scale); });
        });
    }
}

/// Scales all gradients so that their global L2 norm is at most max_norm; returns the norm
/// before clipping. Like PyTorch, the scale is max_norm / (norm + 1e-6), applied only when < 1.
template <class T>
T clip_grad_norm(ParamStore<T>& store, std::type_identity_t<T> max_norm) {
    const T norm = grad_norm(store);
    clip_grads_to(store, max_norm, norm);
    return norm;
}

}  // namespace diffuse

#endif
