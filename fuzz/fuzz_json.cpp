// libFuzzer target: the strict JSON parser (io/json.hpp). Anything it accepts must survive a
// round trip of its strings through json::quote and parse again.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "diffuse/io/json.hpp"

namespace {

void check_strings(const diffuse::io::json::Value& v) {
    using diffuse::io::json::Value;
    if (v.kind == Value::string) {
        const Value back = diffuse::io::json::parse(diffuse::io::json::quote(v.text));
        if (back.kind != Value::string || back.text != v.text) std::abort();
    }
    for (const auto& k : v.keys)
        if (!diffuse::io::json::is_valid_utf8(k)) std::abort();
    for (const auto& item : v.items) check_strings(item);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    diffuse::io::json::Value v;
    try {
        v = diffuse::io::json::parse(text);
    } catch (const std::runtime_error&) { return 0; }
    check_strings(v);
    if (v.kind == diffuse::io::json::Value::number) {
        try {
            (void)diffuse::io::json::as_u64(v, "value");
        } catch (const std::runtime_error&) {}
    }
    return 0;
}
