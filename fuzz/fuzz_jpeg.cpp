// libFuzzer target: the JPEG decoder (io/jpeg.hpp) and the conversion a data set applies after
// decoding (fit_image). The pixel cap is 2^20 here, not the default 2^26, so that inputs claiming
// a large image stay fast to refuse.
#include <cstdint>
#include <stdexcept>

#include "diffuse/io/image.hpp"
#include "diffuse/io/jpeg.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::uint64_t max_pixels = std::uint64_t(1) << 20;
    try {
        const diffuse::io::ByteImage img = diffuse::io::decode_jpeg(data, size, "input", max_pixels);
        if (img.pixels.size() != std::size_t(img.height) * std::size_t(img.width) * std::size_t(img.channels) ||
            (img.channels != 1 && img.channels != 3))
            __builtin_trap();
        (void)diffuse::io::fit_image(img, 8, 8, 3);
    } catch (const std::runtime_error&) {}
    return 0;
}
