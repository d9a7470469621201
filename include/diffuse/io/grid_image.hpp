// A grid picture of many images, as people look at it: images tiled rows x cols, each pixel
// blown up to a scale x scale block (nearest neighbour, so no pixel is invented), and under each row
// an optional strip with a caption. The captions come in as coverage masks already rendered (by
// FreeType in the programs, examples/common/caption_font.hpp), so the library needs no font code.
// The result is 8-bit, for io::write_png.
#ifndef DIFFUSE_IO_GRID_IMAGE_HPP
#define DIFFUSE_IO_GRID_IMAGE_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/io/byte_image.hpp"

namespace diffuse::io {

/// The largest --scale a grid accepts: a 28-pixel image becomes 448 pixels.
inline constexpr int kMaxGridScale = 16;

/// A line of text as ink coverage [height, width], 0 (none) to 255 (full); height is the font's
/// line height even for an empty text, so every caption strip of a grid has the same height.
struct TextMask {
    int height = 0, width = 0;
    std::vector<std::uint8_t> coverage;  // [height, width]
};

struct GridStyle {
    int gap = 1;              // background pixels between cells, before scaling
    int scale = 1;            // each pixel (gaps included) becomes a scale x scale block
    float background = 1.0f;  // in [-1, 1]: white
    int caption_margin = 2;   // pixels of background above and below a caption, and left of it
};

/// The height of the strip under each row for these captions (0 without captions).
inline int caption_strip_height(const std::vector<TextMask>& captions, const GridStyle& style) {
    int h = 0;
    for (const TextMask& m : captions) h = std::max(h, m.height);
    return captions.empty() ? 0 : h + 2 * style.caption_margin;
}

namespace detail {

/// Draws `m` at (y0, x0) of `img`, clipped to `max_width` columns: the colour channels blend from
/// the background towards the ink (black on a light background, white on a dark one); alpha stays.
inline void draw_text(ByteImage& img, const TextMask& m, int y0, int x0, int max_width, std::uint8_t background) {
    const int ink = background >= 128 ? 0 : 255;
    const int colours = img.channels == 2 || img.channels == 4 ? img.channels - 1 : img.channels;
    const int w = std::min(m.width, max_width);
    for (int y = 0; y < m.height && y0 + y < img.height; ++y)
        for (int x = 0; x < w && x0 + x < img.width; ++x) {
            const int a = m.coverage[std::size_t(y) * std::size_t(m.width) + std::size_t(x)];
            std::uint8_t* px =
                img.pixels.data() +
                (std::size_t(y0 + y) * std::size_t(img.width) + std::size_t(x0 + x)) * std::size_t(img.channels);
            for (int c = 0; c < colours; ++c) px[c] = std::uint8_t((px[c] * (255 - a) + ink * a + 127) / 255);
        }
}

}  // namespace detail

/// Tiles n images [n, h, w, c] (floats in [-1, 1]) row-major into rows x cols cells, empty cells and
/// gaps in the background, every pixel scaled to a style.scale block; with `row_captions` (one per
/// row, or none) a strip of caption_strip_height() under each row holds its caption, left-aligned
/// and cut at the grid's width. Throws std::invalid_argument on bad sizes or a scale outside
/// [1, kMaxGridScale], and when the picture would exceed kMaxImagePixels.
template <class T>
ByteImage compose_grid(const T* images, int n, int h, int w, int c, int rows, int cols, const GridStyle& style = {},
                       const std::vector<TextMask>& row_captions = {}) {
    if (n < 0 || h <= 0 || w <= 0 || c < 1 || c > 4 || rows <= 0 || cols <= 0 || style.gap < 0 ||
        style.caption_margin < 0)
        throw std::invalid_argument("grid: bad dimensions");
    if (style.scale < 1 || style.scale > kMaxGridScale)
        throw std::invalid_argument("grid: scale must be in [1, " + std::to_string(kMaxGridScale) + "], not " +
                                    std::to_string(style.scale));
    if (std::size_t(rows) * std::size_t(cols) < std::size_t(n))
        throw std::invalid_argument("grid: " + std::to_string(rows) + "x" + std::to_string(cols) +
                                    " cells cannot hold " + std::to_string(n) + " images");
    if (!row_captions.empty() && int(row_captions.size()) != rows)
        throw std::invalid_argument("grid: " + std::to_string(row_captions.size()) + " captions for " +
                                    std::to_string(rows) + " rows");
    for (const TextMask& m : row_captions)
        if (m.height < 0 || m.width < 0 || m.coverage.size() != std::size_t(m.height) * std::size_t(m.width))
            throw std::invalid_argument("grid: a caption's coverage does not match its size");
    const int s = style.scale, strip = caption_strip_height(row_captions, style);
    const std::uint64_t cell_h = std::uint64_t(h) * std::uint64_t(s), cell_w = std::uint64_t(w) * std::uint64_t(s);
    const std::uint64_t gap = std::uint64_t(style.gap) * std::uint64_t(s);
    const std::uint64_t H = std::uint64_t(rows) * (cell_h + std::uint64_t(strip)) + std::uint64_t(rows - 1) * gap;
    const std::uint64_t W = std::uint64_t(cols) * cell_w + std::uint64_t(cols - 1) * gap;
    if (H * W > kMaxImagePixels)
        throw std::invalid_argument("grid: " + std::to_string(W) + "x" + std::to_string(H) + " pixels is more than " +
                                    std::to_string(kMaxImagePixels) + "; use fewer images or a smaller scale");

    const std::uint8_t bg = to_byte(style.background);
    ByteImage out;
    out.height = int(H);
    out.width = int(W);
    out.channels = c;
    out.pixels.assign(std::size_t(H) * std::size_t(W) * std::size_t(c), bg);
    const std::size_t row_bytes = std::size_t(W) * std::size_t(c);
    for (int i = 0; i < n; ++i) {
        const std::size_t y0 = std::size_t(i / cols) * std::size_t(cell_h + std::uint64_t(strip) + gap);
        const std::size_t x0 = std::size_t(i % cols) * std::size_t(cell_w + gap);
        const T* img = images + std::size_t(i) * std::size_t(h) * std::size_t(w) * std::size_t(c);
        for (int y = 0; y < h; ++y) {
            std::uint8_t* line = out.pixels.data() + (y0 + std::size_t(y) * std::size_t(s)) * row_bytes + x0 * c;
            for (int x = 0; x < w; ++x)
                for (int k = 0; k < c; ++k) {
                    const std::uint8_t b = to_byte(
                        img[(std::size_t(y) * std::size_t(w) + std::size_t(x)) * std::size_t(c) + std::size_t(k)]);
                    for (int r = 0; r < s; ++r) line[(std::size_t(x) * std::size_t(s) + std::size_t(r)) * c + k] = b;
                }
            for (int r = 1; r < s; ++r)  // the other lines of the block repeat the first
                std::copy(line, line + cell_w * std::uint64_t(c), line + std::size_t(r) * row_bytes);
        }
    }
    for (int r = 0; r < int(row_captions.size()); ++r) {
        const int y0 = int(std::uint64_t(r) * (cell_h + std::uint64_t(strip) + gap) + cell_h) + style.caption_margin;
        detail::draw_text(out, row_captions[std::size_t(r)], y0, style.caption_margin,
                          int(W) - 2 * style.caption_margin, bg);
    }
    return out;
}

}  // namespace diffuse::io

#endif
