// Three levels halve the latent twice: a 6x6 latent (not divisible by 4) must not compile.
// expect: unet::UNet: the latent size must divide by 2\^\(levels-1\)
#include "diffuse/models/unet.hpp"

struct Config : diffuse::unet::TinyConfig {
#ifdef DIFFUSE_COMPILE_FAIL
    static constexpr int latent_size = 6;
#else
    static constexpr int latent_size = 8;
#endif
    static constexpr std::array<int, 3> widths{4, 8, 8};
    static constexpr std::array<bool, 3> attention{false, true, true};
};

int main() {
    diffuse::unet::UNet<float, Config> model;
    (void)model;
}
