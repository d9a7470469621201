// Shared by the fuzz targets: readers that take a path get the input through a file in memory
// (memfd, named /proc/self/fd/N), so a run writes nothing to disk and needs no clean-up.
// Each target throws only the documented std::exception types on bad input; anything else
// (a crash, a sanitizer report, another exception escaping) is a finding.
#ifndef DIFFUSE_FUZZ_FUZZ_UTIL_HPP
#define DIFFUSE_FUZZ_FUZZ_UTIL_HPP

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <sys/mman.h>

namespace fuzz {

/// A memory file holding the current input, reused across runs.
class MemoryFile {
public:
    MemoryFile() : fd_(memfd_create("diffuse_fuzz", 0)) {
        if (fd_ < 0) std::abort();
    }
    ~MemoryFile() { close(fd_); }
    MemoryFile(const MemoryFile&) = delete;
    MemoryFile& operator=(const MemoryFile&) = delete;

    /// Replaces the contents with size bytes at data; returns the file's path.
    std::string hold(const std::uint8_t* data, std::size_t size) {
        if (ftruncate(fd_, 0) != 0 || lseek(fd_, 0, SEEK_SET) != 0) std::abort();
        for (std::size_t done = 0; done < size;) {
            const ssize_t n = write(fd_, data + done, size - done);
            if (n <= 0) std::abort();
            done += std::size_t(n);
        }
        return "/proc/self/fd/" + std::to_string(fd_);
    }

private:
    int fd_;
};

}  // namespace fuzz

#endif
