#!/usr/bin/python3
"""PyTorch reference for unet::UNet at unet::TinyConfig (tests/test_unet_parity.cpp).

Run with Debian's python3-torch:  /usr/bin/python3 tools/reference/unet_reference.py
Writes tests/data/unet_reference.safetensors (generated; do not edit by hand), in float64:
every parameter under diffuse's state-dict name and layout (conv weights [Cout, K, K, Cin]),
the inputs ("input.z" [N, h, w, c] channels-last, "input.t" I32 [N], "input.context" [N, Ctx, Dctx],
"input.mask" BOOL [N, Ctx], true = padded key; "input.dy"), the output ("output.y" [N, h, w, c]) and
the gradients of L = sum(y * dy): "grad.z", "grad.context" and "grad.<param name>".

The architecture is common.UNet (include/diffuse/models/unet.hpp; blocks from include/diffuse/blocks/):
  temb = linear_2(SiLU(linear_1(sinusoid(t))))     diffusers' get_timestep_embedding, flip_sin_to_cos,
                                                   downscale_freq_shift 0
  h = conv_in(z)
  down l: res_blocks x [ResBlock(temb) (-> CrossAttn(context) if attention[l])] = skip_l,
          then conv 3x3 stride 2 (padding 1) except at the last level
  mid: ResBlock -> SelfAttn (GroupNorm pre-norm) -> CrossAttn -> ResBlock
  up l = L-1..0: cat([h, skip_l]) -> res_blocks x [ResBlock (-> CrossAttn)] -> (l > 0) nearest x2, conv 3x3
  y = conv_out(SiLU(norm_out(h)))
  ResBlock: conv1(SiLU(GN(x))) + time_proj(SiLU(temb)) -> conv2(SiLU(GN(.))) + (x or 1x1 skip conv)
  CrossAttn: x + MHA(LayerNorm(x tokens), context, key_padding_mask); SelfAttn: x + MHA(GN(x) tokens)
Parameters: PyTorch's default initialization, norm and attention-bias defaults perturbed.
"""
import os

import torch

from common import (UNET_TINY, UNet, boolean, collected, data_path, f64, i32, nhwc, perturb_defaults,
                    write_safetensors)

CFG = UNET_TINY
N = 2
TIMESTEPS = [3, 999]
MASK = [[False, False, False], [False, False, True]]


def main():
    torch.manual_seed(0)
    model = UNet(CFG).to(torch.float64)
    perturb_defaults(model)
    z = torch.randn(N, CFG.latent_channels, CFG.latent_size, CFG.latent_size, dtype=torch.float64,
                    requires_grad=True)
    context = torch.randn(N, CFG.context_length, CFG.context_width, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(TIMESTEPS, dtype=torch.int32)
    mask = torch.tensor(MASK, dtype=torch.bool)
    y = model(z, t, context, mask)
    dy = torch.randn(y.shape, dtype=torch.float64)
    (y * dy).sum().backward()

    P = collected(model)
    out = {name: f64(v) for name, v in P.values().items()}
    out["input.z"] = f64(nhwc(z))
    out["input.t"] = i32(t)
    out["input.context"] = f64(context)
    out["input.mask"] = boolean(mask)
    out["input.dy"] = f64(nhwc(dy))
    out["output.y"] = f64(nhwc(y))
    out["grad.z"] = f64(nhwc(z.grad))
    out["grad.context"] = f64(context.grad)
    out.update({"grad." + name: f64(g) for name, g in P.grads().items()})

    path = data_path("unet_reference.safetensors")
    write_safetensors(path, out)
    print("wrote", path, os.path.getsize(path), "bytes,", len(P.items), "parameters")


if __name__ == "__main__":
    main()
