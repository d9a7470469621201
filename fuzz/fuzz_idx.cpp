// libFuzzer target: the IDX reader (io/idx.hpp), gzip or plain, as images and as labels.
#include <cstdint>
#include <stdexcept>

#include "diffuse/io/idx.hpp"

#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static fuzz::MemoryFile file;
    const std::string path = file.hold(data, size);
    try {
        const diffuse::io::IdxImages img = diffuse::io::load_idx_images(path);
        // in 128 bits: a product that wraps in 64 must not match a short buffer
        using wide = unsigned __int128;
        if (wide(img.pixels.size()) != wide(img.count) * wide(img.rows) * wide(img.cols)) __builtin_trap();
    } catch (const std::runtime_error&) {}
    try {
        const diffuse::io::IdxLabels labels = diffuse::io::load_idx_labels(path);
        if (labels.labels.size() != std::size_t(labels.count)) __builtin_trap();
    } catch (const std::runtime_error&) {}
    return 0;
}
