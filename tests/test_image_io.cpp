// Image decoding from untrusted files (PNG and JPEG, every layout, truncated, corrupt, zero or huge
// sizes) and the conversions to a model's input: alpha over a background, gray and RGB, resizing
// (area down, bilinear up) and centre cropping, against hand computations on tiny images.
#include <doctest/doctest.h>

#include <zlib.h>

#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "diffuse/io/image.hpp"

#include "file_test_util.hpp"

using namespace diffuse;
using namespace diffuse::io;
using test_files::contains;
using test_files::error_of;

namespace {

PlaneImage plane(int h, int w, int c, std::vector<double> v) { return PlaneImage{h, w, c, std::move(v)}; }

ByteImage bytes(int h, int w, int c, std::vector<std::uint8_t> v) { return ByteImage{h, w, c, std::move(v)}; }

std::vector<std::uint8_t> file_bytes(const std::string& path) {
    const std::string s = test_files::read_file(path);
    return std::vector<std::uint8_t>(s.begin(), s.end());
}

void put_be32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
    for (int k = 0; k < 4; ++k) b[at + std::size_t(k)] = std::uint8_t(v >> (24 - 8 * k));
}

/// A PNG whose IHDR claims width × height (CRC fixed, so only the size is wrong).
std::vector<std::uint8_t> png_claiming(std::vector<std::uint8_t> png, std::uint32_t width, std::uint32_t height) {
    // signature (8), length (4), "IHDR" (4) at 12, width at 16, height at 20, CRC of type+data at 29
    put_be32(png, 16, width);
    put_be32(png, 20, height);
    put_be32(png, 29, std::uint32_t(crc32(0, png.data() + 12, 17)));
    return png;
}

/// A JPEG whose SOF header claims width × height.
std::vector<std::uint8_t> jpeg_claiming(std::vector<std::uint8_t> jpg, std::uint16_t width, std::uint16_t height) {
    for (std::size_t i = 2; i + 8 < jpg.size(); ++i)
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {
            jpg[i + 5] = std::uint8_t(height >> 8);
            jpg[i + 6] = std::uint8_t(height);
            jpg[i + 7] = std::uint8_t(width >> 8);
            jpg[i + 8] = std::uint8_t(width);
            return jpg;
        }
    FAIL("no SOF marker");
    return jpg;
}

}  // namespace

TEST_CASE("resize: area-average when shrinking, by hand") {
    // 4x4 -> 2x2: each output pixel is the mean of a 2x2 block
    std::vector<double> v(16);
    for (int i = 0; i < 16; ++i) v[std::size_t(i)] = i * i;
    const PlaneImage out = resize_and_crop(plane(4, 4, 1, v), 2, 2);
    CHECK(out.values[0] == doctest::Approx((0 + 1 + 16 + 25) / 4.0));
    CHECK(out.values[1] == doctest::Approx((4 + 9 + 36 + 49) / 4.0));
    CHECK(out.values[2] == doctest::Approx((64 + 81 + 144 + 169) / 4.0));
    CHECK(out.values[3] == doctest::Approx((100 + 121 + 196 + 225) / 4.0));

    // 3 -> 2 on both axes: output 0 covers source [0, 1.5), output 1 covers [1.5, 3)
    const PlaneImage o3 = resize_and_crop(plane(3, 3, 1, {0, 3, 6, 30, 33, 36, 60, 63, 66}), 2, 2);
    const auto w0 = [](double a, double b) { return (a + 0.5 * b) / 1.5; };  // [0, 1.5)
    const auto w1 = [](double b, double c) { return (0.5 * b + c) / 1.5; };  // [1.5, 3)
    CHECK(o3.values[0] == doctest::Approx(w0(w0(0, 3), w0(30, 33))));
    CHECK(o3.values[1] == doctest::Approx(w0(w1(3, 6), w1(33, 36))));
    CHECK(o3.values[3] == doctest::Approx(w1(w1(33, 36), w1(63, 66))));
}

TEST_CASE("resize: bilinear when enlarging, with half-pixel centres clamped at the edges, by hand") {
    // 2x2 -> 4x4: along each axis a, 3/4 a + 1/4 b, 1/4 a + 3/4 b, b
    const PlaneImage out = resize_and_crop(plane(2, 2, 1, {0, 100, 200, 40}), 4, 4);
    const std::vector<double> row_w = {1, 0.75, 0.25, 0};  // weight of the first pixel per output
    const double src[2][2] = {{0, 100}, {200, 40}};
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) {
            const double wy = row_w[std::size_t(y)], wx = row_w[std::size_t(x)];
            const double want =
                wy * (wx * src[0][0] + (1 - wx) * src[0][1]) + (1 - wy) * (wx * src[1][0] + (1 - wx) * src[1][1]);
            CHECK(out.values[std::size_t(y * 4 + x)] == doctest::Approx(want));
        }
}

