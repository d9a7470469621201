// Samplers for a trained denoiser: DDPM (ancestral), DDIM (eta), and in k-diffusion's sigma form
// Euler, Euler ancestral, Heun (Karras et al. 2022, algorithm 2 without churn: second order, two
// model calls a step but the last) and DPM-Solver++(2M) (Lu et al. 2022: second order from the
// previous step's prediction, one call a step), any number of steps, classifier-free guidance. They know nothing of the network:
// each step they call a user callback with a DenoiseCall and read back the model output.
//
//   sample(schedule, options, batch, item_size, seed, out, denoise [, workspace])
//
// With a SamplerWorkspace kept across calls (LatentDiffusion's SampleWorkspace holds one), a call
// allocates nothing once the workspace has run that batch size: no buffer, plan or generator is
// made per call or per step.
//
// The callback. It receives noisy latents z_t in the variance-preserving form the model was trained
// on (z_t = sqrt(ab)·z0 + sqrt(1 − ab)·eps; the sigma-form samplers rescale their own state before
// the call, diffusers' scale_model_input), one int32 timestep per item, and writes the model output
// (eps or v, SamplerOptions::prediction) for every item. `branch` says which text context to use:
//   conditional    all items: the prompt
//   unconditional  all items: the empty prompt, or a negative prompt — the callback decides
//   both           items [0, N) conditional, [N, 2N) unconditional: one batched call of 2N
// With guidance g != 1 the sampler asks for both branches (one call of 2N, or two of N when
// batch_branches is false, for a model built for batch N) and uses uncond + g·(cond − uncond).
// With g = 1 it asks for the conditional branch only.
//
// Timesteps. `steps` of the T training steps, evenly spaced, descending (diffusers' names):
//   leading   (S−1−i)·⌊T/S⌋ + offset     — diffusers' DDIM/DDPM default; never starts at T−1
//   trailing  round(T − i·T/S) − 1       — the default here: starts at T−1, pure noise (Lin et al. 2024)
//   linspace  round((T−1)·(S−1−i)/(S−1)) — diffusers' Euler default
// The sigma-form samplers step over the sigmas of those timesteps (or Karras et al.'s rho = 7 sigmas
// between the same ends: the usual partner of DPM-Solver++ at few steps), then 0; the model's timestep for a sigma comes from log-sigma interpolation
// (NoiseSchedule::sigma_to_t), rounded to an int for the callback (its exact value is in `t`).
// Every sampler starts from z_T ~ N(0, I) in the variance-preserving form (sigma form: x = z_T·sqrt(1 +
// σ_max²), which is exact; diffusers uses σ_max alone for linspace/trailing) and ends with the clean
// sample: the last DDPM/DDIM step goes to alpha_bar = 1 (diffusers' set_alpha_to_one), the others'
// to sigma 0, where every sigma-form sampler takes the prediction x0 itself (an Euler step).
//
// Partial and steered runs (img2img, inpainting: sample/img2img.hpp, sample/inpaint.hpp):
// sample(..., workspace, RunControl, hook) starts at control.first_step from given latents noised to
// that step's level (z = sqrt(ab)·z0 + sqrt(1 − ab)·eps, eps the item's first draw), calls
// hook(RunLevel) each time the state reaches a noise level, and with control.jumps re-noises each
// step back to its level and redoes it (RePaint): (jumps + 1)·model_calls(method, steps run) calls.
//
// Determinism. Item i draws all its noise (z_T and every ancestral step) from its own stream
// stream_rng(seed, first_item + i) (first_item: 0 unless a run is split into calls), created inside the call: the same seed gives bitwise the same samples on every
// call (no generator state carried between calls, the diffusers #4055 pitfall), and item i's sample
// does not depend on the batch size as long as the model's output for an item does not either.
#ifndef DIFFUSE_SAMPLE_SAMPLERS_HPP
#define DIFFUSE_SAMPLE_SAMPLERS_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/sample/noise_schedule.hpp"

