// A LayerNorm<16> fed rows of 15 features must not compile.
// expect: LayerNorm: the input's last dimension must equal the normalized width D
#include "diffuse/nn/norm.hpp"

int main() {
    diffuse::LayerNorm<float, 16> norm;
#ifdef DIFFUSE_COMPILE_FAIL
    diffuse::Tensor<float, 3, 15> x, y;
#else
    diffuse::Tensor<float, 3, 16> x, y;
#endif
    norm.forward(x, y);
}
