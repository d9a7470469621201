// SeedDiffusion at seed_diffusion::TinyConfig against PyTorch (tools/reference/seed_diffusion_reference.py),
// in double: the output, every seam of the composite (the Workspace's activations and their gradients:
// conv_ip, encoder moments, context, time, z = mean + temb, ca1, ca2, unet1..3), d x, the full gradients
// of the composite's own small parts (conv_ip, time, ca1, ca2), and for EVERY parameter tensor three
// projections of its gradient (two fixed pseudo-random weightings and the squared norm): the full
// float64 gradients of all 43783 parameters would not fit the file's budget (see the script).
//
// Tolerance 1e-10 on |got - want| / max(1, |want|) (for a projection: / max(1, sum |g_i w_i|) or
// max(1, sum g_i^2)); the two implementations agree to ~1e-14 in practice.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/seed_diffusion.hpp"

using namespace diffuse;

namespace {

using Model = SeedDiffusion<double, seed_diffusion::TinyConfig>;
constexpr int N = 2;
constexpr double tol = 1e-10;

/// Largest |a - b| / max(1, |b|).
double max_error(const double* a, const std::vector<double>& b) {
    double worst = 0;
    for (std::size_t i = 0; i < b.size(); ++i)
        worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
    return worst;
}

/// The script's projections of a gradient g (flattened in our layout): sum g_i sin(0.37 i + 1),
/// sum g_i sin(1.91 i + 2), sum g_i^2; and the scale each is compared at.
struct Projections {
    std::array<double, 3> value{}, scale{};
};
Projections project(const double* g, std::size_t n) {
    Projections p;
    for (std::size_t i = 0; i < n; ++i) {
        const double w0 = std::sin(0.37 * double(i) + 1), w1 = std::sin(1.91 * double(i) + 2);
        p.value[0] += g[i] * w0;
        p.value[1] += g[i] * w1;
        p.value[2] += g[i] * g[i];
        p.scale[0] += std::abs(g[i] * w0);
        p.scale[1] += std::abs(g[i] * w1);
    }
    p.scale[2] = p.value[2];
    return p;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string item; std::getline(in, item, sep);) out.push_back(item);
    return out;
}

}  // namespace

TEST_CASE("SeedDiffusion Tiny matches PyTorch: output, seams, d x and every parameter gradient in float64 (1e-10)") {
    const io::SafetensorsFile f(std::string(DIFFUSE_TEST_DATA_DIR) + "/seed_diffusion_reference.safetensors");
    Model model;
    ParamStore<double> store(model);
    io::LoadOptions lo;
    lo.allow_extra = true;  // inputs, outputs, seams and gradients share the file
    io::load_params(store, f, lo);

    auto ws = make<Model::Workspace<N>>();
    f.read("input.x", ws->x.data(), ws->x.size);
    f.read("input.ids", ws->ids.data(), ws->ids.size);
    f.read("input.mask", ws->mask.data(), ws->mask.size);
    f.read("input.t", ws->t.data(), ws->t.size);
    REQUIRE(std::count(ws->mask.begin(), ws->mask.end(), true) > 0);  // the padding mask is exercised

    // Largest error over a list of (file name, our values), and the name where it is.
    struct Worst {
        double error = 0;
        std::string where;
    };
    auto compare = [&](std::initializer_list<std::pair<const char*, const double*>> items) {
        Worst w;
        for (const auto& [name, got] : items) {
            const double e = max_error(got, f.read<double>(name));
            if (w.where.empty() || e > w.error) w = {e, name};
        }
        return w;
    };

    model.forward(*ws);
    const double ey = compare({{"output.y", ws->y.data()}}).error;
    const Worst seam = compare({{"ws.xi", ws->xi.data()},
                                {"ws.moments", ws->moments.data()},
                                {"ws.context", ws->context.data()},
                                {"ws.temb", ws->temb.data()},
                                {"ws.z", ws->z.data()},
                                {"ws.a1", ws->a1.data()},
                                {"ws.a2", ws->a2.data()},
                                {"ws.u1", ws->u1.data()},
                                {"ws.u2", ws->u2.data()},
                                {"ws.u3", ws->u3.data()}});
    CHECK(ey < tol);
    CHECK_MESSAGE(seam.error < tol, seam.where);

    f.read("input.dy", ws->dy.data(), ws->dy.size);
    store.zero_grad();
    model.backward(*ws);
    const Worst dseam = compare({{"ws.dxi", ws->dxi.data()},
                                 {"ws.dmoments", ws->dmoments.data()},
                                 {"ws.dcontext", ws->dcontext.data()},
                                 {"ws.dtemb", ws->dtemb.data()},
                                 {"ws.dz", ws->dz.data()},
                                 {"ws.da1", ws->da1.data()},
                                 {"ws.da2", ws->da2.data()},
                                 {"ws.du1", ws->du1.data()},
                                 {"ws.du2", ws->du2.data()},
                                 {"ws.du3", ws->du3.data()}});
    CHECK_MESSAGE(dseam.error < tol, dseam.where);

    // Every parameter: the projections (in the script's order, which must be our visit order), and
    // the full gradient where the file has it.
    const auto names = split(f.metadata().at("grad_projections"), ',');
    REQUIRE(names.size() == store.infos().size());
    const auto want = f.read<double>("grad_projections");
    REQUIRE(want.size() == 3 * names.size());
    double eproj = 0, efull = 0;
    std::string proj_where, full_where;
    int full = 0;
    for (std::size_t k = 0; k < names.size(); ++k) {
        const auto& info = store.infos()[k];
        REQUIRE(names[k] == info.name);
        const double* g = store.grads() + info.offset;
        const Projections p = project(g, info.size);
        for (int j = 0; j < 3; ++j) {
            const double e = std::abs(p.value[std::size_t(j)] - want[3 * k + std::size_t(j)]) /
                             std::max(1.0, p.scale[std::size_t(j)]);
            if (e > eproj) {
                eproj = e;
                proj_where = info.name;
            }
        }
        if (f.find("grad." + info.name)) {
            ++full;
            const auto gw = f.read<double>("grad." + info.name);
            REQUIRE(gw.size() == info.size);
            const double e = max_error(g, gw);
            if (e > efull) {
                efull = e;
                full_where = info.name;
            }
        }
    }
    CHECK_MESSAGE(eproj < tol, proj_where);
    CHECK_MESSAGE(efull < tol, full_where);
    CHECK(full >= 20);  // conv_ip, time, ca1, ca2

    // d x: the model skips it (x is data); conv_ip's backward from the stored d xi gives it (this
    // adds into conv_ip's parameter gradients once more, after they were compared).
    Tensor<double, N, Model::S, Model::S, Model::Cin> dx;
    dx.fill(0);
    model.conv_ip.backward(ws->x, ws->xi, ws->conv_ip, ws->dxi, dx);
    const double edx = compare({{"grad.x", dx.data()}}).error;
    CHECK(edx < tol);

    MESSAGE("output " << ey << ", seams " << seam.error << " (" << seam.where << "), seam gradients " << dseam.error
                      << " (" << dseam.where << "), d x " << edx << ", parameter gradient projections " << eproj << " ("
                      << proj_where << ", " << names.size() << " tensors), full gradients " << efull << " ("
                      << full_where << ", " << full << " tensors)");
    // Not vacuous: the context gathers gradient from both cross-attention blocks and the three UNets.
    const auto dctx = f.read<double>("ws.dcontext");
    CHECK(*std::max_element(dctx.begin(), dctx.end()) > 1e-2);
}
