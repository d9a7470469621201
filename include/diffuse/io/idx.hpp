// IDX files (the MNIST / Fashion-MNIST format): a big-endian header (magic 0x0000 08 <rank>,
// then one uint32 per dimension) followed by unsigned bytes. Files may be gzip-compressed or
// plain: zlib's gzread passes plain files through unchanged.
//
// Everything read from disk is checked: a missing, truncated or malformed file throws
// std::runtime_error naming the file and what is wrong, before any caller sees the data.
#ifndef DIFFUSE_IO_IDX_HPP
#define DIFFUSE_IO_IDX_HPP

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffuse::io {

/// Where Debian's dataset-fashion-mnist package installs the data set.
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
/// Environment variable that overrides kFashionMnistDefaultDir.
inline constexpr const char* kFashionMnistDirEnv = "DIFFUSE_FASHION_MNIST_DIR";

/// The Fashion-MNIST directory: $DIFFUSE_FASHION_MNIST_DIR when set and non-empty, else the default.
inline std::string fashion_mnist_dir() {
    const char* env = std::getenv(kFashionMnistDirEnv);
    return (env && *env) ? std::string(env) : std::string(kFashionMnistDefaultDir);
}

/// Images of an idx3-ubyte file, row-major [count, rows, cols], 0 = background.
struct IdxImages {
    int count = 0, rows = 0, cols = 0;
    std::vector<std::uint8_t> pixels;  // [count, rows, cols]

    const std::uint8_t* image(int i) const { return pixels.data() + std::size_t(i) * rows * cols; }
};

/// Labels of an idx1-ubyte file.
struct IdxLabels {
    int count = 0;
    std::vector<std::uint8_t> labels;  // [count]
};

namespace detail {

/// A gzip-or-plain input file whose every failure throws with the file name.
class IdxReader {
public:
    explicit IdxReader(std::string path) : path_(std::move(path)) {
        errno = 0;
        f_ = gzopen(path_.c_str(), "rb");
        if (!f_) fail(std::string("cannot open (") + (errno ? std::strerror(errno) : "out of memory") + ")");
    }
    IdxReader(const IdxReader&) = delete;
    IdxReader& operator=(const IdxReader&) = delete;
    ~IdxReader() {
        if (f_) gzclose(f_);
    }

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("IDX file " + path_ + ": " + what);
    }

    /// Reads exactly n bytes; `what` names the part for the error message.
    void read(void* dst, std::size_t n, const char* what) {
        const std::size_t got = read_some(dst, n, what);
        if (got < n) truncated(n, got, what);
    }

    /// Reads exactly n bytes into out, growing it as the data arrives: a header that claims more
    /// than the file holds fails on the missing bytes rather than first allocating all of them.
    void read(std::vector<std::uint8_t>& out, std::size_t n, const char* what) {
        constexpr std::size_t step = std::size_t(1) << 22;
        out.clear();
        while (out.size() < n) {
            const std::size_t have = out.size(), chunk = std::min(n - have, step);
            out.resize(have + chunk);
            const std::size_t got = read_some(out.data() + have, chunk, what);
            if (got < chunk) truncated(n, have + got, what);
        }
    }

    std::uint32_t read_be32(const char* what) {
        unsigned char b[4];
        read(b, 4, what);
        return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | b[3];
    }

    /// The payload must end the file. Reading past it also makes zlib verify the gzip CRC.
    void expect_end() {
        unsigned char extra;
        const int r = gzread(f_, &extra, 1);
        if (r < 0) fail("corrupt after the payload (" + zlib_error() + ")");
        if (r > 0) fail("unexpected data after the payload");
        int err = 0;
        gzerror(f_, &err);
        if (err != Z_OK) fail("corrupt after the payload (" + zlib_error() + ")");
    }

    /// Reads the magic number and checks it names unsigned bytes with the expected rank.
    void read_magic(int rank) {
        const std::uint32_t magic = read_be32("header");
        const std::uint32_t want = 0x0800u | std::uint32_t(rank);
        if (magic != want) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "bad magic number 0x%08X (expected 0x%08X: unsigned bytes, %d dimension%s)",
                          unsigned(magic), unsigned(want), rank, rank == 1 ? "" : "s");
            fail(buf);
        }
    }

private:
    /// Reads up to n bytes, fewer only at the end of the data; throws on a read or gzip error.
    std::size_t read_some(void* dst, std::size_t n, const char* what) {
        std::size_t got = 0;
        auto* p = static_cast<unsigned char*>(dst);
        while (got < n) {
            // gzread takes an unsigned count and returns an int: read in chunks below INT_MAX.
            const unsigned chunk = unsigned(std::min<std::size_t>(n - got, 1u << 30));
            const int r = gzread(f_, p + got, chunk);
            if (r < 0)
                fail(std::string(errno_failed() ? "cannot read the " : "corrupt gzip data in the ") + what + " (" +
                     zlib_error() + ")");
            if (r == 0) break;
            got += std::size_t(r);
        }
        return got;
    }

    [[noreturn]] void truncated(std::size_t n, std::size_t got, const char* what) {
        int err = 0;
        gzerror(f_, &err);
        fail(std::string("truncated: the ") + what + " needs " + std::to_string(n) + " bytes but only " +
             std::to_string(got) + " remain" + (err != Z_OK ? " (" + zlib_error() + ")" : std::string()));
    }

    bool errno_failed() {
        int err = 0;
        gzerror(f_, &err);
        return err == Z_ERRNO;
    }
    std::string zlib_error() {
        int err = 0;
        const char* msg = gzerror(f_, &err);
        if (err == Z_ERRNO) return std::strerror(errno);
        std::string m = (msg && *msg) ? msg : "zlib error " + std::to_string(err);
        // zlib prefixes its messages with the path, which ours already names.
        if (m.rfind(path_ + ": ", 0) == 0) m.erase(0, path_.size() + 2);
        return m;
    }

    std::string path_;
    gzFile f_ = nullptr;
};

