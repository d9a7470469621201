// IEEE half (F16) and bfloat16 (BF16) conversions, bit-exact and independent of the CPU's
// support for them: float -> 16 bits rounds to nearest, ties to even; 16 bits -> float is exact.
// NaN stays NaN (quieted), infinities stay infinite, values beyond the half range become inf.
#ifndef DIFFUSE_IO_HALF_HPP
#define DIFFUSE_IO_HALF_HPP

#include <bit>
#include <cstdint>

namespace diffuse::io {

inline std::uint16_t float_to_half(float value) {
    std::uint32_t f = std::bit_cast<std::uint32_t>(value);
    const std::uint32_t sign = (f >> 16) & 0x8000u;
    f &= 0x7FFFFFFFu;
    std::uint32_t h;
    if (f >= 0x47800000u) {  // |value| >= 65536, inf or NaN
        h = f > 0x7F800000u ? 0x7E00u | ((f >> 13) & 0x3FFu) : 0x7C00u;
    } else if (f < 0x38800000u) {  // below 2^-14: a half subnormal or zero
        // Adding 0.5 puts the half's last mantissa bit at the float's last one, so the FPU's
        // own round-to-nearest-even does the rounding.
        const float shifted = std::bit_cast<float>(f) + 0.5f;
        h = std::bit_cast<std::uint32_t>(shifted) - 0x3F000000u;
    } else {  // normal: rebias the exponent and round the 13 dropped bits to nearest even
        const std::uint32_t odd = (f >> 13) & 1u;
        f += 0xC8000FFFu + odd;  // (15 - 127) << 23, plus the rounding bias
        h = f >> 13;             // a carry out of the mantissa rounds up to the next binade or inf
    }
    return std::uint16_t(h | sign);
}

inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
        const float v = float(mant) * 0x1p-24f;
        return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) | sign);
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline std::uint16_t float_to_bf16(float value) {
    const std::uint32_t f = std::bit_cast<std::uint32_t>(value);
    if ((f & 0x7FFFFFFFu) > 0x7F800000u) return std::uint16_t((f >> 16) | 0x0040u);  // quiet NaN
    return std::uint16_t((f + 0x7FFFu + ((f >> 16) & 1u)) >> 16);
}

inline float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

}  // namespace diffuse::io

#endif
