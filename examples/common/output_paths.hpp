// Where the programs write their images: numbered samples (DIR/0000.png, ...) and reconstructions
// named after their inputs (DIR/<input file name>), never over an input; and whether an output file
// or directory can be written, checked before any work (creating nothing that stays).
#ifndef DIFFUSE_EXAMPLES_OUTPUT_PATHS_HPP
#define DIFFUSE_EXAMPLES_OUTPUT_PATHS_HPP

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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

/// "" when a file can be created in the existing directory `dir`, else why not. Tries it: creates
/// and removes a probe file (permission bits say too little: root passes them, a read-only mount
/// does not).
inline std::string cannot_create_in(const std::filesystem::path& dir) {
    const std::filesystem::path probe = dir / (".diffuse-write-probe-" + std::to_string(::getpid()));
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return "cannot create files in " + dir.string() + " (" + std::strerror(errno) + ")";
    ::close(fd);
    ::unlink(probe.c_str());
    return {};
}

/// "" when `dir` is a directory that files can be created in, or can be made one (its nearest
/// existing ancestor is such a directory); else what is wrong. Creates nothing.
inline std::string unwritable_directory(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path p = fs::absolute(dir, ec);
    if (ec) return "'" + dir + "' is not a usable path";
    while (!fs::exists(p, ec)) {
        if (!p.has_parent_path() || p.parent_path() == p) return "no part of " + dir + " exists";
        p = p.parent_path();
    }
    if (!fs::is_directory(p, ec)) return p.string() + " is not a directory";
    return cannot_create_in(p);
}

/// "" when a file can be written at `path` (atomically: a temporary file beside it, then a rename,
/// io/atomic_file.hpp): its directory exists and takes new files, and `path` is not a directory.
/// Creates nothing.
inline std::string unwritable_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path p = fs::absolute(path, ec);
    if (ec || !p.has_filename()) return "'" + path + "' is not a file name";
    if (fs::is_directory(p, ec)) return path + " is a directory";
    const fs::path dir = p.parent_path();
    if (!fs::exists(dir, ec)) return "the directory " + dir.string() + " does not exist";
    if (!fs::is_directory(dir, ec)) return dir.string() + " is not a directory";
    return cannot_create_in(dir);
}

}  // namespace cli

#endif
