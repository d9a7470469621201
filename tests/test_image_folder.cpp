// The image-folder data set: metadata.jsonl and metadata.csv, PNG and JPEG, gray and RGB, alpha
// over a chosen background, resizing; bad entries stop the load or are skipped and counted, with
// file and line; paths out of the folder are refused; batches are seeded and resumable; and the
// folder is never written.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "diffuse/data/image_folder.hpp"
#include "diffuse/io/jpeg.hpp"
#include "diffuse/io/png.hpp"

#include "file_test_util.hpp"

using namespace diffuse;
using namespace diffuse::data;
using test_files::contains;
using test_files::error_of;
using test_files::TempDir;

namespace {

/// An image of h × w × c bytes, distinct per `tag`.
std::vector<std::uint8_t> pattern(int h, int w, int c, int tag) {
    std::vector<std::uint8_t> px(std::size_t(h * w * c));
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = std::uint8_t((int(i) * 13 + tag * 41) % 256);
    return px;
}

/// A folder of `count` RGB PNGs 4x4, i.png captioned "image i", as metadata.jsonl.
void make_folder(const TempDir& dir, int count) {
    std::string meta;
    for (int i = 0; i < count; ++i) {
        const auto px = pattern(4, 4, 3, i);
        io::write_png(dir.file(std::to_string(i) + ".png"), 4, 4, 3, px.data());
        meta += "{\"file_name\": \"" + std::to_string(i) + ".png\", \"text\": \"image " + std::to_string(i) + "\"}\n";
    }
    test_files::write_file(dir.file("metadata.jsonl"), meta);
}

ImageFolderOptions options(int resolution, int channels, OnError on_error = OnError::stop) {
    ImageFolderOptions o;
    o.resolution = resolution;
    o.channels = channels;
    o.on_error = on_error;
    o.report = nullptr;
    return o;
}

/// Every file under dir with its size and modification time (nanoseconds).
std::map<std::string, std::pair<std::uintmax_t, long long>> snapshot(const std::filesystem::path& dir) {
    std::map<std::string, std::pair<std::uintmax_t, long long>> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
        struct stat st {};
        ::lstat(e.path().c_str(), &st);
        const long long mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        out[e.path().string()] = {std::uintmax_t(st.st_size), mtime};
    }
    return out;
}

}  // namespace

