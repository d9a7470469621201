// Learning-rate schedules: linear warm-up, then constant or a half-cosine decay, as diffusers'
// get_constant_schedule_with_warmup / get_cosine_schedule_with_warmup (num_cycles = 0.5):
//   step < warmup:  lr = base · step / warmup          (step 0 gets lr 0, as there)
//   constant:       lr = base
//   cosine:         lr = min + (base − min) · ½(1 + cos(π·p)),  p = (step − warmup)/(total − warmup)
// `step` counts optimizer steps already taken (LambdaLR's convention): set opt.lr = sched(k) before
// step k + 1. Unlike diffusers, p is clamped to 1, so the rate stays at `min_lr` past `total_steps`
// instead of rising again.
#ifndef DIFFUSE_TRAIN_LR_SCHEDULE_HPP
#define DIFFUSE_TRAIN_LR_SCHEDULE_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace diffuse {

struct LrSchedule {
    enum class Kind { constant, cosine };

    double base_lr = 1e-4;
    std::int64_t warmup_steps = 0;
    Kind kind = Kind::constant;
    std::int64_t total_steps = 0;  // cosine: where the decay reaches min_lr
    double min_lr = 0;             // cosine: the floor

    double operator()(std::int64_t step) const {
        if (step < warmup_steps) return base_lr * double(step) / double(std::max<std::int64_t>(1, warmup_steps));
        if (kind == Kind::constant) return base_lr;
        const double p =
            std::min(1.0, double(step - warmup_steps) / double(std::max<std::int64_t>(1, total_steps - warmup_steps)));
        return min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * p));
    }
};

}  // namespace diffuse

#endif
