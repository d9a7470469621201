// A small CNN of our own from diffuse's public headers (through add_subdirectory), trained to tell
// horizontal from vertical stripes in noisy 8×8 images, then asked once.
#include <cstdio>
#include <diffuse/diffuse.hpp>

using namespace diffuse;

constexpr int N = 16;  // images per batch

struct StripeNet {
    using Conv = Conv2d<float, 1, 4, 3>;  // 3×3, "same" padding: [N, 8, 8, 1] -> [N, 8, 8, 4]
    Conv conv;
    SiLU<float> act;
    Linear<float, 8 * 8 * 4, 2> head;

    template <class V>
    constexpr void visit(V& v) {
        v("conv", conv);
        v("head", head);
    }
};

struct Batch {  // [N, H, W, C] images, activations and their gradients
    Tensor<float, N, 8, 8, 1> x;
    StripeNet::Conv::Cache<Shape<N, 8, 8, 1>> conv_cache;
    Tensor<float, N, 8, 8, 4> c, dc, a, da;
    Tensor<float, N, 2> y, dy;
    Tensor<int, N> label;
};

void draw(Batch& b, Rng& rng) {  // label 1: vertical stripes (columns alternate), 0: horizontal
    fill_normal(b.x, rng);
    for (int n = 0; n < N; ++n) {
        b.label[n] = n % 2;
        for (int i = 0; i < 8; ++i)
            for (int j = 0; j < 8; ++j) b.x(n, i, j, 0) = 0.3f * b.x(n, i, j, 0) + ((n % 2 ? j : i) % 2 ? 1.f : -1.f);
    }
}

void forward(const StripeNet& net, Batch& b) {
    net.conv.forward(b.x, b.c, b.conv_cache);
    net.act.forward(b.c, b.a);
    net.head.forward(flattened(b.a), b.y);
}

int main() {
    StripeNet net;
    ParamStore<float> params(net, /*seed=*/3);
    Adam<float> adam(params, {.lr = 3e-3});
    auto b = make<Batch>();
    Rng rng(4);
    float first = 0, loss = 0;
    for (int step = 0; step < 40; ++step) {
        draw(*b, rng);
        forward(net, *b);
        params.zero_grad();
        b->dy.fill(0), b->da.fill(0), b->dc.fill(0);
        loss = cross_entropy(b->y, b->label, b->dy);
        net.head.backward(flattened(b->a), b->y, b->dy, flattened(b->da));
        net.act.backward(b->c, b->a, b->da, b->dc);
        net.conv.backward(b->x, b->c, b->conv_cache, b->dc, View<float, N, 8, 8, 1>());
        adam.step();
        if (step == 0) first = loss;
    }
    draw(*b, rng);
    forward(net, *b);
    const int right = int(accuracy(b->y, b->label) * N + 0.5);
    std::printf("StripeNet: loss %.3f -> %.3f, %d of %d fresh images right\n", first, loss, right, N);
    return loss < first / 2 && right >= N - 2 ? 0 : 1;
}
