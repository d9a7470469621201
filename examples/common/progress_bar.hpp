// How the programs show progress (--progress auto|bar|lines|none): on a terminal one line redrawn
// with '\r' (a bar, step/total, loss, learning rate, img/s, elapsed and time left); in a log file, a
// pipe or CI plain lines every --log-every steps. The figures come from the library's callbacks
// (diffuse/train/progress.hpp for training, SamplerOptions::on_step for sampling); this file only
// draws them. Training draws on stdout; sampling draws on stderr, so txt2img's stdout stays as it was.
#ifndef DIFFUSE_EXAMPLES_PROGRESS_BAR_HPP
#define DIFFUSE_EXAMPLES_PROGRESS_BAR_HPP

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include "diffuse/train/progress.hpp"

namespace cli {

enum class ProgressMode { bar, lines, none };

inline constexpr const char* kProgressHelp =
    "progress display: auto (a bar on a terminal, plain lines otherwise), bar, lines or none";

/// The mode --progress names for output to `stream` (auto: a bar when it is a terminal); nullopt for
/// an unknown name.
inline std::optional<ProgressMode> parse_progress(const std::string& flag, std::FILE* stream) {
    if (flag == "auto") return isatty(fileno(stream)) ? ProgressMode::bar : ProgressMode::lines;
    if (flag == "bar") return ProgressMode::bar;
    if (flag == "lines") return ProgressMode::lines;
    if (flag == "none") return ProgressMode::none;
    return std::nullopt;
}

/// What is wrong with a --progress value, or "" when it names a mode.
inline std::string progress_problem(const std::string& flag) {
    if (parse_progress(flag, stdout)) return {};
    return "--progress must be auto, bar, lines or none, not '" + flag + "'";
}

/// h:mm:ss, or "?" when unknown.
inline std::string format_duration(double s) {
    if (!(s >= 0) || s > 1e8) return "?";
    const long long t = (long long)(s + 0.5);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    return buf;
}

/// "[#######.............]": `width` cells, the done share filled.
inline std::string bar_cells(double fraction, int width = 20) {
    const int filled = std::clamp(int(fraction * width + 0.5), 0, width);
    return "[" + std::string(std::size_t(filled), '#') + std::string(std::size_t(width - filled), '.') + "]";
}

/// Redraws one terminal line: '\r', the text, then erase to the line's end (a shorter text leaves
/// nothing of the longer one behind).
inline void redraw_line(std::FILE* out, const std::string& text) {
    std::fprintf(out, "\r%s\033[K", text.c_str());
    std::fflush(out);
}

/// Says when a bar is due for a redraw: at most ten times a second, so fast steps do not flood a
/// terminal.
class RedrawClock {
public:
    bool due() {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_ < std::chrono::milliseconds(100)) return false;
        last_ = now;
        return true;
    }

private:
    std::chrono::steady_clock::time_point last_{};
};

/// Means of a phase's figures over the steps since the last logged one.
class StepAverage {
public:
    void add(const diffuse::TrainProgress& p) {
        loss_ += p.loss, norm_ += p.grad_norm, rec_ += p.reconstruction, kl_ += p.kl, ++n_;
    }
    bool empty() const { return n_ == 0; }
    /// `last` with its loss terms replaced by their means; starts a new interval.
    diffuse::TrainProgress take(diffuse::TrainProgress last) {
        if (n_ > 0) {
            const double n = double(n_);
            last.loss = loss_ / n, last.grad_norm = norm_ / n, last.reconstruction = rec_ / n, last.kl = kl_ / n;
        }
        loss_ = norm_ = rec_ = kl_ = 0, n_ = 0;
        return last;
    }

private:
    double loss_ = 0, norm_ = 0, rec_ = 0, kl_ = 0;  // NaN terms (absent in a phase) stay NaN
    long long n_ = 0;
};

/// "vae " / "diff" / "lora": the phase's column in the lines.
inline const char* phase_tag(diffuse::TrainPhase p) {
    return p == diffuse::TrainPhase::vae ? "vae " : p == diffuse::TrainPhase::diffusion ? "diff" : "lora";
}

/// The figures of one report: "loss 0.01234 (reconstruction …, KL …)  lr 1.00e-03  812 img/s".
inline std::string train_figures(const diffuse::TrainProgress& p) {
    char buf[160];
    int at = std::snprintf(buf, sizeof buf, "loss %.5f", p.loss);
    if (std::isfinite(p.reconstruction))
        at += std::snprintf(buf + at, sizeof buf - std::size_t(at), " (reconstruction %.5f, KL %.3f)", p.reconstruction,
                            p.kl);
    else if (std::isfinite(p.grad_norm))
        at += std::snprintf(buf + at, sizeof buf - std::size_t(at), "  grad norm %.3f", p.grad_norm);
    std::snprintf(buf + at, sizeof buf - std::size_t(at), "  lr %.2e  %.0f img/s", p.lr, p.images_per_second);
    return buf;
}

