// Images around a Fashion-MNIST model: the 2-pixel border between Fashion-MNIST's 28x28 and the
// model's 32x32 (crop it off generated images, pad it onto inputs), PSNR, and the rows x cols of a
// sample grid. Images are channels-last [H, W, C] floats in [-1, 1], as io/png.hpp reads and writes
// them. Bad sizes throw std::invalid_argument saying what was expected.
#ifndef DIFFUSE_APP_IMAGES_HPP
#define DIFFUSE_APP_IMAGES_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>

namespace diffuse::app {

inline constexpr int kImageSide = 28, kModelSide = 32, kBorder = (kModelSide - kImageSide) / 2;

/// The centre of an image [h, w, c]: `border` pixels off every side, into [h - 2b, w - 2b, c].
template <class T, class U>
void crop_border(const T* src, int h, int w, int c, int border, U* dst) {
    if (border < 0 || 2 * border >= h || 2 * border >= w) throw std::invalid_argument("crop_border: border too wide");
    const int oh = h - 2 * border, ow = w - 2 * border;
    for (int y = 0; y < oh; ++y)
        for (int k = 0; k < ow * c; ++k)
            dst[(std::size_t(y) * ow) * c + k] = U(src[(std::size_t(y + border) * w + border) * c + k]);
}

/// n generated images [n, 32, 32, 1] → [n, 28, 28, 1]: Fashion-MNIST's size, the padding dropped.
template <class T, class U>
void crop_to_image_size(const T* generated, int n, U* out) {
    constexpr std::size_t in = std::size_t(kModelSide) * kModelSide, px = std::size_t(kImageSide) * kImageSide;
    for (int i = 0; i < n; ++i)
        crop_border(generated + std::size_t(i) * in, kModelSide, kModelSide, 1, kBorder, out + std::size_t(i) * px);
}

/// An image [h, w, c] centred in [h + 2b, w + 2b, c], the border filled with `background`
/// (−1: Fashion-MNIST's black, what the model was trained on).
template <class T, class U>
void pad_border(const T* src, int h, int w, int c, int border, U* dst, U background = U(-1)) {
    if (border < 0) throw std::invalid_argument("pad_border: negative border");
    const int oh = h + 2 * border, ow = w + 2 * border;
    std::fill(dst, dst + std::size_t(oh) * ow * c, background);
    for (int y = 0; y < h; ++y)
        for (int k = 0; k < w * c; ++k)
            dst[(std::size_t(y + border) * ow + border) * c + k] = U(src[(std::size_t(y) * w) * c + k]);
}

/// The border that brings an h x w x c input to the model's 32x32x1: 2 for Fashion-MNIST's 28x28,
/// 0 for 32x32; throws for anything else.
inline int model_input_border(int h, int w, int c) {
    if (c != 1) throw std::invalid_argument("expected a grayscale image, got " + std::to_string(c) + " channels");
    if (h == kModelSide && w == kModelSide) return 0;
    if (h == kImageSide && w == kImageSide) return kBorder;
    throw std::invalid_argument("expected a 28x28 or 32x32 image, got " + std::to_string(w) + "x" + std::to_string(h));
}

/// Mean squared error of b against a over n values, b clipped to [-1, 1] first (what an 8-bit image
/// of it would show); summed in double, in order.
template <class T, class U>
double mse_clipped(const T* a, const U* b, std::size_t n) {
    if (n == 0) throw std::invalid_argument("mse: no values");
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = std::clamp(double(b[i]), -1.0, 1.0) - double(a[i]);
        s += d * d;
    }
    return s / double(n);
}

/// Peak signal-to-noise ratio in dB for signals in [-1, 1] (peak-to-peak 2): 10·log10(4 / mse).
/// The same figure as 10·log10(255² / mse) on bytes. Infinite for identical images.
inline double psnr_from_mse(double mse) {
    if (mse < 0) throw std::invalid_argument("psnr: negative mse");
    return mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(4.0 / mse);
}

template <class T, class U>
double psnr(const T* reference, const U* test, std::size_t n) {
    return psnr_from_mse(mse_clipped(reference, test, n));
}

/// Rows and columns of a grid for n images: as square as possible, never an empty row.
struct GridLayout {
    int rows = 0, cols = 0;
};
inline GridLayout grid_layout(int n) {
    if (n < 1) throw std::invalid_argument("grid_layout: need at least one image, not " + std::to_string(n));
    int cols = int(std::ceil(std::sqrt(double(n))));
    while (cols * cols < n) ++cols;  // guard against sqrt rounding down
    while ((cols - 1) * (cols - 1) >= n) --cols;
    return {(n + cols - 1) / cols, cols};
}

}  // namespace diffuse::app

#endif
