// Training the seed's composite (models/seed_diffusion.hpp): the seed's fit() computed a loss that
// never used the model output; this fit takes the MSE of the model's output against the target,
// backpropagates through every part (the context gathers gradient from both cross-attention blocks
// and all three UNets) and takes an Adam step.
#ifndef DIFFUSE_TRAIN_SEED_DIFFUSION_TRAINING_HPP
#define DIFFUSE_TRAIN_SEED_DIFFUSION_TRAINING_HPP

#include <cstddef>
#include <vector>

#include "diffuse/core/params.hpp"
#include "diffuse/models/seed_diffusion.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/train/adam.hpp"

namespace diffuse {

/// The seed's fit: `steps` times, sample_data(ws) fills ws.x, ids, mask, t and target; forward;
/// MSE of the model's output against the target; backward through every part; Adam step on
/// `store` (the model's parameters). Returns the loss of each step.
template <class T, class Cfg, class Workspace, class Sampler>
std::vector<T> fit(const SeedDiffusion<T, Cfg>& model, int steps, Workspace& ws, ParamStore<T>& store, Adam<T>& adam,
                   Sampler&& sample_data) {
    std::vector<T> losses;
    losses.reserve(std::size_t(steps));
    for (int s = 0; s < steps; ++s) {
        sample_data(ws);
        model.forward(ws);
        ws.dy.fill(T(0));
        losses.push_back(mse_loss(ws.y, ws.target, ws.dy));
        store.zero_grad();
        model.backward(ws);
        adam.step();
    }
    return losses;
}

}  // namespace diffuse

#endif
