// A text encoder of width 8 asked to write its context into a [N, Ctx, 16] tensor (say, one sized
// for a UNet whose cross-attention expects 16-wide context) must not compile.
// expect: clip::TextEncoder: the context's last dimension must equal the encoder width D
#include "diffuse/models/clip.hpp"

int main() {
    using Enc = diffuse::clip::TextEncoder<float, diffuse::clip::TinyConfig>;
    constexpr int Ctx = diffuse::clip::TinyConfig::context_length;
    Enc enc;
    auto ws = diffuse::make<Enc::Workspace<2>>();
#ifdef DIFFUSE_COMPILE_FAIL
    auto context = diffuse::make<diffuse::Tensor<float, 2, Ctx, 16>>();
#else
    auto context = diffuse::make<diffuse::Tensor<float, 2, Ctx, diffuse::clip::TinyConfig::width>>();
#endif
    enc.forward(ws->ids, ws->pad_mask, *context, *ws);
}
