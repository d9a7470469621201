#include <doctest/doctest.h>

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "diffuse/io/idx.hpp"

#include "file_test_util.hpp"

using namespace diffuse::io;
namespace fs = std::filesystem;
using namespace test_files;

// The largest operator new request while `track_new` is on; requests over 1 GiB then fail (a
// reader that trusted a header's size would otherwise make the test allocate it).
namespace {
std::atomic<bool> track_new{false};
std::atomic<std::size_t> largest_new{0};
// Out of line, so that the compiler does not pair operator new's result with free() and warn.
[[gnu::noinline]] void* heap_take(std::size_t n) { return std::malloc(n ? n : 1); }
[[gnu::noinline]] void heap_give(void* p) { std::free(p); }
}  // namespace
void* operator new(std::size_t n) {
    if (track_new.load()) {
        std::size_t seen = largest_new.load();
        while (n > seen && !largest_new.compare_exchange_weak(seen, n)) {}
        if (n > (std::size_t(1) << 30)) throw std::bad_alloc();
    }
    if (void* p = heap_take(n)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { heap_give(p); }
void operator delete(void* p, std::size_t) noexcept { heap_give(p); }

namespace {

std::vector<unsigned char> idx_bytes(std::uint32_t magic, std::vector<std::uint32_t> dims, std::size_t payload) {
    std::vector<unsigned char> b;
    auto be32 = [&](std::uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) b.push_back((unsigned char)(v >> s));
    };
    be32(magic);
    for (auto d : dims) be32(d);
    for (std::size_t i = 0; i < payload; ++i) b.push_back((unsigned char)(i * 7 % 251));
    return b;
}

void write_plain(const std::string& path, const std::vector<unsigned char>& b) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

void write_gz(const std::string& path, const std::vector<unsigned char>& b) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

std::vector<unsigned char> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The error message of f(), or "" if it did not throw std::runtime_error.

}  // namespace

TEST_CASE("IDX: the Fashion-MNIST test set loads with its known contents") {
    const auto d = load_fashion_mnist(Split::test);
    CHECK(d.images.count == 10000);
    CHECK(d.images.rows == 28);
    CHECK(d.images.cols == 28);
    REQUIRE(d.images.pixels.size() == 10000u * 784u);
    REQUIRE(d.labels.labels.size() == 10000u);

    std::array<int, 10> hist{};
    for (auto l : d.labels.labels) hist[l]++;
    for (int c = 0; c < 10; ++c) CHECK(hist[std::size_t(c)] == 1000);

    // First labels and pixel sums, computed independently with Python's gzip module.
    const std::vector<int> first{9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; ++i) CHECK(int(d.labels.labels[std::size_t(i)]) == first[std::size_t(i)]);
    const auto sum = [](const std::uint8_t* p, std::size_t n) { return std::accumulate(p, p + n, std::uint64_t(0)); };
    CHECK(sum(d.images.pixels.data(), d.images.pixels.size()) == 573469082u);
    CHECK(sum(d.images.image(0), 784) == 33456u);
    CHECK(sum(d.images.image(9999), 784) == 24390u);
    CHECK(std::count(d.images.image(0), d.images.image(0) + 784, 0) == 517);
    CHECK(std::string(kFashionMnistClasses[9]) == "Ankle boot");
}

TEST_CASE("IDX: the Fashion-MNIST training set has 6000 images of each class") {
    const auto d = load_fashion_mnist(Split::train);
    CHECK(d.images.count == 60000);
    std::array<int, 10> hist{};
    for (auto l : d.labels.labels) hist[l]++;
    for (int c = 0; c < 10; ++c) CHECK(hist[std::size_t(c)] == 6000);
    CHECK(std::accumulate(d.images.pixels.begin(), d.images.pixels.end(), std::uint64_t(0)) == 3431114169u);
}

TEST_CASE("IDX: the data directory follows DIFFUSE_FASHION_MNIST_DIR") {
    const char* old = std::getenv(kFashionMnistDirEnv);
    const std::string saved = old ? old : "";
    ::setenv(kFashionMnistDirEnv, "/some/where", 1);
    CHECK(fashion_mnist_dir() == "/some/where");
    ::setenv(kFashionMnistDirEnv, "", 1);
    CHECK(fashion_mnist_dir() == kFashionMnistDefaultDir);
    if (old) ::setenv(kFashionMnistDirEnv, saved.c_str(), 1);
    else ::unsetenv(kFashionMnistDirEnv);
}

TEST_CASE("IDX: plain and gzip files give the same data") {
    TempDir t;
    const auto b = idx_bytes(0x803, {3, 4, 5}, 60);
    write_plain(t.file("plain"), b);
    write_gz(t.file("packed.gz"), b);
    const auto a = load_idx_images(t.file("plain"));
    const auto z = load_idx_images(t.file("packed.gz"));
    CHECK(a.count == 3);
    CHECK(a.rows == 4);
    CHECK(a.cols == 5);
    CHECK(a.pixels == std::vector<std::uint8_t>(b.begin() + 16, b.end()));
    CHECK(z.pixels == a.pixels);

    write_gz(t.file("labels.gz"), idx_bytes(0x801, {6}, 6));
    const auto l = load_idx_labels(t.file("labels.gz"));
    CHECK(l.count == 6);
    CHECK(l.labels[1] == 7);
}

TEST_CASE("IDX: malformed files give errors that name the file and the problem") {
    TempDir t;

    SUBCASE("missing file") {
        const auto e = error_of([&] { load_idx_images(t.file("nope.gz")); });
        CHECK(contains(e, "nope.gz"));
        CHECK(contains(e, "No such file"));
    }
    SUBCASE("bad magic: a label file read as images") {
        write_gz(t.file("labels.gz"), idx_bytes(0x801, {6}, 6));
        const auto e = error_of([&] { load_idx_images(t.file("labels.gz")); });
        CHECK(contains(e, "labels.gz"));
        CHECK(contains(e, "bad magic number 0x00000801"));
    }
    SUBCASE("bad magic: not unsigned bytes") {
        write_plain(t.file("floats"), idx_bytes(0xD03, {1, 1, 1}, 4));
        CHECK(contains(error_of([&] { load_idx_images(t.file("floats")); }), "bad magic number 0x00000D03"));
    }
    SUBCASE("empty file") {
        write_plain(t.file("empty"), {});
        CHECK(contains(error_of([&] { load_idx_images(t.file("empty")); }), "truncated: the header needs 4 bytes"));
    }
    SUBCASE("truncated header") {
        auto b = idx_bytes(0x803, {3, 4, 5}, 0);
        b.resize(10);
        write_gz(t.file("short.gz"), b);
        CHECK(contains(error_of([&] { load_idx_images(t.file("short.gz")); }), "truncated: the header"));
    }
    SUBCASE("truncated payload") {
        write_gz(t.file("payload.gz"), idx_bytes(0x803, {3, 4, 5}, 59));
        const auto e = error_of([&] { load_idx_images(t.file("payload.gz")); });
        CHECK(contains(e, "payload.gz"));
        CHECK(contains(e, "image data needs 60 bytes but only 59 remain"));
    }
    SUBCASE("truncated gzip stream") {
        write_gz(t.file("cut.gz"), idx_bytes(0x803, {3, 4, 5}, 60));
        auto z = read_all(t.file("cut.gz"));
        REQUIRE(z.size() > 12);
        // drop the CRC trailer and some of the deflate stream (erase, not resize: under ASan, GCC's
        // -Wstringop-overflow takes resize's growing branch for a wrapped size)
        z.erase(z.end() - 12, z.end());
        write_plain(t.file("cut.gz"), z);
        const auto e = error_of([&] { load_idx_images(t.file("cut.gz")); });
        CHECK(contains(e, "cut.gz"));
        CHECK((contains(e, "truncated") || contains(e, "corrupt")));
    }
    SUBCASE("corrupt gzip stream (bad CRC)") {
        write_gz(t.file("crc.gz"), idx_bytes(0x803, {3, 4, 5}, 60));
        auto z = read_all(t.file("crc.gz"));
        z[z.size() - 6] ^= 0x5A;  // inside the CRC-32 trailer
        write_plain(t.file("crc.gz"), z);
        const auto e = error_of([&] { load_idx_images(t.file("crc.gz")); });
        INFO(e);
        CHECK(contains(e, "crc.gz"));
        CHECK(contains(e, "corrupt"));
    }
    SUBCASE("trailing data") {
        write_plain(t.file("long"), idx_bytes(0x801, {5}, 6));
        CHECK(contains(error_of([&] { load_idx_labels(t.file("long")); }), "unexpected data after the payload"));
    }
    SUBCASE("wrong dims: zero rows") {
        write_plain(t.file("zero"), idx_bytes(0x803, {3, 0, 5}, 0));
        CHECK(contains(error_of([&] { load_idx_images(t.file("zero")); }), "implausible row count 0"));
    }
    SUBCASE("wrong dims: absurd count") {
        write_plain(t.file("huge"), idx_bytes(0x803, {0xFFFFFFFFu, 28, 28}, 0));
        CHECK(contains(error_of([&] { load_idx_images(t.file("huge")); }), "implausible image count 4294967295"));
    }
    SUBCASE("dimension overflow: count x rows x cols wraps 64 bits") {
        // 2^24 x 2^24 x 2^16 = 2^64, which wraps to 0 in 64-bit arithmetic: an empty payload would
        // then pass for the whole data set, and image(i) would read past the buffer.
        write_plain(t.file("wrap"), idx_bytes(0x803, {1u << 24, 1u << 24, 1u << 16}, 0));
        const auto e = error_of([&] { load_idx_images(t.file("wrap")); });
        CHECK(contains(e, "wrap"));
        CHECK(contains(e, "implausible size: 16777216 images of 16777216x65536"));
    }
    SUBCASE("a header claiming 16 GiB with 100 bytes behind it allocates no more than it reads") {
        write_plain(t.file("claim"), idx_bytes(0x803, {1u << 24, 32, 32}, 100));
        write_gz(t.file("claim.gz"), idx_bytes(0x803, {1u << 24, 32, 32}, 100));
        for (const char* name : {"claim", "claim.gz"}) {
            largest_new = 0;
            track_new = true;
            std::string e;
            try {
                load_idx_images(t.file(name));
            } catch (const std::runtime_error& err) { e = err.what(); } catch (const std::bad_alloc&) {
                e = "bad_alloc";
            }
            track_new = false;
            CAPTURE(name);
            CHECK(contains(e, "image data needs 17179869184 bytes but only 100 remain"));
            CHECK(largest_new.load() <= (std::size_t(1) << 23));  // the reader's 4 MiB step, grown once
        }
    }
    SUBCASE("wrong dims for Fashion-MNIST") {
        write_gz(t.file("t10k-images-idx3-ubyte.gz"), idx_bytes(0x803, {2, 27, 28}, 2 * 27 * 28));
        write_gz(t.file("t10k-labels-idx1-ubyte.gz"), idx_bytes(0x801, {2}, 2));
        CHECK(contains(error_of([&] { load_fashion_mnist(Split::test, t.path.string()); }),
                       "images are 27x28, expected 28x28"));
    }
    SUBCASE("image and label counts differ") {
        write_gz(t.file("t10k-images-idx3-ubyte.gz"), idx_bytes(0x803, {2, 28, 28}, 2 * 784));
        write_gz(t.file("t10k-labels-idx1-ubyte.gz"), idx_bytes(0x801, {3}, 3));
        CHECK(contains(error_of([&] { load_fashion_mnist(Split::test, t.path.string()); }), "2 images but 3 labels"));
    }
    SUBCASE("label out of range") {
        write_gz(t.file("t10k-images-idx3-ubyte.gz"), idx_bytes(0x803, {2, 28, 28}, 2 * 784));
        auto b = idx_bytes(0x801, {2}, 0);
        b.push_back(3);
        b.push_back(10);
        write_gz(t.file("t10k-labels-idx1-ubyte.gz"), b);
        CHECK(contains(error_of([&] { load_fashion_mnist(Split::test, t.path.string()); }),
                       "label 10 at index 1 is outside 0..9"));
    }
}

TEST_CASE("first_images keeps the first images and labels, and clamps to the data set") {
    const auto test = load_fashion_mnist(Split::test);
    const auto head = first_images(test, 5);
    REQUIRE(head.images.count == 5);
    CHECK(head.labels.count == 5);
    CHECK(head.images.rows == 28);
    CHECK(std::equal(head.labels.labels.begin(), head.labels.labels.end(), test.labels.labels.begin()));
    CHECK(head.images.pixels.size() == 5u * 28 * 28);
    CHECK(std::equal(head.images.pixels.begin(), head.images.pixels.end(), test.images.pixels.begin()));
    CHECK(first_images(test, 20000).images.count == test.images.count);
}
