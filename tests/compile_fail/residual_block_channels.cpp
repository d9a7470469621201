// A conv_in producing 8 channels followed by a ResidualBlock expecting 4 must not compile.
// expect: ResidualBlock: input channel count must equal Cin
#include "diffuse/blocks/residual.hpp"

int main() {
    using namespace diffuse;
    constexpr int C = 8;
    Conv2d<float, 1, C, 3> conv_in;
#ifdef DIFFUSE_COMPILE_FAIL
    using Res = ResidualBlock<float, 4, 8, norm::Layer>;
#else
    using Res = ResidualBlock<float, C, 8, norm::Layer>;
#endif
    Res res;
    using XS = Shape<2, 8, 8, 1>;
    using HS = Shape<2, 8, 8, C>;
    auto x = make<TensorOf<float, XS>>();
    auto h = make<TensorOf<float, HS>>();
    auto y = make<TensorOf<float, HS>>();
    auto conv_cache = make<decltype(conv_in)::Cache<XS>>();
    auto res_cache = make<Res::Cache<HS>>();
    conv_in.forward(*x, *h, *conv_cache);
    res.forward(*h, *y, *res_cache);
}
