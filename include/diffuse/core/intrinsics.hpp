// <immintrin.h>, with GCC 12's false uninitialized-value warnings silenced inside it and nowhere
// else. Its AVX and AVX-512 intrinsics (_mm512_extractf64x4_pd, _mm256_undefined_pd...) declare
// `__m256d __Y = __Y;` on purpose, to mean "any value", and GCC 12 warns at every place Eigen or
// xsimd inline them: hundreds of -Wmaybe-uninitialized lines per program with -march=native on an
// AVX-512 machine (GCC bug 105593, fixed in GCC 13). The header has include guards, so whichever
// inclusion comes first decides; every diffuse header that includes Eigen or xsimd includes this
// one first (.clang-format keeps it at the top).
#ifndef DIFFUSE_CORE_INTRINSICS_HPP
#define DIFFUSE_CORE_INTRINSICS_HPP

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#endif
