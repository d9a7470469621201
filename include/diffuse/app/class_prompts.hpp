// The prompt that names each Fashion-MNIST class for scoring a text-to-image model:
// "a photo of {a}" filled with the class's first caption name ("a photo of a t-shirt",
// "a photo of an ankle boot"): one of the templates the model was trained on. Any other wording
// (wordings.hpp) fills the same way: "{a}" the first name with its article, "{n}" the bare name.
#ifndef DIFFUSE_APP_CLASS_PROMPTS_HPP
#define DIFFUSE_APP_CLASS_PROMPTS_HPP

#include <array>
#include <string>
#include <string_view>

#include "diffuse/data/captions.hpp"

namespace diffuse::app {

inline constexpr int kClassCount = int(data::kFashionClassNames.size());

/// The training caption template the programs score by default.
inline constexpr std::string_view kTrainingWording = "a photo of {a}";

/// `wording` filled with label's first caption name.
inline std::string class_prompt(int label, std::string_view wording = kTrainingWording) {
    return data::format_caption(wording, data::class_names(label).names[0]);
}

inline std::array<std::string, kClassCount> class_prompts() {
    std::array<std::string, kClassCount> out;
    for (int c = 0; c < kClassCount; ++c) out[std::size_t(c)] = class_prompt(c);
    return out;
}

}  // namespace diffuse::app

#endif
