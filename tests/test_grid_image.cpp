// Grid pictures (include/diffuse/io/grid_image.hpp) and the programs' grid flags
// (examples/common/grid_flags.hpp, caption_font.hpp): the nearest-neighbour upscale, scale 1 giving
// the bytes grids always had, caption strips, the ellipsis, and the checks of --scale and --font.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "diffuse/io/grid_image.hpp"
#include "diffuse/io/png.hpp"

#include "../examples/common/grid_flags.hpp"
#include "file_test_util.hpp"
#include "test_skip.hpp"

using namespace diffuse;
using namespace diffuse::io;

namespace {

constexpr int kN = 5, kH = 3, kW = 4, kC = 3, kRows = 2, kCols = 3;

/// The pattern of tests/data/grid_scale1.png, which write_png_grid wrote before grids could scale:
/// image i, value k is -1.2 + 0.037 * ((7i + 3k) mod 71) (some clip at -1 and 1).
std::vector<float> pattern() {
    std::vector<float> v(std::size_t(kN) * kH * kW * kC);
    for (int i = 0; i < kN; ++i)
        for (int k = 0; k < kH * kW * kC; ++k)
            v[std::size_t(i * kH * kW * kC + k)] = -1.2f + 0.037f * float((7 * i + 3 * k) % 71);
    return v;
}

std::string file_bytes(const std::string& path) {
    REQUIRE(std::filesystem::is_regular_file(path));
    return test_files::read_file(path);
}

bool has_font() { return cli::kHaveCaptions && std::filesystem::is_regular_file(cli::kDefaultFont); }

}  // namespace

TEST_CASE("grid: scale 1 writes the bytes an unscaled grid always had") {
    test_files::TempDir t;
    const auto v = pattern();
    write_png(t.file("composed.png"), compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols));
    write_png_grid(t.file("grid.png"), v.data(), kN, kH, kW, kC, kRows, kCols);
    const std::string old = file_bytes(std::string(DIFFUSE_TEST_DATA_DIR) + "/grid_scale1.png");
    CHECK(file_bytes(t.file("composed.png")) == old);
    CHECK(file_bytes(t.file("grid.png")) == old);
    cli::GridFlags flags;  // the programs' path, without captions
    flags.scale = 1;
    cli::write_grid(t.file("flags.png"), v.data(), kN, kH, kW, kC, kRows, kCols, {}, flags);
    CHECK(file_bytes(t.file("flags.png")) == old);
}

TEST_CASE("grid: --scale N turns every pixel, gaps included, into an N x N block") {
    const auto v = pattern();
    const ByteImage one = compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols);
    for (int s : {2, 3, 5}) {
        GridStyle style;
        style.scale = s;
        const ByteImage big = compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols, style);
        REQUIRE(big.height == s * one.height);
        REQUIRE(big.width == s * one.width);
        REQUIRE(big.channels == kC);
        int wrong = 0;
        for (int y = 0; y < big.height; ++y)
            for (int x = 0; x < big.width; ++x)
                for (int c = 0; c < kC; ++c) wrong += big(y, x, c) != one(y / s, x / s, c);
        CHECK_MESSAGE(wrong == 0, "scale " << s);
    }
}

TEST_CASE("grid: bad scales and caption counts are refused") {
    const auto v = pattern();
    for (int s : {0, -1, 100}) {
        GridStyle style;
        style.scale = s;
        CHECK_THROWS_WITH_AS(compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols, style),
                             doctest::Contains("scale must be in [1, 16]"), std::invalid_argument);
        cli::GridFlags f;
        f.scale = s;
        const std::string problem = cli::grid_problem(f, true);
        CHECK(problem.rfind("--scale must be in [1, 16], not " + std::to_string(s), 0) == 0);
    }
    CHECK(cli::grid_problem(cli::GridFlags{}, true).empty());
    CHECK_THROWS_WITH_AS(compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols, GridStyle{}, {TextMask{}}),
                         doctest::Contains("1 captions for 2 rows"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(compose_grid(v.data(), kN, kH, kW, kC, 2, 2), doctest::Contains("2x2 cells cannot hold 5"),
                         std::invalid_argument);
}

TEST_CASE("grid: a missing font names its path and --font") {
    cli::GridFlags f;
    f.captions = true;
    f.font = "/no/such/dir/font.ttf";
    const std::string problem = cli::grid_problem(f, true);
    if (!cli::kHaveCaptions) {
        CHECK(problem.find("without FreeType") != std::string::npos);
        DIFFUSE_SKIP("built without FreeType");
    }
    CHECK(problem.rfind("--font: the font file /no/such/dir/font.ttf does not exist", 0) == 0);
    CHECK(problem.find("--font FILE") != std::string::npos);
    CHECK(cli::grid_problem(f, false).empty());  // no grid written: the font is not needed
    f.captions = false;
    CHECK(cli::grid_problem(f, true).empty());
    // A file that is not a font: FreeType's refusal names it too.
    test_files::TempDir t;
    std::ofstream(t.file("notafont.ttf")) << "hello";
    const std::string bad = t.file("notafont.ttf");
    CHECK_THROWS_WITH(cli::CaptionFont(bad, 12), doctest::Contains(bad.c_str()));
    f.font = bad;
    f.captions = true;
    CHECK(cli::grid_problem(f, true) == "--font: cannot read the font file " + bad + " (give another one with --font)");
}

