// data::Batches over Fashion-MNIST against the CaptionedBatches it replaced: the class below is the
// previous implementation, copied verbatim (renamed), and the new CaptionedBatches must serve
// bit-identical batches (order, pixels, captions, dropout, labels) across epochs and after seek.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/data/batches.hpp"
#include "diffuse/data/fashion_batches.hpp"

#include "test_skip.hpp"

using namespace diffuse;
using namespace diffuse::data;

namespace legacy {

template <class T, int N>
class LegacyCaptionedBatches {
public:
    using Images = View<T, N, kPaddedSize, kPaddedSize, 1>;
    using Captions = std::array<std::string, N>;

    LegacyCaptionedBatches(io::FashionMnist data, std::uint64_t seed, BatchOptions opt = {})
        : data_(std::move(data)), seed_(seed), opt_(opt) {
        if (data_.images.rows != kSourceSize || data_.images.cols != kSourceSize)
            throw std::invalid_argument("LegacyCaptionedBatches: images must be 28x28");
        if (data_.images.count != data_.labels.count)
            throw std::invalid_argument("LegacyCaptionedBatches: as many labels as images needed");
        if (data_.images.count < N)
            throw std::invalid_argument("LegacyCaptionedBatches: fewer images than one batch of " + std::to_string(N));
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
        if (e < 0 || b < 0 || b > batches_per_epoch())
            throw std::out_of_range("LegacyCaptionedBatches: no batch " + std::to_string(b));
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
                              stream_rng(seed_, 2, std::uint64_t(epoch_), std::uint64_t(idx)).uniform() <
                                  opt_.empty_caption_prob;  // (wrapped to 120 columns; otherwise verbatim)
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

}  // namespace legacy

namespace {

io::FashionMnist synthetic(int count) {
    io::FashionMnist d;
    d.images.count = count;
    d.images.rows = d.images.cols = 28;
    d.images.pixels.resize(std::size_t(count) * 784);
    d.labels.count = count;
    d.labels.labels.resize(std::size_t(count));
    Rng rng(99);
    for (auto& p : d.images.pixels) p = std::uint8_t(rng.below(256));
    for (auto& l : d.labels.labels) l = std::uint8_t(rng.below(10));
    return d;
}

/// Runs both for `batches` batches from (e, b) and requires identical output.
template <int N>
void compare(const io::FashionMnist& data, std::uint64_t seed, double dropout, std::int64_t e, int b, int batches) {
    legacy::LegacyCaptionedBatches<float, N> old(data, seed, {dropout});
    CaptionedBatches<float, N> now(data, seed, {dropout});
    old.seek(e, b);
    now.seek(e, b);
    auto a = make<Tensor<float, N, 32, 32, 1>>(), c = make<Tensor<float, N, 32, 32, 1>>();
    std::array<std::string, N> ca, cc;
    std::int32_t la[N], lc[N];
    int empty = 0;
    for (int k = 0; k < batches; ++k) {
        CAPTURE(k);
        old.next(a->view(), ca, la);
        now.next(c->view(), cc, lc);
        REQUIRE(std::memcmp(a->data(), c->data(), sizeof(float) * a->size) == 0);
        REQUIRE(ca == cc);
        REQUIRE(std::equal(la, la + N, lc));
        REQUIRE(old.epoch() == now.epoch());
        REQUIRE(old.position() == now.position());
        for (int i = 0; i < N; ++i) REQUIRE(old.order(i) == now.order(i));
        for (const auto& s : cc) empty += s.empty();
    }
    if (dropout > 0) CHECK(empty > 0);
}

}  // namespace

TEST_CASE("Fashion-MNIST batches through data::Batches are bit-identical to the previous CaptionedBatches") {
    const io::FashionMnist data = synthetic(203);
    compare<16>(data, 7, 0.0, 0, 0, 40);      // 12 batches an epoch: crosses three epoch boundaries
    compare<16>(data, 7, 0.25, 0, 0, 40);     // with caption dropout
    compare<16>(data, 12345, 0.1, 3, 5, 20);  // after a seek
    compare<7>(data, 1, 0.5, 2, 28, 30);      // seek to an epoch's end, odd batch size
    static_assert(CaptionedImageSource<FashionSource, float>);
    static_assert(CaptionedImageSource<FashionSource, double>);
    static_assert(std::is_same_v<CaptionedBatches<float, 4>, Batches<float, 4, 32, 32, 1, FashionSource>>);
}

TEST_CASE("Fashion-MNIST test split: the first batches are bit-identical to the previous CaptionedBatches") {
    const std::string dir = DIFFUSE_FASHION_MNIST_DIR;
    if (!std::filesystem::exists(dir + "/t10k-images-idx3-ubyte.gz"))
        DIFFUSE_SKIP("Fashion-MNIST not found in " << dir);
    const io::FashionMnist data = io::load_fashion_mnist(io::Split::test, dir);
    compare<64>(data, 0, 0.1, 0, 0, 8);
    compare<64>(data, 42, 0.1, 5, 150, 8);  // epoch 5's last batches and epoch 6's first
}

TEST_CASE("Batches: checks the source's shape and size") {
    CHECK_THROWS_AS((Batches<float, 4, 16, 16, 1, FashionSource>(synthetic(10), 0)), std::invalid_argument);
    CHECK_THROWS_AS((CaptionedBatches<float, 16>(synthetic(10), 0)), std::invalid_argument);
    CaptionedBatches<float, 4> b(synthetic(10), 0);
    CHECK(b.batches_per_epoch() == 2);
    CHECK_THROWS_AS(b.seek(0, 3), std::out_of_range);
    CHECK_THROWS_AS(b.seek(-1, 0), std::out_of_range);
}

TEST_CASE("Batches: the shards of R ranks are the global batch of one process, and resume at any rank count") {
    const io::FashionMnist data = synthetic(37);  // global batch 8: 4 batches an epoch, 5 images dropped
    const BatchOptions one{0.3, {}};
    CaptionedBatches<float, 8> whole(data, 5, one);
    CaptionedBatches<float, 4> r0(data, 5, {0.3, {0, 2}}), r1(data, 5, {0.3, {1, 2}});
    CHECK(r0.global_batch() == 8);
    CHECK(r1.batches_per_epoch() == whole.batches_per_epoch());
    auto w = make<Tensor<float, 8, 32, 32, 1>>();
    auto a = make<Tensor<float, 4, 32, 32, 1>>(), b = make<Tensor<float, 4, 32, 32, 1>>();
    std::array<std::string, 8> cw;
    std::array<std::string, 4> ca, cb;
    std::int32_t lw[8], la[4], lb[4];
    for (int step = 0; step < 9; ++step) {  // crosses two epoch ends
        CAPTURE(step);
        whole.next(w->view(), cw, lw);
        r0.next(a->view(), ca, la);
        r1.next(b->view(), cb, lb);
        const std::size_t half = sizeof(float) * a->size;
        REQUIRE(std::memcmp(w->data(), a->data(), half) == 0);  // rank 0: the first half
        REQUIRE(std::memcmp(w->data() + a->size, b->data(), half) == 0);
        for (int i = 0; i < 4; ++i) {
            REQUIRE(cw[std::size_t(i)] == ca[std::size_t(i)]);
            REQUIRE(cw[std::size_t(i) + 4] == cb[std::size_t(i)]);
            REQUIRE((lw[i] == la[i] && lw[i + 4] == lb[i]));
        }
        REQUIRE((r0.epoch() == whole.epoch() && r0.offset() == whole.offset() && r1.offset() == whole.offset()));
    }

    // A position saved by 1 rank × batch 4 (offset 12, not a multiple of the new global batch)
    // resumes on 2 ranks × 4 at image 12 of the same epoch's order.
    CaptionedBatches<float, 4> single(data, 5, one);
    for (int i = 0; i < 3; ++i) single.next(a->view(), ca, la);
    REQUIRE(single.offset() == 12);
    CaptionedBatches<float, 4> resumed(data, 5, {0.3, {1, 2}});
    resumed.seek_offset(single.epoch(), single.offset());
    resumed.next(b->view(), cb, lb);
    for (int i = 0; i < 4; ++i) CHECK(lb[i] == data.labels.labels[std::size_t(single.order(12 + 4 + i))]);
    CHECK(resumed.offset() == 20);
    resumed.next(b->view(), cb, lb);  // images [20, 28); [28, 36) is the epoch's last global batch
    CHECK((resumed.epoch() == 0 && resumed.offset() == 28));
    resumed.next(b->view(), cb, lb);
    CHECK((resumed.epoch() == 1 && resumed.offset() == 0));

    CHECK_THROWS_AS((CaptionedBatches<float, 4>(data, 5, {0, {2, 2}})), std::invalid_argument);
    CHECK_THROWS_AS((CaptionedBatches<float, 4>(data, 5, {0, {0, 0}})), std::invalid_argument);
    CHECK_THROWS_AS((CaptionedBatches<float, 16>(data, 5, {0, {0, 3}})), std::invalid_argument);  // 37 / 3 < 16
}
