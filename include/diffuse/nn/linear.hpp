// Linear (Dense): y[..., Out] = x[..., In] · weightᵀ + bias, over every leading position.
// weight is [Out, In] as in PyTorch, so state dicts carry over unchanged.
//
// This is the reference for the layer contract every layer follows:
//   forward(x, y [, cache])             writes all of y (and the cache)
//   backward(x, y [, cache], dy, dx)    ADDS into dx and into the parameter gradients;
//                                       a null dx view skips the input gradient.
// Blocks and model parts with side inputs take them between x and y, and their gradients after dx,
// in the same order: ResidualBlock's temb, CrossAttentionBlock's context and mask, and the shared
// stacks, levels and middle block's Conditioning (blocks/conditioning.hpp):
//   forward(x, cond, y, cache)   backward(x, cond, y, cache, dy, dx, dcond)
#ifndef DIFFUSE_NN_LINEAR_HPP
#define DIFFUSE_NN_LINEAR_HPP

#include "diffuse/core/gemm.hpp"
#include "diffuse/core/params.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/nn/lora.hpp"

namespace diffuse {

template <class T, int In, int Out>
struct Linear {
    static_assert(In > 0 && Out > 0, "Linear: widths must be positive");
    static constexpr int in_features = In, out_features = Out;

    Param<T, Out, In> weight{Init::FanIn(In)};
    Param<T, Out> bias{Init::FanIn(In)};
    /// A low-rank adapter acting with this layer (nn/lora.hpp; models/lora.hpp attaches it), or null.
    const LoraHook<T>* lora = nullptr;

    template <class V>
    constexpr void visit(V& v) {
        v("weight", weight);
        v("bias", bias);
    }

    /// The output shape for an input shape: the last dimension becomes Out.
    template <class XShape>
    using output_shape = ReplaceLast<XShape, Out>;

    template <Shaped X, Shaped Y>
    void forward(const X& x, Y&& y) const {
        check_shapes<X, Y>();
        forward_rows(shape_of<X>::rows, x.data(), y.data());
    }

    template <Shaped X, Shaped Y, Shaped DY, Shaped DX>
    void backward(const X& x, const Y&, const DY& dy, DX&& dx) const {
        check_shapes<X, Y>();
        static_assert(same_shape<shape_of<DY>, shape_of<Y>> && same_shape<shape_of<DX>, shape_of<X>>,
                      "Linear: gradients must have the shapes of their values");
        constexpr int M = shape_of<X>::rows;
        backward_params(M, x.data(), dy.data());
        if (dx.data()) backward_input(M, dy.data(), dx.data());
    }

    // The same over M rows given at run time. forward_rows and backward_input are row by row, so a
    // caller may cut the rows between threads (MultiHeadAttention does) and get the same bits;
    // backward_params sums over all M rows and takes them in one call.

    /// y[M, Out] = x[M, In] · Wᵀ + b (+ the adapter's share)
    void forward_rows(int M, const T* x, T* y) const {
        gemm_plus_row<Trans::N, Trans::T>(M, Out, In, x, weight.value_ptr, bias.value_ptr, y);
        if (lora) lora::forward_add(*lora, M, In, Out, x, y);
    }
    /// dW[Out, In] += dyᵀ · x, db += Σ_m dy (rows summed in order), and the adapter's gradients.
    void backward_params(int M, const T* x, const T* dy) const {
        gemm<Trans::T, Trans::N>(Out, In, M, dy, x, weight.grad_ptr, Accumulate::yes);
        for (int m = 0; m < M; ++m) simd::add_to(std::size_t(Out), dy + std::size_t(m) * Out, bias.grad_ptr);
        if (lora) lora::backward_params(*lora, M, In, Out, x, dy);
    }
    /// dx[M, In] += dy[M, Out] · W (+ the adapter's share); dx = ... with Accumulate::no.
    void backward_input(int M, const T* dy, T* dx, Accumulate acc = Accumulate::yes) const {
        gemm<Trans::N, Trans::N>(M, In, Out, dy, weight.value_ptr, dx, acc);
        if (lora) lora::backward_input(*lora, M, In, Out, dy, dx);
    }

private:
    template <class X, class Y>
    static constexpr void check_shapes() {
        static_assert(shape_of<X>::last == In, "Linear: the input's last dimension must equal the layer's In width");
        static_assert(same_shape<shape_of<Y>, output_shape<shape_of<X>>>,
                      "Linear: the output must have the input's shape with the last dimension equal to Out");
    }
};

}  // namespace diffuse

#endif
