// Images from untrusted files, made ready for a model: decoding PNG or JPEG (told apart by their
// first bytes, not by the file name) into 8-bit samples, converting to gray or RGB with alpha
// composited over a background colour, and resizing to a fixed size.
//
// Resizing, exactly: the image is scaled so that it covers the target (scale = max(H/h, W/w); for a
// square target, its shorter side becomes the target size), the other side to round(side × scale),
// then the centre is cropped (offset floor((resized − target) / 2) on each axis). Each axis is
// resampled on its own: area-averaged when it shrinks (output pixel o averages source interval
// [o·n/m, (o+1)·n/m), weighting pixels by overlap), bilinear when it grows (output pixel o samples
// source position (o + ½)·n/m − ½, clamped to the edge pixels: half-pixel centres, as PIL and
// OpenCV do), copied when its size stays. Arithmetic is in double on 0..255 values, rounded to the
// nearest byte once at the end.
//
// Channels: gray → RGB copies the gray value; RGB → gray is Rec. 601 luma (0.299 R + 0.587 G +
// 0.114 B, what PIL's "L" mode uses); alpha is composited in the file's (sRGB) values,
// v·a + background·(1 − a), before any conversion or resizing.
#ifndef DIFFUSE_IO_IMAGE_HPP
#define DIFFUSE_IO_IMAGE_HPP

#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/io/byte_image.hpp"
#include "diffuse/io/jpeg.hpp"
#include "diffuse/io/png.hpp"