TEST_CASE("resize: the shorter side becomes the target, then the centre is cropped, by hand") {
    CHECK(cover_size(2, 4, 2, 2) == std::array<int, 2>{2, 4});
    CHECK(cover_size(3, 6, 2, 2) == std::array<int, 2>{2, 4});
    CHECK(cover_size(6, 3, 2, 2) == std::array<int, 2>{4, 2});
    CHECK(cover_size(30, 40, 32, 32) == std::array<int, 2>{32, 43});  // 40 * 32 / 30 = 42.67
    CHECK(cover_size(3, 5, 2, 2) == std::array<int, 2>{2, 3});        // 5 * 2 / 3 = 3.33

    // 4 wide x 2 tall -> 2x2: no resampling, columns 1 and 2 kept
    const PlaneImage a = resize_and_crop(plane(2, 4, 1, {0, 1, 2, 3, 10, 11, 12, 13}), 2, 2);
    CHECK(a.values == std::vector<double>{1, 2, 11, 12});
    // 2 tall x 4 wide x 3 channels keeps channels together
    std::vector<double> rgb(24);
    for (int i = 0; i < 24; ++i) rgb[std::size_t(i)] = i;
    const PlaneImage b = resize_and_crop(plane(2, 4, 3, rgb), 2, 2);
    CHECK(b.values == std::vector<double>{3, 4, 5, 6, 7, 8, 15, 16, 17, 18, 19, 20});
    // 6 wide x 3 tall -> 4 x 2 by area, then columns 1, 2 of 4: [1.5, 3) and [3, 4.5) of the source
    std::vector<double> v(18);
    for (int i = 0; i < 18; ++i) v[std::size_t(i)] = (i % 6) * 10 + (i / 6) * 100;
    const PlaneImage c = resize_and_crop(plane(3, 6, 1, v), 2, 2);
    const double col1 = (0.5 * 10 + 20) / 1.5, col2 = (30 + 0.5 * 40) / 1.5;
    const double row0 = (0 + 0.5 * 100) / 1.5, row1 = (0.5 * 100 + 200) / 1.5;
    CHECK(c.values[0] == doctest::Approx(col1 + row0));
    CHECK(c.values[1] == doctest::Approx(col2 + row0));
    CHECK(c.values[2] == doctest::Approx(col1 + row1));
    CHECK(c.values[3] == doctest::Approx(col2 + row1));
    // a tall image crops rows: 2 wide x 4 tall -> rows 1 and 2
    const PlaneImage d = resize_and_crop(plane(4, 2, 1, {0, 1, 10, 11, 20, 21, 30, 31}), 2, 2);
    CHECK(d.values == std::vector<double>{10, 11, 20, 21});
}

TEST_CASE("channels: alpha over the chosen background, gray <-> RGB, rounded once") {
    // RGBA: opaque red, transparent, half-transparent green, over background (0, 128, 255)
    const ByteImage rgba = bytes(1, 3, 4, {255, 0, 0, 255, 9, 9, 9, 0, 0, 255, 0, 51});
    const Rgb bg{0, 128, 255};
    const PlaneImage p = convert_channels(rgba, 3, bg);
    const double a = 51 / 255.0;
    CHECK(p.values == std::vector<double>{255, 0, 0, 0, 128, 255, 0, 255 * a + 128 * (1 - a), 255 * (1 - a)});
    // gray + alpha over white, to gray
    const PlaneImage g = convert_channels(bytes(1, 2, 2, {100, 255, 100, 0}), 1);
    CHECK(g.values == std::vector<double>{100, 255});
    // RGB to gray is Rec. 601 luma; gray to RGB copies
    const PlaneImage l = convert_channels(bytes(1, 1, 3, {200, 100, 50}), 1);
    CHECK(l.values[0] == doctest::Approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50));
    CHECK(convert_channels(bytes(1, 1, 1, {77}), 3).values == std::vector<double>{77, 77, 77});
    // RGBA to gray: composited in RGB first, then luma (background black)
    const PlaneImage k = convert_channels(bytes(1, 1, 4, {200, 100, 50, 0}), 1, Rgb{0, 0, 0});
    CHECK(k.values[0] == doctest::Approx(0.0));
    CHECK(to_bytes(plane(1, 3, 1, {-3, 127.5, 254.6})) == std::vector<std::uint8_t>{0, 128, 255});
    CHECK(fit_image(rgba, 1, 3, 3, bg) == std::vector<std::uint8_t>{255, 0, 0, 0, 128, 255, 0, 153, 204});
}

