// Trains the Fashion-MNIST CNN classifier on the 60,000 training images, reports the accuracy on
// the 10,000 test images and the training time, and saves the weights as safetensors.
#include <omp.h>

#include <cstdio>
#include <exception>

#include "diffuse/diffuse.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/fashion_classifier.hpp"
#include "diffuse/train/classifier_training.hpp"

#include "common/cli.hpp"
#include "common/output_paths.hpp"

int main(int argc, char** argv) {
    using namespace diffuse;
    ClassifierTrainOptions opt;
    long long seed = 1;
    std::string out = "fashion_classifier.safetensors", data_dir = io::fashion_mnist_dir();
    bool no_flip = false;
    cli::Parser cli("train_classifier", "train the Fashion-MNIST CNN classifier and report its test accuracy");
    cli.option("--epochs", opt.epochs, "passes over the training set")
        .option("--lr", opt.lr, "Adam learning rate (cosine-decayed)")
        .option("--seed", seed, "seed for initialization, shuffling and flips")
        .option("--limit", opt.limit, "train on the first N images only (0: all)")
        .option("--data", data_dir, "directory of the Fashion-MNIST IDX files")
        .option("--out", out, "where to save the trained weights (safetensors)")
        .flag("--no-flip", no_flip, "no random horizontal flips");
    cli.parse(argc, argv);
    if (opt.epochs < 1) cli.fail("--epochs must be at least 1");
    if (!(opt.lr > 0)) cli.fail("--lr must be positive");
    if (opt.limit < 0) cli.fail("--limit must not be negative");
    if (const std::string p = cli::unwritable_file(out); !p.empty()) cli.fail("--out: " + p);
    opt.seed = std::uint64_t(seed);
    opt.flip = !no_flip;

    try {
        const auto train = io::load_fashion_mnist(io::Split::train, data_dir);
        const auto test = io::load_fashion_mnist(io::Split::test, data_dir);
        FashionClassifier<float> model;
        ParamStore<float> store(model, opt.seed);
        std::printf("FashionClassifier: %zu parameters, %d threads, batch 64\n", store.count(), omp_get_max_threads());
        double seconds = 0;
        train_classifier<64>(model, store, train, opt, 200, [&](const ClassifierProgress& p) {
            seconds = p.seconds;
            std::printf("epoch %d  step %d/%d  loss %.4f  train acc %.4f  %.0f img/s  %.0fs left\n", p.epoch, p.step,
                        p.steps, p.loss, p.accuracy, p.step * 64.0 / p.seconds,
                        p.seconds / p.step * (p.steps - p.step));
            std::fflush(stdout);
        });
        const double acc = evaluate_classifier<100>(model, test);
        std::printf("test accuracy %.4f on %d images; training took %.1f s on %d threads\n", acc, test.images.count,
                    seconds, omp_get_max_threads());
        io::save_params(store, out);
        std::printf("saved %s\n", out.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "train_classifier: %s\n", e.what());
        return 1;
    }
}
