// Conv2d: 2-D convolution over channels-last images, [N, H, W, Cin] -> [N, Ho, Wo, Cout], as im2col + GEMM.
//
// weight is [Cout, K, K, Cin], so a weight row is one im2col patch in channels-last order (PyTorch's
// [Cout, Cin, K, K] permuted by (0, 2, 3, 1)); bias is [Cout]. Padding is "same" (the default) or
// "valid", see window.hpp. A strided conv is the downsampler.
//
// Memory: the column matrix of a group of G images, [G·Ho·Wo, K·K·Cin], is built in one of `Slots`
// buffers of the Cache and never for the whole batch (stable-diffusion.cpp #261); a stride-1 "same"
// conv reads its windows in place instead (`implicit` below) and its slots hold only the windows
// that leave the image, for the weight gradient. G is the fewest images giving a GEMM at least
// kConvGemmRows rows deep (1 for 16×16 images and up, 4 at 8×8, 16 at 4×4; capped by the images of a
// slot): a 4×4 image alone is a 16-row GEMM that spends its time packing. Slot s handles a fixed
// contiguous block of the batch; slots run in parallel (parallel_for), groups within a slot in order.
// A 1×1 stride-1 conv is a plain GEMM over all pixels and needs no columns at all.
//
// Backward, per group:  dW += colᵀ·dY,  dX += col2im(dY·W) (or dY convolved with the flipped
// weights),  db += Σ dY.
// Determinism: each slot accumulates its images' dW into its own partial buffer in the Cache; the
// partials are added into the gradient in slot order. The slot split depends only on N and Slots
// (compile-time), so dW is bitwise the same for any thread count.
#ifndef DIFFUSE_NN_CONV2D_HPP
#define DIFFUSE_NN_CONV2D_HPP

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/gemm.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/window.hpp"

namespace diffuse {

/// Default number of per-image column buffers in a Conv2d cache (capped by the batch size): the
/// most images convolved at once. Pick another per cache with Cache<XShape, Slots>.
inline constexpr int conv_default_slots = 4;
/// Column-matrix rows worth one GEMM: below this, images are grouped (see above).
inline constexpr int kConvGemmRows = 256;

namespace detail {
/// Conv2d scratch: PerSlot values for a group of Images images per slot (their columns, or the windows
/// that leave them), and each slot's weight-gradient partial.
template <class T, int Slots, int Images, int PerSlot, int Cout, int Patch>
struct ConvColumns {
    static constexpr int slots = Slots, images = Images;
    Tensor<T, Slots, PerSlot> col;          // [S, G·Ho·Wo·K·K·Cin] or convolve_same's windows
    Tensor<T, Slots, Cout, Patch> dweight;  // [S, Cout, K·K·Cin]
};
/// The calling thread's buffer for a conv's weights packed for the GEMM (pack_b; read by the whole
/// team during one call): grown to the largest conv seen, never shrunk, like the GEMM's packing
/// buffers. Not in the cache, which would hold a copy of every conv's weights (a 50 % larger workspace
/// for the Seed preset at batch 1).
template <class T>
T* conv_weights_buffer(std::size_t n) {
    thread_local AlignedBuffer<T> buffer;
    return GemmScratch<T>::fit(buffer, n);
}
/// The calling thread's table of gathered GEMM rows, one pointer a row (Row = const T*: a convolution's
/// windows; T*: its output rows), grown like conv_weights_buffer.
template <class Row>
Row* conv_row_table(std::size_t n) {
    thread_local AlignedBuffer<Row> buffer;
    return GemmScratch<Row>::fit(buffer, n);
}
/// Images per GEMM for `rows` output pixels an image and N images over `slots` slots.
constexpr int conv_group(int rows, int n, int slots) {
    const int per_slot = slots > 0 ? (n + slots - 1) / slots : 1;
    return std::max(1, std::min(per_slot, (kConvGemmRows + rows - 1) / std::max(rows, 1)));
}
/// A 1×1 stride-1 conv needs no scratch.
struct ConvNoColumns {
    static constexpr int slots = 0;
};

/// A stride-1 "same" convolution as GEMMs over its input's pixels in place (Conv2d's `implicit` path):
/// the window table and the products, with the sizes at run time and not inlined, so they are compiled
/// once per T and K rather than once per Conv2d and image shape (clang unrolled the table's pixel loops
/// for every shape: 15 s of -O3 in examples/train.cpp; the GEMMs take their sizes at run time anyway).
template <class T, int K>
struct SameConvolution {
    /// A "same", stride-1 window's taps at output position o inside an axis of n: [first_tap(o), end_tap(o, n)).
    static constexpr int same_pad = WindowAxis<1, K, 1, Padding::same>::pad;
    static constexpr int first_tap(int o) { return window_first(o, 1, same_pad); }
    static constexpr int end_tap(int o, int n) { return window_last(o, n, K, 1, same_pad); }
    /// A row of W output pixels: [lo, hi) are those whose window stays inside the row (none where
    /// W < K − 1); the first lo and the last W − hi are its edge pixels, numbered 0..edges − 1 in that
    /// order.
    struct RowPixels {
        int lo, hi, edges;
        constexpr int edge_pixel(int e) const { return e < lo ? e : hi + (e - lo); }
    };
    static constexpr RowPixels row_pixels(int W) {
        const int lo = std::min(same_pad, W), hi = std::max(lo, W - (K - 1 - same_pad));
        return {lo, hi, lo + W - hi};
    }

