// libFuzzer target: the safetensors reader (io/safetensors.hpp). A file whose header is accepted
// must let every tensor be read, as stored bytes and, for float dtypes, converted to float.
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "diffuse/io/safetensors.hpp"

#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static fuzz::MemoryFile file;
    const std::string path = file.hold(data, size);
    try {
        const diffuse::io::SafetensorsFile st(path);
        for (const auto& t : st.tensors()) {
            const std::vector<unsigned char> raw = st.read_raw(t.name);
            if (raw.size() != t.end - t.begin) __builtin_trap();
            if (diffuse::io::is_float_dtype(t.dtype)) (void)st.read<float>(t.name);
        }
    } catch (const std::runtime_error&) {}
    return 0;
}
