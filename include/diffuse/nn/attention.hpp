// MultiHeadAttention: PyTorch's nn.MultiheadAttention(D, Heads, kdim=Dkv, vdim=Dkv, batch_first=True).
//
//   q = x · Wqᵀ + bq          x       [N, Tq, D]    ->  q [N, Tq, D]
//   k = c · Wkᵀ + bk          context [N, Tk, Dkv]  ->  k [N, Tk, D]
//   v = c · Wvᵀ + bv                                ->  v [N, Tk, D]
//   per head h (columns h·dh .. h·dh+dh of q, k, v; dh = D / Heads):
//     P_h = softmax(q_h k_hᵀ / sqrt(dh))   over keys, masked keys excluded   [Tq, Tk]
//     ctx_h = P_h v_h                                                          [Tq, dh]
//   y = ctx · Woᵀ + bo                                                         [N, Tq, D]
//
// Key padding mask: an optional [N, Tk] tensor of bool or uint8 where true (non-zero) marks a padded
// key that no query may attend to (PyTorch's key_padding_mask). Pass diffuse::no_mask for none.
// A sample whose keys are ALL padded has no distribution to attend with: where PyTorch returns NaN,
// we define its probabilities and attention context as zero, so its output rows are out_proj.bias
// and no gradient flows to its context.
//
// Heads are strided column slices of q, k, v and ctx: the per-(sample, head) GEMMs address them with
// a row stride of D, no copies. Each thread takes a contiguous share of the samples and runs their
// projections, heads and input gradients, all in one parallel region (parallel_shares); the
// projections' parameter gradients are single GEMMs over all rows at once, after a barrier in the same
// region (parallel_shares_then), so every reduction has a fixed order and the cut changes no bits.
// Forward runs one region instead of five, backward one instead of nine: each region wakes the other
// threads (a futex round trip under passive waits). Float only (rows_cut_freely); double runs one
// share, its products parallel inside.
//
// Backward (S = scaled scores, dctx = dy · Wo):
//   dv_h = P_hᵀ dctx_h,   dP_h = dctx_h v_hᵀ,   dS_h = P_h ∘ (dP_h − rowsum(dP_h ∘ P_h)) / sqrt(dh)
//   dq_h = dS_h k_h,      dk_h = dS_hᵀ q_h,     then back through the three projections.
#ifndef DIFFUSE_NN_ATTENTION_HPP
#define DIFFUSE_NN_ATTENTION_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "diffuse/core/gemm.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/softmax.hpp"

namespace diffuse {

/// "No key padding mask": every key is visible.
inline constexpr Absent no_mask{};

template <class T, int D, int Heads, int Dkv = D>
struct MultiHeadAttention {
    static_assert(D > 0 && Heads > 0 && Dkv > 0, "MultiHeadAttention: widths and head count must be positive");
    static_assert(D % Heads == 0, "MultiHeadAttention: model width must divide by the head count");
    static constexpr int model_width = D, num_heads = Heads, head_width = D / Heads, context_width = Dkv;

    Linear<T, D, D> q_proj;
    Linear<T, Dkv, D> k_proj;
    Linear<T, Dkv, D> v_proj;
    Linear<T, D, D> out_proj;

    /// PyTorch's initialisation: Xavier-uniform q/k/v weights (over the packed [3D, D] in_proj_weight
    /// when Dkv == D, per matrix otherwise), zero biases, out_proj weight as Linear's.
    constexpr MultiHeadAttention() {
        const double q_bound = Dkv == D ? std::sqrt(6.0 / (4 * D)) : std::sqrt(6.0 / (2 * D));
        const double kv_bound = Dkv == D ? q_bound : std::sqrt(6.0 / (D + Dkv));
        q_proj.weight.init = Init::Uniform(q_bound);
        k_proj.weight.init = Init::Uniform(kv_bound);
        v_proj.weight.init = Init::Uniform(kv_bound);
        q_proj.bias.init = k_proj.bias.init = v_proj.bias.init = out_proj.bias.init = Init::Zeros();
    }

    template <class V>
    constexpr void visit(V& v) {
        v("q_proj", q_proj);
        v("k_proj", k_proj);
        v("v_proj", v_proj);
        v("out_proj", out_proj);
    }

    template <class XShape>
    using output_shape = XShape;

    /// What forward saves for backward, plus backward's scratch (so backward allocates nothing).
    template <class XShape, class CShape = XShape>
    struct Cache {
        static constexpr int N = XShape::first, Tq = XShape::template dim<1>, Tk = CShape::template dim<1>;
        Tensor<T, N, Tq, D> q;          // projected queries, heads side by side
        Tensor<T, N, Tk, D> k, v;       // projected keys and values
        Tensor<T, N, Heads, Tq, Tk> p;  // attention probabilities
        Tensor<T, N, Tq, D> ctx;        // attention context, the input of out_proj
        // Backward scratch. dctx is overwritten by dq, head by head, once dctx_h is no longer needed.
        Tensor<T, N, Tq, D> dctx;  // d(ctx), then dq
        Tensor<T, N, Tk, D> dk, dv;
        Tensor<T, N, Heads, Tq, Tk> ds;  // dP, then d(scaled scores)
    };

