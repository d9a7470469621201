// Fashion-MNIST as a diffusion model sees it: 28x28 images padded to 32x32 (2 pixels of background
// on each side, so the size halves cleanly through a UNet or VAE), scaled from bytes to [-1, 1]
// (0 → −1, the background; 255 → 1), served in shuffled batches of N with a caption per image.
//
// Shuffling and captions come from stream_rng(seed, ...) keyed by the epoch (and image index), not
// from a generator carried along: epoch e is the same permutation whatever happened before, a run
// resumes exactly with seek(epoch, batch), and the caption of an image in an epoch does not depend
// on the batch it lands in. The last partial batch of an epoch is dropped (N is a compile-time size).
#ifndef DIFFUSE_DATA_FASHION_BATCHES_HPP
#define DIFFUSE_DATA_FASHION_BATCHES_HPP

#include <array>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/core/tensor.hpp"
#include "diffuse/data/captions.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/io/idx.hpp"

namespace diffuse::data {

inline constexpr int kSourceSize = 28, kPaddedSize = 32, kPadding = (kPaddedSize - kSourceSize) / 2;

/// byte → [-1, 1] as p/127.5 − 1, computed in double and rounded once to T.
template <class T>
inline const std::array<T, 256>& byte_to_unit_table() {
    static const std::array<T, 256> table = [] {
        std::array<T, 256> t{};
        for (int p = 0; p < 256; ++p) t[std::size_t(p)] = T(double(p) / 127.5 - 1.0);
        return t;
    }();
    return table;
}

/// One 28x28 byte image [28, 28] into [32, 32, 1], centred, background (byte 0 → −1) around it.
template <class T>
void pad_and_scale(const std::uint8_t* src, View<T, kPaddedSize, kPaddedSize, 1> dst) {
    const auto& lut = byte_to_unit_table<T>();
    for (int y = 0; y < kPaddedSize; ++y)
        for (int x = 0; x < kPaddedSize; ++x) {
            const int sy = y - kPadding, sx = x - kPadding;
            const bool inside = sy >= 0 && sy < kSourceSize && sx >= 0 && sx < kSourceSize;
            dst(y, x, 0) = lut[inside ? src[sy * kSourceSize + sx] : 0];
        }
}

struct BatchOptions {
    double empty_caption_prob = 0;  // classifier-free-guidance dropout: this share of captions is ""
};

/// Shuffled batches of N padded images [N, 32, 32, 1] with their captions and labels.
template <class T, int N>
class CaptionedBatches {
public:
    using Images = View<T, N, kPaddedSize, kPaddedSize, 1>;
    using Captions = std::array<std::string, N>;

    CaptionedBatches(io::FashionMnist data, std::uint64_t seed, BatchOptions opt = {})
        : data_(std::move(data)), seed_(seed), opt_(opt) {
        if (data_.images.rows != kSourceSize || data_.images.cols != kSourceSize)
            throw std::invalid_argument("CaptionedBatches: images must be 28x28");
        if (data_.images.count != data_.labels.count)
            throw std::invalid_argument("CaptionedBatches: as many labels as images needed");
        if (data_.images.count < N)
            throw std::invalid_argument("CaptionedBatches: fewer images than one batch of " + std::to_string(N));
        seek(0, 0);
    }

    int size() const { return data_.images.count; }
    int batches_per_epoch() const { return size() / N; }
    std::int64_t epoch() const { return epoch_; }
    /// Index of the next batch within the epoch.
    int position() const { return next_; }
    /// The data set's image index at position i of the current epoch's order.
    int order(int i) const { return order_[std::size_t(i)]; }

    /// Continue from batch b of epoch e (a fresh run is seek(0, 0)).
    void seek(std::int64_t e, int b) {
        if (e < 0 || b < 0 || b > batches_per_epoch()) throw std::out_of_range("CaptionedBatches: no batch " + std::to_string(b));
        if (order_.empty() || e != epoch_) shuffle(e);
        next_ = b;
    }

    /// Fills the next batch (labels may be null). After an epoch's last batch, epoch() and
    /// position() already name the next epoch's first batch: what a checkpoint saves.
    void next(Images images, Captions& captions, std::int32_t* labels = nullptr) {
        if (next_ == batches_per_epoch()) seek(epoch_ + 1, 0);
        fill(next_++, images, captions, labels);
        if (next_ == batches_per_epoch()) seek(epoch_ + 1, 0);
    }

private:
    void shuffle(std::int64_t e) {
        order_.resize(std::size_t(size()));
        std::iota(order_.begin(), order_.end(), 0);
        Rng rng = stream_rng(seed_, 0, std::uint64_t(e));
        for (std::size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
        epoch_ = e;
    }

    void fill(int b, Images images, Captions& captions, std::int32_t* labels) const {
        for (int i = 0; i < N; ++i) {
            const int idx = order_[std::size_t(b) * N + std::size_t(i)];
            const int label = data_.labels.labels[std::size_t(idx)];
            pad_and_scale<T>(data_.images.image(idx), images.item(i));
            // The caption is caption_for(label, seed, epoch, idx); dropout has a stream of its own.
            // Written in place into a string reserved for the longest caption (a no-op after the
            // first batch), and cleared rather than replaced when dropped: no allocation per batch.
            const bool drop = opt_.empty_caption_prob > 0 &&
                              stream_rng(seed_, 2, std::uint64_t(epoch_), std::uint64_t(idx)).uniform() < opt_.empty_caption_prob;
            std::string& caption = captions[std::size_t(i)];
            caption.reserve(kMaxCaptionLength);
            if (drop) caption.clear();
            else caption_into(caption, label, seed_, std::uint64_t(epoch_), std::uint64_t(idx));
            if (labels) labels[i] = label;
        }
    }

    io::FashionMnist data_;
    std::uint64_t seed_;
    BatchOptions opt_;
    std::vector<int> order_;
    std::int64_t epoch_ = 0;
    int next_ = 0;
};

}  // namespace diffuse::data

#endif
