// The three presets, each grouping the configs of every model:
//   Tiny     gradient checks in double and fast tests;
//   Default  Fashion-MNIST text-to-image (32×32×1 images, 8×8×4 latents, 16-token prompts);
//   Seed     the seed's widths (VAE 128/256/512, 12 text layers).
#ifndef DIFFUSE_MODELS_PRESETS_HPP
#define DIFFUSE_MODELS_PRESETS_HPP

#include "diffuse/models/clip.hpp"
#include "diffuse/models/seed_diffusion.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/models/vae.hpp"

namespace diffuse::presets {

struct Tiny {
    using vae = vae::TinyConfig;
    using clip = clip::TinyConfig;
    using unet = unet::TinyConfig;
    using seed_diffusion = seed_diffusion::TinyConfig;
};
struct Default {
    using vae = vae::DefaultConfig;
    using clip = clip::DefaultConfig;
    using unet = unet::DefaultConfig;
    using seed_diffusion = seed_diffusion::DefaultConfig;
};
struct Seed {
    using vae = vae::SeedConfig;
    using clip = clip::SeedConfig;
    using unet = unet::SeedConfig;
    using seed_diffusion = seed_diffusion::SeedConfig;
};

}  // namespace diffuse::presets

#endif
