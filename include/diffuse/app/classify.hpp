// Scoring images with the shipped Fashion-MNIST classifier: 28x28 images in [-1, 1] (the
// generator's range, cropped) are mapped to the classifier's [0, 1] input and classified in
// batches of the classifier's compile-time workspace size.
#ifndef DIFFUSE_APP_CLASSIFY_HPP
#define DIFFUSE_APP_CLASSIFY_HPP

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/fashion_classifier.hpp"

namespace diffuse::app {

/// The classifier and its parameters, loaded from a safetensors file (any float storage).
struct LoadedClassifier {
    FashionClassifier<float> model;
    ParamStore<float> store;

    explicit LoadedClassifier(const std::string& path) : store(model) { io::load_params(store, path); }
};

/// Predicted labels of `count` images [count, 28, 28] in [-1, 1] (values outside are clipped),
/// classified N at a time (the last batch is padded by repeating its last image).
template <int N, class T>
std::vector<int> classify(const FashionClassifier<float>& model, const T* images, int count) {
    constexpr int side = FashionClassifier<float>::side, px = side * side, classes = FashionClassifier<float>::classes;
    auto ws = make<typename FashionClassifier<float>::template Workspace<N>>();
    std::vector<int> out(std::size_t(std::max(count, 0)));
    for (int b = 0; b < count; b += N) {
        const int n = std::min(N, count - b);
        for (int i = 0; i < N; ++i) {
            const T* src = images + std::size_t(b + std::min(i, n - 1)) * px;
            float* dst = ws->x.data() + std::size_t(i) * px;
            for (int k = 0; k < px; ++k) dst[k] = (std::clamp(float(src[k]), -1.0f, 1.0f) + 1.0f) * 0.5f;
        }
        model.forward(*ws);
        for (int i = 0; i < n; ++i) {
            const float* row = ws->logits.data() + std::size_t(i) * classes;
            out[std::size_t(b + i)] = int(std::max_element(row, row + classes) - row);
        }
    }
    return out;
}

}  // namespace diffuse::app

#endif