TEST_CASE("image folder: PNG and JPEG, RGB and gray, alpha over the chosen background, resized, in batches") {
    TempDir dir;
    const auto rgb = pattern(4, 4, 3, 1);
    io::write_png(dir.file("rgb.png"), 4, 4, 3, rgb.data());
    const std::vector<std::uint8_t> rgba = {10, 20, 30, 255, 200, 100, 50, 0, 0, 0, 0, 128, 90, 90, 90, 255};
    io::write_png(dir.file("rgba.png"), 2, 2, 4, rgba.data());
    std::vector<std::uint8_t> gray(8 * 8, 77);
    io::write_jpeg(dir.file("gray.jpg"), 8, 8, 1, gray.data(), 100);
    std::filesystem::create_directory(dir.path / "sub");
    const auto wide = pattern(2, 8, 3, 2);
    io::write_jpeg(dir.file("sub/wide.jpeg"), 2, 8, 3, wide.data(), 100);
    test_files::write_file(dir.file("metadata.jsonl"),
                           "{\"file_name\": \"rgb.png\", \"text\": \"a pattern\"}\n"
                           "\n"
                           "{\"text\": \"a transparent square\", \"file_name\": \"rgba.png\", \"extra\": 1}\n"
                           "{\"file_name\": \"gray.jpg\", \"text\": \"a gray square\"}\r\n"
                           "{\"file_name\": \"sub/wide.jpeg\", \"text\": \"a wide \\\"image\\\"\"}");
    ImageFolderOptions opt = options(2, 3);
    opt.background = io::Rgb{0, 255, 0};
    const ImageFolder f(dir.path.string(), opt);
    REQUIRE(f.size() == 4);
    CHECK(f.skipped() == 0);
    CHECK(f.file_name(1) == "rgba.png");
    CHECK(f.line(1) == 3);  // blank line 2 is ignored, line numbers count it
    CHECK(f.texts(3) == std::vector<std::string>{"a wide \"image\""});
    CHECK(f.image_bytes() == 2 * 2 * 3);
    // rgb.png 4x4 -> 2x2 by area: each pixel the mean of a 2x2 block, rounded
    for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x)
            for (int c = 0; c < 3; ++c) {
                const auto at = [&](int yy, int xx) { return double(rgb[std::size_t((yy * 4 + xx) * 3 + c)]); };
                const double mean =
                    (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4;
                CHECK(int(f.pixels(0)[(y * 2 + x) * 3 + c]) == int(std::lround(mean)));
            }
    // rgba.png stays 2x2: opaque, transparent (green), half (128/255 of black over green), opaque
    const auto half = std::uint8_t(std::lround(255 * 127 / 255.0));
    const std::vector<std::uint8_t> want_rgba = {10, 20, 30, 0, 255, 0, 0, half, 0, 90, 90, 90};
    CHECK(std::vector<std::uint8_t>(f.pixels(1), f.pixels(1) + 12) == want_rgba);
    // gray JPEG to RGB: three equal channels
    for (int k = 0; k < 12; ++k) CHECK(std::abs(int(f.pixels(2)[k]) - 77) <= 1);
    // batches of 2, [2, 2, 2, 3] in [-1, 1] through the byte table, captions from metadata
    ImageFolderBatches<float, 2, 2, 3> batches(f, 5);
    CHECK(batches.batches_per_epoch() == 2);
    auto images = make<Tensor<float, 2, 2, 2, 3>>();
    std::array<std::string, 2> caps;
    std::int32_t labels[2];
    for (int k = 0; k < 2; ++k) {
        const int first[2] = {batches.order(k * 2), batches.order(k * 2 + 1)};  // before next() reshuffles
        batches.next(images->view(), caps, labels);
        for (int i = 0; i < 2; ++i) {
            const int idx = first[i];
            CHECK(labels[i] == -1);
            CHECK(caps[std::size_t(i)] == f.texts(idx)[0]);
            for (int j = 0; j < 12; ++j)
                CHECK(images->item(i).data()[j] == byte_to_unit_table<float>()[f.pixels(idx)[j]]);
        }
    }
    // gray, 4x4: the same folder, one channel each
    const ImageFolder g(dir.path.string(), options(4, 1));
    CHECK(g.channels() == 1);
    for (int k = 0; k < 16; ++k) CHECK(std::abs(int(g.pixels(2)[k]) - 77) <= 1);
    CHECK_THROWS_AS((ImageFolderBatches<float, 2, 2, 3>(g, 0)), std::invalid_argument);  // 4x4x1, not 2x2x3
}

TEST_CASE("image folder: metadata.csv with quoted fields") {
    TempDir dir;
    make_folder(dir, 3);
    std::filesystem::remove(dir.path / "metadata.jsonl");
    test_files::write_file(dir.file("metadata.csv"),
                           "id,text,file_name\r\n"
                           "1,\"a cat, sitting\",0.png\r\n"
                           "2,\"say \"\"hi\"\"\",1.png\n"
                           "\n"
                           "3,\"two\nlines\",2.png\n");
    const ImageFolder f(dir.path.string(), options(4, 3));
    REQUIRE(f.size() == 3);
    CHECK(f.texts(0)[0] == "a cat, sitting");
    CHECK(f.texts(1)[0] == "say \"hi\"");
    CHECK(f.texts(2)[0] == "two\nlines");
    CHECK(f.line(2) == 5);
    CHECK(f.pixels(1)[5] == pattern(4, 4, 3, 1)[5]);

    test_files::write_file(dir.file("metadata.csv"), "file_name,text\n0.png,one\n1.png,two,extra\n2.png,\n");
    const std::string e = error_of([&] { ImageFolder(dir.path.string(), options(4, 3)); });
    CHECK(contains(e, "metadata.csv line 3: 3 fields, the header has 2"));
    std::ostringstream report;
    ImageFolderOptions skip = options(4, 3, OnError::skip);
    skip.report = &report;
    const ImageFolder s(dir.path.string(), skip);
    CHECK(s.size() == 1);
    CHECK(s.skipped() == 2);
    CHECK(contains(s.problems()[1], "metadata.csv line 4: no caption"));
    CHECK(contains(report.str(), "skipped 2 of 3 entries"));
    test_files::write_file(dir.file("metadata.csv"), "name,caption\n0.png,one\n");
    CHECK(contains(error_of([&] { ImageFolder(dir.path.string(), options(4, 3)); }), "file_name and text"));
}

