// PNG images through libpng's simplified API (png_image), which reports errors in a message
// instead of longjmp-ing through our frames. Pixels are channels-last [H, W, C], 8 bits per
// sample in files and floats in [-1, 1] in memory (the model's image range): byte b <-> b / 127.5 - 1.
//
// Writing goes through AtomicFile, so a viewer never sees half an image. Reading converts any
// PNG (gray, palette, RGB, with alpha, 16-bit) to the channel count asked for.
// Needs linking with libpng (CMake: PNG::PNG, carried by the diffuse target).
#ifndef DIFFUSE_IO_PNG_HPP
#define DIFFUSE_IO_PNG_HPP

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "diffuse/core/tensor.hpp"
#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/byte_image.hpp"
#include "diffuse/io/grid_image.hpp"

namespace diffuse::io {

/// An image read from a file: [height, width, channels] in [-1, 1].
struct Image {
    int height = 0, width = 0, channels = 0;
    std::vector<float> pixels;  // [height, width, channels]

    float operator()(int y, int x, int c) const { return pixels[(std::size_t(y) * width + x) * channels + c]; }
};

namespace detail {

inline std::uint32_t png_format_for(int channels) {
    switch (channels) {
        case 1:
            return PNG_FORMAT_GRAY;
        case 2:
            return PNG_FORMAT_GA;
        case 3:
            return PNG_FORMAT_RGB;
        case 4:
            return PNG_FORMAT_RGBA;
        default:
            throw std::invalid_argument("png: channels must be 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA), not " +
                                        std::to_string(channels));
    }
}

/// Frees libpng's state however we leave (png_image_free is safe to call twice).
struct PngImageGuard {
    png_image image;
    PngImageGuard() {
        std::memset(&image, 0, sizeof image);
        image.version = PNG_IMAGE_VERSION;
    }
    ~PngImageGuard() { png_image_free(&image); }
    PngImageGuard(const PngImageGuard&) = delete;
    PngImageGuard& operator=(const PngImageGuard&) = delete;
    std::string message() const { return image.message[0] ? image.message : "unknown libpng error"; }
};

}  // namespace detail

/// Writes 8-bit samples [height, width, channels] (channels 1-4) as a PNG file, atomically.
inline void write_png(const std::string& path, int height, int width, int channels, const std::uint8_t* pixels) {
    if (height <= 0 || width <= 0) throw std::invalid_argument("png " + path + ": image must not be empty");
    detail::PngImageGuard g;
    g.image.width = png_uint_32(width);
    g.image.height = png_uint_32(height);
    g.image.format = detail::png_format_for(channels);
    png_alloc_size_t size = PNG_IMAGE_PNG_SIZE_MAX(g.image);
    std::vector<unsigned char> buf(size);
    if (!png_image_write_to_memory(&g.image, buf.data(), &size, 0, pixels, 0, nullptr))
        throw std::runtime_error("png " + path + ": cannot encode (" + g.message() + ")");
    AtomicFile out(path);
    out.write(buf.data(), size);
    out.commit();
}

/// Writes float or double samples in [-1, 1], [height, width, channels].
template <class T>
void write_png(const std::string& path, int height, int width, int channels, const T* pixels) {
    static_assert(std::is_floating_point_v<T>, "write_png: pixels are bytes or floating point in [-1, 1]");
    std::vector<std::uint8_t> bytes(std::size_t(height) * width * channels);
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = to_byte(pixels[i]);
    write_png(path, height, width, channels, bytes.data());
}

/// One image [H, W, C] from a tensor or view.
template <Shaped X>
void write_png(const std::string& path, const X& image) {
    using S = shape_of<X>;
    static_assert(S::rank == 3, "write_png: expects one image [H, W, C]; use write_png_grid for a batch");
    write_png(path, S::dims[0], S::dims[1], S::dims[2], image.data());
}

/// An 8-bit image (a composed grid, io/grid_image.hpp) as a PNG file.
inline void write_png(const std::string& path, const ByteImage& image) {
    write_png(path, image.height, image.width, image.channels, image.pixels.data());
}

/// Tiles n images [n, h, w, c] in [-1, 1] into a rows x cols grid (row-major, empty cells and
/// the `gap` pixels between cells filled with `background`) and writes it as one PNG; for a scaled
/// grid with captions, io::compose_grid and the ByteImage write_png.
template <class T>
void write_png_grid(const std::string& path, const T* images, int n, int h, int w, int c, int rows, int cols,
                    int gap = 1, float background = 1.0f) {
    ByteImage grid;
    try {
        grid = compose_grid(images, n, h, w, c, rows, cols, GridStyle{gap, 1, background});
    } catch (const std::invalid_argument& e) { throw std::invalid_argument("png " + path + ": " + e.what()); }
    write_png(path, grid);
}

/// A batch [N, H, W, C] from a tensor or view, tiled rows x cols.
template <Shaped X>
void write_png_grid(const std::string& path, const X& images, int rows, int cols, int gap = 1,
                    float background = 1.0f) {
    using S = shape_of<X>;
    static_assert(S::rank == 4, "write_png_grid: expects a batch of images [N, H, W, C]");
    static_assert(S::dims[3] >= 1 && S::dims[3] <= 4,
                  "write_png_grid: images need 1 to 4 channels (gray, gray+alpha, RGB, RGBA)");
    write_png_grid(path, images.data(), S::dims[0], S::dims[1], S::dims[2], S::dims[3], rows, cols, gap, background);
}

/// Reads a PNG into floats in [-1, 1]. channels = 0 keeps the file's layout (1 gray, 2 gray+alpha,
/// 3 RGB, 4 RGBA; palettes become RGB or RGBA); 1-4 converts, compositing alpha onto black when
/// it is dropped. Throws std::runtime_error naming the file on a missing or corrupt file, or one
/// of more than max_pixels pixels (checked before decoding: a small file can claim any size).
inline Image read_png(const std::string& path, int channels = 0, std::uint64_t max_pixels = kMaxImagePixels) {
    detail::PngImageGuard g;
    if (!png_image_begin_read_from_file(&g.image, path.c_str()))
        throw std::runtime_error("png " + path + ": cannot read (" + g.message() + ")");
    detail::check_image_size("png " + path, g.image.width, g.image.height, max_pixels);
    const std::uint32_t stored = g.image.format & (PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA);
    g.image.format = channels == 0 ? stored : detail::png_format_for(channels);
    Image out;
    out.height = int(g.image.height);
    out.width = int(g.image.width);
    out.channels = int(PNG_IMAGE_SAMPLE_CHANNELS(g.image.format));
    const std::size_t bytes = std::size_t(out.width) * std::size_t(out.height) * std::size_t(out.channels);
    std::vector<std::uint8_t> buf(bytes);
    const png_color black{0, 0, 0};
    if (!png_image_finish_read(&g.image, &black, buf.data(), 0, nullptr))
        throw std::runtime_error("png " + path + ": corrupt or truncated (" + g.message() + ")");
    out.pixels.resize(bytes);
    std::transform(buf.begin(), buf.end(), out.pixels.begin(), from_byte);
    return out;
}

/// Reads a PNG into a fixed-shape image [H, W, C]; throws if the file's size differs.
template <Shaped X>
void read_png_into(const std::string& path, X&& image) {
    using S = shape_of<X>;
    static_assert(S::rank == 3, "read_png_into: expects one image [H, W, C]");
    const Image img = read_png(path, S::dims[2]);
    if (img.height != S::dims[0] || img.width != S::dims[1])
        throw std::runtime_error("png " + path + ": image is " + std::to_string(img.width) + "x" +
                                 std::to_string(img.height) + ", expected " + std::to_string(S::dims[1]) + "x" +
                                 std::to_string(S::dims[0]));
    using T = std::remove_cvref_t<decltype(*image.data())>;
    std::transform(img.pixels.begin(), img.pixels.end(), image.data(), [](float v) { return T(v); });
}

}  // namespace diffuse::io

#endif
