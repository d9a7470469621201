// The UNet's level recursion beyond the Tiny preset: three levels, two residual blocks per level,
// the learned time table; gradient-checked in double.
#include <doctest/doctest.h>

#include "test_unet_util.hpp"

using namespace diffuse;

namespace {
/// Three levels (4×4, 2×2, 1×1), two residual blocks per level, cross-attention at levels 0 and 2,
/// the learned time table over 10 steps.
struct ThreeLevelConfig : unet::TinyConfig {
    static constexpr std::array<int, 3> widths{4, 6, 8};
    static constexpr std::array<bool, 3> attention{true, false, true};
    static constexpr int res_blocks = 2;
    static constexpr unet::TimeKind time_embedding = unet::TimeKind::learned;
    static constexpr int timesteps = 10, time_features = 3, time_dim = 5;
};
}  // namespace

TEST_CASE("UNet with three levels, two blocks per level, learned time table: gradients in double") {
    // Step 3e-6 and a bound of 2e-6: the 1×1 level normalizes groups of 4 values, whose large third
    // derivatives give the default step's central differences a truncation error of ~1.4e-6
    // (measured; it falls to ~8e-7 at 3e-6, and round-off dominates below 1e-6).
    auto r = unet_test::check_unet_gradients<ThreeLevelConfig>(3e-6);
    INFO(r.report.summary());
    CHECK(r.report.clean());
    CHECK(r.report.max_rel_error < 2e-6);
    CHECK(r.report.checked == r.expected_checked);
    CHECK(r.padded_key_grad == 0.0);
    CHECK(r.other_key_grad > 0.0);
}