/// Dimensions are stored as uint32; refuse anything that could not be a real data set so a
/// corrupt header cannot make us allocate gigabytes.
inline int checked_dim(IdxReader& r, std::uint32_t d, const char* name, bool allow_zero) {
    if ((d == 0 && !allow_zero) || d > (1u << 24)) r.fail(std::string("implausible ") + name + " " + std::to_string(d));
    return int(d);
}

}  // namespace detail

/// Loads an idx3-ubyte image file (gzip or plain).
inline IdxImages load_idx_images(const std::string& path) {
    detail::IdxReader r(path);
    r.read_magic(3);
    IdxImages out;
    out.count = detail::checked_dim(r, r.read_be32("header"), "image count", true);
    out.rows = detail::checked_dim(r, r.read_be32("header"), "row count", false);
    out.cols = detail::checked_dim(r, r.read_be32("header"), "column count", false);
    // Each dimension is below 2^25, so rows × cols fits 64 bits, but count × rows × cols may not:
    // compare by division so that a wrapped product cannot pass for a small one.
    constexpr std::uint64_t max_bytes = std::uint64_t(1) << 34;
    const std::uint64_t per_image = std::uint64_t(out.rows) * std::uint64_t(out.cols);
    if (per_image > max_bytes || (out.count > 0 && std::uint64_t(out.count) > max_bytes / per_image))
        r.fail("implausible size: " + std::to_string(out.count) + " images of " + std::to_string(out.rows) + "x" +
               std::to_string(out.cols) + " is more than " + std::to_string(max_bytes) + " bytes");
    const std::size_t n = std::size_t(out.count) * std::size_t(per_image);
    r.read(out.pixels, n, "image data");
    r.expect_end();
    return out;
}

/// Loads an idx1-ubyte label file (gzip or plain).
inline IdxLabels load_idx_labels(const std::string& path) {
    detail::IdxReader r(path);
    r.read_magic(1);
    IdxLabels out;
    out.count = detail::checked_dim(r, r.read_be32("header"), "label count", true);
    r.read(out.labels, std::size_t(out.count), "label data");
    r.expect_end();
    return out;
}

/// Fashion-MNIST's ten classes, in label order.
inline constexpr std::array<const char*, 10> kFashionMnistClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

enum class Split { train, test };

struct FashionMnist {
    IdxImages images;  // [count, 28, 28]
    IdxLabels labels;  // [count], each in 0..9
};

/// Loads one split of Fashion-MNIST from `dir` (default: fashion_mnist_dir()) and checks what
/// the data set promises: 28x28 images, as many labels as images, labels in 0..9.
inline FashionMnist load_fashion_mnist(Split split, const std::string& dir = fashion_mnist_dir()) {
    const std::string stem = dir + (split == Split::train ? "/train" : "/t10k");
    FashionMnist d{load_idx_images(stem + "-images-idx3-ubyte.gz"), load_idx_labels(stem + "-labels-idx1-ubyte.gz")};
    const std::string where = "Fashion-MNIST in " + dir + ": ";
    if (d.images.rows != 28 || d.images.cols != 28)
        throw std::runtime_error(where + "images are " + std::to_string(d.images.rows) + "x" +
                                 std::to_string(d.images.cols) + ", expected 28x28");
    if (d.images.count != d.labels.count)
        throw std::runtime_error(where + std::to_string(d.images.count) + " images but " +
                                 std::to_string(d.labels.count) + " labels");
    for (int i = 0; i < d.labels.count; ++i)
        if (d.labels.labels[std::size_t(i)] > 9)
            throw std::runtime_error(where + "label " + std::to_string(d.labels.labels[std::size_t(i)]) + " at index " +
                                     std::to_string(i) + " is outside 0..9");
    return d;
}

/// The first `count` images and labels of a data set (all of them if it has fewer): small real
/// data for tests and quick runs.
inline FashionMnist first_images(const FashionMnist& d, int count) {
    count = std::min(count, d.images.count);
    const std::size_t pixels = std::size_t(d.images.rows) * std::size_t(d.images.cols);
    FashionMnist head;
    head.images.count = head.labels.count = count;
    head.images.rows = d.images.rows;
    head.images.cols = d.images.cols;
    head.images.pixels.assign(d.images.pixels.begin(),
                              d.images.pixels.begin() + std::ptrdiff_t(std::size_t(count) * pixels));
    head.labels.labels.assign(d.labels.labels.begin(), d.labels.labels.begin() + count);
    return head;
}

}  // namespace diffuse::io

#endif
