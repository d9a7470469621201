// Independent random streams derived from one user seed: stream_seed(seed, a, b) mixes the keys
// with splitmix64, so item i of a batch (or image i of epoch e) gets its own generator. A result
// then depends only on (seed, keys), not on the batch size, the order items are visited in, or on
// what an earlier call drew (the diffusers #4055 pitfall: a generator whose state advances between
// calls gives a different image for the same seed).
//
// A generic helper: it would sit well in core/rng.hpp.
#ifndef DIFFUSE_SAMPLE_SEED_STREAM_HPP
#define DIFFUSE_SAMPLE_SEED_STREAM_HPP

#include <cstdint>

#include "diffuse/core/rng.hpp"

namespace diffuse {

/// splitmix64's finalizer: a bijection of 64-bit words with good avalanche.
inline constexpr std::uint64_t mix64(std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

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

}  // namespace diffuse

#endif
