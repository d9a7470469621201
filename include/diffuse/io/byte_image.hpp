// An 8-bit image as decoders give it: [height, width, channels] samples, channels 1 (gray),
// 2 (gray + alpha), 3 (RGB) or 4 (RGBA), alpha straight (not premultiplied). And the checks every
// decoder applies to untrusted files: a pixel cap against decompression bombs, whole-file reads.
// And the mapping between the model's floats in [-1, 1] and bytes (to_byte, from_byte).
#ifndef DIFFUSE_IO_BYTE_IMAGE_HPP
#define DIFFUSE_IO_BYTE_IMAGE_HPP

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffuse::io {

struct ByteImage {
    int height = 0, width = 0, channels = 0;
    std::vector<std::uint8_t> pixels;  // [height, width, channels]

    std::uint8_t operator()(int y, int x, int c) const {
        return pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * std::size_t(channels) + std::size_t(c)];
    }
};

/// [-1, 1] -> 0..255, rounded; out-of-range values clip, NaN gives 0.
template <class T>
inline std::uint8_t to_byte(T v) {
    const double b = (double(v) + 1.0) * 127.5;
    if (!(b > 0.0)) return 0;
    return b >= 255.0 ? 255 : std::uint8_t(std::lround(b));
}
inline float from_byte(std::uint8_t b) { return float(b) / 127.5f - 1.0f; }

/// The most pixels (width × height) a decoder accepts by default: 2^26 (an 8192 × 8192 image),
/// 256 MiB as RGBA. A few hundred bytes of PNG or JPEG can claim any size; this stops them first.
inline constexpr std::uint64_t kMaxImagePixels = std::uint64_t(1) << 26;
/// The largest image file read into memory (larger files are refused before reading).
inline constexpr std::uint64_t kMaxImageFileBytes = std::uint64_t(1) << 28;

namespace detail {

/// Throws unless 0 < width, height and width × height <= max_pixels; `what` prefixes the message.
inline void check_image_size(const std::string& what, std::uint64_t width, std::uint64_t height,
                             std::uint64_t max_pixels) {
    if (width == 0 || height == 0)
        throw std::runtime_error(what + ": image has zero size (" + std::to_string(width) + "x" +
                                 std::to_string(height) + ")");
    if (width > max_pixels || height > max_pixels || width * height > max_pixels)
        throw std::runtime_error(what + ": image is " + std::to_string(width) + "x" + std::to_string(height) +
                                 ", more than the limit of " + std::to_string(max_pixels) + " pixels");
}

/// A whole file's bytes; throws naming the file when it cannot be opened or read, or is too large.
inline std::vector<std::uint8_t> read_whole_file(const std::string& path,
                                                 std::uint64_t max_bytes = kMaxImageFileBytes) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
    std::vector<std::uint8_t> out;
    std::uint8_t buf[1 << 16];
    bool failed = false;
    while (true) {
        const std::size_t n = std::fread(buf, 1, sizeof buf, f);
        out.insert(out.end(), buf, buf + n);
        if (out.size() > max_bytes) break;
        if (n < sizeof buf) {
            failed = std::ferror(f) != 0;
            break;
        }
    }
    const int err = errno;
    std::fclose(f);
    if (failed) throw std::runtime_error(path + ": cannot read (" + std::strerror(err) + ")");
    if (out.size() > max_bytes)
        throw std::runtime_error(path + ": file is larger than " + std::to_string(max_bytes) + " bytes");
    return out;
}

}  // namespace detail

}  // namespace diffuse::io

#endif
