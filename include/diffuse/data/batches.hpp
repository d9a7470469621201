// A captioned image data set, as training sees it: a source of images with captions (the concept
// CaptionedImageSource) and one class, Batches, that serves it in seeded, shuffled, exactly resumable
// batches [N, H, W, C] in [-1, 1] with a caption per image. Fashion-MNIST (fashion_batches.hpp) and an
// image folder with a metadata.jsonl or metadata.csv (image_folder.hpp) are the two sources.
//
// Shuffling and caption dropout come from stream_rng(seed, ...) keyed by the epoch (and image index),
// not from a generator carried along: epoch e is the same permutation whatever happened before, a run
// resumes exactly with seek(epoch, batch), and the caption of an image in an epoch does not depend on
// the batch it lands in. The last partial batch of an epoch is dropped (N is a compile-time size).
//
// Random streams under the seed: 0 is the epoch's permutation, 1 is the source's caption draw for
// (epoch, index), 2 is the dropout decision for (epoch, index).
//
// Data parallelism (dist/): with a Shard {rank, ranks}, a step's global batch is ranks · N images
// taken in the epoch's order, and rank r serves images [r·N, (r+1)·N) of it: the shards are
// disjoint, and their union is what one process with batch ranks · N would see. The position in an
// epoch is counted in images (offset()), so a checkpoint resumes with any number of ranks.
#ifndef DIFFUSE_DATA_BATCHES_HPP
#define DIFFUSE_DATA_BATCHES_HPP

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::data {

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

/// What Batches needs of a data set, for pixels of type T:
///   size()                          the number of images;
///   height(), width(), channels()   every image's shape (checked against Batches' H, W, C);
///   image(i, T* dst)                image i as [height, width, channels] in [-1, 1];
///   caption(out, i, seed, epoch)    image i's caption in `epoch` into `out`, a function of its
///                                   arguments only (draws use stream_rng(seed, 1, epoch, i));
///   max_caption_length()            no caption is longer (strings are reserved for it once);
///   label(i)                        a class label, or -1 where the data set has none.
/// caption() writing into a string whose capacity holds max_caption_length() must not allocate.
template <class S, class T>
concept CaptionedImageSource = requires(const S& s, int i, T* dst, std::string& out, std::uint64_t seed) {
    { s.size() } -> std::convertible_to<int>;
    { s.height() } -> std::convertible_to<int>;
    { s.width() } -> std::convertible_to<int>;
    { s.channels() } -> std::convertible_to<int>;
    s.image(i, dst);
    s.caption(out, i, seed, seed);
    { s.max_caption_length() } -> std::convertible_to<std::size_t>;
    { s.label(i) } -> std::convertible_to<std::int32_t>;
};

/// This process's part of a global batch: rank r of `ranks` processes.
struct Shard {
    int rank = 0, ranks = 1;
};

struct BatchOptions {
    double empty_caption_prob = 0;  // classifier-free-guidance dropout: this share of captions is ""
    Shard shard{};
};

/// Shuffled batches of N images [N, H, W, C] from a source, with their captions (and labels).
template <class T, int N, int H, int W, int C, class Source>
requires CaptionedImageSource<Source, T>
class Batches {
public:
    static_assert(N > 0 && H > 0 && W > 0 && C > 0, "Batches: batch size and image shape must be positive");
    using Images = View<T, N, H, W, C>;
    using Captions = std::array<std::string, N>;

    Batches(Source source, std::uint64_t seed, BatchOptions opt = {})
        : source_(std::move(source)), seed_(seed), opt_(opt) {
        if (source_.height() != H || source_.width() != W || source_.channels() != C)
            throw std::invalid_argument("Batches: the data set's images are " + std::to_string(source_.width()) + "x" +
                                        std::to_string(source_.height()) + "x" + std::to_string(source_.channels()) +
                                        ", the batches want " + std::to_string(W) + "x" + std::to_string(H) + "x" +
                                        std::to_string(C) + " (width x height x channels)");
        if (opt_.shard.ranks < 1 || opt_.shard.rank < 0 || opt_.shard.rank >= opt_.shard.ranks)
            throw std::invalid_argument("Batches: rank " + std::to_string(opt_.shard.rank) + " of " +
                                        std::to_string(opt_.shard.ranks) + " does not exist");
        if (source_.size() / opt_.shard.ranks < N)
            throw std::invalid_argument("Batches: " + std::to_string(source_.size()) +
                                        " images are fewer than one batch of " + std::to_string(N) + " on each of " +
                                        std::to_string(opt_.shard.ranks) + " ranks");
        seek(0, 0);
    }

    const Source& source() const { return source_; }
    std::uint64_t seed() const { return seed_; }
    int size() const { return source_.size(); }
    /// Images of one step over all ranks.
    int global_batch() const { return N * opt_.shard.ranks; }
    const Shard& shard() const { return opt_.shard; }
    int batches_per_epoch() const { return size() / global_batch(); }
    std::int64_t epoch() const { return epoch_; }
    /// Index of the next (global) batch within the epoch.
    int position() const { return next_ / global_batch(); }
    /// Images of the epoch's order that earlier steps took (all ranks'): what a checkpoint saves.
    int offset() const { return next_; }
    /// The data set's image index at position i of the current epoch's order.
    int order(int i) const { return order_[std::size_t(i)]; }

    /// Continue from batch b of epoch e (a fresh run is seek(0, 0)).
    void seek(std::int64_t e, int b) {
        if (b < 0 || b > batches_per_epoch())
            throw std::out_of_range("Batches: no batch " + std::to_string(b) + " in epoch " + std::to_string(e));
        seek_offset(e, b * global_batch());
    }
    /// Continue at image `images` of epoch e's order (a position saved with another number of ranks).
    void seek_offset(std::int64_t e, int images) {
        if (e < 0 || images < 0 || images > size())
            throw std::out_of_range("Batches: no image " + std::to_string(images) + " in epoch " + std::to_string(e));
        if (order_.empty() || e != epoch_) shuffle(e);
        next_ = images;
        if (epoch_done()) seek_offset(epoch_ + 1, 0);
    }

    /// Fills the next batch (labels may be null). After an epoch's last batch, epoch() and
    /// offset() already name the next epoch's first batch: what a checkpoint saves.
    void next(Images images, Captions& captions, std::int32_t* labels = nullptr) {
        fill(next_ + opt_.shard.rank * N, images, captions, labels);
        next_ += global_batch();
        if (epoch_done()) seek_offset(epoch_ + 1, 0);
    }

private:
    void shuffle(std::int64_t e) {
        order_.resize(std::size_t(size()));
        std::iota(order_.begin(), order_.end(), 0);
        Rng rng = stream_rng(seed_, 0, std::uint64_t(e));
        for (std::size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
        epoch_ = e;
    }

    /// Too few images left for another global batch (the rest of the epoch is dropped).
    bool epoch_done() const { return next_ + global_batch() > size(); }

    /// The N images at `first` of the epoch's order.
    void fill(int first, Images images, Captions& captions, std::int32_t* labels) const {
        for (int i = 0; i < N; ++i) {
            const int idx = order_[std::size_t(first) + std::size_t(i)];
            source_.image(idx, images.item(i).data());
            // Written in place into a string reserved for the longest caption (a no-op after the
            // first batch), and cleared rather than replaced when dropped: no allocation per batch.
            const bool drop =
                opt_.empty_caption_prob > 0 &&
                stream_rng(seed_, 2, std::uint64_t(epoch_), std::uint64_t(idx)).uniform() < opt_.empty_caption_prob;
            std::string& caption = captions[std::size_t(i)];
            caption.reserve(source_.max_caption_length());
            if (drop) caption.clear();
            else source_.caption(caption, idx, seed_, std::uint64_t(epoch_));
            if (labels) labels[i] = source_.label(idx);
        }
    }

    Source source_;
    std::uint64_t seed_;
    BatchOptions opt_;
    std::vector<int> order_;
    std::int64_t epoch_ = 0;
    int next_ = 0;
};

}  // namespace diffuse::data

#endif