TEST_CASE("image folder: bad lines and images stop the load with file and line, or are skipped and counted") {
    TempDir dir;
    make_folder(dir, 4);
    test_files::write_file(dir.file("corrupt.png"), test_files::read_file(dir.file("0.png")).substr(0, 40));
    test_files::write_file(dir.file("notes.png"), "not an image");
    test_files::write_file(dir.file("metadata.jsonl"),
                           "{\"file_name\": \"0.png\", \"text\": \"zero\"}\n"
                           "{\"file_name\": \"corrupt.png\", \"text\": \"broken\"}\n"
                           "{\"file_name\": \"1.png\"}\n"
                           "{\"file_name\": \"2.png\", \"text\": \"\"}\n"
                           "{\"file_name\": \"3.png\", \"text\": \"three\"\n"
                           "{\"file_name\": \"missing.png\", \"text\": \"gone\"}\n"
                           "{\"file_name\": \"notes.png\", \"text\": \"text\"}\n"
                           "[1, 2]\n"
                           "{\"file_name\": 7, \"text\": \"seven\"}\n"
                           "{\"file_name\": \"3.png\", \"text\": [\"three\", 3]}\n"
                           "{\"file_name\": \"3.png\", \"text\": [\"three\", \"drei\"]}\n");
    const std::string stop = error_of([&] { ImageFolder(dir.path.string(), options(4, 3)); });
    CAPTURE(stop);
    CHECK(contains(stop, "metadata.jsonl line 2: image \"corrupt.png\""));
    CHECK(contains(stop, "png corrupt.png: cannot read"));

    std::ostringstream report;
    ImageFolderOptions skip = options(4, 3, OnError::skip);
    skip.report = &report;
    const ImageFolder f(dir.path.string(), skip);
    CHECK(f.size() == 2);
    CHECK(f.skipped() == 9);
    CHECK(f.texts(1) == std::vector<std::string>{"three", "drei"});
    const std::vector<std::string> want = {"line 2: image \"corrupt.png\"",   "line 3: no caption",
                                           "line 4: empty caption",           "line 5: invalid JSON",
                                           "line 6: image \"missing.png\"",   "line 7: image \"notes.png\"",
                                           "line 8: expected a JSON object",  "line 9: \"file_name\" must be",
                                           "line 10: \"text\" holds a number"};
    REQUIRE(f.problems().size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(f.problems()[i]);
        CHECK(contains(f.problems()[i], want[i]));
    }
    CHECK(contains(f.problems()[4], "cannot open"));
    CHECK(contains(f.problems()[5], "not a PNG or JPEG"));
    CHECK(contains(report.str(), "skipped 9 of 11 entries"));
    CHECK(contains(report.str(), "skipped: "));
}

TEST_CASE("image folder: paths out of the folder are refused, whatever the error policy") {
    TempDir outer;
    std::filesystem::create_directory(outer.path / "data");
    const auto secret = pattern(4, 4, 3, 9);
    io::write_png(outer.file("secret.png"), 4, 4, 3, secret.data());
    const std::string folder = (outer.path / "data").string();
    io::write_png(folder + "/ok.png", 4, 4, 3, secret.data());
    std::filesystem::create_symlink(outer.path / "secret.png", outer.path / "data" / "link.png");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"../../etc/passwd", "leads out of the folder (\"..\")"}, {"../secret.png", "leads out of the folder"},
        {"sub/../../secret.png", "leads out of the folder"},      {"/etc/passwd", "is an absolute path"},
        {outer.file("secret.png"), "is an absolute path"},        {"link.png", "through a symbolic link"},
    };
    for (const auto& [name, message] : cases) {
        CAPTURE(name);
        test_files::write_file(folder + "/metadata.jsonl",
                               "{\"file_name\": \"ok.png\", \"text\": \"ok\"}\n"
                               "{\"file_name\": " +
                                   io::json::quote(name) + ", \"text\": \"x\"}\n");
        for (OnError policy : {OnError::stop, OnError::skip}) {
            const std::string e = error_of([&] { ImageFolder(folder, options(4, 3, policy)); });
            CAPTURE(e);
            CHECK(contains(e, "metadata.jsonl line 2: "));
            CHECK(contains(e, message));
        }
    }
    ImageFolderOptions other = options(4, 3);
    other.metadata = "../metadata.jsonl";
    CHECK(contains(error_of([&] { ImageFolder(folder, other); }), "leads out of the folder"));
}

