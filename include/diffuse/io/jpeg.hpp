// JPEG images through libjpeg(-turbo): decoding to 8-bit gray or RGB, encoding (for tests and
// exports). Every libjpeg error ends in a std::runtime_error naming the file: libjpeg's error_exit
// must not return, so ours longjmps back to the decode function, which throws from its own frame.
// Warnings are errors too: libjpeg "recovers" from a truncated or corrupt stream by inventing gray
// pixels, and we would rather refuse the file than train on it. CMYK and YCCK files are refused.
// Needs linking with libjpeg (CMake: JPEG::JPEG, carried by the diffuse target).
//
// The setjmp frames hold only trivially destructible locals, and nothing they hold is changed
// between setjmp and a longjmp back to them (the outputs live in the caller's objects), so the
// jump skips no destructor and reads no indeterminate local.
#ifndef DIFFUSE_IO_JPEG_HPP
#define DIFFUSE_IO_JPEG_HPP

#include <jpeglib.h>

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/byte_image.hpp"

namespace diffuse::io {

namespace detail {

struct JpegError {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

extern "C" {
inline void diffuse_jpeg_error_exit(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}
inline void diffuse_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0) diffuse_jpeg_error_exit(cinfo);  // a warning: corrupt data, treated as an error
}
inline void diffuse_jpeg_output_message(j_common_ptr) {}
}

inline jpeg_error_mgr* jpeg_throwing_errors(JpegError& err) {
    jpeg_std_error(&err.mgr);
    err.mgr.error_exit = diffuse_jpeg_error_exit;
    err.mgr.emit_message = diffuse_jpeg_emit_message;
    err.mgr.output_message = diffuse_jpeg_output_message;
    err.message[0] = '\0';
    return &err.mgr;
}

/// Decodes into out (resized here, through the pointer); returns false with err.message set on a
/// libjpeg error, or with `refusal` set when the file is valid but not acceptable.
inline bool decode_jpeg(const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels, ByteImage* out,
                        JpegError& err, const char** refusal, std::uint64_t* dims) {
    jpeg_decompress_struct cinfo;
    cinfo.err = jpeg_throwing_errors(err);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    dims[0] = cinfo.image_width;
    dims[1] = cinfo.image_height;
    if (dims[0] == 0 || dims[1] == 0 || dims[0] * dims[1] > max_pixels) {  // dims are below 2^16: no overflow
        *refusal = "size";
        jpeg_destroy_decompress(&cinfo);
        return false;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        *refusal = "a CMYK JPEG, which is not supported (convert it to RGB)";
        jpeg_destroy_decompress(&cinfo);
        return false;
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    out->width = int(cinfo.output_width);
    out->height = int(cinfo.output_height);
    out->channels = cinfo.output_components;
    out->pixels.resize(std::size_t(out->width) * std::size_t(out->height) * std::size_t(out->channels));
    const std::size_t stride = std::size_t(out->width) * std::size_t(out->channels);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out->pixels.data() + std::size_t(cinfo.output_scanline) * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return true;
}

struct JpegBuffer {
    unsigned char* data = nullptr;
    unsigned long size = 0;
    JpegBuffer() = default;
    JpegBuffer(const JpegBuffer&) = delete;
    JpegBuffer& operator=(const JpegBuffer&) = delete;
    ~JpegBuffer() { std::free(data); }
};

inline bool encode_jpeg(int height, int width, int channels, const std::uint8_t* pixels, int quality, JpegBuffer* buf,
                        JpegError& err) {
    jpeg_compress_struct cinfo;
    cinfo.err = jpeg_throwing_errors(err);
    if (setjmp(err.jump)) {
        // libjpeg may have replaced (and freed) the buffer it last told us of: leak it, not free twice.
        buf->data = nullptr;
        jpeg_destroy_compress(&cinfo);
        return false;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &buf->data, &buf->size);
    cinfo.image_width = JDIMENSION(width);
    cinfo.image_height = JDIMENSION(height);
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    const std::size_t stride = std::size_t(width) * std::size_t(channels);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(pixels + std::size_t(cinfo.next_scanline) * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return true;
}

}  // namespace detail

/// True when the bytes start like a JPEG file (SOI marker FF D8 FF).
inline bool looks_like_jpeg(const std::uint8_t* data, std::size_t size) {
    return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

/// Decodes a JPEG held in memory into 8-bit gray (1 channel) or RGB (3). `name` (a file name)
/// prefixes every error; images of more than max_pixels pixels are refused before decoding.
inline ByteImage decode_jpeg(const std::uint8_t* data, std::size_t size, const std::string& name,
                             std::uint64_t max_pixels = kMaxImagePixels) {
    ByteImage out;
    detail::JpegError err;
    const char* refusal = nullptr;
    std::uint64_t dims[2] = {0, 0};
    if (!detail::decode_jpeg(data, size, max_pixels, &out, err, &refusal, dims)) {
        if (refusal && std::strcmp(refusal, "size") == 0)
            detail::check_image_size("jpeg " + name, dims[0], dims[1], max_pixels);
        if (refusal) throw std::runtime_error("jpeg " + name + ": " + refusal);
        throw std::runtime_error("jpeg " + name + ": corrupt or truncated (" + err.message + ")");
    }
    return out;
}

/// Reads a JPEG file into 8-bit gray or RGB; throws std::runtime_error naming the file.
inline ByteImage read_jpeg(const std::string& path, std::uint64_t max_pixels = kMaxImagePixels) {
    const std::vector<std::uint8_t> bytes = detail::read_whole_file(path);
    return decode_jpeg(bytes.data(), bytes.size(), path, max_pixels);
}

/// Encodes 8-bit gray (channels 1) or RGB (3) samples [height, width, channels] as JPEG bytes.
inline std::vector<std::uint8_t> encode_jpeg(int height, int width, int channels, const std::uint8_t* pixels,
                                             int quality = 95) {
    if (height <= 0 || width <= 0 || height > 65500 || width > 65500)
        throw std::invalid_argument("jpeg: cannot encode a " + std::to_string(width) + "x" + std::to_string(height) +
                                    " image");
    if (channels != 1 && channels != 3) throw std::invalid_argument("jpeg: channels must be 1 (gray) or 3 (RGB)");
    if (quality < 1 || quality > 100) throw std::invalid_argument("jpeg: quality must be in 1..100");
    detail::JpegBuffer buf;
    detail::JpegError err;
    if (!detail::encode_jpeg(height, width, channels, pixels, quality, &buf, err))
        throw std::runtime_error(std::string("jpeg: cannot encode (") + err.message + ")");
    return std::vector<std::uint8_t>(buf.data, buf.data + buf.size);
}

/// Writes 8-bit gray or RGB samples as a JPEG file, atomically.
inline void write_jpeg(const std::string& path, int height, int width, int channels, const std::uint8_t* pixels,
                       int quality = 95) {
    const std::vector<std::uint8_t> bytes = encode_jpeg(height, width, channels, pixels, quality);
    AtomicFile out(path);
    out.write(bytes.data(), bytes.size());
    out.commit();
}

}  // namespace diffuse::io

#endif
