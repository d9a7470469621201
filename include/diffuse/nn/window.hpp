// Sliding-window geometry along one spatial axis, shared by Conv2d and MaxPool2d.
//
//   same:  pad (K-1)/2 before (PyTorch's padding=K/2 for odd K), out = ceil(In / Stride); whatever
//          the last window reads past the end is zero. For odd K this is exactly PyTorch's
//          Conv2d(padding=K//2); for even K and stride 1, PyTorch's padding="same".
//   valid: no padding, out = (In - K) / Stride + 1.
#ifndef DIFFUSE_NN_WINDOW_HPP
#define DIFFUSE_NN_WINDOW_HPP

#include "diffuse/core/shape.hpp"

namespace diffuse {

enum class Padding { same, valid };

/// The taps of a K-wide window at output position o (stride, pad before) that fall inside an axis of
/// n inputs: k in [window_first(o, …), window_last(o, …)). Sizes at run time; WindowAxis fixes them.
constexpr int window_first(int o, int stride, int pad) { return o * stride - pad < 0 ? pad - o * stride : 0; }
constexpr int window_last(int o, int n, int k, int stride, int pad) {
    const int l = n + pad - o * stride, first = window_first(o, stride, pad);
    return l < k ? (l > first ? l : first) : k;
}

template <int In, int K, int Stride, Padding Pad>
struct WindowAxis {
    static_assert(K > 0 && Stride > 0, "WindowAxis: kernel size and stride must be positive");
    static_assert(Pad == Padding::same || In >= K,
                  "WindowAxis: a valid window needs the input at least as large as the kernel");
    static constexpr int pad = Pad == Padding::same ? (K - 1) / 2 : 0;
    static constexpr int out = Pad == Padding::same ? (In + Stride - 1) / Stride : (In - K) / Stride + 1;
    /// Input coordinate of tap k of output position o (may fall outside [0, In)).
    static constexpr int input(int o, int k) { return o * Stride - pad + k; }
    /// Taps of output position o that fall inside the input: k in [first(o), last(o)).
    static constexpr int first(int o) { return window_first(o, Stride, pad); }
    static constexpr int last(int o) { return window_last(o, In, K, Stride, pad); }
};

/// The [N, Ho, Wo, C] shape a window op gives an [N, H, W, *] input.
template <class XShape, int K, int Stride, Padding Pad, int C>
using WindowOutput = Shape<XShape::template dim<0>, WindowAxis<XShape::template dim<1>, K, Stride, Pad>::out,
                           WindowAxis<XShape::template dim<2>, K, Stride, Pad>::out, C>;

}  // namespace diffuse

#endif
