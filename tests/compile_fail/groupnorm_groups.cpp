// A GroupNorm whose channel count does not divide by its group count must not compile.
// expect: GroupNorm: channel count must divide by the group count
#include "diffuse/nn/norm.hpp"

int main() {
#ifdef DIFFUSE_COMPILE_FAIL
    diffuse::GroupNorm<float, 6, 4> norm;
#else
    diffuse::GroupNorm<float, 8, 4> norm;
#endif
    diffuse::Tensor<float, 1, 2, 2, decltype(norm)::num_channels> x, y;
    norm.forward(x, y);
}
