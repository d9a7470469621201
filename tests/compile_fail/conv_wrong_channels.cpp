// A Conv2d<3 -> 8> fed a 4-channel image must not compile.
// expect: Conv2d: input channel count must equal Cin
#include "diffuse/nn/conv2d.hpp"

int main() {
    using Conv = diffuse::Conv2d<float, 3, 8, 3>;
    Conv layer;
#ifdef DIFFUSE_COMPILE_FAIL
    using XS = diffuse::Shape<2, 8, 8, 4>;
#else
    using XS = diffuse::Shape<2, 8, 8, 3>;
#endif
    auto x = diffuse::make<diffuse::TensorOf<float, XS>>();
    auto y = diffuse::make<diffuse::Tensor<float, 2, 8, 8, 8>>();
    auto cache = diffuse::make<Conv::Cache<XS>>();
    layer.forward(*x, *y, *cache);
}