    /// The rows of the implicit GEMMs of the weight gradient over in[g, H, W, Ci] ("same", stride 1):
    /// for kernel row kh and output pixel r of the group, table[kh·g·H·W + r] points at the K·Ci values
    /// of r's window on input row ih = oh + kh − pad, in place. Only the windows that leave the image
    /// are built, in buffer (Conv2d::window_values): the zero window for a kernel row above or below the
    /// image, and for the few pixels at each row's ends (K − 1 of 32 at 32×32) a copy with zeros where
    /// the window leaves it. So the products read what a zero-bordered copy would hold, without the
    /// copy. The table is the calling thread's, built in one pass whose branches follow each image row's
    /// pattern (a choice made per row in every tile was mispredicted at the edges).
    [[gnu::noinline]] static const T* const* windows(const T* in, int g, int H, int W, int Ci, T* buffer) {
        const int rows = H * W, window = K * Ci;
        const RowPixels pixels = row_pixels(W);
        const int E = pixels.edges;
        const T* const zeros = buffer;
        T* const edges = buffer + window;  // [g, H, E, K·Ci]
        std::fill_n(buffer, window, T(0));
        for (int i = 0; i < g; ++i)
            for (int h = 0; h < H; ++h)
                for (int e = 0; e < E; ++e) {
                    T* dst = edges + ((std::size_t(i) * H + h) * E + e) * window;
                    for (int kw = 0; kw < K; ++kw, dst += Ci) {
                        const int iw = pixels.edge_pixel(e) - same_pad + kw;
                        if (iw < 0 || iw >= W) std::fill_n(dst, Ci, T(0));
                        else std::copy_n(in + ((std::size_t(i) * H + h) * W + iw) * Ci, Ci, dst);
                    }
                }
        const T** const table = detail::conv_row_table<const T*>(std::size_t(K) * g * rows);
        for (int kh = 0; kh < K; ++kh)
            for (int i = 0; i < g; ++i)
                for (int oh = 0; oh < H; ++oh) {
                    const T** row = table + (std::size_t(kh) * g + i) * rows + std::size_t(oh) * W;
                    const int ih = oh - same_pad + kh;
                    if (ih < 0 || ih >= H) {
                        std::fill_n(row, W, zeros);
                        continue;
                    }
                    const std::size_t image_row = std::size_t(i) * H + ih;
                    for (int e = 0; e < E; ++e) row[pixels.edge_pixel(e)] = edges + (image_row * E + e) * window;
                    // A pointer step a pixel: written as an offset product per pixel, GCC vectorised it
                    // with emulated 64-bit multiplies where it did not clone the function for the shape
                    // (3 × slower, 6 % of the 16-channel conv).
                    if (pixels.lo < pixels.hi) {
                        const T* window_in = in + (image_row * W + std::size_t(pixels.lo - same_pad)) * Ci;
                        for (int ow = pixels.lo; ow < pixels.hi; ++ow, window_in += Ci) row[ow] = window_in;
                    }
                }
        return table;
    }

