// A heap array of run-time length with 64-byte alignment, for the flat parameter buffers.
#ifndef DIFFUSE_CORE_ALIGNED_BUFFER_HPP
#define DIFFUSE_CORE_ALIGNED_BUFFER_HPP

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "diffuse/core/tensor.hpp"

namespace diffuse {

template <class T>
class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t n) : n_(n) {
        if (n == 0) return;
        const std::size_t bytes = (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
        void* p = std::aligned_alloc(kAlign, bytes);
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
        p_.reset(static_cast<T*>(p));
    }
    T* data() { return p_.get(); }
    const T* data() const { return p_.get(); }
    std::size_t size() const { return n_; }
    T& operator[](std::size_t i) { return p_.get()[i]; }
    const T& operator[](std::size_t i) const { return p_.get()[i]; }
    T* begin() { return data(); }
    T* end() { return data() + n_; }
    const T* begin() const { return data(); }
    const T* end() const { return data() + n_; }

private:
    struct Free {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, Free> p_;
    std::size_t n_ = 0;
};

}  // namespace diffuse

#endif
