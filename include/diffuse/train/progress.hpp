// Training progress as an application sees it: after every step a trainer's driver loop
// (LatentDiffusionTrainer::train_vae / train_diffusion, LoraTrainer::train) hands a TrainProgress to
// the caller's callback: phase, step and total, the step's loss and learning rate, and the figures
// every program would otherwise compute itself: images per second and elapsed time over this
// process's steps, and the time left at that rate. The library draws nothing; examples/common/
// progress_bar.hpp shows one way to (a bar on a terminal, plain lines in a log).
//
// The callback is a std::function, not a template parameter: it is stored and passed through
// non-template code (a program's phase objects, options structs), and one indirect call per training
// step (milliseconds to seconds of work) costs nothing measurable.
#ifndef DIFFUSE_TRAIN_PROGRESS_HPP
#define DIFFUSE_TRAIN_PROGRESS_HPP

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>

namespace diffuse {

enum class TrainPhase { vae, diffusion, lora };

inline const char* phase_name(TrainPhase p) {
    switch (p) {
        case TrainPhase::vae:
            return "vae";
        case TrainPhase::diffusion:
            return "diffusion";
        case TrainPhase::lora:
            return "lora";
    }
    return "?";
}

struct TrainProgress {
    static constexpr double none = std::numeric_limits<double>::quiet_NaN();

    TrainPhase phase = TrainPhase::diffusion;
    std::int64_t step = 0;                    // steps the phase has taken, this one included (1 after the first)
    std::int64_t total = 0;                   // the step the phase ends at
    std::int64_t first_step = 0;              // the phase's step count when this process began it (a resume: not 0)
    double loss = 0;                          // this step's loss (the global batch's mean)
    double lr = 0;                            // the learning rate this step's update used
    double images_per_second = 0;             // over this process's steps of the phase, all ranks' images
    double elapsed_seconds = 0;               // since this process began the phase
    double grad_norm = none;                  // before clipping
    double reconstruction = none, kl = none;  // the VAE's loss terms; NaN in the other phases

    /// Seconds to `total` at this process's rate so far (NaN before the first step is timed).
    double seconds_left() const {
        const std::int64_t done = step - first_step;
        if (done <= 0 || !(elapsed_seconds > 0)) return none;
        return elapsed_seconds / double(done) * double(total - step);
    }
    /// Share of the phase done, in [0, 1].
    double fraction() const { return total > 0 ? std::fmin(1.0, double(step) / double(total)) : 1.0; }
};

using TrainCallback = std::function<void(const TrainProgress&)>;

/// The clock of one phase in this process: started at construction (step first_step), it fills a
/// TrainProgress's timing fields for a later step.
class PhaseClock {
public:
    PhaseClock(TrainPhase phase, std::int64_t first_step, std::int64_t total, int images_per_step)
        : phase_(phase), first_(first_step), total_(total), images_(images_per_step) {}

    /// Phase, step, total and timing for `step`; the caller fills loss, lr and the rest.
    TrainProgress at(std::int64_t step) const {
        TrainProgress p;
        p.phase = phase_;
        p.step = step;
        p.total = total_;
        p.first_step = first_;
        p.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        const std::int64_t done = step - first_;
        p.images_per_second =
            done > 0 && p.elapsed_seconds > 0 ? double(images_) * double(done) / p.elapsed_seconds : 0.0;
        return p;
    }

private:
    TrainPhase phase_;
    std::int64_t first_, total_;
    int images_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// A trainer's driver loop: step() until steps() reaches `total`, handing on_step (if any) a
/// TrainProgress after each step with the loss, learning rate and gradient norm of the stats step()
/// returns (and the VAE's reconstruction and KL where the stats have them).
template <class Steps, class Step>
void drive_phase(TrainPhase phase, std::int64_t total, int images_per_step, const TrainCallback& on_step,
                 const Steps& steps, const Step& step) {
    const PhaseClock clock(phase, steps(), total, images_per_step);
    while (steps() < total) {
        const auto s = step();
        if (!on_step) continue;
        TrainProgress p = clock.at(steps());
        p.loss = s.loss, p.lr = s.lr, p.grad_norm = s.grad_norm;
        if constexpr (requires { s.kl; }) p.reconstruction = s.reconstruction, p.kl = s.kl;
        on_step(p);
    }
}

}  // namespace diffuse

#endif
