// clip::Layer: the pre-LN transformer layer of the text encoder (CLIP's and GPT-2's block), what the
// seed's CLIP_NLP_Layer (LN → attention → Dense → Add → Dense) meant:
//
//   h1 = ln1(x)                          x [N, T, D]
//   r  = x + attn(h1, h1, mask)          self-attention; padded keys (mask true) are never attended to
//   h2 = ln2(r)
//   y  = r + fc2(GELU(fc1(h2)))          fc1: D → Hidden, fc2: Hidden → D, exact GELU (nn.GELU())
//
// Backward mirrors it, the skips adding the upstream gradient straight through:
//   dr = dy + ln2ᵀ(fc1ᵀ(GELU'(fc2ᵀ(dy)))),   dx += dr + ln1ᵀ(attnᵀ(dr))
//
// Parameter names (PyTorch style): ln1.*, attn.{q,k,v,out}_proj.*, ln2.*, mlp.fc1.*, mlp.fc2.*.
// Padded query positions are computed like any other (they attend to the real tokens): their rows
// are never read by a real position, so they only matter to a consumer that ignores the mask.
#ifndef DIFFUSE_BLOCKS_TRANSFORMER_LAYER_HPP
#define DIFFUSE_BLOCKS_TRANSFORMER_LAYER_HPP

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "diffuse/core/gemm.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/norm.hpp"

namespace diffuse::clip {

template <class T, int D, int Heads, int Hidden = 4 * D>
struct Layer {
    static_assert(D > 0 && Heads > 0 && Hidden > 0, "clip::Layer: widths and head count must be positive");
    static_assert(D % Heads == 0, "clip::Layer: the width D must divide by the head count");
    static constexpr int width = D, num_heads = Heads, mlp_hidden = Hidden;

    using Attention = MultiHeadAttention<T, D, Heads>;

    LayerNorm<T, D> ln1;
    Attention attn;
    LayerNorm<T, D> ln2;
    Linear<T, D, Hidden> fc1;
    Linear<T, Hidden, D> fc2;
    using Gelu = GELU<T>;  // between fc1 and fc2, applied range by range

    template <class V>
    constexpr void visit(V& v) {
        v("ln1", ln1);
        v("attn", attn);
        v("ln2", ln2);
        v("mlp.fc1", fc1);
        v("mlp.fc2", fc2);
    }

    template <class XShape>
    using output_shape = XShape;

    /// The children's caches, every intermediate activation and backward's gradient scratch.
    template <class XShape>
    struct Cache {
        static constexpr int N = XShape::first, Len = XShape::template dim<1>;
        using Seq = Shape<N, Len, D>;
        Tensor<T, N, Len, D> h1, a, r, h2;  // ln1(x), attn(h1), x + a, ln2(r)
        Tensor<T, N, Len, Hidden> f, g;     // fc1(h2), GELU(f)
        typename LayerNorm<T, D>::template Cache<Seq> ln1_cache, ln2_cache;
        typename Attention::template Cache<Seq> attn_cache;
        // Backward scratch: dh is d(h2), then d(h1) once ln2's backward has consumed it.
        Tensor<T, N, Len, D> dr, dh;
        Tensor<T, N, Len, Hidden> dg, df;
    };
    template <class XShape>
    static constexpr std::size_t cache_bytes = sizeof(Cache<XShape>);

    /// x [N, T, D] → y [N, T, D]; mask: [N, T] bool/uint8 (true = padded token) or no_mask.
    /// y must not alias x.
    template <Shaped X, class M, Shaped Y, class CacheT>
    void forward(const X& x, const M& mask, Y&& y, CacheT& c) const {
        check_shapes<X, Y, CacheT>();
        ln1.forward(x, c.h1, c.ln1_cache);
        attn.forward(c.h1, c.h1, mask, c.a, c.attn_cache);
        add(x, c.a, c.r);
        ln2.forward(c.r, c.h2, c.ln2_cache);
        // y = r + fc2(GELU(fc1(h2))), row by row: a share of the rows a thread, in one region (float:
        // a product gives a row the same bits wherever the rows are cut)
        const auto mlp = [&](int r0, int r1) {
            const std::size_t d = std::size_t(r0) * D, h = std::size_t(r0) * Hidden;
            fc1.forward_rows(r1 - r0, c.h2.data() + d, c.f.data() + h);
            Gelu::forward_range(std::size_t(r1 - r0) * Hidden, c.f.data() + h, c.g.data() + h);
            fc2.forward_rows(r1 - r0, c.g.data() + h, y.data() + d);
            simd::map2(std::size_t(r1 - r0) * D, c.r.data() + d, y.data() + d, y.data() + d,
                       [](auto u, auto v) { return u + v; });
        };
        parallel_shares(shape_of<X>::rows, mlp, rows_cut_freely<T>);
    }

    /// Adds into dx (a null dx skips it) and into every parameter gradient.
    template <Shaped X, class M, Shaped Y, class CacheT, Shaped DY, Shaped DX>
    void backward(const X& x, const M& mask, const Y&, CacheT& c, const DY& dy, DX&& dx) const {
        check_shapes<X, Y, CacheT>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "clip::Layer: gradients must have the shapes of their values");
        // MLP branch: dg, df and dh row by row, a share of the rows a thread, then (after a barrier, in
        // the same region) the two parameter gradients over all rows, one a thread.
        constexpr int rows = shape_of<X>::rows;
        parallel_shares_then(
            rows,
            [&](int r0, int r1) {
                const std::size_t d = std::size_t(r0) * D, h = std::size_t(r0) * Hidden,
                                  n = std::size_t(r1 - r0) * Hidden;
                fc2.backward_input(r1 - r0, dy.data() + d, c.dg.data() + h, Accumulate::no);
                std::fill_n(c.df.data() + h, n, T(0));
                Gelu::backward_range(n, c.f.data() + h, c.dg.data() + h, c.df.data() + h);
                fc1.backward_input(r1 - r0, c.df.data() + h, c.dh.data() + d, Accumulate::no);
            },
            2,
            [&](int j) {
                if (j == 0) fc2.backward_params(rows, c.g.data(), dy.data());
                else fc1.backward_params(rows, c.h2.data(), c.df.data());
            },
            rows_cut_freely<T>);
        // dr = dy (skip) + what flows back through ln2.
        std::copy(dy.data(), dy.data() + shape_of<DY>::size, c.dr.data());
        ln2.backward(c.r, c.h2, c.ln2_cache, c.dh, c.dr);
        // Attention branch; dx gets the skip first, then ln1's share.
        add_backward(c.dr, dx, ViewOf<T, shape_of<X>>());
        c.dh.fill(T(0));
        attn.backward(c.h1, c.h1, mask, c.a, c.attn_cache, c.dr, c.dh, c.dh);
        ln1.backward(x, c.h1, c.ln1_cache, c.dh, dx);
    }

private:
    template <class X, class Y, class CacheT>
    static constexpr void check_shapes() {
        using XS = shape_of<X>;
        static_assert(XS::rank == 3, "clip::Layer: the input must be a token sequence [N, T, D]");
        static_assert(XS::last == D, "clip::Layer: the input's last dimension must equal the layer width D");
        static_assert(same_shape<shape_of<Y>, XS>, "clip::Layer: the output must have the input's shape [N, T, D]");
        static_assert(std::is_same_v<CacheT, Cache<XS>>, "clip::Layer: the cache must be Cache<input shape>");
    }
};

}  // namespace diffuse::clip

#endif