    /// Cross attention: queries from x [N, Tq, D], keys and values from context [N, Tk, Dkv].
    template <Shaped X, Shaped C, class M, Shaped Y, class CacheT>
    void forward(const X& x, const C& context, const M& mask, Y&& y, CacheT& cache) const {
        check_shapes<X, C, M, Y, CacheT>();
        constexpr int N = shape_of<X>::first, Tq = shape_of<X>::template dim<1>, Tk = shape_of<C>::template dim<1>;
        constexpr int dh = head_width;
        const T scale = T(1) / std::sqrt(T(dh));
        T *q = cache.q.data(), *k = cache.k.data(), *v = cache.v.data(), *p = cache.p.data(), *ctx = cache.ctx.data();
        const auto* padded = mask_data(mask);
        const auto share = [&](int n0, int n1) {  // the samples [n0, n1)
            const int items = n1 - n0;
            q_proj.forward_rows(items * Tq, x.data() + std::size_t(n0) * Tq * D, q + std::size_t(n0) * Tq * D);
            k_proj.forward_rows(items * Tk, context.data() + std::size_t(n0) * Tk * Dkv, k + std::size_t(n0) * Tk * D);
            v_proj.forward_rows(items * Tk, context.data() + std::size_t(n0) * Tk * Dkv, v + std::size_t(n0) * Tk * D);
            for (int i = n0 * Heads; i < n1 * Heads; ++i) {
                const int n = i / Heads, h = i % Heads;
                const T* qh = q + std::size_t(n) * Tq * D + h * dh;
                const T* kh = k + std::size_t(n) * Tk * D + h * dh;
                const T* vh = v + std::size_t(n) * Tk * D + h * dh;
                T* ph = p + std::size_t(i) * Tq * Tk;
                // S[Tq, Tk] = q_h · k_hᵀ (unscaled; softmax_row applies the scale)
                gemm<Trans::N, Trans::T>(Tq, Tk, dh, qh, kh, ph, Accumulate::no, D, D, Tk);
                for (int t = 0; t < Tq; ++t) {
                    T* row = ph + std::size_t(t) * Tk;
                    if (padded)
                        for (int j = 0; j < Tk; ++j)
                            if (padded[std::size_t(n) * Tk + j]) row[j] = -std::numeric_limits<T>::infinity();
                    softmax_row(Tk, row, row, scale);
                }
                // ctx_h[Tq, dh] = P[Tq, Tk] · v_h[Tk, dh]
                gemm<Trans::N, Trans::N>(Tq, dh, Tk, ph, vh, ctx + std::size_t(n) * Tq * D + h * dh, Accumulate::no, Tk,
                                         D, D);
            }
            out_proj.forward_rows(items * Tq, ctx + std::size_t(n0) * Tq * D, y.data() + std::size_t(n0) * Tq * D);
        };
        parallel_shares(N, share, rows_cut_freely<T>);
    }

    /// Mirrors forward. Adds into dx, dcontext and the parameter gradients; a null dx or dcontext view
    /// skips that input's gradient. dx and dcontext may be the same memory (self attention): every
    /// write into them is an accumulation, one after another.
    template <Shaped X, Shaped C, class M, Shaped Y, class CacheT, Shaped DY, Shaped DX, Shaped DC>
    void backward(const X& x, const C& context, const M& mask, const Y& y, CacheT& cache, const DY& dy, DX&& dx,
                  DC&& dcontext) const {
        check_shapes<X, C, M, Y, CacheT>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>> &&
                          same_shape<shape_of<DC>, shape_of<C>>,
                      "MultiHeadAttention: gradients must have the shapes of their values");
        constexpr int N = shape_of<X>::first, Tq = shape_of<X>::template dim<1>, Tk = shape_of<C>::template dim<1>;
        constexpr int dh = head_width;
        const T scale = T(1) / std::sqrt(T(dh));
        (void)y;
        (void)mask;  // masked keys already carry P = 0, so dS = 0 there