TEST_CASE("image folder: empty folder, no usable entries, both metadata files, fewer images than a batch") {
    TempDir dir;
    const auto load_error = [&](OnError policy = OnError::stop) {
        return error_of([&] { ImageFolder(dir.path.string(), options(4, 3, policy)); });
    };
    CHECK(contains(load_error(), "no metadata.jsonl or metadata.csv"));
    CHECK(contains(error_of([&] { ImageFolder(dir.file("nothing"), options(4, 3)); }), "not a directory"));
    test_files::write_file(dir.file("metadata.jsonl"), "\n\n");
    CHECK(contains(load_error(), "no usable images (0 entries"));
    test_files::write_file(dir.file("metadata.jsonl"), "{\"file_name\": \"a.png\"}\n");
    CHECK(contains(load_error(OnError::skip), "no usable images (1 entries, 1 skipped)"));
    test_files::write_file(dir.file("metadata.csv"), "file_name,text\n");
    CHECK(contains(load_error(), "both metadata.jsonl and metadata.csv"));
    std::filesystem::remove(dir.path / "metadata.csv");
    make_folder(dir, 3);
    const ImageFolder f(dir.path.string(), options(4, 3));
    CHECK(contains(error_of([&] { ImageFolderBatches<float, 4, 4, 3>(f, 0); }),
                   "3 images are fewer than one batch of 4"));
    CHECK_THROWS_AS(ImageFolder(dir.path.string(), options(4, 2)), std::invalid_argument);
}

TEST_CASE("image folder batches: same seed same batches, seek resumes exactly, captions drawn per epoch") {
    TempDir dir;
    make_folder(dir, 10);
    // entry 9 has three captions: one is drawn per epoch, the same for the same seed and epoch
    std::string meta = test_files::read_file(dir.file("metadata.jsonl"));
    meta += "{\"file_name\": \"9.png\", \"text\": [\"first\", \"second\", \"third\"]}\n";
    test_files::write_file(dir.file("metadata.jsonl"), meta);
    const ImageFolder f(dir.path.string(), options(4, 3));
    REQUIRE(f.size() == 11);
    constexpr int N = 3;  // 3 batches an epoch, 2 images dropped
    using B = ImageFolderBatches<double, N, 4, 3>;
    static_assert(CaptionedImageSource<ImageFolder, double>);
    const auto run = [&](B& b, int count) {
        std::vector<std::string> out;
        auto images = make<Tensor<double, N, 4, 4, 3>>();
        std::array<std::string, N> caps;
        for (int k = 0; k < count; ++k) {
            b.next(images->view(), caps);
            for (int i = 0; i < N; ++i) {
                std::string key = caps[std::size_t(i)] + "|";
                for (double v : images->item(i)) key += std::to_string(v) + ",";
                out.push_back(key);
            }
        }
        return out;
    };
    B a(f, 11, {0.2}), b(f, 11, {0.2}), other(f, 12, {0.2});
    const auto ra = run(a, 30), rb = run(b, 30), ro = run(other, 30);
    CHECK(ra == rb);
    CHECK(ra != ro);
    B r(f, 11, {0.2});
    r.seek(4, 2);
    const auto rr = run(r, 6);
    CHECK(rr == std::vector<std::string>(ra.begin() + (4 * 3 + 2) * N, ra.begin() + (4 * 3 + 2 + 6) * N));
    std::set<std::string> drawn;
    int empty = 0;
    for (std::uint64_t e = 0; e < 40; ++e) {
        std::string c;
        f.caption(c, 10, 11, e);
        drawn.insert(c);
        std::string again;
        f.caption(again, 10, 11, e);
        CHECK(c == again);
    }
    for (const auto& s : ra) empty += s[0] == '|';
    CHECK(drawn == std::set<std::string>{"first", "second", "third"});
    CHECK(empty > 0);                    // dropout reaches folder captions too
    CHECK(f.max_caption_length() == 7);  // "image 9", "second"
}