/// Shows a training phase's progress from its TrainProgress reports: a bar redrawn at most ten
/// times a second (and at logged steps), or one line per logged step, or nothing.
class TrainDisplay {
public:
    TrainDisplay(ProgressMode mode, long long log_every, std::FILE* out = stdout)
        : mode_(mode), every_(log_every), out_(out) {}

    /// One step's report. Returns the means since the last logged step when this step is logged
    /// (every log_every steps and the phase's last), whatever the mode: what a log file records.
    std::optional<diffuse::TrainProgress> step(const diffuse::TrainProgress& p) {
        average_.add(p);
        std::optional<diffuse::TrainProgress> logged;
        if (p.step % every_ == 0 || p.step == p.total) logged = shown_ = average_.take(p);
        if (mode_ == ProgressMode::lines && logged) {
            std::fprintf(out_, "%s %6lld/%lld  %s  %s elapsed  %s left\n", phase_tag(p.phase), (long long)p.step,
                         (long long)p.total, train_figures(*logged).c_str(), format_duration(p.elapsed_seconds).c_str(),
                         format_duration(p.seconds_left()).c_str());
            std::fflush(out_);
        } else if (mode_ == ProgressMode::bar && (logged || clock_.due())) {
            diffuse::TrainProgress now = shown_ ? *shown_ : p;  // the last interval's means, once there is one
            now.lr = p.lr, now.images_per_second = p.images_per_second;
            char head[64];
            std::snprintf(head, sizeof head, "%s %s %lld/%lld", phase_tag(p.phase), bar_cells(p.fraction()).c_str(),
                          (long long)p.step, (long long)p.total);
            redraw_line(out_, std::string(head) + "  " + train_figures(now) + "  " +
                                  format_duration(p.elapsed_seconds) + " elapsed  " +
                                  format_duration(p.seconds_left()) + " left");
            drawn_ = true;
        }
        return logged;
    }
    /// Before other output: erases a drawn bar (it comes back at the next step).
    void clear() {
        if (drawn_) std::fprintf(out_, "\r\033[K");
        drawn_ = false;
    }
    /// At the phase's end: the bar's last state stays on its own line.
    void finish() {
        if (drawn_) std::fprintf(out_, "\n");
        std::fflush(out_);
        drawn_ = false;
        average_ = StepAverage(), shown_.reset();  // the next phase starts afresh
    }

private:
    ProgressMode mode_;
    long long every_;
    std::FILE* out_;
    StepAverage average_;
    std::optional<diffuse::TrainProgress> shown_;
    bool drawn_ = false;
    RedrawClock clock_;
};

/// Shows a sampling program's progress over `images` images made by `runs` sampler runs: from
/// SamplerOptions::on_step a bar with the images done, the current run's step, elapsed and time
/// left (from the share of runs done: a run of a batch counts as much as a run of one image);
/// from images_done() after each batch one line ("12/48 images, 3.1 s"); or nothing.
class SamplingDisplay {
public:
    SamplingDisplay(ProgressMode mode, int images, int runs, std::FILE* out = stderr)
        : mode_(mode), images_(std::max(1, images)), runs_(std::max(1, runs)), out_(out) {}

    /// The callback for SamplerOptions::on_step; empty unless a bar is drawn. It captures only
    /// `this`, so std::function stores it without allocating.
    std::function<void(int, int)> callback() {
        if (mode_ != ProgressMode::bar) return {};
        return [this](int done, int total) {
            step_ = done, steps_ = total;
            if (done == total) ++finished_;
            if (done == total || clock_.due()) draw();
        };
    }
    /// After each batch: `n` images of all are done.
    void images_done(int n) {
        done_ = std::min(n, images_);
        if (mode_ == ProgressMode::lines) std::fprintf(out_, "%d/%d images, %.1f s\n", done_, images_, seconds());
        if (mode_ == ProgressMode::bar) draw();
    }
    /// Ends the bar's line (before other output to the same stream).
    void finish() {
        if (drawn_) std::fprintf(out_, "\n");
        drawn_ = false;
    }

private:
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
    void draw() {
        const double running = step_ < steps_ ? double(step_) / steps_ : 0.0;
        const double fraction = std::min(1.0, (finished_ + running) / runs_), s = seconds();
        char text[200];
        std::snprintf(text, sizeof text, "sampling %s %d/%d images  step %d/%d  %s elapsed  %s left",
                      bar_cells(fraction).c_str(), done_, images_, step_, steps_, format_duration(s).c_str(),
                      format_duration(fraction > 0 ? s / fraction * (1 - fraction) : -1).c_str());
        redraw_line(out_, text);
        drawn_ = true;
    }

    ProgressMode mode_;
    int images_, runs_, done_ = 0, finished_ = 0, step_ = 0, steps_ = 0;
    std::FILE* out_;
    bool drawn_ = false;
    RedrawClock clock_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace cli

#endif
