// A count of heap allocations, for tests that check a code path allocates nothing.
//
// Every way onto the heap is replaced: the C++ operators new and new[] in all their replaceable
// forms (plain, nothrow, aligned, aligned nothrow) and the C allocators malloc, calloc, realloc,
// aligned_alloc, posix_memalign, memalign, valloc and pvalloc (Eigen, libgomp and libstdc++ reach
// the heap through these). Each replacement counts once and forwards to glibc's own allocator
// (__libc_malloc, ...), so operator new counts one allocation, not two; the frees go to __libc_free.
//
// Counting is off until a window opens: count_allocations(f) counts what f allocates on any thread
// (OpenMP workers included). With DIFFUSE_ALLOC_BACKTRACE=1 in the environment, every counted
// allocation prints a backtrace to stderr (addresses as "exe(+0x...)": addr2line -f -C -e exe 0x...)
// to find where it comes from.
//
// glibc only. The replacements are definitions, not inline: include this header in ONE translation
// unit of the test executable.
#ifndef DIFFUSE_TESTS_ALLOCATION_COUNTER_HPP
#define DIFFUSE_TESTS_ALLOCATION_COUNTER_HPP

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <new>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* __libc_valloc(std::size_t);
void* __libc_pvalloc(std::size_t);
void __libc_free(void*);
}

namespace alloc_counter {

inline std::atomic<bool> enabled{false};
inline std::atomic<long> count{0};
inline const bool trace = [] {
    const char* e = std::getenv("DIFFUSE_ALLOC_BACKTRACE");
    const bool on = e && *e && *e != '0';
    if (on) {  // backtrace() loads libgcc on its first call, which allocates: do that now
        void* frames[2];
        backtrace(frames, 2);
    }
    return on;
}();
inline thread_local bool in_trace = false;

inline void note() {
    if (!enabled.load(std::memory_order_relaxed)) return;
    count.fetch_add(1, std::memory_order_relaxed);
    if (trace && !in_trace) {
        in_trace = true;
        void* frames[48];
        const int n = backtrace(frames, 48);
        static const char header[] = "---- allocation:\n";
        (void)!write(2, header, sizeof header - 1);
        backtrace_symbols_fd(frames, n, 2);  // writes straight to the fd: no malloc
        in_trace = false;
    }
}

/// How many heap allocations f() made, on any thread.
template <class F>
long count_allocations(F&& f) {
    count.store(0);
    enabled.store(true);
    f();
    enabled.store(false);
    return count.load();
}

}  // namespace alloc_counter

// ---- C allocators ------------------------------------------------------------------------------

extern "C" {
void* malloc(std::size_t n) noexcept {
    alloc_counter::note();
    return __libc_malloc(n);
}
void* calloc(std::size_t k, std::size_t n) noexcept {
    alloc_counter::note();
    return __libc_calloc(k, n);
}
void* realloc(void* p, std::size_t n) noexcept {
    if (p == nullptr || n != 0) alloc_counter::note();  // realloc(p, 0) only frees
    return __libc_realloc(p, n);
}
void free(void* p) noexcept { __libc_free(p); }
void* aligned_alloc(std::size_t a, std::size_t n) noexcept {
    alloc_counter::note();
    return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) noexcept {
    alloc_counter::note();
    return __libc_memalign(a, n);
}
void* valloc(std::size_t n) noexcept {
    alloc_counter::note();
    return __libc_valloc(n);
}
void* pvalloc(std::size_t n) noexcept {
    alloc_counter::note();
    return __libc_pvalloc(n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) noexcept {
    alloc_counter::note();
    if (a < sizeof(void*) || (a & (a - 1)) != 0) return EINVAL;
    void* p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
}

// ---- C++ operators new / delete ----------------------------------------------------------------

namespace alloc_counter {
inline void* new_plain(std::size_t n) noexcept {
    note();
    return __libc_malloc(n ? n : 1);
}
inline void* new_aligned(std::size_t n, std::align_val_t a) noexcept {
    note();
    return __libc_memalign(static_cast<std::size_t>(a), n ? n : 1);
}
inline void* or_throw(void* p) {
    if (!p) throw std::bad_alloc();
    return p;
}
}  // namespace alloc_counter

void* operator new(std::size_t n) { return alloc_counter::or_throw(alloc_counter::new_plain(n)); }
void* operator new[](std::size_t n) { return alloc_counter::or_throw(alloc_counter::new_plain(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return alloc_counter::new_plain(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return alloc_counter::new_plain(n); }
void* operator new(std::size_t n, std::align_val_t a) {
    return alloc_counter::or_throw(alloc_counter::new_aligned(n, a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return alloc_counter::or_throw(alloc_counter::new_aligned(n, a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return alloc_counter::new_aligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return alloc_counter::new_aligned(n, a);
}

void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }

#endif
