// Four VAE levels halve the image three times: a 12x12 image (not divisible by 8) must not compile.
// expect: vae::Config: the image size must divide by 2\^\(levels-1\)
#include "diffuse/models/vae.hpp"

#ifdef DIFFUSE_COMPILE_FAIL
constexpr int kImageSize = 12;
#else
constexpr int kImageSize = 16;
#endif
using Cfg = diffuse::vae::Config<kImageSize, 1, std::array{4, 4, 8, 8}, 2, 1, diffuse::norm::Group<2>>;

int main() {
    diffuse::vae::AutoencoderKL<float, Cfg> model;
    (void)model;
}
