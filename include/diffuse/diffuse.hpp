// The one include users need.
#ifndef DIFFUSE_DIFFUSE_HPP
#define DIFFUSE_DIFFUSE_HPP

#include "diffuse/version.hpp"

// core: shapes, tensors, parameters, kernels
#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/ema_weights.hpp"
#include "diffuse/core/gemm.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/shape.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

// layers
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/nn/norm.hpp"
#include "diffuse/nn/pool.hpp"
#include "diffuse/nn/resample.hpp"
#include "diffuse/nn/softmax.hpp"

// blocks
#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/blocks/time_embedding.hpp"
#include "diffuse/blocks/transformer_layer.hpp"

// training
#include "diffuse/train/adam.hpp"
#include "diffuse/train/ema.hpp"
#include "diffuse/train/grad_clip.hpp"
#include "diffuse/train/lr_schedule.hpp"
#include "diffuse/train/numerical_fault.hpp"

// diffusion: noise schedules and samplers
#include "diffuse/sample/noise_schedule.hpp"
#include "diffuse/sample/samplers.hpp"

// data, files, text
#include "diffuse/data/captions.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/text/tokenizer.hpp"

// models
#include "diffuse/models/clip.hpp"
#include "diffuse/models/fashion_classifier.hpp"
#include "diffuse/models/seed_diffusion.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/models/vae.hpp"
#include "diffuse/train/classifier_training.hpp"
#include "diffuse/train/seed_diffusion_training.hpp"

#endif