namespace diffuse::diffusion {

enum class Method { ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m };

/// The samplers that step in k-diffusion's sigma form (x = z/sqrt(ab), x = x0 + σ·eps).
constexpr bool sigma_form(Method m) { return m != Method::ddpm && m != Method::ddim; }

/// Model calls of a run of `steps` steps (Heun corrects every step but the last, to sigma 0).
constexpr int model_calls(Method m, int steps) { return m == Method::heun ? 2 * steps - 1 : steps; }
enum class Spacing { leading, trailing, linspace };
enum class Branch { conditional, unconditional, both };

struct SamplerOptions {
    Method method = Method::ddim;
    int steps = 50;
    Spacing spacing = Spacing::trailing;
    int steps_offset = 0;  // added to leading timesteps (Stable Diffusion's config uses 1)
    Prediction prediction = Prediction::epsilon;
    double guidance = 1;         // classifier-free guidance scale; 1 = conditional branch only
    bool batch_branches = true;  // guided: one call of 2N rather than two calls of N
    double eta = 0;              // DDIM: 0 deterministic, 1 = DDPM's posterior variance
    bool karras_sigmas = false;  // sigma form: rho = 7 sigmas (Karras et al. 2022) between the same ends
    double clip_sample = 0;      // DDPM/DDIM: clamp the predicted x0 to [−c, c]; 0 = off
    // The index of this call's first item in a larger run: item i draws from stream_rng(seed,
    // first_item + i), so a run split into calls of any sizes gives the images of one big call.
    std::uint64_t first_item = 0;
    // Progress: called after each step a run takes as on_step(done, total), done from 1 to total =
    // the steps run, (steps − first_step)·(jumps + 1) with RePaint's redos (a Heun step's two model
    // calls are one step). Empty: never called. It sees no state (that is RunControl's hook) and
    // changes no bit of the result; calling it allocates nothing, and copying the options stores a
    // lambda of up to two pointers inline (libstdc++), so generate() stays allocation-free with one.
    std::function<void(int done, int total)> on_step = {};
};

/// One request to the model: fill out [batch, item_size] from z [batch, item_size].
template <class T>
struct DenoiseCall {
    const T* z = nullptr;                     // [batch, item_size] noisy latents (VP form)
    T* out = nullptr;                         // [batch, item_size] model output, to be written
    const std::int32_t* timesteps = nullptr;  // [batch] the same integer timestep for every item
    int batch = 0;                            // N, or 2N for Branch::both
    std::size_t item_size = 0;
    Branch branch = Branch::conditional;
    double t = 0;          // the exact (possibly fractional) timestep
    double alpha_bar = 0;  // z's noise level: z = sqrt(ab)·z0 + sqrt(1 − ab)·eps
    int step = 0, steps = 0;

