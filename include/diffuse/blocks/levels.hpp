// One resolution level of an encoder-decoder path: a residual stack (blocks/res_stack.hpp), then
// optionally a change of resolution,
//
//   DownLevel<Stack, Down>          stack, then (Down) conv 3×3 stride 2: H, W -> H/2, W/2  "downsample"
//   UpLevel<Stack, Up, names>       stack, then (Up) UpsampleConv: nearest 2× + conv 3×3    "upsample"
//
// the levels of the VAE's encoder and decoder and of the UNet's down and up paths. The stack is
// visited flat (down.0.res.0.*); the strided conv pads one pixel on each side (PyTorch's
// Conv2d(3, stride=2, padding=1)). The upsampler's conv is named upsample.conv (UpsampleNames::nested,
// the UNet's, SD's) or upsample (flat, the VAE's).
//
// forward(x, cond, y, cache) / backward(x, cond, y, cache, dy, dx, dcond) as ResStack's. A DownLevel
// has a second output, the stack's output before downsampling (cache.down.h: the skip connection a
// UNet's up path reads). Its gradient cache.down.dh is an accumulator the caller owns: zero it
// (Cache::zero_shared_grads) before the skip's other readers add into it, then backward adds the
// downsampler's share and runs the stack from the sum. Without Down the skip is y itself.
#ifndef DIFFUSE_BLOCKS_LEVELS_HPP
#define DIFFUSE_BLOCKS_LEVELS_HPP

#include <cstddef>
#include <type_traits>

#include "diffuse/blocks/conditioning.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/resample.hpp"

namespace diffuse {

/// The widths W_0 … W_{L-1} of a model's levels (W_0 at full resolution, Widths a std::array<int, L>).
template <auto Widths>
struct LevelWidths {
    static constexpr int levels = int(Widths.size());
    static constexpr int width(int l) { return Widths[std::size_t(l)]; }
    /// Channels entering down level l: conv_in's W_0, or the level above's width.
    static constexpr int down_in(int l) { return width(l == 0 ? 0 : l - 1); }
    static constexpr bool widths_positive() {
        for (int l = 0; l < levels; ++l)
            if (width(l) <= 0) return false;
        return true;
    }
};

template <class Stack, bool Down>
struct DownLevel {
    using T = typename Stack::value_type;
    static constexpr int C = Stack::out_channels;
    static constexpr bool downsamples = Down;
    using Downsample = Conv2d<T, C, C, 3, 2>;

    Stack res;
    [[no_unique_address]] std::conditional_t<Down, Downsample, Absent> downsample;

    template <class V>
    constexpr void visit(V& v) {
        res.visit(v);
        if constexpr (Down) v("downsample", downsample);
    }

    template <class XShape>
    using skip_shape = ReplaceLast<XShape, C>;
    template <class XShape>
    using output_shape =
        std::conditional_t<Down, typename Downsample::template output_shape<skip_shape<XShape>>, skip_shape<XShape>>;

    struct Sampled {
        template <class HShape>
        struct Cache {
            TensorOf<T, HShape> h, dh;  // the stack's output (the skip) and its gradient
            typename Downsample::template Cache<HShape> conv;
        };
    };
    template <class XShape, class CShape = Absent>
    struct Cache {
        typename Stack::template Cache<XShape, CShape> res;
        [[no_unique_address]] typename detail::CacheIf<Down, Sampled, skip_shape<XShape>>::type down;

        /// The skip's gradient, which other readers of the skip add into: zero before they do.
        void zero_shared_grads() {
            if constexpr (Down) down.dh.fill(T(0));
        }
    };

