// The real images a Fréchet distance compares generated ones against: the first `count` of a fixed
// order of a labelled set (Fashion-MNIST's test split), as many as were generated. The order is a
// seeded permutation of the whole set dealt out class by class (the 1st image of each class in the
// permutation, in label order, then the 2nd of each, ...), so any prefix is balanced over the
// classes (ten classes and 10·k images: k of each) and a longer prefix extends a shorter one.
#ifndef DIFFUSE_APP_REFERENCE_IMAGES_HPP
#define DIFFUSE_APP_REFERENCE_IMAGES_HPP

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/png.hpp"

namespace diffuse::app {

/// The seed of the reference order the programs use (fixed: every run compares against the same images).
inline constexpr std::uint64_t kReferenceSeed = 0x46494454455354ULL;

/// The first `count` indices of the balanced order of `labels` (each in 0..classes-1) under `seed`.
/// A class that runs out is skipped in later rounds. Throws std::invalid_argument for a count
/// outside 0..labels.size() or a label outside 0..classes-1.
inline std::vector<int> balanced_reference_indices(const std::vector<std::uint8_t>& labels, int count, int classes,
                                                   std::uint64_t seed = kReferenceSeed) {
    if (count < 0 || std::size_t(count) > labels.size())
        throw std::invalid_argument("reference images: " + std::to_string(count) + " wanted, the set has " +
                                    std::to_string(labels.size()));
    std::vector<int> perm(labels.size());
    std::iota(perm.begin(), perm.end(), 0);
    Rng rng(seed);
    for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
    std::vector<std::vector<int>> by_class(std::size_t(classes > 0 ? classes : 0));
    for (int i : perm) {
        const int c = labels[std::size_t(i)];
        if (c >= classes)
            throw std::invalid_argument("reference images: label " + std::to_string(c) + " of image " +
                                        std::to_string(i) + " is outside 0.." + std::to_string(classes - 1));
        by_class[std::size_t(c)].push_back(i);
    }
    std::vector<int> out;
    out.reserve(std::size_t(count));
    for (std::size_t round = 0; int(out.size()) < count; ++round)
        for (const auto& members : by_class)
            if (round < members.size() && int(out.size()) < count) out.push_back(members[round]);
    return out;
}

/// The images of `set` at `indices`, [n, 28, 28] in [-1, 1] (the generator's range, bytes mapped as
/// the PNG reader maps them).
inline std::vector<float> gather_images(const io::FashionMnist& set, const std::vector<int>& indices) {
    const std::size_t px = std::size_t(set.images.rows) * std::size_t(set.images.cols);
    std::vector<float> out(indices.size() * px);
    for (std::size_t i = 0; i < indices.size(); ++i) {
        if (indices[i] < 0 || indices[i] >= set.images.count)
            throw std::out_of_range("gather_images: no image " + std::to_string(indices[i]));
        const std::uint8_t* src = set.images.image(indices[i]);
        for (std::size_t k = 0; k < px; ++k) out[i * px + k] = io::from_byte(src[k]);
    }
    return out;
}

}  // namespace diffuse::app

#endif
