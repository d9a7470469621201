#include <cstdio>
#include <diffuse/diffuse.hpp>
using namespace diffuse;
struct Net {  // a model type: layers (with state-dict names), then a batch's activations and their gradients
    Linear<float, 2, 16> fc1;
    Linear<float, 16, 2> fc2;
    ReLU<float> relu;
    Tensor<float, 64, 2> x, y, dy;
    Tensor<float, 64, 16> h, dh, dpre;
    Tensor<int, 64> label;
    constexpr void visit(auto& v) { v("fc1", fc1), v("fc2", fc2); }
};
int main() {
    auto n = make<Net>();                      // one allocation (a [64, 3] input to fc1 would not compile)
    ParamStore<float> params(*n, /*seed=*/1);  // every weight in one buffer, every gradient in another
    Adam<float> adam(params, {.lr = 1e-2});
    Rng rng(2);
    for (int step = 0; step < 200; ++step) {  // each step a new batch
        fill_normal(n->x, rng);
        for (int i = 0; i < 64; ++i) n->label[i] = n->x(i, 0) > n->x(i, 1);
        n->fc1.forward(n->x, n->h), n->relu.forward(n->h, n->h), n->fc2.forward(n->h, n->y);  // ReLU in place
        params.zero_grad(), n->dy.fill(0), n->dh.fill(0), n->dpre.fill(0);  // backward passes add: zero first
        cross_entropy(n->y, n->label, n->dy);                               // the loss's gradient into dy
        n->fc2.backward(n->h, n->y, n->dy, n->dh), n->relu.backward(n->h, n->h, n->dh, n->dpre);
        n->fc1.backward(n->x, n->h, n->dpre, View<float, 64, 2>());  // a null view: no input gradient
        adam.step();
    }
    const double right = accuracy(n->y, n->label);  // the last batch, predicted before its update: unseen data
    return std::printf("%.0f%% right\n", 100 * right), right > 0.9 ? 0 : 1;
}
