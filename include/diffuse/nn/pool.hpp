// MaxPool2d: the maximum over each K×K window (valid padding), [N, H, W, C] -> [N, Ho, Wo, C].
// Backward routes each output gradient to the input that won its window; on ties the first in
// row-major window order wins (as PyTorch). The winners are saved in the Cache.
#ifndef DIFFUSE_NN_POOL_HPP
#define DIFFUSE_NN_POOL_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "diffuse/core/parallel.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/window.hpp"

namespace diffuse {

template <class T, int K = 2, int Stride = K>
struct MaxPool2d {
    static_assert(K > 0 && Stride > 0, "MaxPool2d: kernel size and stride must be positive");
    static constexpr int kernel_size = K, stride = Stride;

    template <class V>
    constexpr void visit(V&) {}

    template <class XShape>
    using output_shape = WindowOutput<XShape, K, Stride, Padding::valid, XShape::last>;

    template <class XShape>
    struct Cache {
        TensorOf<std::int32_t, output_shape<XShape>> argmax;  // [N, Ho, Wo, C] winner's offset in its image
    };

    /// Inference: no winners saved.
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        check<X, Y>();
        run<shape_of<X>>(x.data(), y.data(), nullptr);
    }
    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y, Cache<shape_of<X>>& cache) const {
        check<X, Y>();
        run<shape_of<X>>(x.data(), y.data(), cache.argmax.data());
    }

    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X&, const Y&, const Cache<shape_of<X>>& cache, const DY& dy, DX&& dx) const {
        check<X, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "MaxPool2d: gradients must have the shapes of their values");
        if (!dx.data()) return;
        using XS = shape_of<X>;
        constexpr std::size_t in = XS::size / XS::first, out = shape_of<Y>::size / XS::first;
        // Per image, in order: overlapping windows (Stride < K) may share a winner.
        parallel_for(XS::first, [&](int n) {
            const std::int32_t* a = cache.argmax.data() + n * out;
            const auto* g = dy.data() + n * out;
            T* d = dx.data() + n * in;
            for (std::size_t i = 0; i < out; ++i) d[a[i]] += g[i];
        });
    }

private:
    template <class X, class Y>
    static constexpr void check() {
        static_assert(shape_of<X>::rank == 4, "MaxPool2d: the input must be an image batch [N, H, W, C]");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<X>>>,
                      "MaxPool2d: the output must be [N, Ho, Wo, C] as given by output_shape");
    }

    /// One output row at a time; channels innermost so the compares run along contiguous memory.
    template <class XS>
    static void run(const T* x, T* y, std::int32_t* argmax) {
        constexpr int N = XS::first, H = XS::template dim<1>, W = XS::template dim<2>, C = XS::last;
        using AH = WindowAxis<H, K, Stride, Padding::valid>;
        using AW = WindowAxis<W, K, Stride, Padding::valid>;
        parallel_for(N * AH::out, [&](int r) {
            const int n = r / AH::out, oh = r % AH::out;
            const T* xn = x + std::size_t(n) * H * W * C;
            for (int ow = 0; ow < AW::out; ++ow) {
                const std::size_t o = (std::size_t(r) * AW::out + ow) * C;
                T* yo = y + o;
                std::int32_t* ao = argmax ? argmax + o : nullptr;
                for (int kh = 0; kh < K; ++kh)
                    for (int kw = 0; kw < K; ++kw) {
                        const std::int32_t off = std::int32_t((AH::input(oh, kh) * W + AW::input(ow, kw)) * C);
                        const T* xi = xn + off;
                        const bool first = kh == 0 && kw == 0;
                        for (int c = 0; c < C; ++c)
                            if (first || xi[c] > yo[c]) {  // strict: ties keep the earlier tap
                                yo[c] = xi[c];
                                if (ao) ao[c] = off + c;
                            }
                    }
            }
        });
    }
};

}  // namespace diffuse

#endif
