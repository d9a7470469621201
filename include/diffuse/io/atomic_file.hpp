// Replacing a file so that an interrupted save never destroys the last good one: write a
// temporary file in the same directory, fsync it, rename it over the target (atomic on POSIX),
// then fsync the directory so the rename itself survives a crash. Until commit() succeeds the
// target is untouched, and a writer destroyed without commit() removes its temporary file.
#ifndef DIFFUSE_IO_ATOMIC_FILE_HPP
#define DIFFUSE_IO_ATOMIC_FILE_HPP

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <sys/stat.h>

namespace diffuse::io {

class AtomicFile {
public:
    explicit AtomicFile(std::string path) : path_(std::move(path)) {
        static std::atomic<unsigned> counter{0};
        for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
            tmp_ = path_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
            fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd_ < 0 && errno != EEXIST) fail("cannot create temporary file " + tmp_);
        }
        if (fd_ < 0) fail("cannot create a temporary file next to it");
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!committed_) ::unlink(tmp_.c_str());
    }

    const std::string& path() const { return path_; }
    /// Where the data goes until commit(), for tests and messages.
    const std::string& temp_path() const { return tmp_; }

    void write(const void* data, std::size_t n) {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            const ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail("write to " + tmp_ + " failed");
            p += w;
            n -= std::size_t(w);
        }
    }

    /// Makes the new contents durable and visible under path().
    void commit() {
        if (::fsync(fd_) != 0) fail("fsync of " + tmp_ + " failed");
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail("close of " + tmp_ + " failed");
        if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename " + tmp_ + " to it");
        committed_ = true;
        // Best effort: some file systems refuse fsync on a directory, and the data is safe anyway.
        const std::size_t slash = path_.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            ::fsync(dfd);
            ::close(dfd);
        }
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("saving " + path_ + ": " + what + " (" + std::strerror(errno) + ")");
    }

    std::string path_, tmp_;
    int fd_ = -1;
    bool committed_ = false;
};

}  // namespace diffuse::io

#endif
