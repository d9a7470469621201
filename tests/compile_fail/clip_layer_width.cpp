// A clip::Layer of width 8 fed a 16-wide token sequence must not compile.
// expect: clip::Layer: the input's last dimension must equal the layer width D
#include "diffuse/blocks/transformer_layer.hpp"

int main() {
    diffuse::clip::Layer<float, 8, 2> layer;
#ifdef DIFFUSE_COMPILE_FAIL
    using S = diffuse::Shape<2, 6, 16>;
#else
    using S = diffuse::Shape<2, 6, 8>;
#endif
    auto x = diffuse::make<diffuse::TensorOf<float, S>>();
    auto y = diffuse::make<diffuse::TensorOf<float, S>>();
    auto cache = diffuse::make<decltype(layer)::Cache<S>>();
    layer.forward(*x, diffuse::no_mask, *y, *cache);
}
