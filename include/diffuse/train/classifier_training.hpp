// Training and scoring of an image classifier on an IDX data set (Fashion-MNIST): shuffled
// batches from a seeded generator, random horizontal flips, Adam with a cosine learning-rate
// decay, cross-entropy. Shared by the train_classifier example and its CTest test.
#ifndef DIFFUSE_TRAIN_CLASSIFIER_TRAINING_HPP
#define DIFFUSE_TRAIN_CLASSIFIER_TRAINING_HPP

#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/train/adam.hpp"

namespace diffuse {

struct ClassifierTrainOptions {
    int epochs = 10;
    double lr = 1e-3;
    double final_lr_fraction = 0.02;  // cosine decay from lr to lr * this
    std::uint64_t seed = 1;
    int limit = 0;     // train on the first `limit` images (0: all)
    bool flip = true;  // random horizontal flips (clothes are left-right symmetric)
};

struct ClassifierProgress {
    int epoch = 0, step = 0, steps = 0;
    double loss = 0;      // mean loss since the last report
    double accuracy = 0;  // training-batch accuracy since the last report
    double seconds = 0;   // since training began
};

namespace detail {
/// Copies image `index` (bytes, [28, 28]) into x as [28, 28, 1] floats in [0, 1], mirrored if asked.
template <class T>
void load_image(const io::IdxImages& images, int index, bool mirror, T* x) {
    const std::uint8_t* p = images.image(index);
    const int h = images.rows, w = images.cols;
    for (int r = 0; r < h; ++r)
        for (int c = 0; c < w; ++c) x[r * w + c] = T(p[r * w + (mirror ? w - 1 - c : c)]) / T(255);
}
}  // namespace detail

/// Trains `model` (its parameters in `store`) with batches of N; calls report(progress) after
/// every `report_every` steps and at the end of each epoch.
template <int N, class Model, class T, class Report>
void train_classifier(const Model& model, ParamStore<T>& store, const io::FashionMnist& data,
                      const ClassifierTrainOptions& opt, int report_every, Report report) {
    auto ws = make<typename Model::template Workspace<N>>();
    Tensor<int, N> labels;
    Adam<T> adam(store, AdamOptions{.lr = opt.lr});
    Rng rng(opt.seed);
    const int count = opt.limit > 0 ? std::min(opt.limit, data.images.count) : data.images.count;
    const int steps_per_epoch = count / N;
    const int steps = steps_per_epoch * opt.epochs;
    std::vector<int> order(static_cast<std::size_t>(count));
    const auto start = std::chrono::steady_clock::now();
    int step = 0;
    for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
        std::iota(order.begin(), order.end(), 0);
        for (int i = count - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[rng.below(std::uint64_t(i) + 1)]);
        double loss_sum = 0, acc_sum = 0;
        int since = 0;
        for (int b = 0; b < steps_per_epoch; ++b, ++step) {
            for (int i = 0; i < N; ++i) {
                const int idx = order[std::size_t(b * N + i)];
                detail::load_image(data.images, idx, opt.flip && rng.uniform() < 0.5, ws->x.data() + i * 28 * 28);
                labels[std::size_t(i)] = data.labels.labels[std::size_t(idx)];
            }
            model.forward(*ws);
            ws->dlogits.fill(0);
            loss_sum += double(cross_entropy(ws->logits, labels, ws->dlogits));
            acc_sum += accuracy(ws->logits, labels);
            ++since;
            store.zero_grad();
            model.backward(*ws);
            const double progress = double(step) / std::max(1, steps - 1);
            adam.lr =
                opt.lr * (opt.final_lr_fraction + (1 - opt.final_lr_fraction) * 0.5 * (1 + std::cos(M_PI * progress)));
            adam.step();
            const bool epoch_end = b + 1 == steps_per_epoch;
            if ((report_every > 0 && (step + 1) % report_every == 0) || epoch_end) {
                const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                report(ClassifierProgress{epoch, step + 1, steps, loss_sum / since, acc_sum / since, secs});
                loss_sum = acc_sum = 0;
                since = 0;
            }
        }
    }
}

/// Share of the first `limit` images (0: all) whose predicted class equals the label; batches of N
/// (a remainder smaller than N is scored in a final padded batch).
template <int N, class Model>
double evaluate_classifier(const Model& model, const io::FashionMnist& data, int limit = 0) {
    using T = std::remove_cvref_t<decltype(*model.fc1.weight.value_ptr)>;
    auto ws = make<typename Model::template Workspace<N>>();
    const int count = limit > 0 ? std::min(limit, data.images.count) : data.images.count;
    int correct = 0;
    for (int b = 0; b < count; b += N) {
        const int n = std::min(N, count - b);
        for (int i = 0; i < N; ++i)
            detail::load_image(data.images, b + std::min(i, n - 1), false, ws->x.data() + i * 28 * 28);
        model.forward(*ws);
        for (int i = 0; i < n; ++i) {
            const T* row = ws->logits.data() + i * Model::classes;
            const int pred = int(std::max_element(row, row + Model::classes) - row);
            correct += pred == data.labels.labels[std::size_t(b + i)];
        }
    }
    return double(correct) / count;
}

}  // namespace diffuse

#endif
