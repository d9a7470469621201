// The one include users need.
#ifndef DIFFUSE_DIFFUSE_HPP
#define DIFFUSE_DIFFUSE_HPP

#include "diffuse/version.hpp"
#include "diffuse/core/shape.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/gemm.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/nn/linear.hpp"

#endif
