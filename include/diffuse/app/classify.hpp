// Scoring images with the shipped Fashion-MNIST classifier: 28x28 images in [-1, 1] (the
// generator's range, cropped) are mapped to the classifier's [0, 1] input and classified in
// batches of the classifier's compile-time workspace size; the same pass can also collect the
// classifier's penultimate features for a Fréchet distance (frechet_distance.hpp).
#ifndef DIFFUSE_APP_CLASSIFY_HPP
#define DIFFUSE_APP_CLASSIFY_HPP

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/frechet_distance.hpp"
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

/// The predicted labels of `count` images [count, 28, 28] in [-1, 1] (values outside are clipped),
/// classified N at a time (the last batch is padded by repeating its last image); from the same
/// forward passes, when `features` is not null, each image's penultimate features (the
/// FashionClassifier::features post-ReLU activations of fc1) are added to it in image order: what a
/// Fréchet distance on the classifier's features is computed from.
template <int N, class T>
std::vector<int> classify_with_features(const FashionClassifier<float>& model, const T* images, int count,
                                        FeatureStats* features) {
    using C = FashionClassifier<float>;
    constexpr int px = C::side * C::side;
    if (features && features->dims() != C::features)
        throw std::invalid_argument("classify_with_features: FeatureStats of " + std::to_string(features->dims()) +
                                    " dimensions, the classifier has " + std::to_string(C::features));
    auto ws = make<typename C::template Workspace<N>>();
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
            const float* row = ws->logits.data() + std::size_t(i) * C::classes;
            out[std::size_t(b + i)] = int(std::max_element(row, row + C::classes) - row);
        }
        if (features) features->add(ws->hr.data(), n);  // the padding repeats are left out
    }
    return out;
}

/// The predicted labels alone (classify_with_features without features).
template <int N, class T>
std::vector<int> classify(const FashionClassifier<float>& model, const T* images, int count) {
    return classify_with_features<N>(model, images, count, nullptr);
}

}  // namespace diffuse::app

#endif