    /// out[g, H, W, Co] += in[g, H, W, Ci] convolved with w [Co, K, K, Ci] packed by Conv2d's
    /// pack_weights (kernel row kh's [Co, K·Ci] block as op(B), one after another), in read in place;
    /// with a bias, out = bias + that convolution. For each kernel row kh, over the output rows whose
    /// window row kh lies in the image (a window row in the padding adds nothing: 1/6 of the
    /// multiply-adds at 4×4, 1/12 at 8×8): one GEMM for the pixels whose window row stays inside the
    /// image row, and one per edge pixel of a row over only the taps inside it (Depths: 1/6 of the rest
    /// at 4×4, 1/12 at 8×8), with the bits of multiplying the padding's zeros. The first products store
    /// bias + their sums over out unread, after the rows they skip took the bias (the bits of filling
    /// out with the bias and accumulating). Conv2d's forward pass, and its input gradient with Ci = Cout,
    /// Co = Cin and the flipped weights.
    [[gnu::noinline]] static void convolve_same(const T* in, int g, int H, int W, int Ci, int Co, const T* packed,
                                                T* out, const T* bias) {
        const int rows = H * W;
        const RowPixels pixels = row_pixels(W);
        const std::size_t per_kh = packed_b_size<T>(Co, K * Ci);
        const T** const a_rows = detail::conv_row_table<const T*>(std::size_t(g) * rows);
        T** const c_rows = detail::conv_row_table<T*>(std::size_t(g) * rows);
        bool stored = !bias;  // whether out holds the bias yet
        // The pixels whose whole window lies in the image, rows [fh0, fh1) and columns [lo, hi): all K
        // kernel rows in one product (Segments: window row kh is kh image rows below row 0's, its weights
        // the next packed block), where the window fits one depth slice. The 16-channel conv's kernel rows
        // are 48 deep, and each cost a tile its set-up and a pass over C.
        const int fh0 = same_pad, fh1 = H - (K - 1 - same_pad);
        const bool fused = K * Ci <= kGemmDepthSlice && fh0 < fh1 && pixels.lo < pixels.hi;
        // The table of pixels [ow0, ow1) on rows [oh0, oh1) of every image, skipping the fused rows if
        // asked: A at their window's tap t0 on kernel row kh, C at the pixel. Returns their count.
        const auto gather = [&](int oh0, int oh1, bool but_fused, int ow0, int ow1, int kh, int t0) {
            int m = 0;
            for (int i = 0; i < g; ++i)
                for (int oh = oh0; oh < oh1; ++oh) {
                    if (but_fused && oh >= fh0 && oh < fh1) continue;
                    const std::ptrdiff_t in_row = std::ptrdiff_t(i) * H + oh - same_pad + kh, out_row = i * H + oh;
                    const T* a = in + (in_row * W + ow0 - same_pad + t0) * Ci;
                    T* c = out + (out_row * W + ow0) * Co;
                    for (int ow = ow0; ow < ow1; ++ow, ++m, a += Ci, c += Co) a_rows[m] = a, c_rows[m] = c;
                }
            return m;
        };
        if (fused)
            gemm_gathered_packed_segments(gather(fh0, fh1, false, pixels.lo, pixels.hi, 0, 0), Co, K * Ci,
                                          GatheredRows<const T>{a_rows}, packed, GatheredRows<T>{c_rows},
                                          bias ? Accumulate::no : Accumulate::yes, bias,
                                          Segments{K, std::ptrdiff_t(W) * Ci, std::ptrdiff_t(per_kh)});
        for (int kh = 0; kh < K; ++kh) {  // out[rows of kh, Co] (+)= A_kh[rows of kh, K·Ci] · w[:, kh]ᵀ
            int oh0 = H, oh1 = 0;         // the image rows whose window's row kh is inside: [oh0, oh1)
            for (int oh = 0; oh < H; ++oh)
                if (first_tap(oh) <= kh && kh < end_tap(oh, H)) oh0 = std::min(oh0, oh), oh1 = oh + 1;
            if (oh0 >= oh1) continue;
            const Accumulate acc = stored ? Accumulate::yes : Accumulate::no;
            // the rows the first products skip: [0, oh0) of each image (the first kernel row that meets the
            // image lies above the middle one, so its rows run to the image's last)
            if (!stored)
                for (int i = 0; i < g; ++i) detail::fill_rows(oh0 * W, Co, bias, out + std::size_t(i) * rows * Co, Co);
            stored = true;
            // pixels [ow0, ow1) of those rows (but the fused ones), their window's taps [t0, t1) on row kh
            const auto product = [&](int ow0, int ow1, int t0, int t1, bool but_fused) {
                gemm_gathered_packed(gather(oh0, oh1, but_fused, ow0, ow1, kh, t0), Co, K * Ci,
                                     GatheredRows<const T>{a_rows}, packed + kh * per_kh, GatheredRows<T>{c_rows}, acc,
                                     bias, Depths{t0 * Ci, t1 * Ci});
            };
            if (pixels.lo < pixels.hi) product(pixels.lo, pixels.hi, 0, K, fused);
            for (int e = 0; e < pixels.edges; ++e) {
                const int ow = pixels.edge_pixel(e);
                product(ow, ow + 1, first_tap(ow), end_tap(ow, W), false);
            }
        }
    }
};
}  // namespace detail

template <class T, int Cin, int Cout, int K, int Stride = 1, Padding Pad = Padding::same>
struct Conv2d {
    static_assert(Cin > 0 && Cout > 0, "Conv2d: channel counts must be positive");
    static_assert(K > 0 && Stride > 0, "Conv2d: kernel size and stride must be positive");
    static constexpr int in_channels = Cin, out_channels = Cout, kernel_size = K, stride = Stride;
    static constexpr Padding padding = Pad;
    /// Length of one im2col row (a K×K×Cin patch), and of one weight row.
    static constexpr int patch = K * K * Cin;
    /// 1×1 with stride 1: y = x·Wᵀ + b over every pixel, no im2col.
    static constexpr bool pointwise = K == 1 && Stride == 1;
    /// Stride 1, "same" padding: no im2col either. The GEMMs read the input's pixels in place, one
    /// K-slice per kernel row kh: output pixel (oh, ow) reads the K·Cin contiguous values of its
    /// window's row ih = oh + kh − pad, against the weights [Cout, kh, 0:K, 0:Cin] (forward; an edge
    /// pixel only its taps inside the image), or into dW[:, kh] (backward, where the windows that leave
    /// the image are built in the slot's buffer: windows()). Against im2col's columns: the VAE step 7 %
    /// faster on a Zen 4, a 28 % smaller UNet workspace at batch 16.
    static constexpr bool implicit = K > 1 && Stride == 1 && Pad == Padding::same;