TEST_CASE("image folder: loading and serving batches writes nothing in the folder") {
    TempDir dir;
    make_folder(dir, 6);
    std::filesystem::create_directory(dir.path / "sub");
    const auto px = pattern(5, 7, 3, 3);
    io::write_jpeg(dir.file("sub/x.jpg"), 5, 7, 3, px.data());
    test_files::write_file(dir.file("metadata.jsonl"), test_files::read_file(dir.file("metadata.jsonl")) +
                                                           "{\"file_name\": \"sub/x.jpg\", \"text\": \"x\"}\n"
                                                           "{\"file_name\": \"gone.png\", \"text\": \"y\"}\n");
    const auto before = snapshot(dir.path);
    const auto listing = dir.listing();
    {
        const ImageFolder f(dir.path.string(), options(8, 3, OnError::skip));
        CHECK(f.size() == 7);
        ImageFolderBatches<float, 2, 8, 3> b(f, 1);
        auto images = make<Tensor<float, 2, 8, 8, 3>>();
        std::array<std::string, 2> caps;
        for (int k = 0; k < 5; ++k) b.next(images->view(), caps);
        CHECK_THROWS(ImageFolder(dir.path.string(), options(8, 3)));
    }
    CHECK(dir.listing() == listing);
    CHECK(snapshot(dir.path) == before);
}

TEST_CASE("metadata.jsonl: every bad line is reported by line number with the reason, the good ones kept") {
    const std::string deep = std::string(1000, '[') + std::string(1000, ']');
    const std::vector<MetadataEntry> e = parse_metadata_jsonl(
        "{\"file_name\": \"a.png\", \"text\": \"a\"}\n"
        "{\"text\": \"no file\"}\n"
        "{\"file_name\": \"b.png\"}\n"
        "{\"file_name\": \"c.png\", \"text\": null}\n"
        "{\"file_name\": \"\", \"text\": \"x\"}\n"
        "{\"file_name\": \"d.png\", \"text\": {\"en\": \"x\"}}\n"
        "{\"file_name\": \"e.png\" \"text\": \"x\"}\n"
        "{\"file_name\": \"f.png\", \"text\": " +
        deep +
        "}\n"
        "\"just a string\"\n"
        "{\"file_name\": \"g.png\", \"file_name\": \"h.png\", "
        "\"text\": \"x\"}\n"
        "{\"file_name\": \"i\xff.png\", \"text\": \"x\"}\n"
        "{\"file_name\": \"z.png\", \"text\": \"z\"}");
    const std::vector<std::pair<int, std::string>> want = {
        {2, "no \"file_name\""},
        {3, "no caption (\"text\" is missing)"},
        {4, "no caption (\"text\" is missing)"},
        {5, "\"file_name\" must be a non-empty string"},
        {6, "\"text\" is an object, expected a string or an array of strings"},
        {7, "invalid JSON at byte 22"},
        {8, "nesting deeper than 64"},
        {9, "expected a JSON object, found a string"},
        {10, "duplicate key \"file_name\""},
        {11, "invalid UTF-8"},
    };
    REQUIRE(e.size() == want.size() + 2);
    CHECK((e.front().error.empty() && e.front().file_name == "a.png"));
    CHECK((e.back().error.empty() && e.back().line == 12 && e.back().texts == std::vector<std::string>{"z"}));
    for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(e[i + 1].error);
        CHECK(e[i + 1].line == want[i].first);
        CHECK(contains(e[i + 1].error, want[i].second));
    }
}

TEST_CASE("check_inside_folder: relative paths inside the folder pass, everything else is refused") {
    for (const char* ok : {"a.png", "cats/1.png", "./a.png", "a..b.png", "..a.png", "dir/..png", "x/./y.png"}) {
        CAPTURE(ok);
        CHECK(error_of([&] { check_inside_folder(ok); }).empty());
    }
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"../../etc/passwd", "leads out of the folder"}, {"..", "leads out of the folder"},
        {"a/../../b.png", "leads out of the folder"},    {"a/..", "leads out of the folder"},
        {"/etc/passwd", "is an absolute path"},          {"//server/share.png", "is an absolute path"},
        {std::string("a\0.png", 6), "NUL byte"},
    };
    for (const auto& [name, message] : bad) {
        CAPTURE(name);
        CHECK(contains(error_of([&] { check_inside_folder(name); }), message));
    }
}
