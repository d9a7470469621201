#!/usr/bin/python3
"""PyTorch reference for SeedDiffusion at seed_diffusion::TinyConfig (tests/test_seed_diffusion_parity.cpp).

Run with Debian's python3-torch:  /usr/bin/python3 tools/reference/seed_diffusion_reference.py
Writes tests/data/seed_diffusion_reference.safetensors (generated; do not edit by hand).

The composite of include/diffuse/models/seed_diffusion.hpp, in its order, from common.py's modules:
  xi = conv_ip(x)                       3x3, Cin -> Cimg
  moments = encoder(xi)                 vae::Encoder (vae::TinyConfig); mean = the first L channels
  context = clip(ids, mask)             clip::TextEncoder (clip::TinyConfig), key padding mask
  temb = time(t)                        the learned table over all timesteps, then Dense to L
  z = mean + temb                       per channel, at every pixel
  a1 = ca1(z, context, mask); a2 = ca2(a1, ...)     CrossAttentionBlock(L, D, cross_heads)
  u1 = unet1(a2, t, context, mask); u2 = unet2(u1, ...); u3 = unet3(u2, ...)   unet::UNet
                                        (unet::TinyConfig at the 2x2 latent and the [6, 8] context)
  y = decoder(u3)                       vae::Decoder
Gradients are those of L = sum(y * dy).

Contents (F64 unless said; images channels-last as diffuse has them):
  <param name>             every parameter under our state-dict name and layout, F32 (drawn exactly
                           representable by common.initialize_f32, so exact in double)
  input.x, input.ids (I32), input.mask (BOOL, true = padding), input.t (I32), input.dy
  output.y, grad.x         the output and dL/dx
  ws.<f>, ws.d<f>          the composite's seams and their gradients, named as SeedDiffusion::Workspace's
                           fields: xi, moments, context, temb, z, a1, a2, u1, u2, u3
  grad.<param name>        dL/dparam in full, for the composite's own small parts (conv_ip, time, ca1, ca2)
  grad_projections [P, 3]  for EVERY parameter g (flattened in our layout, i = 0..n-1), in state-dict
                           order (names in __metadata__["grad_projections"], comma-separated):
                           [sum g_i sin(0.37 i + 1), sum g_i sin(1.91 i + 2), sum g_i^2]
The projections stand in for the full gradients of the large parts: all 43783 gradients in float64
would be 350 KB alone, the parameters in F32 another 175 KB. Two fixed pseudo-random projections
and the squared norm catch a wrong, permuted, scaled or missing gradient; the full gradients are
checked element by element by the sub-models' own parity tests (vae, clip, unet).
"""
import dataclasses
import os

import torch
from torch import nn

from common import (CLIP_TINY, UNET_TINY, VAE_TINY, CrossAttn, LearnedTime, TextEncoder, UNet, VaeDecoder, VaeEncoder,
                    boolean, collected, data_path, f32, f64, i32, initialize_f32, nchw, nhwc, write_safetensors)

DT = torch.float64
# seed_diffusion::TinyConfig
VAE, CLIP = VAE_TINY, CLIP_TINY
UNET = dataclasses.replace(UNET_TINY, latent_size=VAE.image_size // 4, context_length=CLIP.context_length,
                           context_width=CLIP.width)  # seed_diffusion::TinyUnetConfig
INPUT_CHANNELS, CROSS_HEADS, TIMESTEPS, TIME_FEATURES = 1, 1, 10, 4
L = VAE.latent_channels

N = 2
IDS = [[1, 259, 267, 264, 305, 2],   # no padding
       [1, 260, 301, 2, 0, 0]]       # two padded positions
MASK = [[i == 0 for i in row] for row in IDS]
T = [3, 8]
FULL_GRADS = ("conv_ip.", "time.", "ca1.", "ca2.")


class SeedDiffusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_ip = nn.Conv2d(INPUT_CHANNELS, VAE.image_channels, 3, padding=1)
        self.encoder = VaeEncoder(VAE)
        self.clip = TextEncoder(CLIP)
        self.time = LearnedTime(TIMESTEPS, TIME_FEATURES, L)
        self.ca1 = CrossAttn(L, CROSS_HEADS, CLIP.width)
        self.ca2 = CrossAttn(L, CROSS_HEADS, CLIP.width)
        self.unet1, self.unet2, self.unet3 = UNet(UNET), UNet(UNET), UNet(UNET)
        self.decoder = VaeDecoder(VAE)

    def forward(self, x, ids, mask, t):
        """x [N, Cin, S, S] (NCHW) -> y and the seams {Workspace field: tensor (NCHW images)}."""
        s = {}
        s["xi"] = self.conv_ip(x)
        s["moments"] = self.encoder(s["xi"])
        s["context"] = self.clip(ids, mask)
        s["temb"] = self.time(t)
        s["z"] = s["moments"][:, :L] + s["temb"][:, :, None, None]
        s["a1"] = self.ca1(s["z"], s["context"], mask)
        s["a2"] = self.ca2(s["a1"], s["context"], mask)
        s["u1"] = self.unet1(s["a2"], t, s["context"], mask)
        s["u2"] = self.unet2(s["u1"], t, s["context"], mask)
        s["u3"] = self.unet3(s["u2"], t, s["context"], mask)
        return self.decoder(s["u3"]), s

    def collect(self, prefix, P):
        P.conv(prefix + "conv_ip", self.conv_ip)
        for name in ("encoder", "clip", "time", "ca1", "ca2", "unet1", "unet2", "unet3", "decoder"):
            getattr(self, name).collect(f"{prefix}{name}.", P)


def projections(g):
    g = g.contiguous().reshape(-1)
    i = torch.arange(g.numel(), dtype=DT)
    return torch.stack([(g * torch.sin(0.37 * i + 1)).sum(), (g * torch.sin(1.91 * i + 2)).sum(), (g * g).sum()])


def main():
    torch.manual_seed(0)
    model = SeedDiffusion().to(DT)
    P = collected(model)
    initialize_f32(P)
    S = VAE.image_size
    x = (torch.rand(N, S, S, INPUT_CHANNELS, dtype=DT) * 2 - 1).requires_grad_()
    ids = torch.tensor(IDS, dtype=torch.int32)
    mask = torch.tensor(MASK, dtype=torch.bool)
    t = torch.tensor(T, dtype=torch.int32)
    y, seams = model(nchw(x), ids, mask, t)
    y = nhwc(y)
    for v in seams.values():
        v.retain_grad()
    dy = torch.randn(y.shape, dtype=DT)
    (y * dy).sum().backward()

    image = lambda v: nhwc(v) if v.dim() == 4 else v
    values, grads = P.values(), P.grads()
    out = {name: f32(v) for name, v in values.items()}
    out["input.x"] = f64(x)
    out["input.ids"] = i32(ids)
    out["input.mask"] = boolean(mask)
    out["input.t"] = i32(t)
    out["input.dy"] = f64(dy)
    out["output.y"] = f64(y)
    out["grad.x"] = f64(x.grad)
    for field, v in seams.items():
        out["ws." + field] = f64(image(v))
        out["ws.d" + field] = f64(image(v.grad))
    out.update({"grad." + name: f64(g) for name, g in grads.items() if name.startswith(FULL_GRADS)})
    out["grad_projections"] = f64(torch.stack([projections(grads[name]) for name in P.names()]))

    path = data_path("seed_diffusion_reference.safetensors")
    write_safetensors(path, out, {"generator": "tools/reference/seed_diffusion_reference.py",
                                  "grad_projections": ",".join(P.names())})
    print("wrote", path, os.path.getsize(path), "bytes,", len(P.items), "parameter tensors,",
          sum(v.numel() for v in values.values()), "parameters")


if __name__ == "__main__":
    main()
