// The presets the programs are built with, and the one a weights file names in its metadata
// ("config"): each program instantiates its work once per preset and runs the one the file asks for.
#ifndef DIFFUSE_EXAMPLES_PRESET_DISPATCH_HPP
#define DIFFUSE_EXAMPLES_PRESET_DISPATCH_HPP

#include <stdexcept>
#include <string>

#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/presets.hpp"

namespace cli {

inline constexpr const char* kBuiltPresets = "Default, Rgb32, Rgb64, Tiny";

/// The preset a weights file or checkpoint was trained with; throws naming the file when it has none or
/// one these programs were not built with.
inline std::string preset_of(const std::string& weights) {
    const auto meta = diffuse::io::SafetensorsFile(weights).metadata();
    const auto it = meta.find("config");
    const std::string preset = it == meta.end() ? "" : it->second;
    using namespace diffuse::presets;
    if (preset != Default::name && preset != Rgb32::name && preset != Rgb64::name && preset != Tiny::name)
        throw std::runtime_error(weights + ": trained with the preset '" + preset +
                                 "', which this program was not built with (it has " + kBuiltPresets + ")");
    return preset;
}

/// run.template operator()<Preset>() for the preset named `preset` (one of kBuiltPresets).
template <class Run>
int with_preset(const std::string& preset, Run&& run) {
    using namespace diffuse::presets;
    if (preset == Default::name) return run.template operator()<Default>();
    if (preset == Rgb32::name) return run.template operator()<Rgb32>();
    if (preset == Rgb64::name) return run.template operator()<Rgb64>();
    return run.template operator()<Tiny>();
}

}  // namespace cli

#endif
