// train's record of a run: OUT/train_log.csv, one row per logged step (the means over --log-every
// steps), appended across resumes, and OUT/loss.png, its loss curves drawn by gnuplot.
//
// gnuplot (Debian's gnuplot-nox) runs as a separate process fed a script on its stdin: the library
// and the programs link nothing for it, and without it the CSV is still written and the PNG skipped
// with one note line. Its pngcairo terminal draws antialiased PNGs.
#ifndef DIFFUSE_EXAMPLES_TRAINING_LOG_HPP
#define DIFFUSE_EXAMPLES_TRAINING_LOG_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/train/progress.hpp"

namespace cli {

class TrainingLog {
public:
    static constexpr const char* kHeader =
        "phase,step,loss,lr,images_per_second,elapsed_seconds,grad_norm,reconstruction,kl";

    /// A new log at `path` (an old file there is replaced), or with `resumed_steps` (each phase's
    /// step count in the checkpoint resumed from) the old log continued: its rows past those steps
    /// are dropped first, since the resumed run logs those steps again.
    explicit TrainingLog(std::string path, const std::map<std::string, std::int64_t>* resumed_steps = nullptr)
        : path_(std::move(path)) {
        std::vector<std::string> kept;
        if (resumed_steps) kept = rows_up_to(*resumed_steps);
        const std::string tmp = path_ + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            out << kHeader << '\n';
            for (const auto& r : kept) out << r << '\n';
            if (!out.flush()) throw std::runtime_error("cannot write the training log " + tmp);
        }
        std::filesystem::rename(tmp, path_);
        out_.open(path_, std::ios::app);
        if (!out_) throw std::runtime_error("cannot append to the training log " + path_);
    }

    const std::string& path() const { return path_; }

    /// One row: a logged step's figures (NaN ones left empty).
    void append(const diffuse::TrainProgress& p) {
        const auto num = [](double v) {
            if (!std::isfinite(v)) return std::string();
            char b[32];
            std::snprintf(b, sizeof b, "%.6g", v);
            return std::string(b);
        };
        out_ << diffuse::phase_name(p.phase) << ',' << p.step << ',' << num(p.loss) << ',' << num(p.lr) << ','
             << num(p.images_per_second) << ',' << num(p.elapsed_seconds) << ',' << num(p.grad_norm) << ','
             << num(p.reconstruction) << ',' << num(p.kl) << '\n';
        out_.flush();
        ++rows_[diffuse::phase_name(p.phase)];
    }

    /// Draws each phase's loss over its steps (log scale) into `png` with gnuplot. Without gnuplot,
    /// says so once and draws nothing; returns whether the PNG was written.
    bool plot(const std::string& png) {
        if (rows_.empty()) return false;
        if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
            if (!noted_)
                std::printf("note: gnuplot is not installed, so no %s (the CSV has the figures)\n", png.c_str());
            noted_ = true;
            return false;
        }
        // gnuplot's warnings (an empty x range while a phase has one row) would interleave with the
        // program's own output on stderr: they are dropped, and a drawing that fails is noted once.
        std::FILE* g = popen("gnuplot 2> /dev/null", "w");
        if (!g) return false;
        const std::string csv = quoted(path_);
        std::fprintf(g,
                     "set terminal pngcairo size %d,420 font ',10'\nset output %s\nset datafile separator ','\n"
                     "set logscale y\nset autoscale xfix\nset grid\nset xlabel 'step'\nset key top right\n",
                     rows_.size() > 1 ? 1000 : 560, quoted(png).c_str());
        if (rows_.size() > 1) std::fprintf(g, "set multiplot layout 1,%zu\n", rows_.size());
        const auto column = [&](const char* phase, int col, const char* title) {
            const std::string mine = "(strcol(1) eq '" + std::string(phase) + "' ? $";  // other phases: NaN
            return csv + " skip 1 using " + mine + "2 : NaN):" + mine + std::to_string(col) +
                   " : NaN) with lines lw 1.5" + (col == 8 ? " dt 2" : "") + " title '" + title + "'";
        };
        if (rows_.count("vae"))
            std::fprintf(g, "set title 'VAE'\nset ylabel 'loss'\nplot %s, %s, %s\n", column("vae", 3, "loss").c_str(),
                         column("vae", 8, "reconstruction (MSE)").c_str(),
                         column("vae", 9, "KL (before its weight)").c_str());
        if (rows_.count("diffusion"))
            std::fprintf(g, "set title 'diffusion (text encoder + UNet)'\nset ylabel 'loss (MSE)'\nplot %s\n",
                         column("diffusion", 3, "loss").c_str());
        if (rows_.size() > 1) std::fprintf(g, "unset multiplot\n");
        const bool drawn = pclose(g) == 0;
        if (!drawn && !noted_) std::printf("note: gnuplot could not draw %s (the CSV has the figures)\n", png.c_str());
        noted_ = noted_ || !drawn;
        return drawn;
    }

private:
    /// 'text' as a gnuplot string (a quote doubled).
    static std::string quoted(const std::string& s) {
        std::string q = "'";
        for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
        return q + "'";
    }

    /// The old log's rows whose step its phase's resumed run has reached, in order.
    std::vector<std::string> rows_up_to(const std::map<std::string, std::int64_t>& steps) {
        std::vector<std::string> kept;
        std::ifstream in(path_);
        std::string line;
        if (!std::getline(in, line) || line != kHeader) return kept;  // none, or another format: start afresh
        while (std::getline(in, line)) {
            if (std::count(line.begin(), line.end(), ',') != 8) continue;  // a row cut off by a kill
            const auto c1 = line.find(','), c2 = line.find(',', c1 + 1);
            const auto phase = steps.find(line.substr(0, c1));
            const std::string step = line.substr(c1 + 1, c2 - c1 - 1);
            if (phase == steps.end() || step.empty() || step.find_first_not_of("0123456789") != std::string::npos ||
                std::stoll(step) > phase->second)
                continue;
            kept.push_back(line);
            ++rows_[phase->first];
        }
        return kept;
    }

    std::string path_;
    std::ofstream out_;
    std::map<std::string, int> rows_;  // rows per phase: which panels the plot has
    bool noted_ = false;
};

}  // namespace cli

#endif
