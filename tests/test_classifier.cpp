// End to end on real data: the CNN classifier trains on a Fashion-MNIST subset for a short time;
// its loss falls and its test accuracy is far above chance (0.1).
#include <doctest/doctest.h>

#include "diffuse/io/idx.hpp"
#include "diffuse/models/fashion_classifier.hpp"
#include "diffuse/testing/gradient_check.hpp"
#include "diffuse/train/classifier_training.hpp"

using namespace diffuse;

TEST_CASE("FashionClassifier: whole-model gradients match central differences") {
    // Every layer's backward is checked on its own elsewhere;
    // this checks their wiring (flatten, pooling routes, ReLU masks) on a batch of 2.
    FashionClassifier<double> model;
    ParamStore<double> store(model, 3);
    auto ws = make<FashionClassifier<double>::Workspace<2>>();
    Rng rng(5);
    fill_uniform(ws->x, rng, 0, 1);
    // Every parameter tensor (on an evenly spread sample of its elements) and the input image.
    auto dx = make<Tensor<double, 2, 28, 28, 1>>();
    std::vector<testing::Probe> probes = testing::probes(store);
    probes.push_back(testing::probe("input", ws->x, *dx));
    REQUIRE(probes.size() == 9);  // 4 weights, 4 biases, the input
    // A small step: a larger one moves some ReLU inputs across zero and swaps some max-pool winners.
    testing::GradCheckOptions opt;
    opt.step = 1e-7;
    opt.max_elements_per_probe = 64;
    auto rep = testing::check_gradients(
        probes, ws->logits, [&] { model.forward(*ws); },
        [&](auto dy) {
            std::copy(dy.begin(), dy.end(), ws->dlogits.begin());
            model.backward(*ws, dx->view());
        },
        opt);
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-5);
}

TEST_CASE("FashionClassifier: a short training run on real data learns") {
    const auto train = io::load_fashion_mnist(io::Split::train);
    const auto test = io::load_fashion_mnist(io::Split::test);
    FashionClassifier<float> model;
    ParamStore<float> store(model, 1);
    const double before = evaluate_classifier<100>(model, test, 500);
    ClassifierTrainOptions opt;
    opt.epochs = 1;
    opt.limit = 3000;
    std::vector<double> losses;
    train_classifier<32>(model, store, train, opt, 25, [&](const ClassifierProgress& p) { losses.push_back(p.loss); });
    REQUIRE(losses.size() >= 4);
    const double after = evaluate_classifier<100>(model, test, 500);
    MESSAGE("loss " << losses.front() << " -> " << losses.back() << ", accuracy " << before << " -> " << after);
    CHECK(losses.back() < 0.6 * losses.front());
    CHECK(after > 0.65);
    CHECK(after > before + 0.3);
}
