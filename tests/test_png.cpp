#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "diffuse/io/png.hpp"

#include "file_test_util.hpp"

using namespace diffuse;
using namespace diffuse::io;
namespace fs = std::filesystem;
using namespace test_files;

namespace {

std::vector<std::uint8_t> pattern(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::uint8_t((i * 37 + i / 7) % 256);
    return v;
}

}  // namespace

TEST_CASE("PNG: byte <-> [-1, 1] mapping is exact on the 256 levels") {
    for (int b = 0; b < 256; ++b) CHECK(to_byte(from_byte(std::uint8_t(b))) == b);
    CHECK(from_byte(0) == -1.0f);
    CHECK(from_byte(255) == 1.0f);
    CHECK(to_byte(-5.0f) == 0);
    CHECK(to_byte(5.0) == 255);
    CHECK(to_byte(std::nanf("")) == 0);
    CHECK(to_byte(0.0f) == 128);  // 127.5 rounds away from zero
}

TEST_CASE("PNG: gray, gray+alpha, RGB and RGBA round trip exactly") {
    TempDir t;
    for (int c = 1; c <= 4; ++c) {
        const int h = 5, w = 7;
        const auto px = pattern(std::size_t(h) * w * c);
        const std::string p = t.file("img" + std::to_string(c) + ".png");
        write_png(p, h, w, c, px.data());
        CHECK(read_file(p).substr(1, 3) == "PNG");
        const Image img = read_png(p);
        CHECK(img.height == h);
        CHECK(img.width == w);
        REQUIRE(img.channels == c);
        REQUIRE(img.pixels.size() == px.size());
        for (std::size_t i = 0; i < px.size(); ++i) REQUIRE(to_byte(img.pixels[i]) == px[i]);
    }
    CHECK(fs::directory_iterator(t.path) != fs::directory_iterator());
    for (const auto& e : fs::directory_iterator(t.path)) CHECK(e.path().extension() == ".png");  // no temporary left
}

TEST_CASE("PNG: float tensors round trip within half a level") {
    TempDir t;
    Tensor<float, 6, 4, 3> img;
    for (std::size_t i = 0; i < img.size; ++i) img[i] = std::sin(float(i)) * 0.999f;
    write_png(t.file("f.png"), img);
    Tensor<double, 6, 4, 3> back;
    read_png_into(t.file("f.png"), back);
    for (std::size_t i = 0; i < img.size; ++i)
        CHECK(std::abs(back[i] - img[i]) <= 1.0 / 255.0 + 1e-6);  // half a level, plus float rounding
    Tensor<float, 4, 6, 3> wrong;
    CHECK(contains(error_of([&] { read_png_into(t.file("f.png"), wrong); }), "image is 4x6, expected 6x4"));
}

TEST_CASE("PNG: channel conversion on read") {
    TempDir t;
    // RGBA: an opaque red pixel, a transparent green one, a half-transparent white one.
    const std::vector<std::uint8_t> rgba{255, 0, 0, 255, 0, 255, 0, 0, 255, 255, 255, 128};
    write_png(t.file("a.png"), 1, 3, 4, rgba.data());
    const Image rgb = read_png(t.file("a.png"), 3);
    REQUIRE(rgb.channels == 3);
    CHECK(to_byte(rgb(0, 0, 0)) == 255);
    CHECK(to_byte(rgb(0, 0, 1)) == 0);
    CHECK(to_byte(rgb(0, 1, 1)) == 0);   // transparent -> the black background
    CHECK(to_byte(rgb(0, 2, 0)) > 100);  // half white over black: in between
    CHECK(to_byte(rgb(0, 2, 0)) < 255);

    const std::vector<std::uint8_t> gray{0, 64, 200, 255};
    write_png(t.file("g.png"), 2, 2, 1, gray.data());
    const Image g3 = read_png(t.file("g.png"), 3);
    REQUIRE(g3.channels == 3);
    for (int i = 0; i < 4; ++i)
        for (int c = 0; c < 3; ++c) CHECK(to_byte(g3(i / 2, i % 2, c)) == gray[std::size_t(i)]);
    const Image g1 = read_png(t.file("g.png"), 1);
    for (int i = 0; i < 4; ++i) CHECK(to_byte(g1.pixels[std::size_t(i)]) == gray[std::size_t(i)]);
}

TEST_CASE("PNG: a grid tiles [N, H, W, C] images row by row with gaps") {
    TempDir t;
    constexpr int N = 5, H = 3, W = 2, C = 1;
    Tensor<float, N, H, W, C> batch;
    for (int n = 0; n < N; ++n)
        for (int k = 0; k < H * W; ++k) batch[std::size_t(n * H * W + k)] = -1.0f + 0.1f * float(n) + 0.01f * float(k);
    write_png_grid(t.file("grid.png"), batch, 2, 3);  // 2 rows x 3 cols, 1-pixel white gaps
    const Image g = read_png(t.file("grid.png"));
    CHECK(g.height == 2 * H + 1);
    CHECK(g.width == 3 * W + 2);
    CHECK(g.channels == 1);
    for (int n = 0; n < N; ++n) {
        const int y0 = (n / 3) * (H + 1), x0 = (n % 3) * (W + 1);
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) CHECK(to_byte(g(y0 + y, x0 + x, 0)) == to_byte(batch(n, y, x, 0)));
    }
    CHECK(g(H, 0, 0) == 1.0f);                // the gap row
    CHECK(g(0, W, 0) == 1.0f);                // a gap column
    CHECK(g(H + 1, 2 * (W + 1), 0) == 1.0f);  // the empty sixth cell

    Tensor<float, 2, 2, 2, 3> rgb;
    rgb.fill(0.0f);
    write_png_grid(t.file("rgb.png"), rgb, 1, 2, 0);
    const Image r = read_png(t.file("rgb.png"));
    CHECK(r.width == 4);
    CHECK(r.channels == 3);
    CHECK(contains(error_of([&] { write_png_grid(t.file("x.png"), batch, 2, 2); }), "2x2 cells cannot hold 5 images"));
}

TEST_CASE("PNG: missing, corrupt and truncated files give errors naming the file") {
    TempDir t;
    const auto missing = error_of([&] { read_png(t.file("none.png")); });
    CHECK(contains(missing, "none.png"));
    CHECK(contains(missing, "cannot read"));

    write_file(t.file("text.png"), "this is not a PNG file at all");
    const auto notpng = error_of([&] { read_png(t.file("text.png")); });
    CHECK(contains(notpng, "text.png"));

    const int h = 32, w = 32;
    const auto px = pattern(std::size_t(h) * w * 3);
    write_png(t.file("good.png"), h, w, 3, px.data());
    const std::string bytes = read_file(t.file("good.png"));
    write_file(t.file("cut.png"), bytes.substr(0, bytes.size() / 2));
    const auto cut = error_of([&] { read_png(t.file("cut.png")); });
    INFO(cut);
    CHECK(contains(cut, "cut.png"));
    CHECK(contains(cut, "corrupt"));

    std::string flipped = bytes;
    for (std::size_t i = 60; i < flipped.size() - 20; i += 3) flipped[i] = char(flipped[i] ^ 0x5A);  // inside IDAT
    write_file(t.file("flipped.png"), flipped);
    CHECK(contains(error_of([&] { read_png(t.file("flipped.png")); }), "flipped.png"));

    CHECK(contains(error_of([&] { write_png(t.file("no/dir/x.png"), h, w, 3, px.data()); }), "no/dir/x.png"));
    CHECK_THROWS_AS(write_png(t.file("bad.png"), h, w, 5, px.data()), std::invalid_argument);
}
