// A low-rank adapter (LoRA, Hu et al. 2021) on a Linear layer: the layer computes
//
//   y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ          A = lora_down [r, In], B = lora_up [Out, r], s = strength·α/r
//
// so the effective weight is W + s·B·A without ever forming it. The adapter's parameters live
// outside the model's ParamStore (models/lora.hpp owns them, with a rank chosen at run time), so a
// Linear holds only a pointer to its hook; null (the default) is a plain Linear.
//
// Backward, with h = x·Aᵀ [M, r] and g = dy·B [M, r] (recomputed, not cached: r is small):
//   dB[Out, r] += s·dyᵀ·h,   dA[r, In] += s·gᵀ·x,   dx[M, In] += s·g·A
// Null ddown/dup skip the parameter gradients (sampling); s = 0 skips the adapter entirely, so a
// model at strength 0 computes bitwise what the base model does.
#ifndef DIFFUSE_NN_LORA_HPP
#define DIFFUSE_NN_LORA_HPP

#include <cstddef>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/gemm.hpp"

namespace diffuse {

/// Where one Linear's adapter lives and how strongly it acts.
template <class T>
struct LoraHook {
    int rank = 0;
    T scale = 0;              // strength · α / rank
    const T* down = nullptr;  // A [rank, In]
    const T* up = nullptr;    // B [Out, rank]
    T* ddown = nullptr;       // dA, or null: no parameter gradients
    T* dup = nullptr;         // dB
};

namespace lora {

/// The calling thread's scratch for h and g ([M, r] each): grown to the largest seen, never shrunk.
template <class T>
T* scratch(std::size_t n) {
    thread_local AlignedBuffer<T> buffer;
    return detail::GemmScratch<T>::fit(buffer, n);
}

/// y[M, Out] += s·(x[M, In]·Aᵀ)·Bᵀ.
template <class T>
void forward_add(const LoraHook<T>& a, int M, int In, int Out, const T* x, T* y) {
    if (a.scale == T(0) || a.rank == 0) return;
    const int r = a.rank;
    T* h = scratch<T>(std::size_t(M) * r);  // [M, r]
    gemm<Trans::N, Trans::T>(M, r, In, x, a.down, h, Accumulate::no);
    for (std::size_t i = 0; i < std::size_t(M) * r; ++i) h[i] *= a.scale;
    gemm<Trans::N, Trans::T>(M, Out, r, h, a.up, y, Accumulate::yes);
}

/// g = s·dy·B [M, r] into the calling thread's scratch, after `keep` values of it.
template <class T>
T* scaled_up_gradient(const LoraHook<T>& a, int M, int Out, const T* dy, std::size_t keep) {
    const int r = a.rank;
    T* g = scratch<T>(keep + std::size_t(M) * r) + keep;
    gemm<Trans::N, Trans::N>(M, r, Out, dy, a.up, g, Accumulate::no);
    for (std::size_t i = 0; i < std::size_t(M) * r; ++i) g[i] *= a.scale;
    return g;
}

/// Adds the adapter's parameter gradients (when it has them): sums over all M rows, so one call a batch.
template <class T>
void backward_params(const LoraHook<T>& a, int M, int In, int Out, const T* x, const T* dy) {
    if (a.scale == T(0) || a.rank == 0 || !a.dup) return;
    const int r = a.rank;
    T* g = scaled_up_gradient(a, M, Out, dy, std::size_t(M) * r);  // scratch: h [M, r], then g [M, r]
    T* h = g - std::size_t(M) * r;
    gemm<Trans::N, Trans::T>(M, r, In, x, a.down, h, Accumulate::no);  // h = x·Aᵀ
    for (std::size_t i = 0; i < std::size_t(M) * r; ++i) h[i] *= a.scale;
    gemm<Trans::T, Trans::N>(Out, r, M, dy, h, a.dup, Accumulate::yes);  // dB += dyᵀ·(s·h)
    gemm<Trans::T, Trans::N>(r, In, M, g, x, a.ddown, Accumulate::yes);  // dA += (s·g)ᵀ·x
}

/// Adds the adapter's share of dx: row by row, so callers may cut the rows.
template <class T>
void backward_input(const LoraHook<T>& a, int M, int In, int Out, const T* dy, T* dx) {
    if (a.scale == T(0) || a.rank == 0) return;
    const T* g = scaled_up_gradient(a, M, Out, dy, 0);
    gemm<Trans::N, Trans::N>(M, In, a.rank, g, a.down, dx, Accumulate::yes);  // dx += (s·g)·A
}

}  // namespace lora
}  // namespace diffuse

#endif