TEST_CASE("PNG: every layout decodes to its own bytes") {
    test_files::TempDir dir;
    for (int c = 1; c <= 4; ++c) {
        CAPTURE(c);
        std::vector<std::uint8_t> px(std::size_t(3 * 5 * c));
        for (std::size_t i = 0; i < px.size(); ++i) px[i] = std::uint8_t(i * 37 + 11);
        const std::string path = dir.file("img" + std::to_string(c) + ".png");
        write_png(path, 3, 5, c, px.data());
        const ByteImage img = read_image(path);
        CHECK(img.height == 3);
        CHECK(img.width == 5);
        CHECK(img.channels == c);
        CHECK(img.pixels == px);
    }
}

TEST_CASE("JPEG: gray and RGB round-trip within compression error") {
    test_files::TempDir dir;
    for (int c : {1, 3}) {
        CAPTURE(c);
        std::vector<std::uint8_t> px(std::size_t(16 * 24 * c));
        for (int y = 0; y < 16; ++y)
            for (int x = 0; x < 24; ++x)
                for (int k = 0; k < c; ++k)
                    px[std::size_t((y * 24 + x) * c + k)] = std::uint8_t(40 + 4 * x + 3 * y + 20 * k);
        const std::string path = dir.file("img" + std::to_string(c) + ".jpg");
        write_jpeg(path, 16, 24, c, px.data(), 100);
        const ByteImage img = read_image(path);
        CHECK(img.height == 16);
        CHECK(img.width == 24);
        CHECK(img.channels == c);
        int worst = 0;
        for (std::size_t i = 0; i < px.size(); ++i) worst = std::max(worst, std::abs(int(img.pixels[i]) - int(px[i])));
        CHECK(worst <= 4);
    }
    CHECK_THROWS_AS(encode_jpeg(4, 4, 2, std::vector<std::uint8_t>(32).data()), std::invalid_argument);
}

TEST_CASE("untrusted images: truncated, corrupt, empty, unknown, zero or huge sizes give clear errors") {
    test_files::TempDir dir;
    std::vector<std::uint8_t> px(64 * 64 * 3);
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = std::uint8_t((i * 7919) % 251);
    write_png(dir.file("a.png"), 64, 64, 3, px.data());
    write_jpeg(dir.file("a.jpg"), 64, 64, 3, px.data());
    const std::vector<std::uint8_t> png = file_bytes(dir.file("a.png")), jpg = file_bytes(dir.file("a.jpg"));
    const auto decode_error = [](const std::vector<std::uint8_t>& b, std::uint64_t cap = kMaxImagePixels) {
        return error_of([&] { decode_image(b.data(), b.size(), "x.img", cap); });
    };
    for (const auto* file : {&png, &jpg}) {
        const std::vector<std::uint8_t> half(file->begin(), file->begin() + std::ptrdiff_t(file->size() / 2));
        const std::string e = decode_error(half);
        CAPTURE(e);
        CHECK(contains(e, "x.img"));
        CHECK(contains(e, "corrupt or truncated"));
        std::vector<std::uint8_t> garbled = *file;
        for (std::size_t i = garbled.size() / 3; i < garbled.size() - 4; i += 7) garbled[i] ^= 0x5A;
        CHECK(contains(decode_error(garbled), "x.img"));
        CHECK(contains(decode_error(*file, 1000), "more than the limit of 1000 pixels"));
    }
    CHECK(contains(decode_error({}), "empty file"));
    CHECK(contains(decode_error({'G', 'I', 'F', '8', '9', 'a', 0, 0}), "not a PNG or JPEG"));
    // decompression bombs are refused from the header, before any allocation
    const std::string png_bomb = decode_error(png_claiming(png, 100000, 100000));
    CAPTURE(png_bomb);
    CHECK(contains(png_bomb, "100000x100000, more than the limit"));
    const std::string jpg_bomb = decode_error(jpeg_claiming(jpg, 60000, 60000));
    CAPTURE(jpg_bomb);
    CHECK(contains(jpg_bomb, "60000x60000, more than the limit"));
    CHECK(contains(decode_error(png_claiming(png, 0, 64)), "x.img"));
    CHECK(contains(decode_error(jpeg_claiming(jpg, 64, 0)), "x.img"));
    CHECK(contains(error_of([&] { read_image(dir.file("missing.png")); }), "missing.png: cannot open"));
    CHECK(contains(error_of([&] { read_image(dir.path.string()); }), "cannot read"));
}

