// The README's first example: a two-layer perceptron on random data, trained with Adam.
// Shapes are types; a mistake such as a [64, 783] input to fc1 does not compile.
#include <cstdio>
#include <diffuse/diffuse.hpp>

using namespace diffuse;

struct Mlp {
    Linear<float, 784, 128> fc1;
    Linear<float, 128, 10> fc2;
    ReLU<float> relu;
    template <class V>
    constexpr void visit(V& v) {
        v("fc1", fc1);
        v("fc2", fc2);
    }  // PyTorch state-dict names
};

struct Batch {  // activations and their gradients: one allocation, reused every step
    Tensor<float, 64, 784> x;
    Tensor<float, 64, 128> h, dh, dpre;  // dh: grad of ReLU's output, dpre: of its input
    Tensor<float, 64, 10> y, dy;
    Tensor<int, 64> labels;
};

int main() {
    Mlp model;
    ParamStore<float> params(model, /*seed=*/1);  // one flat buffer for every parameter, one for grads
    Adam<float> adam(params, {.lr = 1e-3});
    auto b = make<Batch>();
    Rng rng(2);
    fill_normal(b->x, rng);
    for (int i = 0; i < 64; ++i) b->labels[i] = i % 10;

    for (int step = 0; step < 100; ++step) {
        model.fc1.forward(b->x, b->h);
        model.relu.forward(b->h, b->h);  // in place: ReLU's backward needs only its output
        model.fc2.forward(b->h, b->y);

        b->dy.fill(0);
        b->dh.fill(0);
        b->dpre.fill(0);
        params.zero_grad();
        const float loss = cross_entropy(b->y, b->labels, b->dy);
        model.fc2.backward(b->h, b->y, b->dy, b->dh);  // backward adds into dh and the grads
        model.relu.backward(b->h, b->h, b->dh, b->dpre);
        model.fc1.backward(b->x, b->h, b->dpre, View<float, 64, 784>());  // null view: no input gradient
        adam.step();
        if (step % 20 == 0 || step == 99) std::printf("step %3d  loss %.4f\n", step, loss);
    }
}