TEST_CASE("grid: captions add a strip of the line height under each row, with ink in it") {
    if (!has_font()) DIFFUSE_SKIP("no FreeType or no " << cli::kDefaultFont);
    const auto v = pattern();
    cli::GridFlags f;
    f.scale = 2;
    f.captions = true;
    cli::CaptionFont font(f.font, cli::caption_pixel_size(f.scale));
    const int margin = std::max(2, f.scale), strip = font.line_height() + 2 * margin;
    REQUIRE(font.line_height() > 0);

    f.captions = false;
    const ByteImage plain = cli::compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols, {"a", "a"}, f);
    f.captions = true;
    const ByteImage empty = cli::compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols, {"", ""}, f);
    const ByteImage a = cli::compose_grid(v.data(), kN, kH, kW, kC, kRows, kCols, {"a", ""}, f);
    CHECK(empty.width == plain.width);
    CHECK(empty.height == plain.height + kRows * strip);
    CHECK(a.height == empty.height);

    const int cell = kH * f.scale, pitch = cell + strip + f.scale;  // a row: images, strip, gap
    const auto dark_in = [](const ByteImage& g, int y0, int y1) {
        int dark = 0;
        for (int y = y0; y < y1; ++y)
            for (int x = 0; x < g.width; ++x) dark += g(y, x, 0) < 128 && g(y, x, 1) < 128 && g(y, x, 2) < 128;
        return dark;
    };
    CHECK(dark_in(empty, cell, cell + strip) == 0);  // "" leaves the strip white
    CHECK(dark_in(a, cell, cell + strip) > 3);       // "a" inks it
    CHECK(dark_in(a, pitch + cell, pitch + cell + strip) == 0);
    // The images are where they were, each row moved down by the strips above it.
    int moved = 0;
    for (int r = 0; r < kRows; ++r)
        for (int y = 0; y < cell; ++y)
            for (int x = 0; x < plain.width; ++x)
                for (int c = 0; c < kC; ++c) moved += a(r * pitch + y, x, c) != plain(r * (cell + f.scale) + y, x, c);
    CHECK(moved == 0);
}

TEST_CASE("grid: a caption longer than the row ends in an ellipsis within it") {
    if (!has_font()) DIFFUSE_SKIP("no FreeType or no " << cli::kDefaultFont);
    cli::CaptionFont font(cli::kDefaultFont, 14);
    const std::string text = "a photo of a sparkly ankle boot, seen from the front, on a white background";
    const TextMask full = font.render(text, 10000);
    const TextMask cut = font.render(text, 120);
    const TextMask dots = font.render("\u2026", 10000);
    CHECK(full.width > 120);
    CHECK(cut.width <= 120);
    CHECK(cut.width > 120 - 2 * dots.width - 14);  // as many characters as fit, not fewer
    // The cut text ends in the ellipsis: its last columns are the ellipsis glyph's, not the text's.
    REQUIRE(dots.width > 0);
    int differ_from_dots = 0, differ_from_text = 0;
    for (int y = 0; y < cut.height; ++y)
        for (int x = 0; x < dots.width; ++x) {
            const auto c = cut.coverage[std::size_t(y * cut.width + cut.width - dots.width + x)];
            differ_from_dots += c != dots.coverage[std::size_t(y * dots.width + x)];
            differ_from_text += c != full.coverage[std::size_t(y * full.width + cut.width - dots.width + x)];
        }
    CHECK(differ_from_dots == 0);
    CHECK(differ_from_text > 0);
    const TextMask fits = font.render("a bag", 120);  // a short one is left whole
    CHECK(fits.width == font.render("a bag", 10000).width);
}

TEST_CASE("grid: UTF-8 captions decode to code points, bad bytes to U+FFFD") {
    CHECK(cli::utf8_code_points("a\xc3\xa9\xe2\x80\xa6") == std::vector<char32_t>{U'a', U'\u00e9', U'\u2026'});
    CHECK(cli::utf8_code_points("\xff"
                                "b") == std::vector<char32_t>{char32_t(0xFFFD), U'b'});
    CHECK(cli::utf8_code_points("\xe2\x80") == std::vector<char32_t>{char32_t(0xFFFD), char32_t(0xFFFD)});
}

TEST_CASE("grid: --captions and --no-captions override the program's default") {
    cli::GridFlags g;
    cli::settle_captions(g, true);
    CHECK(g.captions == cli::kHaveCaptions);
    cli::settle_captions(g, false);
    CHECK(!g.captions);
    g.captions_flag = true;
    cli::settle_captions(g, false);
    CHECK(g.captions);
    g.captions_flag = false;
    g.no_captions_flag = true;
    cli::settle_captions(g, true);
    CHECK(!g.captions);
    g.captions_flag = true;
    CHECK(cli::grid_problem(g, true) == "give either --captions or --no-captions, not both");
}
