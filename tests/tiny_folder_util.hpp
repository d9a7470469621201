// Helpers for tests that train a Tiny model on an image folder they write: loading the folder as
// gray squares of one side, and training options that make a few steps count.
#ifndef DIFFUSE_TESTS_TINY_FOLDER_UTIL_HPP
#define DIFFUSE_TESTS_TINY_FOLDER_UTIL_HPP

#include <string>

#include "diffuse/data/image_folder.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

namespace test_files {

/// The folder's images as side x side gray.
inline diffuse::data::ImageFolder load_gray_folder(const std::string& dir, int side) {
    diffuse::data::ImageFolderOptions o;
    o.resolution = side;
    o.channels = 1;
    return diffuse::data::ImageFolder(dir, o);
}

/// High learning rates, short warm-ups and a fast EMA: a Tiny model learns in tens of steps.
inline diffuse::LatentDiffusionTrainOptions quick_train_options() {
    diffuse::LatentDiffusionTrainOptions o;
    o.seed = 5;
    o.vae_lr = 3e-3;
    o.lr = 3e-3;
    o.vae_warmup_steps = 2;
    o.warmup_steps = 2;
    o.scale_batches = 2;
    o.ema_decay = 0.9;
    return o;
}

}  // namespace test_files

#endif
