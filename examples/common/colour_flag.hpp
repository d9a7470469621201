// A colour given on the command line as six hex digits, RRGGBB (train's and prompt_following's
// --background: what transparent pixels of an image folder are composited over).
#ifndef DIFFUSE_EXAMPLES_COLOUR_FLAG_HPP
#define DIFFUSE_EXAMPLES_COLOUR_FLAG_HPP

#include <cstdint>
#include <optional>
#include <string>

#include "diffuse/io/image.hpp"

namespace cli {

/// "ff8000" → {255, 128, 0}; nullopt unless the text is exactly six hex digits.
inline std::optional<diffuse::io::Rgb> parse_rgb_hex(const std::string& text) {
    if (text.size() != 6 || text.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return std::nullopt;
    const unsigned long rgb = std::stoul(text, nullptr, 16);
    return diffuse::io::Rgb{std::uint8_t(rgb >> 16), std::uint8_t(rgb >> 8), std::uint8_t(rgb)};
}

}  // namespace cli

#endif