    Param<T, Cout, K, K, Cin> weight{Init::FanIn(patch)};
    Param<T, Cout> bias{Init::FanIn(patch)};

    template <class V>
    constexpr void visit(V& v) {
        v("weight", weight);
        v("bias", bias);
    }

    template <class XShape>
    using output_shape = WindowOutput<XShape, K, Stride, Pad, Cout>;

    /// Values a slot's buffer holds for a group of g images of shape XS: the windows of x that leave
    /// the image (the weight gradient's), or the column matrix.
    template <class XS>
    static constexpr int slot_values(int g);

    template <class XShape, int Slots = std::min(XShape::first, conv_default_slots),
              int Group = detail::conv_group(output_shape<XShape>::rows / XShape::first, XShape::first, Slots)>
    using Cache = std::conditional_t<pointwise, detail::ConvNoColumns,
                                     detail::ConvColumns<T, Slots, Group, slot_values<XShape>(Group), Cout, patch>>;

    template <Shaped X, Shaped Y, class C>
    void forward(const X& x, Y&& y, C& cache) const {
        check<X, Y, C>();
        using XS = shape_of<X>;
        if constexpr (pointwise) {
            gemm_plus_row<Trans::N, Trans::T>(XS::rows, Cout, Cin, x.data(), weight.value_ptr, bias.value_ptr,
                                              y.data());
        } else if constexpr (implicit) {
            const T* packed = pack_weights<Cin, Cout>(weight.value_ptr);
            for_each_group<XS, C>([&](int, int n, int g) {
                T* yn = y.data() + std::size_t(n) * Geometry<XS>::rows * Cout;
                convolve_same<XS, Cin, Cout>(x.data() + std::size_t(n) * Geometry<XS>::in_image, g, packed, yn,
                                             bias.value_ptr);
            });
        } else {
            constexpr int rows = Geometry<XS>::rows;
            for_each_group<XS, C>([&](int s, int n, int g) {
                T* col = cache.col.data() + std::size_t(s) * cache.col.size / C::slots;
                T* yn = y.data() + std::size_t(n) * rows * Cout;
                for (int i = 0; i < g; ++i)
                    im2col<XS>(x.data() + std::size_t(n + i) * Geometry<XS>::in_image,
                               col + std::size_t(i) * rows * patch);
                gemm_plus_row<Trans::N, Trans::T>(g * rows, Cout, patch, col, weight.value_ptr, bias.value_ptr, yn);
            });
        }
    }
    /// A pointwise conv may run without a cache.
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        static_assert(pointwise, "Conv2d: only a 1x1 stride-1 conv runs without a Cache");
        detail::ConvNoColumns none;
        forward(x, y, none);
    }

