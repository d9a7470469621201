// The first images of Fashion-MNIST's training set, for the tests that train a Tiny model on a few
// real images (the set is read once per test executable).
#ifndef DIFFUSE_TESTS_FASHION_IMAGES_HPP
#define DIFFUSE_TESTS_FASHION_IMAGES_HPP

#include "diffuse/io/idx.hpp"

namespace diffuse::test {

/// The first `count` training images of Fashion-MNIST, with their labels.
inline io::FashionMnist few_images(int count) {
    static const io::FashionMnist all = io::load_fashion_mnist(io::Split::train, DIFFUSE_FASHION_MNIST_DIR);
    return io::first_images(all, count);
}

}  // namespace diffuse::test

#endif
