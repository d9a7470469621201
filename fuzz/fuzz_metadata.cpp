// libFuzzer target: the image folder's captions files (data/image_folder.hpp): metadata.jsonl and
// metadata.csv parsing, and the check that keeps every file_name inside the folder.
#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "diffuse/data/image_folder.hpp"

namespace {

void check(const std::vector<diffuse::data::MetadataEntry>& entries) {
    for (const auto& e : entries) {
        if (!e.error.empty()) continue;
        if (e.file_name.empty() || e.texts.empty()) __builtin_trap();
        for (const auto& t : e.texts)
            if (t.empty()) __builtin_trap();
        try {
            diffuse::data::check_inside_folder(e.file_name);
            if (e.file_name.front() == '/' || e.file_name == ".." || e.file_name.starts_with("../") ||
                e.file_name.find("/../") != std::string::npos || e.file_name.ends_with("/.."))
                __builtin_trap();  // accepted a path that leaves the folder
        } catch (const std::runtime_error&) {}
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check(diffuse::data::parse_metadata_jsonl(text));
    try {
        check(diffuse::data::parse_metadata_csv(text));
    } catch (const std::runtime_error&) {}
    return 0;
}
