// A small CNN classifier for 28×28 grayscale images (Fashion-MNIST), built from the library's
// layers: the proof that the primitives train on real data, and later the judge that scores
// generated images.
//
//   x [N,28,28,1] → conv3×3(32) → ReLU → maxpool → conv3×3(64) → ReLU → maxpool
//                 → flatten [N,3136] → linear(256) → ReLU → linear(10) → logits [N,10]
#ifndef DIFFUSE_MODELS_FASHION_CLASSIFIER_HPP
#define DIFFUSE_MODELS_FASHION_CLASSIFIER_HPP

#include "diffuse/nn/activation.hpp"
#include "diffuse/nn/combine.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/pool.hpp"

namespace diffuse {

template <class T>
struct FashionClassifier {
    static constexpr int classes = 10, side = 28;
    static constexpr int features = 256;  // fc1's width: the penultimate activations ws.hr

    Conv2d<T, 1, 32, 3> conv1;
    Conv2d<T, 32, 64, 3> conv2;
    Linear<T, 7 * 7 * 64, features> fc1;
    Linear<T, features, classes> fc2;
    MaxPool2d<T> pool;
    ReLU<T> relu;

    template <class V>
    constexpr void visit(V& v) {
        v("conv1", conv1);
        v("conv2", conv2);
        v("fc1", fc1);
        v("fc2", fc2);
    }

    /// Activations, their gradients and layer caches for a batch of N: one allocation
    /// (diffuse::make<Workspace<N>>()), reused every step.
    template <int N>
    struct Workspace {
        using In = Shape<N, side, side, 1>;
        using Mid = Shape<N, 14, 14, 32>;
        Tensor<T, N, side, side, 1> x;        // input, scaled to [0, 1]
        Tensor<T, N, side, side, 32> c1, r1;  // conv1, ReLU
        Tensor<T, N, 14, 14, 32> p1;          // pooled
        Tensor<T, N, 14, 14, 64> c2, r2;
        Tensor<T, N, 7, 7, 64> p2;
        Tensor<T, N, features> h, hr;  // fc1, ReLU
        Tensor<T, N, classes> logits;
        typename Conv2d<T, 1, 32, 3>::template Cache<In> conv1_cache;
        typename Conv2d<T, 32, 64, 3>::template Cache<Mid> conv2_cache;
        typename MaxPool2d<T>::template Cache<Shape<N, side, side, 32>> pool1_cache;
        typename MaxPool2d<T>::template Cache<Shape<N, 14, 14, 64>> pool2_cache;
        // Gradients (backward accumulates, so they are cleared before each use).
        Tensor<T, N, side, side, 32> dc1, dr1;
        Tensor<T, N, 14, 14, 32> dp1;
        Tensor<T, N, 14, 14, 64> dc2, dr2;
        Tensor<T, N, 7, 7, 64> dp2;
        Tensor<T, N, features> dh, dhr;
        Tensor<T, N, classes> dlogits;
    };

    /// ws.x → ws.logits (and everything backward needs).
    template <int N>
    void forward(Workspace<N>& ws) const {
        conv1.forward(ws.x, ws.c1, ws.conv1_cache);
        relu.forward(ws.c1, ws.r1);
        pool.forward(ws.r1, ws.p1, ws.pool1_cache);
        conv2.forward(ws.p1, ws.c2, ws.conv2_cache);
        relu.forward(ws.c2, ws.r2);
        pool.forward(ws.r2, ws.p2, ws.pool2_cache);
        fc1.forward(flattened(ws.p2), ws.h);
        relu.forward(ws.h, ws.hr);
        fc2.forward(ws.hr, ws.logits);
    }

    /// From ws.dlogits, accumulates every parameter gradient, and the input's into dx unless dx is
    /// a null view (training needs none; a gradient check or an input attribution does).
    template <int N>
    void backward(Workspace<N>& ws, View<T, N, side, side, 1> dx = {}) const {
        for (auto* t : {&ws.dc1, &ws.dr1}) t->fill(0);
        for (auto* t : {&ws.dc2, &ws.dr2}) t->fill(0);
        ws.dp1.fill(0);
        ws.dp2.fill(0);
        ws.dh.fill(0);
        ws.dhr.fill(0);
        fc2.backward(ws.hr, ws.logits, ws.dlogits, ws.dhr);
        relu.backward(ws.h, ws.hr, ws.dhr, ws.dh);
        fc1.backward(flattened(ws.p2), ws.h, ws.dh, flattened(ws.dp2));
        pool.backward(ws.r2, ws.p2, ws.pool2_cache, ws.dp2, ws.dr2);
        relu.backward(ws.c2, ws.r2, ws.dr2, ws.dc2);
        conv2.backward(ws.p1, ws.c2, ws.conv2_cache, ws.dc2, ws.dp1);
        pool.backward(ws.r1, ws.p1, ws.pool1_cache, ws.dp1, ws.dr1);
        relu.backward(ws.c1, ws.r1, ws.dr1, ws.dc1);
        conv1.backward(ws.x, ws.c1, ws.conv1_cache, ws.dc1, dx);
    }
};

}  // namespace diffuse

#endif
