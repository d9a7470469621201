// Small helpers shared by the benchmarks: a wall-clock timer with median-of-k (for the drivers that
// keep their own timing: bench_compare, bench_dist; the layer, Adam and training-step benchmarks run
// on Google Benchmark, gbench.hpp), result checks that abort the run with a message, Markdown
// tables, peak RSS, the register-only FMA loop that is the compute peak, and the plain fused loop
// that is Adam's memory-bandwidth ceiling.
#ifndef DIFFUSE_BENCHMARKS_BENCH_UTIL_HPP
#define DIFFUSE_BENCHMARKS_BENCH_UTIL_HPP

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/simd.hpp"

namespace diffuse::bench {

/// Seconds per call, one sample per timed run.
struct Timing {
    std::vector<double> t;
    double median() const {
        std::vector<double> s = t;
        std::sort(s.begin(), s.end());
        const std::size_t n = s.size();
        return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    }
    double min() const { return *std::min_element(t.begin(), t.end()); }
};

/// Seconds one call of f takes.
template <class F>
double seconds(F&& f) {
    const auto a = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

/// Times `iters` calls of f as one sample of the per-call time.
template <class F>
void time_once(Timing& out, F&& f, int iters = 1) {
    out.t.push_back(seconds([&] {
                        for (int i = 0; i < iters; ++i) f();
                    }) /
                    iters);
}

/// Peak resident set size of this process so far, in bytes (VmHWM of /proc/self/status).
inline double peak_rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string key;
    double kb = 0;
    while (status >> key)
        if (key == "VmHWM:") status >> kb;
    return kb * 1024;
}

/// printf into a std::string.
inline std::string fmt(const char* f, ...) {
    va_list a, b;
    va_start(a, f);
    va_copy(b, a);
    const int n = std::vsnprintf(nullptr, 0, f, a);
    va_end(a);
    std::string s(std::size_t(std::max(n, 0)), '\0');
    std::vsnprintf(s.data(), s.size() + 1, f, b);
    va_end(b);
    return s;
}

/// A failed check ends the benchmark: timing a wrong kernel is worthless.
[[noreturn]] inline void fail(const std::string& what) {
    std::fflush(stdout);
    std::fprintf(stderr, "CHECK FAILED: %s\n", what.c_str());
    std::exit(1);
}
inline void check(bool ok, const std::string& what) {
    if (!ok) fail(what);
}

/// Each thread steps kChains independent vector FMA chains, held in registers, `iters` times.
/// FLOPs = 2 · width · kChains · iters · threads. With m = 1 and c = 2^-10, every lane ends at
/// exactly iters · 2^-10 (exact in float for iters ≤ 2^24), which is the check.
struct FmaPeak {
    static constexpr int kChains = 12;  // > latency × FMA ports, and fits AVX2's 16 registers
    long iters = 1 << 20;
    int threads = num_threads();
    std::vector<float> lo, hi;
    volatile float m_in = 1.0f, c_in = 0x1p-10f;  // volatile: the compiler must not fold the loop

    void run() {
        lo.assign(threads, 0);
        hi.assign(threads, 0);
        const float m = m_in, c = c_in;
        parallel_for(threads, [&](int t) {
            using B = simd::batch<float>;
            B acc[kChains];
            for (auto& x : acc) x = B(0.0f);
            const B mv(m), cv(c);
            for (long k = 0; k < iters; ++k)
                for (int j = 0; j < kChains; ++j) acc[j] = xsimd::fma(acc[j], mv, cv);
            alignas(64) float out[simd::width<float>];
            float l = 1e30f, h = -1e30f;
            for (auto& x : acc) {
                x.store_aligned(out);
                for (float v : out) l = std::min(l, v), h = std::max(h, v);
            }
            lo[t] = l;
            hi[t] = h;
        });
    }
    double flops() const { return 2.0 * simd::width<float> * kChains * double(iters) * threads; }
    void check() {
        run();
        const float want = float(iters) * 0x1p-10f;
        for (int t = 0; t < threads; ++t)
            bench::check(lo[t] == want && hi[t] == want,
                         fmt("FMA loop: thread %d lanes in [%g, %g], want %g", t, lo[t], hi[t], want));
    }
};

/// Largest |got - want| over n values, relative to the largest |want| (so an all-small tensor
/// is judged on its own scale), or to `floor` if that is larger (for a reference that is zero up
/// to rounding, such as a gradient that cancels exactly). NaN anywhere fails every tolerance.
template <class A, class B>
double scaled_error(std::size_t n, const A* got, const B* want, std::size_t* where = nullptr, double floor = 1e-30) {
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = std::abs(double(got[i]) - double(want[i]));
        if (!(d <= err)) {  // also catches NaN
            err = d;
            if (where) *where = i;
        }
        scale = std::max(scale, std::abs(double(want[i])));
    }
    return err / std::max(scale, floor);
}

