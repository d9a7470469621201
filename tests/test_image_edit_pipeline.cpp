// img2img and inpaint through the real pipeline at the Tiny preset (untrained weights: what is
// checked holds for any weights), the chunking the programs use, and the programs' flag and file
// checks (examples/common/image_edit_flags.hpp).
#include <doctest/doctest.h>

#include <omp.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "diffuse/app/image_edit.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/models/latent_diffusion.hpp"

#include "../examples/common/image_edit_flags.hpp"
#include "file_test_util.hpp"
#include "one_thread.hpp"

using namespace diffuse;

namespace {

using Model = LatentDiffusion<float, presets::Tiny>;
constexpr int N = 3, S = Model::image_size;
using Images = Tensor<float, N, S, S, 1>;

Model& model() {
    static Model m(17);
    return m;
}

/// Three different inputs in [-1, 1].
const Images& inputs() {
    static const Images x = [] {
        Images t;
        for (std::size_t i = 0; i < t.size; ++i) t[i] = float(std::sin(0.37 * double(i)) * 0.9);
        return t;
    }();
    return x;
}

const std::array<std::string, N> kPrompts{"a photo of a bag", "a dress", "a sneaker"};

bool same_bits(const Images& a, const Images& b) {
    return std::memcmp(a.data(), b.data(), a.size * sizeof(float)) == 0;
}

double mean_abs(const Images& a, const Images& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size; ++i) s += std::abs(double(a[i]) - double(b[i]));
    return s / double(a.size);
}

Model::SampleOptions options(diffusion::Method m) {
    Model::SampleOptions o;
    o.sampler.method = m;
    o.sampler.steps = 10;
    o.sampler.karras_sigmas = true;
    o.seed = 77;
    return o;
}

}  // namespace

TEST_CASE("img2img at strength 1 is generate() bit for bit, for every sampler (Tiny)") {
    auto ws = make<Model::SampleWorkspace<N>>();
    Images a, b;
    for (auto m : {diffusion::Method::ddpm, diffusion::Method::ddim, diffusion::Method::euler,
                   diffusion::Method::euler_ancestral, diffusion::Method::heun, diffusion::Method::dpmpp_2m}) {
        CAPTURE(int(m));
        model().generate(kPrompts, "", options(m), a, *ws);
        app::img2img(model(), inputs(), kPrompts, "", options(m), 1.0, b, *ws);
        CHECK(same_bits(a, b));
        app::img2img(model(), inputs(), kPrompts, "", options(m), 0.6, b, *ws);
        CHECK(!same_bits(a, b));
    }
}

TEST_CASE("img2img: small strength stays near the input's reconstruction, large strength moves away (Tiny)") {
    auto ws = make<Model::SampleWorkspace<N>>();
    Images rec, out;
    model().reconstruct(inputs(), rec);
    for (auto m : {diffusion::Method::ddim, diffusion::Method::dpmpp_2m, diffusion::Method::euler_ancestral}) {
        CAPTURE(int(m));
        std::vector<double> d;
        for (double s : {0.1, 0.5, 1.0}) {
            app::img2img(model(), inputs(), kPrompts, "", options(m), s, out, *ws);
            d.push_back(mean_abs(out, rec));
        }
        MESSAGE("mean |img2img - reconstruction| at s = 0.1, 0.5, 1: " << d[0] << " " << d[1] << " " << d[2]);
        CHECK(d[0] < d[1]);
        CHECK(d[1] < d[2]);
    }
}

