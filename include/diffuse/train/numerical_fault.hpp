// Stopping a training step at the first NaN or Inf, before it reaches the weights: a trainer checks
// the step's loss and gradient norm (which clipping measures anyway, so a healthy step costs
// nothing more: a finite sum of squares means every gradient is finite) after backward and before
// the optimizer, and throws NumericalFault naming the phase, the step and the first parameter
// tensor, by its state-dict name, where a non-finite number appeared: a weight that holds one (it
// was poisoned before this step), else the first gradient that holds one. Only a faulty step
// scans the buffers. Nothing has been updated when it throws: the weights, the optimizer's moments
// and the EMA are those after the last good step, and no checkpoint is written for the bad one.
#ifndef DIFFUSE_TRAIN_NUMERICAL_FAULT_HPP
#define DIFFUSE_TRAIN_NUMERICAL_FAULT_HPP

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "diffuse/core/params.hpp"

namespace diffuse {

/// A NaN or Inf in a training step's loss, weights or gradients.
class NumericalFault : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace numerical_fault_detail {
inline std::string number(double v) {
    if (std::isnan(v)) return "nan";  // printf writes "-nan" for a NaN with its sign bit set
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}
}  // namespace numerical_fault_detail

/// "<name> (element <i>: nan)" for the first tensor of `store`, in state-dict order, whose slice of
/// `buffer` (its values, its gradients, or any buffer of its layout) holds a NaN or Inf; "" if none.
template <class T>
std::string first_non_finite(const ParamStore<T>& store, const T* buffer) {
    for (const auto& info : store.infos())
        for (std::size_t i = 0; i < info.size; ++i)
            if (!std::isfinite(buffer[info.offset + i]))
                return info.name + " (element " + std::to_string(i) + ": " +
                       numerical_fault_detail::number(double(buffer[info.offset + i])) + ")";
    return "";
}

/// Throws NumericalFault unless `loss` and `grad_norm` (grad_norm(store), before clipping) are
/// finite. `phase` and `step` name the step in the message ("diffusion step 12").
template <class T>
void check_finite_step(const char* phase, std::int64_t step, double loss, T grad_norm, const ParamStore<T>& store) {
    if (std::isfinite(loss) && std::isfinite(grad_norm)) return;
    std::string what = std::string(phase) + " step " + std::to_string(step) + ": ";
    if (!std::isfinite(loss)) what += "the loss is " + numerical_fault_detail::number(loss) + "; ";
    if (const std::string w = first_non_finite(store, store.values()); !w.empty())
        what += "first non-finite weight: " + w;
    else if (const std::string g = first_non_finite(store, store.grads()); !g.empty())
        what += "first non-finite gradient: " + g;
    else if (!std::isfinite(grad_norm))  // every gradient finite, their squares' sum not
        what += "the gradient norm overflowed (" + numerical_fault_detail::number(double(grad_norm)) + ")";
    else what += "every weight and gradient is finite";
    throw NumericalFault(what + "; training stopped before the update");
}

}  // namespace diffuse

#endif
