// Helpers for tests that read and write files: a fresh temporary directory per test case, whole-file
// reads and writes, and the message of the exception a call throws.
#ifndef DIFFUSE_TESTS_FILE_TEST_UTIL_HPP
#define DIFFUSE_TESTS_FILE_TEST_UTIL_HPP

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

namespace test_files {

/// A fresh directory (unique per process and instance), removed with everything in it afterwards.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& tag = "diffuse_test") {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               (tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
    /// The names of the files in the directory, sorted.
    std::vector<std::string> listing() const {
        std::vector<std::string> v;
        for (const auto& e : std::filesystem::directory_iterator(path)) v.push_back(e.path().filename().string());
        std::sort(v.begin(), v.end());
        return v;
    }
};

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
inline void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}
/// The what() of the exception f throws, or "" if it throws none.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) { return e.what(); }
    return "";
}
inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace test_files

#endif
