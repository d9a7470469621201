// The presets, each grouping the configs of every model:
//   Tiny     gradient checks in double and fast tests (8×8×1 images);
//   Default  Fashion-MNIST text-to-image (32×32×1 images, 8×8×4 latents, 16-token prompts);
//   Rgb32    a user's own colour images at 32×32×3 (8×8×4 latents), e.g. emoji or icons: a learned
//            vocabulary of up to 3,072 words and 24-token prompts;
//   Rgb64    the same at 64×64×3 (16×16×4 latents);
//   Seed     the seed's widths (VAE 128/256/512, 12 text layers).
// A preset's name (preset_name) is written into weights files and read back by the programs.
#ifndef DIFFUSE_MODELS_PRESETS_HPP
#define DIFFUSE_MODELS_PRESETS_HPP

#include "diffuse/models/clip.hpp"
#include "diffuse/models/seed_diffusion.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/models/vae.hpp"

namespace diffuse::presets {

struct Tiny {
    static constexpr const char* name = "Tiny";
    using vae = vae::TinyConfig;
    using clip = clip::TinyConfig;
    using unet = unet::TinyConfig;
    using seed_diffusion = seed_diffusion::TinyConfig;
};
struct Default {
    static constexpr const char* name = "Default";
    using vae = vae::DefaultConfig;
    using clip = clip::DefaultConfig;
    using unet = unet::DefaultConfig;
    using seed_diffusion = seed_diffusion::DefaultConfig;
};
struct Rgb32 {
    static constexpr const char* name = "Rgb32";
    using vae = vae::Rgb32Config;
    using clip = clip::LargeVocabularyConfig;
    using unet = unet::DefaultConfig;
};
struct Rgb64 {
    static constexpr const char* name = "Rgb64";
    using vae = vae::Rgb64Config;
    using clip = clip::LargeVocabularyConfig;
    using unet = unet::DefaultConfig;
};
struct Seed {
    static constexpr const char* name = "Seed";
    using vae = vae::SeedConfig;
    using clip = clip::SeedConfig;
    using unet = unet::SeedConfig;
    using seed_diffusion = seed_diffusion::SeedConfig;
};

}  // namespace diffuse::presets

#endif
