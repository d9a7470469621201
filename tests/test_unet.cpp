#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "diffuse/models/unet.hpp"

#include "test_unet_util.hpp"

using namespace diffuse;

TEST_CASE("UNet Tiny: gradients of every parameter, z_t and the context (padded key), in double") {
    auto r = unet_test::check_unet_gradients<unet::TinyConfig>();
    INFO(r.report.summary());
    CHECK(r.report.clean());
    CHECK(r.report.max_rel_error < 1e-6);
    CHECK(r.report.checked == r.expected_checked);  // every parameter tensor and both inputs probed
    // The padded key of sample 1 gets no context gradient from any cross-attention; the others do.
    CHECK(r.padded_key_grad == 0.0);
    CHECK(r.other_key_grad > 0.0);
}

TEST_CASE("UNet: state-dict names, parameter counts and workspace sizes") {
    unet::UNet<float, unet::TinyConfig> model;
    ParamStore<float> store(model);
    CHECK(store.count() == unet::UNet<float, unet::TinyConfig>::parameter_count);
    auto has = [&](const std::string& name) {
        for (const auto& i : store.infos())
            if (i.name == name) return true;
        return false;
    };
    for (const char* name : {"time_embedding.linear_1.weight", "conv_in.weight", "down.0.res.0.conv1.weight",
                             "down.0.downsample.weight", "down.1.res.0.skip.weight", "down.1.attn.0.attn.q_proj.weight",
                             "mid.res1.norm1.weight", "mid.attn.attn.out_proj.bias", "mid.cross.attn.k_proj.weight",
                             "mid.res2.conv2.bias", "up.1.res.0.conv1.weight", "up.1.attn.0.norm.weight",
                             "up.1.upsample.conv.weight", "up.0.res.0.skip.weight", "norm_out.weight", "conv_out.bias"})
        CHECK_MESSAGE(has(name), name);
    CHECK_FALSE(has("down.0.attn.0.norm.weight"));
    CHECK_FALSE(has("down.1.downsample.weight"));
    CHECK_FALSE(has("up.0.upsample.conv.weight"));

    using Default = unet::UNet<float, unet::DefaultConfig>;
    using Seed = unet::UNet<float, unet::SeedConfig>;
    std::printf("unet::UNet parameters: Tiny %zu, Default %zu, Seed %zu; Default workspace at batch 32: %zu bytes\n",
                unet::UNet<float, unet::TinyConfig>::parameter_count, Default::parameter_count, Seed::parameter_count,
                Default::workspace_bytes<32>);
    static_assert(Default::parameter_count > 1'000'000 && Seed::parameter_count > Default::parameter_count);
}