        const T *q = cache.q.data(), *k = cache.k.data(), *v = cache.v.data(), *p = cache.p.data();
        T *dctx = cache.dctx.data(), *dk = cache.dk.data(), *dv = cache.dv.data(), *ds = cache.ds.data();
        const auto share = [&](int n0, int n1) {  // the samples [n0, n1): heads and input gradients
            const int items = n1 - n0;
            const std::size_t q0 = std::size_t(n0) * Tq * D, k0 = std::size_t(n0) * Tk * D;
            out_proj.backward_input(items * Tq, dy.data() + q0, dctx + q0, Accumulate::no);
            for (int i = n0 * Heads; i < n1 * Heads; ++i) {
                const int n = i / Heads, h = i % Heads;
                const std::size_t qo = std::size_t(n) * Tq * D + h * dh, ko = std::size_t(n) * Tk * D + h * dh;
                const T* ph = p + std::size_t(i) * Tq * Tk;
                T* dsh = ds + std::size_t(i) * Tq * Tk;
                // dv_h[Tk, dh] = Pᵀ[Tk, Tq] · dctx_h[Tq, dh]
                gemm<Trans::T, Trans::N>(Tk, dh, Tq, ph, dctx + qo, dv + ko, Accumulate::no, Tk, D, D);
                // dP[Tq, Tk] = dctx_h · v_hᵀ, then dS in place
                gemm<Trans::N, Trans::T>(Tq, Tk, dh, dctx + qo, v + ko, dsh, Accumulate::no, D, D, Tk);
                for (int t = 0; t < Tq; ++t) {
                    const std::size_t r = std::size_t(t) * Tk;
                    softmax_row_backward(Tk, ph + r, dsh + r, dsh + r, Accumulate::no, scale);
                }
                // dq_h[Tq, dh] = dS · k_h, written over dctx_h (dead from here on)
                gemm<Trans::N, Trans::N>(Tq, dh, Tk, dsh, k + ko, dctx + qo, Accumulate::no, Tk, D, D);
                // dk_h[Tk, dh] = dSᵀ · q_h
                gemm<Trans::T, Trans::N>(Tk, dh, Tq, dsh, q + qo, dk + ko, Accumulate::no, Tk, D, D);
            }
            // Into dx, then dcontext (the same memory in self attention), in q, k, v order.
            if (dx.data()) q_proj.backward_input(items * Tq, dctx + q0, dx.data() + q0);
            if (dcontext.data()) {
                T* dc = dcontext.data() + std::size_t(n0) * Tk * Dkv;
                k_proj.backward_input(items * Tk, dk + k0, dc);
                v_proj.backward_input(items * Tk, dv + k0, dc);
            }
        };
        // The four parameter gradients over all rows, a product a thread (cut by gemm, each of these
        // 128-row products would go to two threads at most, in a region of its own).
        const auto parameter_gradient = [&](int j) {
            if (j == 0) out_proj.backward_params(N * Tq, cache.ctx.data(), dy.data());
            else if (j == 1) q_proj.backward_params(N * Tq, x.data(), dctx);
            else if (j == 2) k_proj.backward_params(N * Tk, context.data(), dk);
            else v_proj.backward_params(N * Tk, context.data(), dv);
        };
        parallel_shares_then(N, share, 4, parameter_gradient, rows_cut_freely<T>);
    }

    /// Self attention: context is x (requires Dkv == D).
    template <Shaped X, class M, Shaped Y, class CacheT>
    void forward_self(const X& x, const M& mask, Y&& y, CacheT& cache) const {
        forward(x, x, mask, y, cache);
    }
    /// x feeds queries, keys and values: its gradient is the sum of all three paths, accumulated into dx.
    template <Shaped X, class M, Shaped Y, class CacheT, Shaped DY, Shaped DX>
    void backward_self(const X& x, const M& mask, const Y& y, CacheT& cache, const DY& dy, DX&& dx) const {
        backward(x, x, mask, y, cache, dy, dx, dx);
    }

private:
    template <class M>
    static const auto* mask_data(const M& mask) {
        if constexpr (std::is_same_v<M, Absent>) return static_cast<const unsigned char*>(nullptr);
        else return mask.data();
    }

    template <class X, class C, class M, class Y, class CacheT>
    static constexpr void check_shapes() {
        using XS = shape_of<X>;
        using CS = shape_of<C>;
        static_assert(XS::rank == 3 && CS::rank == 3,
                      "MultiHeadAttention: the query input and the context must be token sequences [N, T, width]");
        static_assert(XS::last == D,
                      "MultiHeadAttention: the query input's last dimension must equal the model width D");
        static_assert(CS::last == Dkv, "MultiHeadAttention: the context's last dimension must equal Dkv");
        static_assert(XS::first == CS::first,
                      "MultiHeadAttention: query input and context must have the same batch size");
        static_assert(same_shape<shape_of<Y>, XS>, "MultiHeadAttention: the output must have the query input's shape");
        static_assert(std::is_same_v<CacheT, Cache<XS, CS>>,
                      "MultiHeadAttention: the cache must be Cache<query shape, context shape>");
        if constexpr (!std::is_same_v<M, Absent>) {
            static_assert(Shaped<M>, "MultiHeadAttention: the key padding mask must be a tensor or view, or no_mask");
            using E = typename std::remove_cvref_t<M>::value_type;
            static_assert(std::is_same_v<E, bool> || std::is_same_v<E, std::uint8_t>,
                          "MultiHeadAttention: the key padding mask must hold bool or uint8 (true = padded)");
            static_assert(same_shape<shape_of<M>, Shape<XS::first, CS::template dim<1>>>,
                          "MultiHeadAttention: the key padding mask must be [N, Tk]");
        }
    }
};

}  // namespace diffuse

#endif
