// Fashion-MNIST as a diffusion model sees it: 28x28 images padded to 32x32 (2 pixels of background
// on each side, so the size halves cleanly through a UNet or VAE), scaled from bytes to [-1, 1]
// (0 → −1, the background; 255 → 1), with a caption per image drawn from its class's templates
// (captions.hpp). FashionSource is the data set (a CaptionedImageSource); CaptionedBatches serves it
// in shuffled, resumable batches of N through data::Batches (batches.hpp).
#ifndef DIFFUSE_DATA_FASHION_BATCHES_HPP
#define DIFFUSE_DATA_FASHION_BATCHES_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "diffuse/core/tensor.hpp"
#include "diffuse/data/batches.hpp"
#include "diffuse/data/captions.hpp"
#include "diffuse/io/idx.hpp"

namespace diffuse::data {

inline constexpr int kSourceSize = 28, kPaddedSize = 32, kPadding = (kPaddedSize - kSourceSize) / 2;

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

/// Fashion-MNIST images and labels as a captioned image source: [32, 32, 1] images, the caption of
/// image i in an epoch is caption_for(label, seed, epoch, i), labels are the classes 0..9.
/// Converts implicitly from io::FashionMnist, so CaptionedBatches<T, N>(data, seed) reads as before.
class FashionSource {
public:
    FashionSource(io::FashionMnist data)  // NOLINT: implicit on purpose (see above)
        : data_(std::move(data)) {
        if (data_.images.rows != kSourceSize || data_.images.cols != kSourceSize)
            throw std::invalid_argument("CaptionedBatches: images must be 28x28");
        if (data_.images.count != data_.labels.count)
            throw std::invalid_argument("CaptionedBatches: as many labels as images needed");
    }

    const io::FashionMnist& data() const { return data_; }
    int size() const { return data_.images.count; }
    static constexpr int height() { return kPaddedSize; }
    static constexpr int width() { return kPaddedSize; }
    static constexpr int channels() { return 1; }
    static constexpr std::size_t max_caption_length() { return kMaxCaptionLength; }
    std::int32_t label(int i) const { return data_.labels.labels[std::size_t(i)]; }

    template <class T>
    void image(int i, T* dst) const {
        pad_and_scale<T>(data_.images.image(i), View<T, kPaddedSize, kPaddedSize, 1>(dst));
    }
    void caption(std::string& out, int i, std::uint64_t seed, std::uint64_t epoch) const {
        caption_into(out, label(i), seed, epoch, std::uint64_t(i));
    }

private:
    io::FashionMnist data_;
};

/// Shuffled batches of N padded Fashion-MNIST images [N, 32, 32, 1] with their captions and labels.
template <class T, int N>
using CaptionedBatches = Batches<T, N, kPaddedSize, kPaddedSize, 1, FashionSource>;

}  // namespace diffuse::data

#endif
