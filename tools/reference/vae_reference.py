#!/usr/bin/python3
"""PyTorch reference for tests/test_vae.cpp: the vae::Encoder and vae::Decoder of
include/diffuse/models/vae.hpp at vae::TinyConfig, built again here in PyTorch (common.VaeEncoder,
common.VaeDecoder).

Run with Debian's python3-torch:  /usr/bin/python3 tools/reference/vae_reference.py
Writes tests/data/vae_reference.safetensors (generated; do not edit by hand).

TinyConfig: 8x8x1 images, channels 4/8/8, latent 2x2x2 (moments 2x2x4), one residual block per
level, GroupNorm with 2 groups, one attention head. The models run NCHW inside; inputs, outputs and
their gradients are stored channels-last as diffuse has them, and every parameter under our state-dict
name and layout (conv weights [Cout, K, K, Cin]).

Contents, for P in {"tiny.encoder.", "tiny.decoder."}:
  P + <param name>    every parameter (F32: values drawn in float32, so exact in either precision)
  P + "input.x"       the input (image for the encoder, latent for the decoder), F64
  P + "output.y"      the output for it, F64
  P + "input.dy"      an upstream gradient; the gradients are those of L = sum(y * dy), F64
  P + "grad.x"        dL/dinput, F64
  P + "grad.<param>"  dL/dparam, F64
Everything is computed in float64. Seeded with torch.manual_seed(0).
"""
import os

import torch

from common import (VAE_TINY, VaeDecoder, VaeEncoder, collected, data_path, f32, f64, initialize_f32, nchw, nhwc,
                    write_safetensors)

DT = torch.float64
CFG = VAE_TINY
N = 2


def run(prefix, model, x, out):
    """x: the input, channels-last."""
    model = model.to(DT)
    P = collected(model)
    initialize_f32(P)
    x = x.clone().requires_grad_()
    y = nhwc(model(nchw(x)))
    dy = torch.randn(y.shape, dtype=DT)
    (y * dy).sum().backward()
    values, grads = P.values(), P.grads()
    for name in P.names():
        out[prefix + name] = f32(values[name])
        out[prefix + "grad." + name] = f64(grads[name])
    out[prefix + "input.x"] = f64(x)
    out[prefix + "output.y"] = f64(y)
    out[prefix + "input.dy"] = f64(dy)
    out[prefix + "grad.x"] = f64(x.grad)


def main():
    torch.manual_seed(0)
    out = {}
    S, h = CFG.image_size, CFG.image_size // 4
    run("tiny.encoder.", VaeEncoder(CFG), torch.rand(N, S, S, CFG.image_channels, dtype=DT) * 2 - 1, out)
    run("tiny.decoder.", VaeDecoder(CFG), torch.randn(N, h, h, CFG.latent_channels, dtype=DT), out)
    path = data_path("vae_reference.safetensors")
    write_safetensors(path, out, {"generator": "tools/reference/vae_reference.py"})
    print("wrote", path, os.path.getsize(path), "bytes,", len(out), "tensors")


if __name__ == "__main__":
    main()
