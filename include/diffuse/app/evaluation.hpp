// Scoring a text-to-image model by what a classifier sees in its images: for each class, the share
// of images generated from that class's prompt that the classifier assigns to the class
// ("conditional accuracy"), their mean, and what each class is most often mistaken for; printed as
// a Markdown table beside the classifier's own test accuracy (the ceiling) and the VAE's PSNR.
// With several prompt wordings, one row per wording: its mean and worst class, its difference to
// the training wording and its Fréchet distance to real test images on the classifier's features.
#ifndef DIFFUSE_APP_EVALUATION_HPP
#define DIFFUSE_APP_EVALUATION_HPP

#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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
    /// The lowest accuracy over the classes that have images, and that class (-1, 0 when none has).
    std::pair<int, double> worst_class() const {
        std::pair<int, double> worst{-1, 0.0};
        for (int c = 0; c < kClassCount; ++c)
            if (samples(c) && (worst.first < 0 || accuracy(c) < worst.second)) worst = {c, accuracy(c)};
        return worst;
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
    int vae_images = 0;              // 0: not measured
    double classifier_accuracy = 0;  // on the test set: the ceiling for conditional accuracy
    double fid = 0;                  // Fréchet distance on classifier features (frechet_distance.hpp)
    long fid_images = 0;             // generated images it used, as many test images; 0: not computed
};

/// The Markdown report: one row per class, the mean, then the reference figures.
inline std::string markdown_report(const ConditionalAccuracy& acc, const EvaluationSummary& s) {
    std::string out =
        "| class | prompt | images | classified as the class | most often mistaken for |\n"
        "|---|---|---:|---:|---|\n";
    char line[256];
    int total = 0;
    for (int c = 0; c < kClassCount; ++c) {
        const int other = acc.most_confused_with(c);
        std::snprintf(line, sizeof line, "| %s | %s | %d | %.3f | %s |\n", io::kFashionMnistClasses[std::size_t(c)],
                      class_prompt(c).c_str(), acc.samples(c), acc.accuracy(c),
                      other < 0 ? "-"
                                : (std::string(io::kFashionMnistClasses[std::size_t(other)]) + " (" +
                                   std::to_string(acc.count(c, other)) + ")")
                                      .c_str());
        out += line;
        total += acc.samples(c);
    }
    std::snprintf(line, sizeof line, "| **mean** | | %d | **%.3f** | |\n\n", total, acc.mean_accuracy());
    out += line;
    std::snprintf(line, sizeof line,
                  "| reference | value |\n|---|---:|\n"
                  "| conditional accuracy (mean over classes) | %.3f |\n"
                  "| classifier test accuracy (the ceiling) | %.4f |\n",
                  acc.mean_accuracy(), s.classifier_accuracy);
    out += line;
    if (s.vae_images > 0)
        std::snprintf(line, sizeof line, "| VAE reconstruction PSNR, %d test images at 32x32 | %.2f dB |\n",
                      s.vae_images, s.vae_psnr);
    else std::snprintf(line, sizeof line, "| VAE reconstruction PSNR | not measured |\n");
    out += line;
    if (s.fid_images > 0) {
        std::snprintf(line, sizeof line, "| FID (classifier features), %ld generated vs %ld test images | %.2f |\n",
                      s.fid_images, s.fid_images, s.fid);
        out += line;
    }
    return out;
}

/// What one prompt wording scored: the accuracy of its images per class, and the Fréchet distance
/// of their classifier features to those of as many real test images.
struct WordingScore {
    std::string wording;
    ConditionalAccuracy accuracy;
    double fid = 0;
    long images = 0;  // generated, all classes together; as many test images on the other side
};

namespace detail {
inline std::string markdown_cell(std::string_view text) {
    std::string out;
    for (char ch : text) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return out;
}
}  // namespace detail

/// The Markdown table of a wording comparison: rows[0] is the training wording, the rest held out.
/// One row per wording (mean conditional accuracy, worst class, difference to the training wording,
/// FID), then the mean over the held-out wordings and the held-out wording of lowest mean accuracy.
inline std::string markdown_wording_report(const std::vector<WordingScore>& rows) {
    if (rows.empty()) throw std::invalid_argument("markdown_wording_report: no wordings");
    const double base = rows[0].accuracy.mean_accuracy();
    std::string out =
        "| wording | images | mean conditional accuracy | min class accuracy | vs training | "
        "FID (classifier features) |\n|---|---:|---:|---|---:|---:|\n";
    auto row = [&](const std::string& name, long images, double mean, const std::string& worst, double fid) {
        char figures[160];  // the wording itself may be of any length: appended, not formatted
        std::snprintf(figures, sizeof figures, " | %ld | %.3f | %s | %+.3f | %.2f |\n", images, mean, worst.c_str(),
                      mean - base, fid);
        out += "| " + name + figures;
    };
    auto worst_text = [](const ConditionalAccuracy& a) {
        const auto [c, v] = a.worst_class();
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.3f (%s)", v, c < 0 ? "-" : io::kFashionMnistClasses[std::size_t(c)]);
        return std::string(buf);
    };
    for (std::size_t i = 0; i < rows.size(); ++i)
        row(detail::markdown_cell(rows[i].wording) + (i == 0 ? " (training)" : ""), rows[i].images,
            rows[i].accuracy.mean_accuracy(), worst_text(rows[i].accuracy), rows[i].fid);
    if (rows.size() > 1) {
        double mean = 0, min = 0, fid = 0;
        long images = 0;
        std::size_t worst = 1;
        for (std::size_t i = 1; i < rows.size(); ++i) {
            mean += rows[i].accuracy.mean_accuracy();
            min += rows[i].accuracy.worst_class().second;
            fid += rows[i].fid;
            images += rows[i].images;
            if (rows[i].accuracy.mean_accuracy() < rows[worst].accuracy.mean_accuracy()) worst = i;
        }
        const double k = double(rows.size() - 1);
        char mean_min[32];
        std::snprintf(mean_min, sizeof mean_min, "%.3f (mean)", min / k);
        const std::string held_out = std::to_string(rows.size() - 1) + " held-out wording" + (k == 1 ? "" : "s");
        row("**mean over " + held_out + "**", images, mean / k, mean_min, fid / k);
        row("**worst held-out wording:** " + detail::markdown_cell(rows[worst].wording), rows[worst].images,
            rows[worst].accuracy.mean_accuracy(), worst_text(rows[worst].accuracy), rows[worst].fid);
    }
    return out;
}

}  // namespace diffuse::app

#endif