    /// z and out as shaped views, e.g. call.input<2 * N, 8, 8, 4>(); throws if the size differs.
    template <int... D>
    View<const T, D...> input() const {
        check(Shape<D...>::size);
        return View<const T, D...>(z);
    }
    template <int... D>
    View<T, D...> output() const {
        check(Shape<D...>::size);
        return View<T, D...>(out);
    }
    template <int N>
    View<const std::int32_t, N> timestep_view() const {
        check_batch(N);
        return View<const std::int32_t, N>(timesteps);
    }

private:
    void check(std::size_t n) const {
        if (n != std::size_t(batch) * item_size)
            throw std::invalid_argument("DenoiseCall: a view of " + std::to_string(n) + " elements over a batch of " +
                                        std::to_string(batch) + " x " + std::to_string(item_size));
    }
    void check_batch(int n) const {
        if (n != batch)
            throw std::invalid_argument("DenoiseCall: " + std::to_string(n) + " timesteps for a batch of " +
                                        std::to_string(batch));
    }
};

namespace detail {

/// Timestep i of an S-step run over a schedule of T steps (see the header comment); throws when
/// it falls outside the schedule.
inline int sampling_timestep(int T, int steps, Spacing spacing, int offset, int i) {
    int t = 0;
    switch (spacing) {
        case Spacing::leading:
            t = (steps - 1 - i) * (T / steps) + offset;
            break;
        case Spacing::trailing:
            t = int(std::nearbyint(T - i * (double(T) / steps))) - 1;
            break;
        case Spacing::linspace:
            t = steps == 1 ? 0 : int(std::nearbyint(double(T - 1) * (steps - 1 - i) / (steps - 1)));
            break;
    }
    if (t < 0 || t >= T)
        throw std::invalid_argument("sampling_timesteps: timestep " + std::to_string(t) + " (offset " +
                                    std::to_string(offset) + ") is outside the schedule");
    return t;
}
inline void check_step_count(int T, int steps) {
    if (steps < 1 || steps > T)
        throw std::invalid_argument("sampling_timesteps: " + std::to_string(steps) + " steps of a " +
                                    std::to_string(T) + "-step schedule");
}

/// Karras et al.'s sigma i of n, from sigma_max down to sigma_min, evenly spaced in sigma^(1/rho).
inline double karras_sigma(double sigma_min, double sigma_max, int n, int i, double rho = 7) {
    const double lo = std::pow(sigma_min, 1 / rho), hi = std::pow(sigma_max, 1 / rho);
    const double r = n == 1 ? 0.0 : double(i) / (n - 1);
    return std::pow(hi + r * (lo - hi), rho);
}

}  // namespace detail

/// The descending timesteps of an S-step run over a schedule of T steps (see the header comment).
inline std::vector<int> sampling_timesteps(int T, int steps, Spacing spacing, int offset = 0) {
    detail::check_step_count(T, steps);
    std::vector<int> ts(std::size_t(steps), 0);
    for (int i = 0; i < steps; ++i) ts[std::size_t(i)] = detail::sampling_timestep(T, steps, spacing, offset, i);
    return ts;
}

/// Karras et al.'s sigmas: n values from sigma_max down to sigma_min, evenly spaced in sigma^(1/rho).
inline std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n, double rho = 7) {
    std::vector<double> s(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) s[std::size_t(i)] = detail::karras_sigma(sigma_min, sigma_max, n, i, rho);
    return s;
}

/// One step of a run: where the model is evaluated and where the step goes.
struct PlannedStep {
    double t;                  // model timestep (exact)
    double alpha_bar;          // noise level of the model input
    double alpha_bar_next;     // DDPM/DDIM: after the step (1 at the end)
    double sigma, sigma_next;  // sigma form: k-diffusion noise levels (sigma_next = 0 at the end)
};

/// The steps a sampler takes, into plan (resized to the step count: no allocation when its
/// capacity suffices). Timesteps and noise levels only, independent of the data.
inline void plan_steps(const NoiseSchedule& s, const SamplerOptions& o, std::vector<PlannedStep>& plan) {
    const int T = s.steps(), n = o.steps;
    detail::check_step_count(T, n);
    const bool euler = sigma_form(o.method);
    const auto t_at = [&](int i) { return detail::sampling_timestep(T, n, o.spacing, o.steps_offset, i); };
    plan.resize(std::size_t(n));
    for (int i = 0; i < n; ++i) plan[std::size_t(i)].t = t_at(i);  // checks every timestep first
    // Sigma form: the sigmas of the timesteps, or Karras sigmas between the same ends; then 0.
    const double sigma_max = s.sigma(int(plan.front().t)), sigma_min = s.sigma(int(plan.back().t));
    const auto sigma_at = [&](int i) {
        if (i == n) return 0.0;
        return o.karras_sigmas ? detail::karras_sigma(sigma_min, sigma_max, n, i)
                               : s.sigma(int(plan[std::size_t(i)].t));
    };
    for (int i = 0; i < n; ++i) {  // step i reads the timestep of step i + 1, still unchanged
        const int t = int(plan[std::size_t(i)].t);
        PlannedStep p{};
        if (euler) {
            p.sigma = sigma_at(i);
            p.sigma_next = sigma_at(i + 1);
            p.t = s.sigma_to_t(p.sigma);
            p.alpha_bar = NoiseSchedule::alpha_bar_of_sigma(p.sigma);
        } else {
            p.t = t;
            p.alpha_bar = s.alpha_bar(t);
            p.alpha_bar_next = i + 1 < n ? s.alpha_bar(int(plan[std::size_t(i) + 1].t)) : 1.0;
            p.sigma = NoiseSchedule::sigma_of(p.alpha_bar);
        }
        plan[std::size_t(i)] = p;
    }
}
inline std::vector<PlannedStep> plan_steps(const NoiseSchedule& s, const SamplerOptions& o) {
    std::vector<PlannedStep> plan;
    plan_steps(s, o, plan);
    return plan;
}

