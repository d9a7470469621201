// A small, fully specified random generator (xoshiro256**, seeded by splitmix64) with our own
// uniform and normal transforms, so a seed gives the same numbers with every compiler and libc.
#ifndef DIFFUSE_CORE_RNG_HPP
#define DIFFUSE_CORE_RNG_HPP

#include <cmath>
#include <cstdint>

namespace diffuse {

/// splitmix64's finalizer: a bijection of 64-bit words with good avalanche.
inline constexpr std::uint64_t mix64(std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

    void reseed(std::uint64_t seed) {
        for (auto& s : s_) {
            s = mix64(seed);
            seed += 0x9e3779b97f4a7c15ULL;
        }
        has_spare_ = false;
    }

    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    /// Uniform in [0, 1) with 53 random bits.
    double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    /// Uniform integer in [0, n).
    std::uint64_t below(std::uint64_t n) { return next_u64() % n; }
    /// Standard normal (Box-Muller; the second value is kept for the next call).
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double a = 6.283185307179586 * u2;
        spare_ = r * std::sin(a);
        has_spare_ = true;
        return r * std::cos(a);
    }

    /// The whole state, for checkpoints that resume exactly.
    struct State {
        std::uint64_t s[4];
        double spare;
        bool has_spare;
    };
    State state() const { return {{s_[0], s_[1], s_[2], s_[3]}, spare_, has_spare_}; }
    void set_state(const State& st) {
        for (int i = 0; i < 4; ++i) s_[i] = st.s[i];
        spare_ = st.spare;
        has_spare_ = st.has_spare;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4]{};
    double spare_ = 0;
    bool has_spare_ = false;
};

// Independent random streams derived from one seed: stream_seed(seed, a, b) folds the keys in
// with mix64, so item i of a batch (or image i of epoch e) gets its own generator and a result
// depends only on (seed, keys), not on batch size, visiting order or what an earlier call drew
// (the diffusers #4055 pitfall).
/// The seed of stream (keys...) under seed: each key is folded in through mix64.
template <class... K>
constexpr std::uint64_t stream_seed(std::uint64_t seed, K... keys) {
    std::uint64_t s = mix64(seed);
    ((s = mix64(s ^ mix64(std::uint64_t(keys) + 0x632be59bd9b4e019ULL))), ...);
    return s;
}

/// A generator for stream (keys...) under seed.
template <class... K>
Rng stream_rng(std::uint64_t seed, K... keys) {
    return Rng(stream_seed(seed, keys...));
}

/// Fill any tensor or view with N(0, stddev^2) or U(lo, hi).
template <class X>
void fill_normal(X&& x, Rng& rng, double stddev = 1.0) {
    for (auto& v : x) v = decltype(+v)(rng.normal() * stddev);
}
template <class X>
void fill_uniform(X&& x, Rng& rng, double lo, double hi) {
    for (auto& v : x) v = decltype(+v)(rng.uniform(lo, hi));
}

}  // namespace diffuse

#endif
