// cross_entropy with float labels must not compile: labels are class indices.
// expect: cross_entropy: labels must be int
#include "diffuse/nn/losses.hpp"

int main() {
    diffuse::Tensor<float, 4, 10> logits;
#ifdef DIFFUSE_COMPILE_FAIL
    diffuse::Tensor<float, 4> labels;
#else
    diffuse::Tensor<int, 4> labels;
#endif
    logits.fill(0);
    labels.fill(0);
    return int(diffuse::cross_entropy(logits, labels, diffuse::View<float, 4, 10>{}));
}