    template <Shaped X, Shaped Y, class C, Shaped DY, Shaped DX>
    void backward(const X& x, const Y&, C& cache, const DY& dy, DX&& dx) const {
        check<X, Y, C>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Conv2d: gradients must have the shapes of their values");
        using XS = shape_of<X>;
        constexpr int M = shape_of<Y>::rows;
        // db[o] += Σ_m dy[m, o], rows summed in order
        for (int m = 0; m < M; ++m) simd::add_to(std::size_t(Cout), dy.data() + std::size_t(m) * Cout, bias.grad_ptr);
        if constexpr (pointwise) {
            // dW[Cout, Cin] += dyᵀ[Cout, M] · x[M, Cin];  dx[M, Cin] += dy[M, Cout] · W[Cout, Cin]
            gemm<Trans::T, Trans::N>(Cout, Cin, M, dy.data(), x.data(), weight.grad_ptr, Accumulate::yes);
            if (dx.data())
                gemm<Trans::N, Trans::N>(M, Cin, Cout, dy.data(), weight.value_ptr, dx.data(), Accumulate::yes);
        } else {
            constexpr int rows = Geometry<XS>::rows;
            constexpr std::size_t wsize = std::size_t(Cout) * patch;
            const T* const packed_flipped = implicit_dx && dx.data() ? pack_flipped_weights() : nullptr;
            const auto group = [&](int s, int n, int g) {
                T* col = cache.col.data() + std::size_t(s) * cache.col.size / C::slots;
                const T* dyn = dy.data() + std::size_t(n) * rows * Cout;
                const auto image = [&](int i) { return std::size_t(n + i) * Geometry<XS>::in_image; };
                const auto col_of = [&](int i) { return col + std::size_t(i) * rows * patch; };
                T* const dweight = cache.dweight.data() + s * wsize;
                // the slot's first group stores its partial unread: the bits of zeroing it first, without
                // that pass over Cout·K·K·Cin values a slot
                const Accumulate into_dw = n == slot_begin<XS, C>(s) ? Accumulate::no : Accumulate::yes;
                if constexpr (implicit) {
                    // dW_s[:, kh] [Cout, K·Cin] += dyᵀ[Cout, g·rows] · windows_kh[g·rows, K·Cin], x read in place
                    const T* const* rows_x = windows<XS, Cin>(x.data() + image(0), g, col);
                    for (int kh = 0; kh < K; ++kh)
                        gemm_gathered_b<Trans::T>(Cout, K * Cin, g * rows, dyn, Cout,
                                                  GatheredRows<const T>{rows_x + std::size_t(kh) * g * rows},
                                                  dweight + kh * K * Cin, patch, into_dw);
                } else {
                    for (int i = 0; i < g; ++i) im2col<XS>(x.data() + image(i), col_of(i));
                    // dW_s[Cout, patch] += dyᵀ[Cout, g·rows] · col[g·rows, patch]
                    gemm<Trans::T, Trans::N>(Cout, patch, g * rows, dyn, col, dweight, into_dw);
                }
                if (!dx.data()) return;
                if constexpr (implicit_dx) {
                    // dx is the convolution of dy, zero-bordered, with the flipped weights: the forward's
                    // implicit GEMMs over dy in place
                    convolve_same<XS, Cout, Cin>(dyn, g, packed_flipped, dx.data() + image(0), nullptr);
                } else {
                    // dcol[g·rows, patch] = dy[g·rows, Cout] · W[Cout, patch], folded back onto the images
                    gemm<Trans::N, Trans::N>(g * rows, patch, Cout, dyn, weight.value_ptr, col, Accumulate::no);
                    for (int i = 0; i < g; ++i) col2im<XS>(col_of(i), dx.data() + image(i));
                }
            };
            // The slots' groups, then (after a barrier, in the same region) their dW partials added in
            // slot order, output channels split across the threads: independent of the thread count.
            parallel_shares_then(
                C::slots,
                [&](int s0, int s1) {
                    for (int s = s0; s < s1; ++s) {
                        if (slot_begin<XS, C>(s) == slot_begin<XS, C>(s + 1))  // a slot without images
                            std::fill_n(cache.dweight.data() + s * wsize, wsize, T(0));
                        each_group_of_slot<XS, C>(s, group);
                    }
                },
                Cout,
                [&](int o) {
                    for (int s = 0; s < C::slots; ++s)
                        simd::add_to(std::size_t(patch), cache.dweight.data() + s * wsize + std::size_t(o) * patch,
                                     weight.grad_ptr + std::size_t(o) * patch);
                });
        }
    }
    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y& y, const DY& dy, DX&& dx) const {
        static_assert(pointwise, "Conv2d: only a 1x1 stride-1 conv runs without a Cache");
        detail::ConvNoColumns none;
        backward(x, y, none, dy, dx);
    }

