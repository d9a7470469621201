// A model width of 10 cannot be split into 3 heads.
// expect: MultiHeadAttention: model width must divide by the head count
#include "diffuse/nn/attention.hpp"

int main() {
#ifdef DIFFUSE_COMPILE_FAIL
    diffuse::MultiHeadAttention<float, 10, 3> attention;
#else
    diffuse::MultiHeadAttention<float, 12, 3> attention;
#endif
    (void)attention;
}