/// What a sampling run needs besides its output: per-item buffers and generators, and the plan of
/// its steps. Pass one to sample() to reuse it: it is sized on its first run (for that batch and
/// item size, guided or not, and room for a plan of every timestep of the schedule) and a later run
/// of the same batch and item size allocates nothing. Without one, sample() makes one per call.
template <class T>
class SamplerWorkspace {
public:
    int batch = 0;
    std::size_t item = 0, n = 0;
    bool guided = false, both = false;    // guided: two branches; both: asked for in one call of 2N
    AlignedBuffer<T> z, out;              // [2N, item]: room for both branches
    AlignedBuffer<T> eps, x0, noise;      // [N, item]
    AlignedBuffer<T> prev;                // [N, item]: DPM-Solver++'s previous x0, Heun's first slope
    AlignedBuffer<T> held;                // [N, item]: DPM-Solver++'s previous x0 kept for a RePaint redo
    std::vector<std::int32_t> timesteps;  // [2N], of which [N] when the branches are asked for apart
    std::vector<Rng> rngs;                // one stream per item
    std::vector<PlannedStep> plan;

    /// Ready for a run: buffers for (b, it), flags, every item's stream at its start for `seed`.
    void prepare(const NoiseSchedule& s, int b, std::size_t it, bool guided_, bool batched, std::uint64_t seed,
                 std::uint64_t first_item = 0) {
        if (b != batch || it != item) {
            batch = b;
            item = it;
            n = std::size_t(b) * it;
            z = AlignedBuffer<T>(2 * n);
            out = AlignedBuffer<T>(2 * n);
            eps = AlignedBuffer<T>(n);
            x0 = AlignedBuffer<T>(n);
            noise = AlignedBuffer<T>(n);
            prev = AlignedBuffer<T>(n);
            held = AlignedBuffer<T>(n);
            timesteps.assign(2 * std::size_t(b), 0);
            rngs.assign(std::size_t(b), Rng());
        }
        plan.reserve(std::size_t(s.steps()));  // any step count fits from the first run on
        guided = guided_;
        both = guided_ && batched;
        for (int i = 0; i < b; ++i) rngs[std::size_t(i)] = stream_rng(seed, first_item + std::uint64_t(i));
    }

    /// noise[i] ~ N(0, I) from item i's stream.
    void draw_noise() {
        for (int i = 0; i < batch; ++i) {
            T* p = noise.data() + std::size_t(i) * item;
            for (std::size_t k = 0; k < item; ++k) p[k] = T(rngs[std::size_t(i)].normal());
        }
    }
};

