// The one include users need: every public header of the library (version.hpp and every folder).
// dist/ (data parallelism over MPI) joins only where the build links diffuse::dist, whose target
// defines DIFFUSE_WITH_MPI: including it elsewhere would fail for want of <mpi.h>.
// The CTest test umbrella_complete (tests/umbrella/check.cmake) fails when a header is left out.
#ifndef DIFFUSE_DIFFUSE_HPP
#define DIFFUSE_DIFFUSE_HPP

#include "diffuse/version.hpp"

// core: shapes, tensors, parameters, kernels
#include "diffuse/core/intrinsics.hpp"

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/ema_weights.hpp"
#include "diffuse/core/gemm.hpp"
#include "diffuse/core/gemm_kernel.hpp"
#include "diffuse/core/lanes.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/shape.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

// nn: layers
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/lora.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/nn/norm.hpp"
#include "diffuse/nn/pool.hpp"
#include "diffuse/nn/resample.hpp"
#include "diffuse/nn/softmax.hpp"
#include "diffuse/nn/window.hpp"

// io: files (safetensors, PNG, JPEG, IDX, JSON)
#include "diffuse/io/atomic_file.hpp"
#include "diffuse/io/byte_image.hpp"
#include "diffuse/io/grid_image.hpp"
#include "diffuse/io/half.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/io/jpeg.hpp"
#include "diffuse/io/json.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"

// text: the tokenizer
#include "diffuse/text/tokenizer.hpp"

// sample: noise schedules and samplers
#include "diffuse/sample/img2img.hpp"
#include "diffuse/sample/inpaint.hpp"
#include "diffuse/sample/noise_schedule.hpp"
#include "diffuse/sample/samplers.hpp"

// testing: the gradient checker
#include "diffuse/testing/gradient_check.hpp"

// blocks: residual, attention, cross-attention, time-embedding and transformer blocks
#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/blocks/chain.hpp"
#include "diffuse/blocks/conditioning.hpp"
#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/levels.hpp"
#include "diffuse/blocks/mid_block.hpp"
#include "diffuse/blocks/output_head.hpp"
#include "diffuse/blocks/res_stack.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/blocks/time_embedding.hpp"
#include "diffuse/blocks/transformer_layer.hpp"

// data: captioned image data sets
#include "diffuse/data/batches.hpp"
#include "diffuse/data/caption_augment.hpp"
#include "diffuse/data/captions.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/data/image_folder.hpp"

// models: VAE, text encoder, UNet, the pipelines, presets
#include "diffuse/models/clip.hpp"
#include "diffuse/models/fashion_classifier.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/models/lora.hpp"
#include "diffuse/models/presets.hpp"
#include "diffuse/models/seed_diffusion.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/models/vae.hpp"

// train: optimizers, schedules, trainers, checkpoints
#include "diffuse/train/adam.hpp"
#include "diffuse/train/batch_halves.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/classifier_training.hpp"
#include "diffuse/train/data_parallel.hpp"
#include "diffuse/train/diffusion_pass.hpp"
#include "diffuse/train/ema.hpp"
#include "diffuse/train/grad_clip.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"
#include "diffuse/train/lora_trainer.hpp"
#include "diffuse/train/lr_schedule.hpp"
#include "diffuse/train/numerical_fault.hpp"
#include "diffuse/train/progress.hpp"
#include "diffuse/train/seed_diffusion_training.hpp"
#include "diffuse/train/vae_pass.hpp"

// app: generation, reconstruction, scoring
#include "diffuse/app/class_prompts.hpp"
#include "diffuse/app/classify.hpp"
#include "diffuse/app/evaluation.hpp"
#include "diffuse/app/frechet_distance.hpp"
#include "diffuse/app/generation.hpp"
#include "diffuse/app/image_edit.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/app/nearest.hpp"
#include "diffuse/app/prompt_following.hpp"
#include "diffuse/app/reconstruction.hpp"
#include "diffuse/app/reference_images.hpp"
#include "diffuse/app/wordings.hpp"

// dist: data-parallel training over MPI, only with diffuse::dist
#ifdef DIFFUSE_WITH_MPI
#include "diffuse/dist/mpi.hpp"
#endif

#endif
