// Where the programs write their images: numbered samples (DIR/0000.png, ...) and reconstructions
// named after their inputs (DIR/<input file name>), never over an input.
#ifndef DIFFUSE_EXAMPLES_OUTPUT_PATHS_HPP
#define DIFFUSE_EXAMPLES_OUTPUT_PATHS_HPP

#include <cstdio>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// DIR/0000.png, DIR/0001.png, ...: four digits, more when the index needs them.
inline std::string sample_path(const std::string& dir, int index) {
    char name[32];
    std::snprintf(name, sizeof name, "%04d.png", index);
    return (std::filesystem::path(dir) / name).string();
}

/// DIR/<file name of each input>, with the extension made .png. Throws if two inputs share a
/// name or an output would overwrite an input.
inline std::vector<std::string> reconstruction_paths(const std::string& dir, const std::vector<std::string>& inputs) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    std::set<std::string> names;
    for (const auto& in : inputs) {
        const fs::path name = fs::path(in).filename().replace_extension(".png");
        if (name.empty() || name == ".png") throw std::invalid_argument("'" + in + "' is not a file name");
        if (!names.insert(name.string()).second)
            throw std::invalid_argument("two inputs are named " + name.string() +
                                        "; their reconstructions would collide");
        out.push_back((fs::path(dir) / name).string());
    }
    // Absolute first: libstdc++ leaves a relative path relative when none of it exists yet.
    const auto resolved = [](const std::string& p) {
        std::error_code ec;
        const fs::path r = fs::weakly_canonical(fs::absolute(p, ec), ec);
        return ec ? fs::absolute(p).lexically_normal() : r;
    };
    for (const auto& o : out)
        for (const auto& in : inputs) {
            if (resolved(o) == resolved(in))
                throw std::invalid_argument("writing " + o + " would overwrite the input " + in);
        }
    return out;
}

}  // namespace cli

#endif