/// A run that starts part-way through its plan or is steered between steps (img2img, inpainting:
/// sample/img2img.hpp, sample/inpaint.hpp). The default is a plain run.
template <class T>
struct RunControl {
    int first_step = 0;        // run the plan's steps [first_step, steps) (img2img keeps the last ⌈s·steps⌉)
    const T* clean = nullptr;  // [batch, item] latents to start from, noised to plan[first_step]'s level with
                               // each item's first noise draw; null: pure noise (first_step 0 only)
    int jumps = 0;  // RePaint: after each step, re-noise back to the step's level and redo it this many times
};

/// The state of a run between steps, as its hook sees it: x [batch, item_size] at noise level
/// alpha_bar (1 at the end), in the sampler's own form: x = scale·z with z the VP form
/// sqrt(ab)·z0 + sqrt(1 − ab)·eps (scale 1 for DDPM/DDIM, 1/sqrt(ab) for the sigma form).
/// `step` is the step that comes next (steps at the end).
template <class T>
struct RunLevel {
    T* x = nullptr;
    int batch = 0;
    std::size_t item_size = 0;
    double alpha_bar = 0, scale = 1;
    int step = 0;
};

namespace detail {

/// The model output for latents zin [batch, item] at one planned step, guided, into run.out[0, n).
template <class T, class Denoise>
void evaluate(SamplerWorkspace<T>& r, const SamplerOptions& o, const PlannedStep& p, int step, const T* zin,
              Denoise& denoise) {
    const std::int32_t tint = std::int32_t(std::lround(p.t));
    std::fill_n(r.timesteps.begin(), (r.both ? 2 : 1) * r.batch, tint);
    DenoiseCall<T> call;
    call.timesteps = r.timesteps.data();
    call.item_size = r.item;
    call.t = p.t;
    call.alpha_bar = p.alpha_bar;
    call.step = step;
    call.steps = o.steps;
    const auto ask = [&](const T* z, T* out, int batch, Branch branch) {
        call.z = z;
        call.out = out;
        call.batch = batch;
        call.branch = branch;
        denoise(static_cast<const DenoiseCall<T>&>(call));
    };
    T* cond = r.out.data();
    if (!r.guided) {
        ask(zin, cond, r.batch, Branch::conditional);
        return;
    }
    T* uncond = cond + r.n;
    if (r.both) {
        if (zin != r.z.data()) std::copy(zin, zin + r.n, r.z.data());  // the sigma-form input already lives there
        std::copy(zin, zin + r.n, r.z.data() + r.n);
        ask(r.z.data(), cond, 2 * r.batch, Branch::both);
    } else {
        ask(zin, cond, r.batch, Branch::conditional);
        ask(zin, uncond, r.batch, Branch::unconditional);
    }
    const T g = T(o.guidance);
    simd::map2(r.n, cond, uncond, cond, [g](auto c, auto u) { return u + decltype(c)(g) * (c - u); });
}

/// x0 clamped to [−c, c], and eps re-derived from it so the step stays consistent.
template <class T>
void clip_x0(SamplerWorkspace<T>& r, double c, double ab, const T* z) {
    const T lo = T(-c), hi = T(c);
    simd::map(r.n, r.x0.data(), r.x0.data(),
              [lo, hi](auto x) { return xsimd::min(xsimd::max(x, decltype(x)(lo)), decltype(x)(hi)); });
    if (ab >= 1) return;
    const T a = T(1 / std::sqrt(1 - ab)), b = T(std::sqrt(ab) / std::sqrt(1 - ab));
    simd::map2(r.n, z, r.x0.data(), r.eps.data(),
               [a, b](auto zv, auto x) { return decltype(zv)(a) * zv - decltype(zv)(b) * x; });
}

}  // namespace detail