    template <Shaped X, class Cond, Shaped Y, class Ca>
    void forward(const X& x, const Cond& cond, Y&& y, Ca& c) const {
        if constexpr (Down) {
            res.forward(x, cond, c.down.h, c.res);
            downsample.forward(c.down.h, y, c.down.conv);
        } else {
            res.forward(x, cond, y, c.res);
        }
    }
    /// With Down, c.down.dh must hold the skip's gradient from its other readers (zero if none).
    template <Shaped X, class Cond, Shaped Y, class Ca, Shaped DY, Shaped DX, class DCond>
    void backward(const X& x, const Cond& cond, const Y& y, Ca& c, const DY& dy, DX&& dx, const DCond& dcond) const {
        if constexpr (Down) {
            downsample.backward(c.down.h, y, c.down.conv, dy, c.down.dh);
            res.backward(x, cond, c.down.h, c.res, c.down.dh, dx, dcond);
        } else {
            res.backward(x, cond, y, c.res, dy, dx, dcond);
        }
    }
};

/// Nearest 2× upsampling, then a 3×3 conv (C -> C): [N, H, W, C] -> [N, 2H, 2W, C]. Names: conv.
template <class T, int C>
struct UpsampleConv {
    using Conv = Conv2d<T, C, C, 3>;
    Conv conv;

    template <class V>
    constexpr void visit(V& v) {
        v("conv", conv);
    }

    template <class XShape>
    using output_shape = typename Upsample2x<T>::template output_shape<XShape>;

    template <class XShape>
    struct Cache {
        TensorOf<T, output_shape<XShape>> u, du;  // upsampled, and its gradient (scratch)
        typename Conv::template Cache<output_shape<XShape>> conv;
    };

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y, Cache<shape_of<X>>& c) const {
        Upsample2x<T>{}.forward(x, c.u);
        conv.forward(c.u, y, c.conv);
    }
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y& y, Cache<shape_of<X>>& c, const DY& dy, DX&& dx) const {
        c.du.fill(T(0));
        conv.backward(c.u, y, c.conv, dy, c.du);
        Upsample2x<T>{}.backward(x, c.u, c.du, dx);
    }
};

/// How an UpLevel names its upsampler's conv: "upsample.conv" (nested) or "upsample" (flat).
enum class UpsampleNames { nested, flat };

template <class Stack, bool Up, UpsampleNames Names = UpsampleNames::nested>
struct UpLevel {
    using T = typename Stack::value_type;
    static constexpr int C = Stack::out_channels;
    using Upsample = UpsampleConv<T, C>;

    Stack res;
    [[no_unique_address]] std::conditional_t<Up, Upsample, Absent> upsample;

    template <class V>
    constexpr void visit(V& v) {
        res.visit(v);
        if constexpr (Up && Names == UpsampleNames::nested) v("upsample", upsample);
        else if constexpr (Up) v("upsample", upsample.conv);
    }

    template <class XShape>
    using output_shape = std::conditional_t<Up, typename Upsample::template output_shape<ReplaceLast<XShape, C>>,
                                            ReplaceLast<XShape, C>>;

    struct Sampled {
        template <class HShape>
        struct Cache {
            TensorOf<T, HShape> h, dh;  // the stack's output and its gradient (scratch)
            typename Upsample::template Cache<HShape> up;
        };
    };
    template <class XShape, class CShape = Absent>
    struct Cache {
        typename Stack::template Cache<XShape, CShape> res;
        [[no_unique_address]] typename detail::CacheIf<Up, Sampled, ReplaceLast<XShape, C>>::type up;
    };

    template <Shaped X, class Cond, Shaped Y, class Ca>
    void forward(const X& x, const Cond& cond, Y&& y, Ca& c) const {
        if constexpr (Up) {
            res.forward(x, cond, c.up.h, c.res);
            upsample.forward(c.up.h, y, c.up.up);
        } else {
            res.forward(x, cond, y, c.res);
        }
    }
    template <Shaped X, class Cond, Shaped Y, class Ca, Shaped DY, Shaped DX, class DCond>
    void backward(const X& x, const Cond& cond, const Y& y, Ca& c, const DY& dy, DX&& dx, const DCond& dcond) const {
        if constexpr (Up) {
            c.up.dh.fill(T(0));
            upsample.backward(c.up.h, y, c.up.up, dy, c.up.dh);
            res.backward(x, cond, c.up.h, c.res, c.up.dh, dx, dcond);
        } else {
            res.backward(x, cond, y, c.res, dy, dx, dcond);
        }
    }
};

}  // namespace diffuse

#endif
