// The gradient checker shipped with the library (as dlib's test_layer), for our layers and yours.
//
// For a function y = f(inputs, params) it checks the hand-derived backward against central
// differences of L = Σ y·dy for a random upstream gradient dy, on every element of every input
// and parameter, in double precision. It also checks that
//   - forward writes every output element (y is pre-filled with NaN, a sentinel),
//   - backward writes only by accumulation (grads pre-filled with random values P must come back
//     as P + the gradient from zero), and
//   - nothing comes back NaN.
// It reports the largest relative error |a - n| / max(|a|, |n|, floor) and where it occurred,
// never a sum in which errors of opposite sign could cancel.
#ifndef DIFFUSE_TESTING_GRADIENT_CHECK_HPP
#define DIFFUSE_TESTING_GRADIENT_CHECK_HPP

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::testing {

/// One differentiable quantity: its values and the buffer backward accumulates its gradient into.
struct Probe {
    std::string name;
    double* value;
    double* grad;
    std::size_t size;
};

/// An input tensor and its gradient tensor (same shape).
template <class X, class DX>
Probe probe(std::string name, X& x, DX& dx) {
    static_assert(shape_of<X>::size == shape_of<DX>::size, "probe: value and gradient sizes differ");
    return {std::move(name), x.data(), dx.data(), shape_of<X>::size};
}

/// Every parameter of a store, one probe each, named as in the state dict.
inline std::vector<Probe> probes(ParamStore<double>& store) {
    std::vector<Probe> out;
    for (const auto& i : store.infos())
        out.push_back({i.name, store.values() + i.offset, store.grads() + i.offset, i.size});
    return out;
}

struct GradCheckOptions {
    double step = 1e-5;         // central-difference step
    double floor = 1e-3;        // denominators below this count as this (near-zero gradients)
    std::uint64_t seed = 1234;  // for dy and the sentinel pre-fill
    /// Central differences on at most this many elements of each probe (0: all). For whole
    /// models: every parameter tensor is still checked, on an evenly spread sample of its
    /// elements that always includes the first and the last.
    std::size_t max_elements_per_probe = 0;
};

struct GradCheckReport {
    double max_rel_error = 0;           // largest relative error over all checked elements
    std::string worst;                  // where it occurred
    std::size_t checked = 0;            // elements compared
    std::vector<std::string> failures;  // sentinel / accumulation / NaN violations
    bool clean() const { return failures.empty(); }
    std::string summary() const {
        std::ostringstream s;
        s << "max relative error " << max_rel_error << " at " << worst << " over " << checked << " elements";
        for (const auto& f : failures) s << "\n  " << f;
        return s.str();
    }
};

/// y: the output tensor forward() writes. forward(): recompute y from the current values.
/// backward(dy): accumulate gradients for dy (a read-only view shaped like y).
template <class Y, class Forward, class Backward>
GradCheckReport check_gradients(const std::vector<Probe>& probes, Y& y, Forward forward, Backward backward,
                                GradCheckOptions opt = {}) {
    using YS = shape_of<Y>;
    constexpr std::size_t ny = YS::size;
    GradCheckReport rep;
    Rng rng(opt.seed);
    std::vector<double> dy(ny);
    for (auto& v : dy) v = rng.normal();
    auto dyv = [&] { return ViewOf<const double, YS>(dy.data()); };
    auto loss = [&] {
        forward();
        double l = 0;
        for (std::size_t i = 0; i < ny; ++i) l += y.data()[i] * dy[i];
        return l;
    };

    // 1. Forward writes every output element.
    std::fill(y.data(), y.data() + ny, std::numeric_limits<double>::quiet_NaN());
    forward();
    for (std::size_t i = 0; i < ny; ++i)
        if (!std::isfinite(y.data()[i])) {
            rep.failures.push_back("forward left output element " + std::to_string(i) + " unwritten or non-finite");
            break;
        }

    // 2. Analytic gradients from zero.
    std::vector<std::vector<double>> analytic(probes.size());
    for (const auto& p : probes) std::fill(p.grad, p.grad + p.size, 0.0);
    backward(dyv());
    for (std::size_t k = 0; k < probes.size(); ++k) analytic[k].assign(probes[k].grad, probes[k].grad + probes[k].size);

    // 3. Backward accumulates: from a random pre-fill P the result must be P + analytic.
    std::vector<std::vector<double>> prefill(probes.size());
    for (std::size_t k = 0; k < probes.size(); ++k) {
        prefill[k].resize(probes[k].size);
        for (std::size_t i = 0; i < probes[k].size; ++i) probes[k].grad[i] = prefill[k][i] = rng.uniform(-3, 3);
    }
    forward();
    backward(dyv());
    for (std::size_t k = 0; k < probes.size(); ++k) {
        const auto& p = probes[k];
        for (std::size_t i = 0; i < p.size; ++i) {
            const double want = prefill[k][i] + analytic[k][i];
            if (!(std::abs(p.grad[i] - want) <= 1e-9 * std::max(1.0, std::abs(want)))) {
                rep.failures.push_back("backward does not accumulate into " + p.name + "[" + std::to_string(i) +
                                       "]: pre-filled " + std::to_string(prefill[k][i]) + ", got " +
                                       std::to_string(p.grad[i]) + ", expected " + std::to_string(want));
                break;
            }
        }
        std::fill(p.grad, p.grad + p.size, 0.0);
    }

    // 4. Central differences on every element.
    for (std::size_t k = 0; k < probes.size(); ++k) {
        const auto& p = probes[k];
        const std::size_t count = opt.max_elements_per_probe ? std::min(p.size, opt.max_elements_per_probe) : p.size;
        for (std::size_t j = 0; j < count; ++j) {
            const std::size_t i = count == p.size ? j : (count == 1 ? 0 : j * (p.size - 1) / (count - 1));
            const double saved = p.value[i];
            const double h = opt.step * std::max(1.0, std::abs(saved));
            p.value[i] = saved + h;
            const double lp = loss();
            p.value[i] = saved - h;
            const double lm = loss();
            p.value[i] = saved;
            const double numeric = (lp - lm) / (2 * h);
            const double a = analytic[k][i];
            if (!std::isfinite(a))
                rep.failures.push_back("non-finite gradient at " + p.name + "[" + std::to_string(i) + "]");
            const double rel = std::abs(a - numeric) / std::max({std::abs(a), std::abs(numeric), opt.floor});
            ++rep.checked;
            if (!(rel <= rep.max_rel_error)) {
                rep.max_rel_error = std::isfinite(rel) ? rel : std::numeric_limits<double>::infinity();
                std::ostringstream w;
                w << p.name << "[" << i << "] (analytic " << a << ", numeric " << numeric << ")";
                rep.worst = w.str();
            }
        }
    }
    forward();  // leave y and any cache consistent with the unperturbed values
    return rep;
}

}  // namespace diffuse::testing

#endif