TEST_CASE("inpaint: the kept pixels are the input's with paste-back; the rest is redrawn; jumps change it (Tiny)") {
    auto ws = make<Model::SampleWorkspace<N>>();
    Tensor<float, N, S, S> masks;  // the right half to regenerate (a latent column of the 2x2 grid)
    for (int i = 0; i < N; ++i)
        for (int y = 0; y < S; ++y)
            for (int x = 0; x < S; ++x) masks[std::size_t((i * S + y) * S + x)] = x >= S / 2 ? 1.0f : 0.0f;
    const auto opt = options(diffusion::Method::dpmpp_2m);
    Images pasted, raw, jumped, txt;
    app::InpaintOptions e;
    app::inpaint(model(), inputs(), masks, kPrompts, "", opt, e, pasted, *ws);
    e.paste_back = false;
    app::inpaint(model(), inputs(), masks, kPrompts, "", opt, e, raw, *ws);
    e.jumps = 2;
    app::inpaint(model(), inputs(), masks, kPrompts, "", opt, e, jumped, *ws);
    model().generate(kPrompts, "", opt, txt, *ws);
    bool kept_exact = true, raw_differs = false;
    double redrawn = 0;
    for (std::size_t p = 0; p < masks.size; ++p) {
        if (masks[p] == 0) {
            kept_exact &= pasted[p] == inputs()[p];
            raw_differs |= raw[p] != inputs()[p];  // the VAE does not give the input back exactly
        } else {
            CHECK(pasted[p] == raw[p]);  // paste-back touches only the kept pixels
            redrawn += std::abs(pasted[p] - inputs()[p]);
        }
    }
    CHECK(kept_exact);
    CHECK(raw_differs);
    CHECK(redrawn > 0);
    CHECK(!same_bits(raw, jumped));
    CHECK(!same_bits(raw, txt));  // the kept half steers the whole image
}

TEST_CASE("edit_in_chunks: full batches then the remainder, per-chunk seeds, the first chunk a direct call") {
    constexpr int K = 2;
    auto ws = make<Model::SampleWorkspace<K>>();
    const auto opt = options(diffusion::Method::ddim);
    std::vector<float> out(3 * S * S, 9.0f);
    int calls = 0;
    const auto edit = [&](const auto& in, const auto& prompts, const auto& o, auto images, auto& w) {
        ++calls;
        return app::img2img(model(), in, prompts, "", o, 0.7, images, w);
    };
    app::edit_in_chunks<K, Model>(inputs().data(), "a dress", opt, 3, out.data(), edit);
    CHECK(calls == 2);
    Tensor<float, K, S, S, 1> in, direct;
    for (int k = 0; k < K; ++k) std::copy_n(inputs().data(), S * S, in.data() + k * S * S);
    const std::array<std::string, K> prompts{"a dress", "a dress"};
    app::img2img(model(), in, prompts, "", opt, 0.7, direct, *ws);
    CHECK(std::memcmp(out.data(), direct.data(), 2 * S * S * sizeof(float)) == 0);
    CHECK(std::memcmp(out.data() + 2 * S * S, direct.data(), S * S * sizeof(float)) != 0);  // chunk 1's own seed
}

TEST_CASE("img2img / inpaint flags: good ones pass, each bad one is named") {
    cli::ImageEditFlags f;
    f.gen.prompt = "a photo of a pullover";
    f.gen.grid = "out.png";
    f.input = "in.png";
    f.mask = "mask.png";
    CHECK(cli::validate_edit(f, false) == "");
    CHECK(cli::validate_edit(f, true) == "");
    const auto bad = [&](auto change, bool inpaint = true) {
        cli::ImageEditFlags g = f;
        change(g);
        return cli::validate_edit(g, inpaint);
    };
    CHECK(bad([](auto& g) { g.input.clear(); }).find("--input") != std::string::npos);
    CHECK(bad([](auto& g) { g.mask.clear(); }).find("--mask IMAGE is required (white = regenerate") !=
          std::string::npos);
    CHECK(bad([](auto& g) { g.mask.clear(); }, false) == "");  // img2img has no mask
    for (double s : {0.0, -0.1, 1.01, std::nan("")})
        CHECK(bad([s](auto& g) { g.strength = s; }).find("--strength must be in (0, 1]") != std::string::npos);
    CHECK(bad([](auto& g) { g.strength = 1; }) == "");
    CHECK(bad([](auto& g) { g.jumps = -1; }).find("--jumps") != std::string::npos);
    CHECK(bad([](auto& g) { g.jumps = cli::kMaxJumps + 1; }).find("--jumps") != std::string::npos);
    CHECK(bad([](auto& g) { g.mask_threshold = 1; }).find("--mask-threshold") != std::string::npos);
    CHECK(bad([](auto& g) { g.mask_threshold = std::nan(""); }).find("--mask-threshold") != std::string::npos);
    CHECK(bad([](auto& g) { g.gen.prompt.clear(); }) == "--prompt is required");
    CHECK(bad([](auto& g) { g.gen.sampler = "lms"; }).find("--sampler") != std::string::npos);
    CHECK(bad([](auto& g) { g.gen.grid.clear(); }).find("--out-dir") != std::string::npos);
}