namespace {

/// Writes a PNG through libpng's full API: 16-bit gray (no gAMA chunk) or a 2-colour palette.
void write_png_raw(const std::string& path, bool palette) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) FAIL("libpng write failed");
    png_init_io(png, f);
    png_set_IHDR(png, info, 2, 1, palette ? 8 : 16, palette ? PNG_COLOR_TYPE_PALETTE : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color colours[2] = {{10, 20, 30}, {200, 150, 100}};
    if (palette) png_set_PLTE(png, info, colours, 2);
    png_write_info(png, info);
    png_byte row[4] = {0x12, 0x34, 0xFF, 0xFF};  // 16-bit big-endian samples 0x1234, 0xFFFF
    png_byte prow[2] = {1, 0};
    png_write_row(png, palette ? prow : row);
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
}

}  // namespace

TEST_CASE("PNG: 16-bit samples are scaled (not gamma-encoded) to 8 bits, palettes become RGB") {
    test_files::TempDir dir;
    write_png_raw(dir.file("g16.png"), false);
    const ByteImage g = read_image(dir.file("g16.png"));
    CHECK(g.channels == 1);
    CHECK(int(g.pixels[0]) == int(std::lround(0x1234 * 255.0 / 65535)));
    CHECK(int(g.pixels[1]) == 255);
    write_png_raw(dir.file("pal.png"), true);
    const ByteImage p = read_image(dir.file("pal.png"));
    CHECK(p.channels == 3);
    CHECK(p.pixels == std::vector<std::uint8_t>{200, 150, 100, 10, 20, 30});
}

namespace {

/// A 4×4 CMYK JPEG through libjpeg's compressor (Adobe's layout: the decoder sees CMYK, not RGB).
std::vector<std::uint8_t> cmyk_jpeg() {
    jpeg_compress_struct cinfo;
    jpeg_error_mgr err;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    unsigned char* out = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&cinfo, &out, &size);
    cinfo.image_width = 4;
    cinfo.image_height = 4;
    cinfo.input_components = 4;
    cinfo.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    std::uint8_t row[16];
    for (int i = 0; i < 16; ++i) row[i] = std::uint8_t(i * 16);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    std::vector<std::uint8_t> bytes(out, out + size);
    std::free(out);
    return bytes;
}

}  // namespace

TEST_CASE("untrusted images, file readers: read_png refuses bombs and zero sizes, CMYK JPEG is refused") {
    test_files::TempDir dir;
    std::vector<std::uint8_t> px(16 * 16 * 3, 100);
    write_png(dir.file("a.png"), 16, 16, 3, px.data());
    const std::vector<std::uint8_t> png = file_bytes(dir.file("a.png"));
    const auto read_png_error = [&](const std::vector<std::uint8_t>& b, int channels = 0) {
        test_files::write_file(dir.file("x.png"), std::string(b.begin(), b.end()));
        return error_of([&] { read_png(dir.file("x.png"), channels); });
    };
    CHECK(read_png_error(png).empty());  // the baseline reads
    // A 100000x100000 claim in a file of a few hundred bytes: refused from the header, before the
    // 30 GB buffer it would need (the pixel cap, as decode_png applies it).
    const std::string bomb = read_png_error(png_claiming(png, 100000, 100000));
    CAPTURE(bomb);
    CHECK(contains(bomb, "x.png"));
    CHECK(contains(bomb, "100000x100000, more than the limit of 67108864 pixels"));
    CHECK(contains(read_png_error(png_claiming(png, 8193, 8192)), "more than the limit"));
    CHECK(contains(error_of([&] { read_png(dir.file("a.png"), 0, 255); }), "16x16, more than the limit of 255 pixels"));
    // zero width or height: libpng refuses the header
    CHECK(contains(read_png_error(png_claiming(png, 0, 16)), "x.png: cannot read"));
    CHECK(contains(read_png_error(png_claiming(png, 16, 0)), "x.png: cannot read"));
    // a channel count no PNG layout has
    CHECK_THROWS_AS(read_png(dir.file("a.png"), 5), std::invalid_argument);
    CHECK_THROWS_AS(read_png(dir.file("a.png"), -1), std::invalid_argument);
    // JPEG: four channels (CMYK) are refused with a reason, not decoded as something else
    const std::vector<std::uint8_t> cmyk = cmyk_jpeg();
    CHECK(contains(error_of([&] { decode_image(cmyk.data(), cmyk.size(), "k.jpg"); }),
                   "k.jpg: a CMYK JPEG, which is not supported"));
}
