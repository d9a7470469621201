// Where the programs find the shipped model files (models/diffusion.safetensors,
// models/fashion_classifier.safetensors): first in the source tree the program was built from
// (found through the program's own __FILE__, which CMake passes as an absolute path:
// <repo>/examples/x.cpp -> <repo>/models/NAME), then in ./models/ of the current directory
// (a program built elsewhere). No compile definition is needed, so no build file changes.
#ifndef DIFFUSE_EXAMPLES_MODEL_FILES_HPP
#define DIFFUSE_EXAMPLES_MODEL_FILES_HPP

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// The places searched for models/NAME, in order, given the calling program's __FILE__.
inline std::vector<std::string> model_candidates(const std::string& name, const std::string& source_file) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    const fs::path src(source_file);
    if (src.is_absolute()) out.push_back((src.parent_path().parent_path() / "models" / name).string());
    out.push_back((fs::path("models") / name).string());
    return out;
}

/// The first existing candidate; otherwise throws saying the model has not been trained or shipped
/// and where it was looked for. `what` names the model ("diffusion model"), `hint` says how to get one.
inline std::string find_model(const std::string& name, const std::string& source_file, const std::string& what,
                              const std::string& hint) {
    std::string tried;
    for (const auto& p : model_candidates(name, source_file)) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(p, ec)) return p;
        tried += (tried.empty() ? "" : ", ") + p;
    }
    throw std::runtime_error("no " + what + " found: models/" + name +
                             " has not been trained or shipped yet (looked in " + tried + "). " +
                             hint);  // one line, as every error
}

/// The diffusion model's weights: `flag` (--weights) when given, else the shipped file.
inline std::string diffusion_weights(const std::string& flag, const std::string& source_file) {
    return flag.empty() ? find_model("diffusion.safetensors", source_file, "diffusion model",
                                     "Train one with the train example, or pass --weights PATH.")
                        : flag;
}

/// The classifier's weights: `flag` (--classifier) when given, else the shipped file.
inline std::string classifier_weights(const std::string& flag, const std::string& source_file) {
    return flag.empty() ? find_model("fashion_classifier.safetensors", source_file, "classifier",
                                     "Train one with train_classifier, or pass --classifier PATH.")
                        : flag;
}

}  // namespace cli

#endif