/// Draws `batch` samples of `item_size` elements into out [batch, item_size] (see the header comment),
/// with the buffers of `r` (allocates nothing when r has run this batch and item size before), run
/// as `control` says: from control.first_step, and hook(const RunLevel<T>&) called each time the
/// state reaches a noise level (after the start, after every step, and after every RePaint
/// re-noising and the redone step that follows it).
template <class T, class Denoise, class Hook>
void sample(const NoiseSchedule& s, const SamplerOptions& o, int batch, std::size_t item_size, std::uint64_t seed,
            T* out, Denoise&& denoise, SamplerWorkspace<T>& r, const RunControl<T>& control, Hook&& hook) {
    if (batch < 1 || item_size == 0) throw std::invalid_argument("sample: empty batch");
    if (!(o.guidance >= 0)) throw std::invalid_argument("sample: guidance must be >= 0");
    if (!(o.eta >= 0)) throw std::invalid_argument("sample: eta must be >= 0");
    if (control.first_step < 0 || control.first_step >= o.steps)
        throw std::invalid_argument("sample: first step " + std::to_string(control.first_step) + " of a " +
                                    std::to_string(o.steps) + "-step run");
    if (control.first_step > 0 && !control.clean)
        throw std::invalid_argument("sample: a run that starts part-way needs latents to start from");
    if (control.jumps < 0) throw std::invalid_argument("sample: jumps must be >= 0");
    r.prepare(s, batch, item_size, o.guidance != 1, o.batch_branches, seed, o.first_item);
    plan_steps(s, o, r.plan);
    const std::vector<PlannedStep>& plan = r.plan;
    const std::size_t n = r.n;
    const bool euler = sigma_form(o.method);
    const std::size_t first = std::size_t(control.first_step);

    // The state: z (VP form) for DDPM/DDIM; x = z/sqrt(ab) (k-diffusion form) for the others.
    r.draw_noise();
    if (!control.clean) {
        const T init = T(euler ? std::sqrt(1 + plan[0].sigma * plan[0].sigma) : 1.0);
        simd::map(n, r.noise.data(), out, [init](auto e) { return decltype(e)(init) * e; });
    } else {  // VP: sqrt(ab)·z0 + sqrt(1 − ab)·eps; sigma form: z0 + sigma·eps
        const double ab = plan[first].alpha_bar;
        const T a = T(euler ? 1.0 : std::sqrt(ab)), b = T(euler ? plan[first].sigma : std::sqrt(1 - ab));
        simd::map2(n, control.clean, r.noise.data(), out,
                   [a, b](auto z0, auto e) { return decltype(z0)(a) * z0 + decltype(z0)(b) * e; });
    }
    const auto reached = [&](std::size_t next) {  // the hook, at the level before step `next`
        const double ab = next < plan.size() ? plan[next].alpha_bar : 1.0;
        hook(static_cast<const RunLevel<T>&>(
            RunLevel<T>{out, batch, item_size, ab, euler ? 1 / std::sqrt(ab) : 1.0, int(next)}));
    };
    reached(first);
    const int run_steps = int(plan.size() - first) * (control.jumps + 1);
    int done = 0;
    const auto step_taken = [&] {
        if (o.on_step) o.on_step(++done, run_steps);
    };

    // The model's eps for sigma-form state x at planned step q, into r.eps (z = x·sqrt(ab): diffusers'
    // scale_model_input).
    const auto eps_at = [&](const T* x, const PlannedStep& q, int step) {
        const T c = T(std::sqrt(q.alpha_bar));
        simd::map(n, x, r.z.data(), [c](auto v) { return decltype(v)(c) * v; });
        detail::evaluate(r, o, q, step, r.z.data(), denoise);
        to_eps_x0(o.prediction, q.alpha_bar, r.z.data(), r.out.data(), n, r.eps.data(), static_cast<T*>(nullptr));
    };

    const auto take_step = [&](std::size_t i) {
        const PlannedStep& p = plan[i];
        if (euler) eps_at(out, p, int(i));
        else {
            detail::evaluate(r, o, p, int(i), out, denoise);
            to_eps_x0(o.prediction, p.alpha_bar, out, r.out.data(), n, r.eps.data(), r.x0.data());
            if (o.clip_sample > 0) detail::clip_x0(r, o.clip_sample, p.alpha_bar, out);
        }
        const double ab = p.alpha_bar, abn = p.alpha_bar_next;
        switch (o.method) {
            case Method::ddpm: {  // posterior mean of q(z_prev | z_t, x0), plus its variance ("fixed_small")
                const double alpha = ab / abn, beta = 1 - alpha;
                const T c0 = T(std::sqrt(abn) * beta / (1 - ab)), ct = T(std::sqrt(alpha) * (1 - abn) / (1 - ab));
                simd::map2(n, r.x0.data(), out, out,
                           [c0, ct](auto x0, auto z) { return decltype(z)(c0) * x0 + decltype(z)(ct) * z; });
                if (abn < 1) {
                    const T sd = T(std::sqrt(std::max((1 - abn) / (1 - ab) * beta, 1e-20)));
                    r.draw_noise();
                    simd::axpy(n, sd, r.noise.data(), out);
                }
                break;
            }
            case Method::ddim: {
                const double var = (1 - abn) / (1 - ab) * (1 - ab / abn);
                const double sd = o.eta * std::sqrt(std::max(var, 0.0));
                const T a = T(std::sqrt(abn)), b = T(std::sqrt(std::max(1 - abn - sd * sd, 0.0)));
                simd::map2(n, r.x0.data(), r.eps.data(), out,
                           [a, b](auto x0, auto e) { return decltype(x0)(a) * x0 + decltype(x0)(b) * e; });
                if (sd > 0) {
                    r.draw_noise();
                    simd::axpy(n, T(sd), r.noise.data(), out);
                }
                break;
            }
            case Method::euler:  // d = (x − x0)/sigma is exactly the predicted eps
                simd::axpy(n, T(p.sigma_next - p.sigma), r.eps.data(), out);
                break;
            case Method::heun: {  // Euler to sigma_next, then the trapezoid of both slopes (but to sigma 0)
                const T h = T(p.sigma_next - p.sigma);
                if (p.sigma_next == 0) {
                    simd::axpy(n, h, r.eps.data(), out);
                    break;
                }
                std::copy_n(r.eps.data(), n, r.prev.data());
                simd::map2(n, out, r.eps.data(), r.noise.data(),
                           [h](auto x, auto d) { return x + decltype(x)(h) * d; });
                eps_at(r.noise.data(), plan[i + 1], int(i));  // plan[i + 1].sigma is p.sigma_next
                const T half = h * T(0.5);
                simd::map2(n, r.prev.data(), r.eps.data(), r.eps.data(), [](auto a, auto b) { return a + b; });
                simd::axpy(n, half, r.eps.data(), out);
                break;
            }
            case Method::dpmpp_2m: {  // in lambda = −log sigma: x' = (σ'/σ)·x − expm1(−h)·D
                // D: this step's x0 = x − σ·eps, or with the previous step's x0 the second-order
                // (1 + 1/2r)·x0 − (1/2r)·x0_prev, r = h_prev/h; to sigma 0 it is x0 itself.
                const T sg = T(p.sigma);
                simd::map2(n, out, r.eps.data(), r.x0.data(), [sg](auto x, auto e) { return x - decltype(x)(sg) * e; });
                if (p.sigma_next == 0) {
                    std::copy_n(r.x0.data(), n, out);
                    break;
                }
                const double h = std::log(p.sigma / p.sigma_next);
                const T ratio = T(p.sigma_next / p.sigma), gain = T(-std::expm1(-h));
                if (i == first) {
                    simd::map2(n, out, r.x0.data(), out, [ratio, gain](auto x, auto d) {
                        return decltype(x)(ratio) * x + decltype(x)(gain) * d;
                    });
                } else {
                    const double rr = std::log(plan[i - 1].sigma / p.sigma) / h;  // r = h_prev / h
                    const T c1(gain * T(1 + 1 / (2 * rr))), c0(gain * T(-1 / (2 * rr)));
                    simd::map3(n, out, r.x0.data(), r.prev.data(), out, [ratio, c1, c0](auto x, auto d, auto dp) {
                        return decltype(x)(ratio) * x + decltype(x)(c1) * d + decltype(x)(c0) * dp;
                    });
                }
                std::copy_n(r.x0.data(), n, r.prev.data());
                break;
            }
            case Method::euler_ancestral: {
                const double s0 = p.sigma, s1 = p.sigma_next;
                const double up = std::min(s1, std::sqrt(s1 * s1 * (s0 * s0 - s1 * s1) / (s0 * s0)));
                const double down = std::sqrt(s1 * s1 - up * up);
                simd::axpy(n, T(down - s0), r.eps.data(), out);
                if (up > 0) {
                    r.draw_noise();
                    simd::axpy(n, T(up), r.noise.data(), out);
                }
                break;
            }
        }
    };

    for (std::size_t i = first; i < plan.size(); ++i) {
        const bool redo = control.jumps > 0;
        if (redo && o.method == Method::dpmpp_2m) std::copy_n(r.prev.data(), n, r.held.data());
        take_step(i);
        step_taken();
        reached(i + 1);
        for (int j = 0; j < control.jumps; ++j) {  // back to step i's level with fresh noise, and again
            const double ab = plan[i].alpha_bar, abn = i + 1 < plan.size() ? plan[i + 1].alpha_bar : 1.0;
            const T a = T(euler ? 1.0 : std::sqrt(ab / abn));
            const T b = T(euler ? std::sqrt(std::max(
                                      plan[i].sigma * plan[i].sigma - plan[i].sigma_next * plan[i].sigma_next, 0.0))
                                : std::sqrt(std::max(1 - ab / abn, 0.0)));
            r.draw_noise();
            simd::map2(n, out, r.noise.data(), out,
                       [a, b](auto x, auto e) { return decltype(x)(a) * x + decltype(x)(b) * e; });
            reached(i);
            if (o.method == Method::dpmpp_2m) std::copy_n(r.held.data(), n, r.prev.data());
            take_step(i);
            step_taken();
            reached(i + 1);
        }
    }
}

