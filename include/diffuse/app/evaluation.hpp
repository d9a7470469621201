// Scoring a text-to-image model by what a classifier sees in its images: for each class, the share
// of images generated from that class's prompt that the classifier assigns to the class
// ("conditional accuracy"), their mean, and what each class is most often mistaken for; printed as
// a Markdown table beside the classifier's own test accuracy (the ceiling) and the VAE's PSNR.
#ifndef DIFFUSE_APP_EVALUATION_HPP
#define DIFFUSE_APP_EVALUATION_HPP

#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/class_prompts.hpp"
#include "diffuse/io/idx.hpp"

namespace diffuse::app {

class ConditionalAccuracy {
public:
    /// The classifier's predictions for images generated from `label`'s prompt.
    void add(int label, const std::vector<int>& predictions) {
        check(label);
        for (int p : predictions) {
            check(p);
            ++counts_[std::size_t(label)][std::size_t(p)];
        }
    }
    int samples(int label) const {
        int n = 0;
        for (int c : counts_[std::size_t(label)]) n += c;
        return n;
    }
    /// Share of label's images classified as label (0 when it has none).
    double accuracy(int label) const {
        const int n = samples(label);
        return n ? double(counts_[std::size_t(label)][std::size_t(label)]) / n : 0.0;
    }
    /// Unweighted mean over the classes that have images.
    double mean_accuracy() const {
        double s = 0;
        int k = 0;
        for (int c = 0; c < kClassCount; ++c)
            if (samples(c)) s += accuracy(c), ++k;
        return k ? s / k : 0.0;
    }
    /// The other class label's images are most often classified as (-1 when none is wrong).
    int most_confused_with(int label) const {
        const auto& row = counts_[std::size_t(label)];
        int best = -1, most = 0;
        for (int c = 0; c < kClassCount; ++c)
            if (c != label && row[std::size_t(c)] > most) best = c, most = row[std::size_t(c)];
        return best;
    }
    int count(int label, int predicted) const { return counts_[std::size_t(label)][std::size_t(predicted)]; }

private:
    static void check(int label) {
        if (label < 0 || label >= kClassCount)
            throw std::out_of_range("ConditionalAccuracy: label " + std::to_string(label) + " is outside 0..9");
    }
    std::array<std::array<int, kClassCount>, kClassCount> counts_{};  // [prompted class, predicted class]
};

/// The figures of one evaluation run.
struct EvaluationSummary {
    double vae_psnr = 0;             // dB, mean over the test images
    int vae_images = 0;
    double classifier_accuracy = 0;  // on the test set: the ceiling for conditional accuracy
};

/// The Markdown report: one row per class, the mean, then the reference figures.
inline std::string markdown_report(const ConditionalAccuracy& acc, const EvaluationSummary& s) {
    std::string out = "| class | prompt | images | classified as the class | most often mistaken for |\n"
                      "|---|---|---:|---:|---|\n";
    char line[256];
    int total = 0;
    for (int c = 0; c < kClassCount; ++c) {
        const int other = acc.most_confused_with(c);
        std::snprintf(line, sizeof line, "| %s | %s | %d | %.3f | %s |\n", io::kFashionMnistClasses[std::size_t(c)],
                      class_prompt(c).c_str(), acc.samples(c), acc.accuracy(c),
                      other < 0 ? "-" : (std::string(io::kFashionMnistClasses[std::size_t(other)]) + " (" +
                                         std::to_string(acc.count(c, other)) + ")").c_str());
        out += line;
        total += acc.samples(c);
    }
    std::snprintf(line, sizeof line, "| **mean** | | %d | **%.3f** | |\n\n", total, acc.mean_accuracy());
    out += line;
    std::snprintf(line, sizeof line,
                  "| reference | value |\n|---|---:|\n"
                  "| conditional accuracy (mean over classes) | %.3f |\n"
                  "| classifier test accuracy (the ceiling) | %.4f |\n"
                  "| VAE reconstruction PSNR, %d test images at 32x32 | %.2f dB |\n",
                  acc.mean_accuracy(), s.classifier_accuracy, s.vae_images, s.vae_psnr);
    out += line;
    return out;
}

}  // namespace diffuse::app

#endif
