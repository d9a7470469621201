// A residual add of a [2, 4, 4, 8] map and a [2, 4, 4, 16] map must not compile.
// expect: Add: operands must have the same shape
#include "diffuse/nn/combine.hpp"

int main() {
    diffuse::Tensor<float, 2, 4, 4, 8> a, y;
#ifdef DIFFUSE_COMPILE_FAIL
    diffuse::Tensor<float, 2, 4, 4, 16> b;
#else
    diffuse::Tensor<float, 2, 4, 4, 8> b;
#endif
    diffuse::add(a, b, y);
}
