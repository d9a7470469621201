// The VAE's training forward and backward (AutoencoderKL: reconstruction MSE + beta · KL) over a batch of
// N images, run as Parts shares of N / Parts: by default two halves, which two threads run at once, each
// its forward and backward in one go (train/batch_halves.hpp: why, and what it does to the bits);
// Parts = 1 runs the batch whole. Each share's losses are means over its images, so the batch's are their
// mean, and each share's backward is scaled by 1 / Parts.
#ifndef DIFFUSE_TRAIN_VAE_PASS_HPP
#define DIFFUSE_TRAIN_VAE_PASS_HPP

#include <algorithm>
#include <array>

#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/batch_halves.hpp"

namespace diffuse {

template <class T, class Preset, int N, int Parts = default_batch_parts<N>>
class VaePass {
public:
    using Model = LatentDiffusion<T, Preset>;
    using Weights = typename Model::VaePart;
    using Vae = typename Model::Vae;
    using Losses = typename Vae::Losses;
    static constexpr int parts = Parts, P = N / Parts;  // P: images a share
    static constexpr int S = Model::image_size, C = Model::image_channels;
    static constexpr int h = Model::latent_size, L = Model::latent_channels;
    static_assert(N % Parts == 0, "VaePass: the shares must divide the batch");
    using Share = typename Vae::template Workspace<P>;
    using Shares = BatchShares<T, Weights, Share, Parts>;
    static constexpr std::size_t workspace_bytes = Shares::workspace_bytes;

    /// `weights` is the model's VAE part, bound to `store` (both must outlive the pass).
    VaePass(const Weights& weights, ParamStore<T>& store) : shares_(weights, store) {}

    /// Forward on images x [N, S, S, C] with the sampling noise eps [N, h, h, L], then backward: adds
    /// d(total)/d(parameters) into the store's gradients. Returns the batch's losses.
    Losses step(View<const T, N, S, S, C> x, View<const T, N, h, h, L> eps, T beta) {
        std::array<Losses, Parts> each;
        shares_.run([&](int k, const Weights& w, Share& ws) {
            const int at = k * P;
            std::copy_n(x.template items<P>(at).data(), ws.x.size, ws.x.data());
            std::copy_n(eps.template items<P>(at).data(), ws.eps.size, ws.eps.data());
            each[std::size_t(k)] = w.vae.forward(ws, beta);
            w.vae.backward(ws, beta, T(1) / T(Parts));
        });
        shares_.add_second_half_gradients();
        Losses mean;
        for (const Losses& l : each) {
            mean.reconstruction += l.reconstruction / T(Parts);
            mean.kl += l.kl / T(Parts);
            mean.total += l.total / T(Parts);
        }
        return mean;
    }

    /// Share k's workspace (moments, latents, reconstruction, caches).
    Share& share(int k) { return shares_.share(k); }

private:
    Shares shares_;
};

}  // namespace diffuse

#endif
