// The text encoder and UNet's forward and backward over a training batch of N images, run as Parts
// shares of N / Parts: by default two halves, which two threads run at once (train/batch_halves.hpp:
// why, and what it does to the bits); Parts = 1 runs the batch whole.
#ifndef DIFFUSE_TRAIN_DIFFUSION_PASS_HPP
#define DIFFUSE_TRAIN_DIFFUSION_PASS_HPP

#include <algorithm>
#include <cstdint>

#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/batch_halves.hpp"

namespace diffuse {

template <class T, class Preset, int N, int Parts = default_batch_parts<N>>
class DiffusionPass {
public:
    using Model = LatentDiffusion<T, Preset>;
    using Weights = typename Model::DiffusionPart;
    using Text = typename Model::Text;
    using Denoiser = typename Model::Denoiser;
    static constexpr int parts = Parts, P = N / Parts;  // P: images a share
    static constexpr int h = Model::latent_size, L = Model::latent_channels;
    static constexpr int Ctx = Model::context_length, D = Model::context_width;
    static_assert(N % Parts == 0, "DiffusionPass: the shares must divide the batch");

    /// One share's workspaces (its token ids and padding mask are inputs: forward copies them in).
    struct Share {
        typename Text::template Workspace<P> text;
        Tensor<T, P, Ctx, D> dctx;
        typename Denoiser::template Workspace<P> unet;
    };
    using Shares = BatchShares<T, Weights, Share, Parts>;
    static constexpr std::size_t workspace_bytes = Shares::workspace_bytes;

    /// `weights` is the model's diffusion part, bound to `store` (both must outlive the pass).
    DiffusionPass(const Weights& weights, ParamStore<T>& store) : shares_(weights, store) {}

    /// y = UNet(zt, t, TextEncoder(ids, pad_mask)) [N, h, h, L].
    void forward(View<const std::int32_t, N, Ctx> ids, View<const bool, N, Ctx> pad_mask, View<const T, N, h, h, L> zt,
                 View<const std::int32_t, N> t, View<T, N, h, h, L> y) {
        shares_.run([&](int k, const Weights& w, Share& s) {
            const int at = k * P;
            std::copy_n(ids.template items<P>(at).data(), s.text.ids.size, s.text.ids.data());
            std::copy_n(pad_mask.template items<P>(at).data(), s.text.pad_mask.size, s.text.pad_mask.data());
            w.text_encoder.forward(s.text.ids, s.text.pad_mask, s.text.context, s.text);
            w.unet.forward(zt.template items<P>(at), t.template items<P>(at), s.text.context, s.text.pad_mask,
                           y.template items<P>(at), s.unet);
        });
    }

    /// After forward with the same zt, t and y: adds d(loss)/d(parameters) into the store's gradients,
    /// given dy = d(loss)/dy. done(part) is called as each UNet part's gradients are final in the store
    /// (UNet::backward; data-parallel training starts reducing them), when the batch runs whole.
    template <class Done = NoGradHook>
    void backward(View<const T, N, h, h, L> zt, View<const std::int32_t, N> t, View<const T, N, h, h, L> y,
                  View<const T, N, h, h, L> dy, const Done& done = {}) {
        shares_.run([&](int k, const Weights& w, Share& s) {
            const int at = k * P;
            s.dctx.fill(T(0));
            const auto unet_backward = [&](const auto& report) {
                w.unet.backward(zt.template items<P>(at), t.template items<P>(at), s.text.context, s.text.pad_mask,
                                y.template items<P>(at), s.unet, dy.template items<P>(at), View<T, P, h, h, L>(),
                                s.dctx, report);
            };
            if constexpr (Parts == 1) unet_backward(done);
            else unet_backward(NoGradHook{});  // final only once the halves are added
            w.text_encoder.encode_backward(s.text, s.dctx);
        });
        shares_.add_second_half_gradients();
    }

    /// Share k's workspaces (the text encoder's context, the UNet's caches).
    Share& share(int k) { return shares_.share(k); }

private:
    Shares shares_;
};

}  // namespace diffuse

#endif
