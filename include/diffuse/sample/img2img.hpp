// Image-to-image on the sampler level: a strength s ∈ (0, 1] keeps the last ⌈s·steps⌉ steps of a
// run's plan (diffusers keeps int(s·steps), which can be none; rounding up always keeps one), and
// the run starts there from the input's latents noised to that step's level
// (diffusion::RunControl). s = 1 runs every step from pure noise: plain text-to-image, the input
// unused (diffusers still adds sqrt(ab_T) of it, about 7 % on the scaled-linear schedule).
#ifndef DIFFUSE_SAMPLE_IMG2IMG_HPP
#define DIFFUSE_SAMPLE_IMG2IMG_HPP

#include <cmath>
#include <stdexcept>
#include <string>

#include "diffuse/sample/samplers.hpp"

namespace diffuse::diffusion {

/// How many of a run's `steps` steps strength s keeps: ⌈s·steps⌉ (s·steps within 1e-9 of a whole
/// number counts as that number, so 0.3 × 10 keeps 3). Throws unless s ∈ (0, 1].
inline int kept_steps(double strength, int steps) {
    if (!(strength > 0 && strength <= 1))
        throw std::invalid_argument("img2img: strength must be in (0, 1], got " + std::to_string(strength));
    if (steps < 1) throw std::invalid_argument("img2img: steps must be at least 1");
    return int(std::ceil(strength * steps - 1e-9));
}

/// The run control of img2img from latents `clean` [batch, item] at strength s: start at step
/// steps − ⌈s·steps⌉ from `clean` noised to its level, or from pure noise when every step is kept.
template <class T>
RunControl<T> img2img_start(double strength, int steps, const T* clean) {
    const int kept = kept_steps(strength, steps);
    RunControl<T> c;
    c.first_step = steps - kept;
    c.clean = kept == steps ? nullptr : clean;
    return c;
}

}  // namespace diffuse::diffusion

#endif
