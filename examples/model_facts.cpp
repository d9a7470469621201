// Prints what every model of every preset costs, all of it known at compile time: parameter
// counts and workspace bytes (activations, caches and gradient scratch) for a batch; the UNet at the
// latent size and text context of its preset's VAE and text encoder, as LatentDiffusion builds it.
#include <cstdio>

#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/models/presets.hpp"

using namespace diffuse;

template <class Preset, int N>
void print_preset(const char* name) {
    using Vae = vae::AutoencoderKL<float, typename Preset::vae>;
    using Text = clip::TextEncoder<float, typename Preset::clip>;
    using Unet = unet::UNet<float, latent_diffusion::UNetConfig<Preset>>;  // at the latent of the preset's VAE
    auto row = [&](const char* model, std::size_t params, std::size_t ws) {
        std::printf("| %s | %s | %zu | %.2f MB | %d | %.1f MB |\n", name, model, params, params * 4 / 1e6, N, ws / 1e6);
    };
    row("vae::AutoencoderKL", Vae::parameter_count, Vae::template workspace_bytes<N>);
    row("clip::TextEncoder", Text::parameter_count, Text::template workspace_bytes<N>);
    row("unet::UNet", Unet::parameter_count, Unet::template workspace_bytes<N>);
    if constexpr (requires { typename Preset::seed_diffusion; }) {
        using Seed = SeedDiffusion<float, typename Preset::seed_diffusion>;
        row("SeedDiffusion", Seed::parameter_count, Seed::template workspace_bytes<N>);
    }
}

int main() {
    std::printf(
        "| preset | model | parameters | fp32 weights | batch | workspace (fp32) |\n|---|---|---|---|---|---|\n");
    print_preset<presets::Tiny, 2>("Tiny");
    print_preset<presets::Default, 32>("Default");
    print_preset<presets::Rgb32, 32>("Rgb32");
    print_preset<presets::Rgb64, 32>("Rgb64");
    print_preset<presets::Seed, 1>("Seed");
}
