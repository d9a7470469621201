// A training batch run as two halves, one a thread: what the trainers' passes (train/diffusion_pass.hpp,
// train/vae_pass.hpp) share.
//
// Run whole, a batch opens one parallel region a layer (~190 a Default diffusion step), each waking the
// other thread: under passive OpenMP waits a futex round trip of tens of µs on a KVM guest; and the serial
// pieces between the layers (weight packing, norms below the parallel grain) leave a thread idle. Two
// halves at once on two threads open one region for a whole forward and backward, each half on a thread of
// its own (run_pair); on one thread, or more than two, they run one after the other, each layer's products
// split across the threads (libgomp starts new threads for every nested region, so two teams of half the
// threads would cost more than they give).
//
// The second half runs through a second instance of the layers (BatchShares): the same weights, its
// parameter gradients into a buffer of its own, added to the store's after the backward pass, element by
// element. Every other sum is per image, so the gradients' bits follow the split, never the thread count;
// they differ from the whole batch's by float rounding (each reduction over the batch is cut in two).
// Layers with hooks attached to the model's own instance (LoRA adapters) must run whole: the second
// instance is built fresh, without them.
#ifndef DIFFUSE_TRAIN_BATCH_HALVES_HPP
#define DIFFUSE_TRAIN_BATCH_HALVES_HPP

#include <array>
#include <cstddef>
#include <memory>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse {

/// Shares of a training batch of N: two halves when N is even, else the whole batch.
template <int N>
inline constexpr int default_batch_parts = N % 2 == 0 ? 2 : 1;

/// f(k) for each share k of Parts (1: whole, 2: halves): both at once where two threads are available.
template <int Parts, class F>
void run_shares(F f) {
    static_assert(Parts == 1 || Parts == 2, "run_shares: a batch runs whole or as two halves");
    if constexpr (Parts == 1) f(0);
    else run_pair([&] { f(0); }, [&] { f(1); });
}

/// The Parts shares of a batch (1: whole, 2: halves), each with its workspace `Share` and the instance of
/// `Layers` it runs through: the model part itself (bound to `store`) for the first, for the second a
/// second instance with the store's weights and gradients of its own, zero between steps.
template <class T, class Layers, class Share, int Parts>
class BatchShares {
public:
    static_assert(Parts == 1 || Parts == 2, "BatchShares: a batch runs whole or as two halves");
    static constexpr std::size_t workspace_bytes = sizeof(std::array<Share, Parts>);

    /// `layers` must be bound to `store`; both must outlive the shares.
    BatchShares(const Layers& layers, ParamStore<T>& store)
        : first_(&layers), store_(&store), shares_(make<std::array<Share, Parts>>()) {
        if constexpr (Parts == 2) {
            second_ = std::make_unique<Second>(store.size());
            bind_buffers(second_->layers, store, store.values(), second_->grads.data());
        }
    }

    /// f(k, layers, share) for each share k: both at once where two threads are available.
    template <class F>
    void run(F f) {
        run_shares<Parts>([&](int k) { f(k, k == 0 ? *first_ : second_->layers, share(k)); });
    }

    /// After a backward pass through every share: the store's gradients += the second half's, which are
    /// zeroed on the way for the next step.
    void add_second_half_gradients() {
        if constexpr (Parts == 2) {
            T* grads = store_->grads();
            T* second = second_->grads.data();
            for_each_flat_chunk(second_->grads.size(), [&](std::size_t b, std::size_t e) {
                for (std::size_t i = b; i < e; ++i) {
                    grads[i] += second[i];
                    second[i] = T(0);
                }
            });
        }
    }

    /// Share k's workspace: images [k·N/Parts, (k+1)·N/Parts) of the batch.
    Share& share(int k) { return (*shares_)[std::size_t(k)]; }

private:
    struct Second {
        explicit Second(std::size_t n) : grads(n) {}
        Layers layers;
        AlignedBuffer<T> grads;  // the store's layout
    };
    const Layers* first_;
    ParamStore<T>* store_;
    std::unique_ptr<Second> second_;  // with two halves
    std::unique_ptr<std::array<Share, Parts>> shares_;
};

}  // namespace diffuse

#endif