namespace diffuse::io {

/// An RGB colour in bytes (a background for alpha compositing).
struct Rgb {
    std::uint8_t r = 255, g = 255, b = 255;
};

/// True when the bytes start with PNG's signature.
inline bool looks_like_png(const std::uint8_t* data, std::size_t size) {
    static constexpr std::uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    return size >= 8 && std::memcmp(data, sig, 8) == 0;
}

/// Decodes a PNG held in memory into 8-bit samples in its own layout: gray, gray + alpha, RGB or
/// RGBA (palettes become RGB or RGBA, 16-bit samples are rounded to 8; a 16-bit file without gamma
/// information is taken as sRGB like an 8-bit one). `name` prefixes every error.
inline ByteImage decode_png(const std::uint8_t* data, std::size_t size, const std::string& name,
                            std::uint64_t max_pixels = kMaxImagePixels) {
    detail::PngImageGuard g;
    if (!png_image_begin_read_from_memory(&g.image, data, size))
        throw std::runtime_error("png " + name + ": cannot read (" + g.message() + ")");
    detail::check_image_size("png " + name, g.image.width, g.image.height, max_pixels);
    g.image.format &= PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA;  // 8-bit, no colour map
    g.image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;                       // only takes effect when set after begin_read
    ByteImage out;
    out.height = int(g.image.height);
    out.width = int(g.image.width);
    out.channels = int(PNG_IMAGE_SAMPLE_CHANNELS(g.image.format));
    out.pixels.resize(PNG_IMAGE_SIZE(g.image));
    if (!png_image_finish_read(&g.image, nullptr, out.pixels.data(), 0, nullptr))
        throw std::runtime_error("png " + name + ": corrupt or truncated (" + g.message() + ")");
    return out;
}

/// Decodes a PNG or JPEG held in memory (by its signature); anything else is refused.
inline ByteImage decode_image(const std::uint8_t* data, std::size_t size, const std::string& name,
                              std::uint64_t max_pixels = kMaxImagePixels) {
    if (looks_like_png(data, size)) return decode_png(data, size, name, max_pixels);
    if (looks_like_jpeg(data, size)) return decode_jpeg(data, size, name, max_pixels);
    throw std::runtime_error(name + ": " + (size == 0 ? "empty file" : "not a PNG or JPEG file"));
}

/// Reads a PNG or JPEG file into 8-bit samples; throws std::runtime_error naming the file.
inline ByteImage read_image(const std::string& path, std::uint64_t max_pixels = kMaxImagePixels) {
    const std::vector<std::uint8_t> bytes = detail::read_whole_file(path);
    return decode_image(bytes.data(), bytes.size(), path, max_pixels);
}

/// Samples [height, width, channels] as doubles in 0..255 (the stage between decoding and bytes).
struct PlaneImage {
    int height = 0, width = 0, channels = 0;
    std::vector<double> values;
};

/// An image converted to `channels` (1 gray or 3 RGB), alpha composited over `background`.
inline PlaneImage convert_channels(const ByteImage& src, int channels, Rgb background = {}) {
    if (channels != 1 && channels != 3) throw std::invalid_argument("convert_channels: channels must be 1 or 3");
    if (src.channels < 1 || src.channels > 4)
        throw std::invalid_argument("convert_channels: source has 1 to 4 channels");
    const bool colour = src.channels >= 3, alpha = src.channels == 2 || src.channels == 4;
    const auto luma = [](double r, double g, double b) { return 0.299 * r + 0.587 * g + 0.114 * b; };
    const std::array<double, 3> bg = {double(background.r), double(background.g), double(background.b)};
    const double bg_gray = luma(bg[0], bg[1], bg[2]);
    PlaneImage out{src.height, src.width, channels, {}};
    const std::size_t n = std::size_t(src.height) * std::size_t(src.width);
    out.values.resize(n * std::size_t(channels));
    for (std::size_t p = 0; p < n; ++p) {
        const std::uint8_t* s = src.pixels.data() + p * std::size_t(src.channels);
        const double a = alpha ? s[src.channels - 1] / 255.0 : 1.0;
        double* d = out.values.data() + p * std::size_t(channels);
        if (!colour && channels == 1) {
            d[0] = alpha ? s[0] * a + bg_gray * (1 - a) : s[0];
            continue;
        }
        double rgb[3];
        for (int c = 0; c < 3; ++c) {
            const double v = colour ? s[c] : s[0];
            rgb[c] = alpha ? v * a + bg[std::size_t(c)] * (1 - a) : v;
        }
        if (channels == 3) std::copy(rgb, rgb + 3, d);
        else d[0] = luma(rgb[0], rgb[1], rgb[2]);
    }
    return out;
}

namespace detail {

/// The source pixels and weights behind each of `count` output pixels, starting at resized index
/// `first`, of an axis of n source pixels resized to m (see the header comment).
struct AxisTaps {
    std::vector<int> start, stop;  // taps of output o: weights[start[o] .. stop[o])
    std::vector<int> index;
    std::vector<double> weight;
};

inline AxisTaps axis_taps(int n, int m, int first, int count) {
    AxisTaps t;
    for (int o = first; o < first + count; ++o) {
        t.start.push_back(int(t.index.size()));
        if (m == n) {
            t.index.push_back(o);
            t.weight.push_back(1.0);
        } else if (m < n) {  // area: [o·n/m, (o+1)·n/m), in units of 1/m source pixels to stay exact
            const std::int64_t lo = std::int64_t(o) * n, hi = std::int64_t(o + 1) * n;  // × 1/m
            for (std::int64_t k = lo / m; k * m < hi; ++k) {
                const std::int64_t overlap = std::min(hi, (k + 1) * m) - std::max(lo, k * m);
                if (overlap <= 0) continue;
                t.index.push_back(int(k));
                t.weight.push_back(double(overlap) / double(n));
            }
        } else {  // bilinear
            double x = (o + 0.5) * double(n) / double(m) - 0.5;
            x = std::clamp(x, 0.0, double(n - 1));
            const int k = std::min(int(std::floor(x)), n - 1);
            const double f = x - k;
            t.index.push_back(k);
            t.weight.push_back(1.0 - f);
            if (f > 0 && k + 1 < n) {
                t.index.push_back(k + 1);
                t.weight.push_back(f);
            }
        }
        t.stop.push_back(int(t.index.size()));
    }
    return t;
}

}  // namespace detail

/// The size an h × w image is scaled to before cropping to out_h × out_w: {height, width}.
inline std::array<int, 2> cover_size(int h, int w, int out_h, int out_w) {
    if (std::int64_t(out_h) * w >= std::int64_t(out_w) * h)  // height is the binding side
        return {out_h, int((2 * std::int64_t(w) * out_h + h) / (2 * std::int64_t(h)))};
    return {int((2 * std::int64_t(h) * out_w + w) / (2 * std::int64_t(w))), out_w};
}

/// Resized to cover out_h × out_w and centre-cropped to it (see the header comment).
inline PlaneImage resize_and_crop(const PlaneImage& src, int out_h, int out_w) {
    if (out_h <= 0 || out_w <= 0) throw std::invalid_argument("resize_and_crop: target size must be positive");
    if (src.height <= 0 || src.width <= 0) throw std::invalid_argument("resize_and_crop: empty image");
    const auto [mh, mw] = cover_size(src.height, src.width, out_h, out_w);
    const detail::AxisTaps ty = detail::axis_taps(src.height, mh, (mh - out_h) / 2, out_h);
    const detail::AxisTaps tx = detail::axis_taps(src.width, mw, (mw - out_w) / 2, out_w);
    const int c = src.channels;
    // along x first: [src.height, out_w, c], then along y: [out_h, out_w, c]
    std::vector<double> rows(std::size_t(src.height) * std::size_t(out_w) * std::size_t(c), 0.0);
    for (int y = 0; y < src.height; ++y)
        for (int o = 0; o < out_w; ++o)
            for (int k = tx.start[std::size_t(o)]; k < tx.stop[std::size_t(o)]; ++k) {
                const double* s =
                    src.values.data() +
                    (std::size_t(y) * std::size_t(src.width) + std::size_t(tx.index[std::size_t(k)])) * std::size_t(c);
                double* d = rows.data() + (std::size_t(y) * std::size_t(out_w) + std::size_t(o)) * std::size_t(c);
                for (int ch = 0; ch < c; ++ch) d[ch] += tx.weight[std::size_t(k)] * s[ch];
            }
    PlaneImage out{out_h, out_w, c, std::vector<double>(std::size_t(out_h) * std::size_t(out_w) * std::size_t(c), 0.0)};
    for (int o = 0; o < out_h; ++o)
        for (int k = ty.start[std::size_t(o)]; k < ty.stop[std::size_t(o)]; ++k) {
            const double w = ty.weight[std::size_t(k)];
            const double* s = rows.data() + std::size_t(ty.index[std::size_t(k)]) * std::size_t(out_w) * std::size_t(c);
            double* d = out.values.data() + std::size_t(o) * std::size_t(out_w) * std::size_t(c);
            for (std::size_t i = 0; i < std::size_t(out_w) * std::size_t(c); ++i) d[i] += w * s[i];
        }
    return out;
}

/// 0..255 values rounded to the nearest byte (clamped).
inline std::vector<std::uint8_t> to_bytes(const PlaneImage& img) {
    std::vector<std::uint8_t> out(img.values.size());
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = std::uint8_t(std::lround(std::clamp(img.values[i], 0.0, 255.0)));
    return out;
}

/// A decoded image as a model wants it: out_h × out_w × channels bytes (channels 1 or 3), alpha
/// composited over `background`, resized and centre-cropped.
inline std::vector<std::uint8_t> fit_image(const ByteImage& src, int out_h, int out_w, int channels,
                                           Rgb background = {}) {
    return to_bytes(resize_and_crop(convert_channels(src, channels, background), out_h, out_w));
}

}  // namespace diffuse::io

#endif
