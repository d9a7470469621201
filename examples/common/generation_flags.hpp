// The flags of a generation run (txt2img, evaluate) and their checks, with the command-line names
// of the samplers: program code, shared by the example programs and tested in tests/test_programs.cpp.
#ifndef DIFFUSE_EXAMPLES_GENERATION_FLAGS_HPP
#define DIFFUSE_EXAMPLES_GENERATION_FLAGS_HPP

#include <cmath>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/sample/samplers.hpp"

#include "progress_bar.hpp"

namespace cli {

/// Command-line names of the samplers.
inline constexpr std::string_view kSamplerNames = "ddpm, ddim, euler, euler_a, heun, dpmpp_2m";

inline std::optional<diffuse::diffusion::Method> parse_sampler(std::string_view name) {
    if (name == "ddpm") return diffuse::diffusion::Method::ddpm;
    if (name == "ddim") return diffuse::diffusion::Method::ddim;
    if (name == "euler") return diffuse::diffusion::Method::euler;
    if (name == "euler_a") return diffuse::diffusion::Method::euler_ancestral;
    if (name == "heun") return diffuse::diffusion::Method::heun;
    if (name == "dpmpp_2m") return diffuse::diffusion::Method::dpmpp_2m;
    return std::nullopt;
}

/// Bounds of --steps (every preset's schedule has 1000 timesteps) and of --n (images per prompt,
/// all held in memory until written).
inline constexpr int kMaxSteps = 1000, kMaxImages = 10000;

/// The flags of a generation run, as typed.
struct GenerationFlags {
    std::string prompt, negative;
    int n = 16;
    // DPM-Solver++(2M) on Karras sigmas at 20 steps matches DDIM at 50 (README, "Samplers").
    int steps = 20;
    std::string sampler = "dpmpp_2m";
    std::string sigmas = "karras";  // the sigma-form samplers' noise levels: karras or timesteps
    double guidance = 3.0;
    long long seed = 0;
    int threads = 0;  // OpenMP threads; 0 = OpenMP's default
    std::string weights, out_dir, grid;
    std::string prompts_file;       // txt2img --prompts: one prompt per line, a grid row each
    std::string progress = "auto";  // --progress: sampling progress on stderr (progress_bar.hpp)
};

/// The prompts of a --prompts file: its lines, blank ones and '#' comments skipped. Throws naming the
/// file when it cannot be read or holds no prompt.
inline std::vector<std::string> read_prompts(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read the prompts file " + path);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos || line.front() == '#') continue;
        out.push_back(line);
    }
    if (out.empty()) throw std::runtime_error("the prompts file " + path + " holds no prompt");
    return out;
}

/// The sampler the flags ask for (validate() first).
inline diffuse::diffusion::SamplerOptions sampler_options(const GenerationFlags& f) {
    diffuse::diffusion::SamplerOptions o;
    o.method = *parse_sampler(f.sampler);
    o.steps = f.steps;
    o.guidance = f.guidance;
    o.karras_sigmas = f.sigmas == "karras";  // read by the sigma-form samplers only
    return o;
}

/// The first problem with the flags, or "" when they are fine. `need_output`: exactly one of
/// --out-dir / --grid must be given (txt2img); evaluate writes its table and has only --grid.
inline std::string validate(const GenerationFlags& f, bool need_output = true) {
    if (need_output && f.prompt.empty() && f.prompts_file.empty()) return "--prompt is required (or --prompts FILE)";
    if (!f.prompt.empty() && !f.prompts_file.empty()) return "give either --prompt or --prompts, not both";
    if (f.n < 1) return "--n must be at least 1, not " + std::to_string(f.n);
    if (f.n > kMaxImages) return "--n must be at most " + std::to_string(kMaxImages) + ", not " + std::to_string(f.n);
    if (f.steps < 1) return "--steps must be at least 1, not " + std::to_string(f.steps);
    if (f.steps > kMaxSteps)
        return "--steps must be at most " + std::to_string(kMaxSteps) + " (the noise schedule's timesteps), not " +
               std::to_string(f.steps);
    if (!parse_sampler(f.sampler)) return "--sampler '" + f.sampler + "' is not one of " + std::string(kSamplerNames);
    if (f.sigmas != "karras" && f.sigmas != "timesteps")
        return "--sigmas '" + f.sigmas + "' is not one of karras, timesteps";
    if (!std::isfinite(f.guidance)) return "--guidance must be a finite number, not " + std::to_string(f.guidance);
    if (!(f.guidance >= 0)) return "--guidance must not be negative (1 = no guidance, 0 = unconditional)";
    if (f.seed < 0) return "--seed must not be negative";
    if (f.threads < 0) return "--threads must not be negative (0: OpenMP's default)";
    if (std::string p = progress_problem(f.progress); !p.empty()) return p;
    if (need_output) {
        if (!f.out_dir.empty() && !f.grid.empty()) return "give either --out-dir or --grid, not both";
        if (f.out_dir.empty() && f.grid.empty()) return "give --out-dir DIR (one PNG per sample) or --grid FILE.png";
    }
    return {};
}

}  // namespace cli

#endif
