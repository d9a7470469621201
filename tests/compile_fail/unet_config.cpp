// A UNet config whose widths (4, 8) do not divide by the GroupNorm group count (3) must not compile.
// expect: unet::UNet: the GroupNorm group count must divide every level width
#include "diffuse/models/unet.hpp"

struct Config : diffuse::unet::TinyConfig {
#ifdef DIFFUSE_COMPILE_FAIL
    using Norm = diffuse::norm::Group<3>;
#else
    using Norm = diffuse::norm::Group<4>;
#endif
    static constexpr std::array<int, 2> widths{4, 12};  // concatenations: 12 + 12 and 12 + 4
};

int main() {
    diffuse::unet::UNet<float, Config> model;
    (void)model;
}
