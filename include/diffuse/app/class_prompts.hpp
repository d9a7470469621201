// The prompt that names each Fashion-MNIST class for scoring a text-to-image model:
// "a photo of {a}" filled with the class's first caption name ("a photo of a t-shirt",
// "a photo of an ankle boot"): one of the templates the model was trained on.
#ifndef DIFFUSE_APP_CLASS_PROMPTS_HPP
#define DIFFUSE_APP_CLASS_PROMPTS_HPP

#include <array>
#include <string>

#include "diffuse/data/captions.hpp"

namespace diffuse::app {

inline constexpr int kClassCount = int(data::kFashionClassNames.size());

inline std::string class_prompt(int label) {
    return data::format_caption("a photo of {a}", data::class_names(label).names[0]);
}

inline std::array<std::string, kClassCount> class_prompts() {
    std::array<std::string, kClassCount> out;
    for (int c = 0; c < kClassCount; ++c) out[std::size_t(c)] = class_prompt(c);
    return out;
}

}  // namespace diffuse::app

#endif
