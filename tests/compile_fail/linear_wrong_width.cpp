// A Linear<8, 4> fed a [2, 7] input must not compile.
// expect: Linear: the input's last dimension must equal the layer's In width
#include "diffuse/nn/linear.hpp"

int main() {
    diffuse::Linear<float, 8, 4> layer;
#ifdef DIFFUSE_COMPILE_FAIL
    diffuse::Tensor<float, 2, 7> x;
#else
    diffuse::Tensor<float, 2, 8> x;
#endif
    diffuse::Tensor<float, 2, 4> y;
    layer.forward(x, y);
}