private:
    template <class XS>
    struct Geometry {
        static constexpr int H = XS::template dim<1>, W = XS::template dim<2>;
        using AH = WindowAxis<H, K, Stride, Pad>;
        using AW = WindowAxis<W, K, Stride, Pad>;
        static constexpr int rows = AH::out * AW::out;  // output pixels of one image
        static constexpr std::size_t in_image = std::size_t(H) * W * Cin;
    };

    template <class X, class Y, class C>
    static constexpr void check() {
        using XS = shape_of<X>;
        static_assert(XS::rank == 4, "Conv2d: the input must be an image batch [N, H, W, Cin]");
        static_assert(XS::last == Cin, "Conv2d: input channel count must equal Cin");
        static_assert(same_shape<shape_of<Y>, output_shape<XS>>,
                      "Conv2d: the output must be [N, Ho, Wo, Cout] as given by output_shape");
        static_assert(std::is_same_v<std::remove_cvref_t<C>, Cache<XS, std::remove_cvref_t<C>::slots>>,
                      "Conv2d: the cache must be this layer's Cache<input shape>");
    }

    /// The input gradient by implicit GEMM too (see `implicit`), for odd K (dy's border is then x's). At
    /// 4×4 it lost to a dcol GEMM + col2im while the edge pixels multiplied their padding taps; since they
    /// skip them it wins there too (128→128 4×4, batch 32, fwd+bwd 1.12×, the training step 1.03× on one
    /// Zen 5 core) and the slots hold no columns.
    static constexpr bool implicit_dx = implicit && K % 2 == 1;

    /// w [Co, K, K, Ci] packed for convolve_same, once a call rather than once a group of images:
    /// kernel row kh's [Co, K·Ci] block as op(B), one after another, in the calling thread's buffer.
    template <int Ci, int Co>
    static const T* pack_weights(const T* w) {
        const std::size_t per_kh = packed_b_size<T>(Co, K * Ci);
        T* const packed = detail::conv_weights_buffer<T>(K * per_kh);
        for (int kh = 0; kh < K; ++kh) pack_b<Trans::T>(Co, K * Ci, w + kh * K * Ci, K * K * Ci, packed + kh * per_kh);
        return packed;
    }

    using Same = detail::SameConvolution<T, K>;
    /// Values windows() keeps in its buffer for g images of H×W×Ci: a zero window, then each edge
    /// pixel's window (K·Ci values, zeros where it leaves the image) for every image row.
    template <int H, int W, int Ci>
    static constexpr int window_values(int g) {
        return K * Ci * (1 + g * H * Same::row_pixels(W).edges);
    }
    /// detail::SameConvolution's window table and products for images of shape XS.
    template <class XS, int Ci>
    static const T* const* windows(const T* in, int g, T* buffer) {
        return Same::windows(in, g, XS::template dim<1>, XS::template dim<2>, Ci, buffer);
    }
    template <class XS, int Ci, int Co>
    static void convolve_same(const T* in, int g, const T* packed, T* out, const T* bias) {
        Same::convolve_same(in, g, XS::template dim<1>, XS::template dim<2>, Ci, Co, packed, out, bias);
    }

    /// The weights of dx as a convolution of dy, flipped[c, kh, kw, o] = W[o, K-1-kh, K-1-kw, c], packed
    /// as pack_weights<Cout, Cin> packs them, without the flipped copy: row (kw, o) of kernel row kh's
    /// op(B) [K·Cout, Cin] is W[o, K-1-kh, K-1-kw, :], read in place.
    const T* pack_flipped_weights() const {
        const std::size_t per_kh = packed_b_size<T>(Cin, K * Cout);
        T* const packed = detail::conv_weights_buffer<T>(K * per_kh);
        for (int kh = 0; kh < K; ++kh)
            pack_b_rows(
                Cin, K * Cout,
                [&](int k) {
                    const int kw = k / Cout, o = k % Cout;
                    return weight.value_ptr + ((std::size_t(o) * K + (K - 1 - kh)) * K + (K - 1 - kw)) * Cin;
                },
                packed + kh * per_kh);
        return packed;
    }

    /// The first image of slot s: the slot's block of the batch is [slot_begin(s), slot_begin(s + 1)).
    template <class XS, class C>
    static constexpr int slot_begin(int s) {
        return int(std::size_t(s) * XS::first / C::slots);
    }
    /// f(s, first image, images) over slot s's groups of at most C::images images, in order.
    template <class XS, class C, class F>
    static void each_group_of_slot(int s, F& f) {
        const int end = slot_begin<XS, C>(s + 1);
        for (int n = slot_begin<XS, C>(s); n < end; n += C::images) f(s, n, std::min(C::images, end - n));
    }
    /// each_group_of_slot over every slot, slots in parallel.
    template <class XS, class C, class F>
    static void for_each_group(F f) {
        parallel_for(C::slots, [&](int s) { each_group_of_slot<XS, C>(s, f); });
    }

    /// Walks one image's column matrix [rows, K·K·Cin] as contiguous runs: seg(col_offset, x_offset,
    /// length), x_offset < 0 for a run that falls in the padding.
    template <class XS, class Seg>
    static void walk(Seg seg) {
        using G = Geometry<XS>;
        for (int oh = 0; oh < G::AH::out; ++oh)
            for (int ow = 0; ow < G::AW::out; ++ow) {
                const std::ptrdiff_t row = std::ptrdiff_t(oh * G::AW::out + ow) * patch;
                const int k0 = G::AW::first(ow), k1 = G::AW::last(ow);
                for (int kh = 0; kh < K; ++kh) {
                    const std::ptrdiff_t c = row + std::ptrdiff_t(kh) * K * Cin;
                    const int ih = G::AH::input(oh, kh);
                    if (ih < 0 || ih >= G::H) {
                        seg(c, -1, K * Cin);
                        continue;
                    }
                    if (k0 > 0) seg(c, -1, k0 * Cin);
                    if (k1 > k0)
                        seg(c + k0 * Cin, (std::ptrdiff_t(ih) * G::W + G::AW::input(ow, k0)) * Cin, (k1 - k0) * Cin);
                    if (k1 < K) seg(c + k1 * Cin, -1, (K - k1) * Cin);
                }
            }
    }
    /// x [H, W, Cin] -> col [rows, K·K·Cin]
    template <class XS>
    static void im2col(const T* x, T* col) {
        walk<XS>([&](std::ptrdiff_t c, std::ptrdiff_t xo, int len) {
            if (xo < 0) std::fill_n(col + c, len, T(0));
            else std::copy_n(x + xo, len, col + c);
        });
    }
    /// dx [H, W, Cin] += fold(col [rows, K·K·Cin])
    template <class XS>
    static void col2im(const T* col, T* dx) {
        walk<XS>([&](std::ptrdiff_t c, std::ptrdiff_t xo, int len) {
            if (xo >= 0) simd::add_to(std::size_t(len), col + c, dx + xo);
        });
    }
};

template <class T, int Cin, int Cout, int K, int Stride, Padding Pad>
template <class XS>
constexpr int Conv2d<T, Cin, Cout, K, Stride, Pad>::slot_values(int g) {
    using G = Geometry<XS>;
    const int columns = g * G::rows * patch;
    if constexpr (!implicit) return columns;
    else return std::max(window_values<G::H, G::W, Cin>(g), implicit_dx ? 0 : columns);
}

}  // namespace diffuse

#endif
