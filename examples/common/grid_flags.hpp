// The flags every program that writes a grid PNG shares — --scale, --captions, --no-captions,
// --font — their checks, and the writing: io::compose_grid with captions rendered by FreeType
// (caption_font.hpp). Program code, tested in tests/test_grid_image.cpp.
//
// The default scale is 3: a 28-pixel Fashion-MNIST image becomes 84 pixels (a 32-pixel emoji 96),
// big enough to see on a screen, and the widest grids the README shows (ten images in a row: 867
// pixels) stay under GitHub's ~880-pixel column, so a browser shows them unshrunk; at 4 they
// would be scaled back down. --scale 1 writes the bytes an unscaled grid always had.
#ifndef DIFFUSE_EXAMPLES_GRID_FLAGS_HPP
#define DIFFUSE_EXAMPLES_GRID_FLAGS_HPP

#include <algorithm>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "diffuse/io/grid_image.hpp"
#include "diffuse/io/png.hpp"

#include "caption_font.hpp"
#include "cli.hpp"

namespace cli {

inline constexpr int kDefaultGridScale = 3;
inline constexpr const char* kDefaultFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct GridFlags {
    int scale = kDefaultGridScale;
    bool captions = false;  // settled by settle_captions() from the two flags and the program's default
    bool captions_flag = false, no_captions_flag = false;  // --captions, --no-captions as typed
    std::string font = kDefaultFont;
};

/// Registers --scale, --captions, --no-captions and --font. `captions_default` is what the help says
/// captions are when neither flag is given.
inline void add_grid_options(Parser& p, GridFlags& g, const std::string& captions_default) {
    p.option("--scale", g.scale,
             "--grid: each pixel becomes an N x N block (1 to " + std::to_string(diffuse::io::kMaxGridScale) +
                 "; 1: unscaled)")
        .flag("--captions", g.captions_flag, "--grid: a caption under each row (default: " + captions_default + ")")
        .flag("--no-captions", g.no_captions_flag, "--grid: no captions")
        .option("--font", g.font, "--grid: the TrueType/OpenType font of the captions");
}

/// The caption text's pixel size at a grid scale: 10 pixels unscaled, 14 at the default 3.
inline int caption_pixel_size(int scale) { return 8 + 2 * scale; }

/// After parsing: captions are on with --captions, off with --no-captions, else `by_default` (on
/// where a grid row is one prompt or one kind of image) where this build has FreeType.
inline void settle_captions(GridFlags& g, bool by_default) {
    g.captions = g.captions_flag || (!g.no_captions_flag && by_default && kHaveCaptions);
}

/// A copy with captions settled, for code that holds the flags const.
inline GridFlags settled(GridFlags g, bool by_default) {
    settle_captions(g, by_default);
    return g;
}

/// The first problem with the flags (settled), or "". The font is checked only when captions will be drawn.
inline std::string grid_problem(const GridFlags& g, bool writes_grid) {
    if (g.scale < 1 || g.scale > diffuse::io::kMaxGridScale)
        return "--scale must be in [1, " + std::to_string(diffuse::io::kMaxGridScale) + "], not " +
               std::to_string(g.scale);
    if (g.captions_flag && g.no_captions_flag) return "give either --captions or --no-captions, not both";
    if (!writes_grid || !g.captions) return {};
    if (!kHaveCaptions)
        return "--captions: these programs were built without FreeType (install libfreetype-dev and rebuild, or "
               "use --no-captions)";
    std::error_code ec;
    if (!std::filesystem::is_regular_file(g.font, ec))
        return "--font: the font file " + g.font +
               " does not exist (install fonts-dejavu-core, give another font with --font FILE, or use --no-captions)";
    try {  // a file FreeType cannot read is found now, not after the images are made
        CaptionFont(g.font, caption_pixel_size(g.scale));
    } catch (const std::exception& e) { return std::string("--font: ") + e.what(); }
    return {};
}

/// The grid picture of n images [n, h, w, c] in [-1, 1], rows x cols, with `row_captions` (one per
/// row) under the rows when the flags ask for captions.
template <class T>
diffuse::io::ByteImage compose_grid(const T* images, int n, int h, int w, int c, int rows, int cols,
                                    const std::vector<std::string>& row_captions, const GridFlags& g) {
    diffuse::io::GridStyle style;
    style.scale = g.scale;
    style.caption_margin = std::max(2, g.scale);
    std::vector<diffuse::io::TextMask> masks;
    if (g.captions && !row_captions.empty()) {
        CaptionFont font(g.font, caption_pixel_size(g.scale));
        const int width = cols * w * g.scale + (cols - 1) * style.gap * g.scale - 2 * style.caption_margin;
        for (const std::string& text : row_captions) masks.push_back(font.render(text, width));
    }
    return diffuse::io::compose_grid(images, n, h, w, c, rows, cols, style, masks);
}

/// compose_grid() written as a PNG.
template <class T>
void write_grid(const std::string& path, const T* images, int n, int h, int w, int c, int rows, int cols,
                const std::vector<std::string>& row_captions, const GridFlags& g) {
    diffuse::io::write_png(path, compose_grid(images, n, h, w, c, rows, cols, row_captions, g));
}

}  // namespace cli

#endif
