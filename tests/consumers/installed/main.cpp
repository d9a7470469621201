// A model type of our own from diffuse's public headers, trained to tell which of two numbers is larger.
#include <cstdio>
#include <diffuse/diffuse.hpp>
using namespace diffuse;

struct Net {  // layers, named as in a PyTorch state dict, and a batch's activations and gradients
    Linear<float, 2, 16> fc1;
    ReLU<float> relu;
    Linear<float, 16, 2> fc2;
    Tensor<float, 64, 2> x, y, dy;
    Tensor<float, 64, 16> h, dh, dpre;
    Tensor<int, 64> label;
    template <class V>
    constexpr void visit(V& v) {
        v("fc1", fc1);
        v("fc2", fc2);
    }
    void forward() {
        fc1.forward(x, h);
        relu.forward(h, h);  // in place: ReLU's backward needs only its output
        fc2.forward(h, y);
    }
    float loss_and_backward() {  // backward passes add into the gradients: zero them first
        dy.fill(0), dh.fill(0), dpre.fill(0);
        const float loss = cross_entropy(y, label, dy);
        fc2.backward(h, y, dy, dh);
        relu.backward(h, h, dh, dpre);
        fc1.backward(x, h, dpre, View<float, 64, 2>());  // a null view: no gradient for the input
        return loss;
    }
};

int main() {
    auto net = make<Net>();                      // one allocation (a [64, 3] input to fc1 would not compile)
    ParamStore<float> params(*net, /*seed=*/1);  // every weight in one buffer, every gradient in another
    Adam<float> adam(params, {.lr = 1e-2});
    Rng rng(2);
    float first = 0, loss = 0;
    for (int step = 0; step < 200; ++step) {
        fill_normal(net->x, rng);
        for (int i = 0; i < 64; ++i) net->label[i] = net->x(i, 0) > net->x(i, 1);
        net->forward();
        params.zero_grad();
        loss = net->loss_and_backward();
        adam.step();
        if (step == 0) first = loss;
    }
    net->x(0, 0) = 2, net->x(0, 1) = -1;  // predict: is 2 larger than -1?
    net->forward();
    std::printf("loss %.3f -> %.3f; 2 > -1: %s\n", first, loss, net->y(0, 1) > net->y(0, 0) ? "yes" : "no");
    return loss < first / 4 && net->y(0, 1) > net->y(0, 0) ? 0 : 1;
}