TEST_CASE("img2img / inpaint files: readable images, a mask of the input's shape, a writable output") {
    test_files::TempDir dir("diffuse_image_edit");
    const std::vector<std::uint8_t> gray(28 * 28, 100), wide(56 * 28, 255), tall(28 * 40, 0);
    io::write_png(dir.file("in.png"), 28, 28, 1, gray.data());
    io::write_png(dir.file("big_mask.png"), 56, 56, 1, std::vector<std::uint8_t>(56 * 56, 255).data());
    io::write_png(dir.file("wide.png"), 28, 56, 1, wide.data());
    io::write_png(dir.file("tall.png"), 40, 28, 1, tall.data());
    std::ofstream(dir.file("text.png")) << "not an image";
    std::ofstream(dir.file("file")) << "x";
    cli::ImageEditFlags f;
    f.gen.prompt = "a sneaker";
    f.gen.grid = dir.file("out.png");
    f.input = dir.file("in.png");
    f.mask = dir.file("big_mask.png");  // twice the size, same shape: resized onto the input
    CHECK(cli::check_edit_files(f, true) == "");
    const auto bad = [&](auto change, bool inpaint = true) {
        cli::ImageEditFlags g = f;
        change(g);
        return cli::check_edit_files(g, inpaint);
    };
    CHECK(bad([&](auto& g) { g.input = dir.file("missing.png"); }).find("--input: ") == 0);
    CHECK(bad([&](auto& g) { g.input = dir.file("text.png"); }).find("not a PNG or JPEG") != std::string::npos);
    CHECK(bad([&](auto& g) { g.mask = dir.file("text.png"); }).find("--mask: ") == 0);
    CHECK(bad([&](auto& g) { g.mask = dir.file("wide.png"); }).find("56x28 does not fit the input's 28x28") !=
          std::string::npos);
    CHECK(bad([&](auto& g) { g.mask = dir.file("tall.png"); }, false) == "");   // img2img reads no mask
    CHECK(bad([&](auto& g) { g.input = dir.file("tall.png"); }, false) == "");  // any input shape is fitted
    CHECK(bad([&](auto& g) { g.gen.grid = dir.file("file/out.png"); }).find("--grid: ") == 0);
    CHECK(bad([&](auto& g) { g.gen.grid = dir.path.string(); }).find("is a directory") != std::string::npos);
    CHECK(bad([&](auto& g) { g.gen.grid = dir.file("none/out.png"); }).find("none does not exist") !=
          std::string::npos);  // write_png does not make directories
    CHECK(bad([&](auto& g) {
              g.gen.grid.clear();
              g.gen.out_dir = dir.file("file");
          }).find("not a directory") != std::string::npos);
    CHECK(bad([&](auto& g) {
              g.gen.grid.clear();
              g.gen.out_dir = dir.file("new/deeper");  // made when the images are written
          }) == "");
    CHECK(!std::filesystem::exists(dir.file("new")));  // checking creates nothing
    if (::geteuid() != 0) {                            // root writes anywhere
        std::filesystem::create_directories(dir.file("ro"));
        std::filesystem::permissions(dir.file("ro"),
                                     std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
        CHECK(bad([&](auto& g) { g.gen.grid = dir.file("ro/out.png"); }).find("cannot write in") != std::string::npos);
        std::filesystem::permissions(dir.file("ro"), std::filesystem::perms::owner_all);
    }
}
