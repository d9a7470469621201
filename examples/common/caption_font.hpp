// Captions under grid rows, drawn with FreeType from a TrueType/OpenType file (Debian's
// fonts-dejavu-core by default): UTF-8 text to an io::TextMask of the font's line height, cut with
// an ellipsis where it would run past the row. Program code: FreeType is an optional dependency of
// the programs (CMake defines DIFFUSE_HAVE_FREETYPE when it finds it), never of the library, which
// only places the masks (include/diffuse/io/grid_image.hpp).
#ifndef DIFFUSE_EXAMPLES_CAPTION_FONT_HPP
#define DIFFUSE_EXAMPLES_CAPTION_FONT_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/io/grid_image.hpp"

#ifdef DIFFUSE_HAVE_FREETYPE
#include <ft2build.h>
#include FT_FREETYPE_H
#endif

namespace cli {

/// The code points of UTF-8 text; a malformed byte becomes U+FFFD.
inline std::vector<char32_t> utf8_code_points(const std::string& text) {
    std::vector<char32_t> out;
    for (std::size_t i = 0; i < text.size();) {
        const auto b = static_cast<unsigned char>(text[i]);
        const int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
        char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1Fu) : len == 3 ? (b & 0x0Fu) : (b & 0x07u);
        bool ok = len > 0 && i + std::size_t(len) <= text.size();
        for (int k = 1; ok && k < len; ++k) {
            const auto c = static_cast<unsigned char>(text[i + std::size_t(k)]);
            ok = (c >> 6) == 0x2;
            cp = (cp << 6) | (c & 0x3Fu);
        }
        out.push_back(ok ? cp : char32_t(0xFFFD));
        i += ok ? std::size_t(len) : 1;
    }
    return out;
}

#ifdef DIFFUSE_HAVE_FREETYPE

inline constexpr bool kHaveCaptions = true;

/// One font face at one pixel size.
class CaptionFont {
public:
    /// Throws std::runtime_error naming the file when FreeType cannot open it as a font.
    CaptionFont(const std::string& path, int pixel_size) {
        if (FT_Init_FreeType(&library_)) throw std::runtime_error("FreeType failed to start");
        if (FT_New_Face(library_, path.c_str(), 0, &face_)) {
            FT_Done_FreeType(library_);
            throw std::runtime_error("cannot read the font file " + path + " (give another one with --font)");
        }
        if (FT_Set_Pixel_Sizes(face_, 0, FT_UInt(pixel_size))) {
            FT_Done_Face(face_);
            FT_Done_FreeType(library_);
            throw std::runtime_error("the font " + path + " has no " + std::to_string(pixel_size) + "-pixel size");
        }
        ascent_ = int(face_->size->metrics.ascender >> 6);
        height_ = ascent_ - int(face_->size->metrics.descender >> 6);
    }
    ~CaptionFont() {
        FT_Done_Face(face_);
        FT_Done_FreeType(library_);
    }
    CaptionFont(const CaptionFont&) = delete;
    CaptionFont& operator=(const CaptionFont&) = delete;

    int line_height() const { return height_; }

    /// `text` on one line at most max_width pixels wide: when longer, as many characters as fit
    /// before an ellipsis. The mask is line_height() tall and as wide as the ink needs.
    diffuse::io::TextMask render(const std::string& text, int max_width) {
        std::vector<char32_t> cps = utf8_code_points(text);
        if (advance(cps) > max_width) {
            const char32_t ellipsis = U'\u2026';
            while (!cps.empty() && advance(cps) + advance({ellipsis}) > max_width) cps.pop_back();
            cps.push_back(ellipsis);
        }
        diffuse::io::TextMask m;
        m.height = height_;
        m.width = std::max(0, std::min(advance(cps), max_width));
        m.coverage.assign(std::size_t(m.height) * std::size_t(m.width), 0);
        int pen = 0;
        for (char32_t cp : cps) {
            if (FT_Load_Char(face_, cp, FT_LOAD_RENDER)) continue;  // no glyph: skip it
            const FT_GlyphSlot g = face_->glyph;
            const FT_Bitmap& bm = g->bitmap;
            for (int y = 0; y < int(bm.rows); ++y) {
                const int my = ascent_ - g->bitmap_top + y;
                if (my < 0 || my >= m.height) continue;
                for (int x = 0; x < int(bm.width); ++x) {
                    const int mx = pen + g->bitmap_left + x;
                    if (mx < 0 || mx >= m.width) continue;
                    std::uint8_t& cell = m.coverage[std::size_t(my) * std::size_t(m.width) + std::size_t(mx)];
                    cell = std::max(cell, bm.buffer[std::ptrdiff_t(y) * bm.pitch + x]);
                }
            }
            pen += int(g->advance.x >> 6);
        }
        return m;
    }

private:
    /// The pen travel of the text in pixels.
    int advance(const std::vector<char32_t>& cps) {
        int w = 0;
        for (char32_t cp : cps)
            if (!FT_Load_Char(face_, cp, FT_LOAD_DEFAULT)) w += int(face_->glyph->advance.x >> 6);
        return w;
    }

    FT_Library library_ = nullptr;
    FT_Face face_ = nullptr;
    int ascent_ = 0, height_ = 0;
};

#else

inline constexpr bool kHaveCaptions = false;

/// Without FreeType there is no text: constructing one says how to get it.
class CaptionFont {
public:
    CaptionFont(const std::string&, int) {
        throw std::runtime_error(
            "captions need FreeType, and these programs were built without it "
            "(install libfreetype-dev and rebuild, or use --no-captions)");
    }
    int line_height() const { return 0; }
    diffuse::io::TextMask render(const std::string&, int) { return {}; }
};

#endif

}  // namespace cli

#endif