/// A plain run: from pure noise, every step, nothing between steps.
template <class T, class Denoise>
void sample(const NoiseSchedule& s, const SamplerOptions& o, int batch, std::size_t item_size, std::uint64_t seed,
            T* out, Denoise&& denoise, SamplerWorkspace<T>& r) {
    sample(s, o, batch, item_size, seed, out, denoise, r, RunControl<T>{}, [](const RunLevel<T>&) {});
}

/// The same with a workspace of its own (allocated for the call).
template <class T, class Denoise>
void sample(const NoiseSchedule& s, const SamplerOptions& o, int batch, std::size_t item_size, std::uint64_t seed,
            T* out, Denoise&& denoise) {
    SamplerWorkspace<T> r;
    sample(s, o, batch, item_size, seed, out, denoise, r);
}

/// Shaped form: out [N, ...] receives N samples.
template <Shaped X, class Denoise>
void sample(const NoiseSchedule& s, const SamplerOptions& o, std::uint64_t seed, X&& out, Denoise&& denoise,
            SamplerWorkspace<typename std::remove_cvref_t<X>::value_type>& r) {
    using S = shape_of<X>;
    sample(s, o, S::first, S::size / std::size_t(S::first), seed, out.data(), denoise, r);
}
template <Shaped X, class Denoise>
void sample(const NoiseSchedule& s, const SamplerOptions& o, std::uint64_t seed, X&& out, Denoise&& denoise) {
    SamplerWorkspace<typename std::remove_cvref_t<X>::value_type> r;
    sample(s, o, seed, out, denoise, r);
}

}  // namespace diffuse::diffusion

#endif