/// Aborts unless scaled_error(got, want) <= tol; returns the error for reporting.
template <class A, class B>
double check_close(const std::string& what, std::size_t n, const A* got, const B* want, double tol,
                   double floor = 1e-30) {
    std::size_t at = 0;
    const double e = scaled_error(n, got, want, &at, floor);
    if (!(e <= tol))
        fail(fmt("%s: scaled error %.3g > %.3g (at %zu: got %.9g, want %.9g)", what.c_str(), e, tol, at,
                 double(got[at]), double(want[at])));
    return e;
}

/// (got, want) pairs gathered one by one (a sample of a tensor's entries), then checked together.
struct Samples {
    explicit Samples(std::string w) : what(std::move(w)) {}
    std::string what;
    std::vector<double> got, want;
    void add(double g, double w) {
        got.push_back(g);
        want.push_back(w);
    }
    /// Aborts unless within tol (see check_close); returns the scaled error.
    double check(double tol) const { return check_close(what, got.size(), got.data(), want.data(), tol); }
};

/// A Markdown table with columns padded to line up in plain text too.
class Table {
public:
    /// right[i]: right-align column i (numbers).
    Table(std::vector<std::string> header, std::vector<bool> right)
        : header_(std::move(header)), right_(std::move(right)) {
        right_.resize(header_.size(), false);
    }
    void row(std::vector<std::string> cells) {
        cells.resize(header_.size());
        rows_.push_back(std::move(cells));
    }
    void print(std::FILE* out = stdout) const {
        std::vector<std::size_t> w(header_.size(), 3);
        for (std::size_t c = 0; c < w.size(); ++c) {
            w[c] = std::max(w[c], width(header_[c]));
            for (const auto& r : rows_) w[c] = std::max(w[c], width(r[c]));
        }
        auto line = [&](const std::vector<std::string>& cells) {
            std::fputs("|", out);
            for (std::size_t c = 0; c < w.size(); ++c) {
                const std::string pad(w[c] - width(cells[c]), ' ');
                std::fprintf(out, " %s%s%s |", right_[c] ? pad.c_str() : "", cells[c].c_str(),
                             right_[c] ? "" : pad.c_str());
            }
            std::fputs("\n", out);
        };
        line(header_);
        std::fputs("|", out);
        for (std::size_t c = 0; c < w.size(); ++c)
            std::fprintf(out, "%s%s|", std::string(w[c] + 1, '-').c_str(), right_[c] ? ":" : "-");
        std::fputs("\n", out);
        for (const auto& r : rows_) line(r);
    }

private:
    /// Characters, not bytes, of UTF-8 text (for "·" and "→" in cells).
    static std::size_t width(const std::string& s) {
        return std::size_t(std::count_if(s.begin(), s.end(), [](char ch) { return (ch & 0xC0) != 0x80; }));
    }
    std::vector<std::string> header_;
    std::vector<bool> right_;
    std::vector<std::vector<std::string>> rows_;
};

/// Adam's memory traffic with trivial arithmetic: the same 7 streams of n floats (read p, g, m, v;
/// write p, m, v) in the same fixed chunks over the same threads, computing m += g, v += g·g,
/// p -= a·m. Adam is memory-bound, so this loop's time is its floor on a machine.
inline void plain_fused(std::size_t n, float a, float* p, const float* g, float* m, float* v) {
    using B = simd::batch<float>;
    constexpr std::size_t W = simd::width<float>;
    for_each_flat_chunk(n, [&](std::size_t b, std::size_t e) {
        std::size_t i = b;
        for (; i + W <= e; i += W) {
            const B gv = B::load_unaligned(g + i);
            const B mv = B::load_unaligned(m + i) + gv;
            const B vv = B::load_unaligned(v + i) + gv * gv;
            (B::load_unaligned(p + i) - B(a) * mv).store_unaligned(p + i);
            mv.store_unaligned(m + i);
            vv.store_unaligned(v + i);
        }
        for (; i < e; ++i) {
            m[i] += g[i];
            v[i] += g[i] * g[i];
            p[i] -= a * m[i];
        }
    });
}

}  // namespace diffuse::bench

#endif
