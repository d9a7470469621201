#!/usr/bin/python3
"""PyTorch reference for tests/test_vae.cpp: the vae::Encoder and vae::Decoder of
include/diffuse/models/vae.hpp at vae::TinyConfig, built again here in PyTorch.

Run with Debian's python3-torch:  /usr/bin/python3 tools/reference/vae_reference.py
Writes tests/data/vae_reference.safetensors (generated; do not edit by hand).

TinyConfig: 8x8x1 images, channels 4/8/8, latent 2x2x2 (moments 2x2x4), one residual block per
level, GroupNorm with 2 groups, one attention head. Channels-last throughout, as in diffuse: each
conv keeps its weight in our layout [Cout, K, K, Cin] and permutes for F.conv2d, so parameter names,
layouts and gradients match the C++ state dict one to one.

Contents, for P in {"tiny.encoder.", "tiny.decoder."}:
  P + <param name>    every parameter (F32: values drawn in float32, so exact in either precision)
  P + "input.x"       the input (image for the encoder, latent for the decoder), F64
  P + "output.y"      the output for it, F64
  P + "input.dy"      an upstream gradient; the gradients are those of L = sum(y * dy), F64
  P + "grad.x"        dL/dinput, F64
  P + "grad.<param>"  dL/dparam, F64
Everything is computed in float64. Seeded with torch.manual_seed(0).
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from torch import nn

DT = torch.float64
# TinyConfig
SIZE, IMG_C, C0, C1, C2, LAT, RES, GROUPS, HEADS = 8, 1, 4, 8, 8, 2, 1, 2, 1
N = 2


class Conv(nn.Module):
    """'same' conv (pad K//2 each side), stride s, weight [Cout, K, K, Cin], on NHWC."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, k, k, cin, dtype=DT))
        self.bias = nn.Parameter(torch.empty(cout, dtype=DT))
        self.stride, self.pad = stride, k // 2

    def forward(self, x):
        y = F.conv2d(x.permute(0, 3, 1, 2), self.weight.permute(0, 3, 1, 2), self.bias, self.stride, self.pad)
        return y.permute(0, 2, 3, 1)


class Norm(nn.Module):
    """GroupNorm(GROUPS) over NHWC (eps 1e-5, PyTorch semantics)."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c, dtype=DT))
        self.bias = nn.Parameter(torch.empty(c, dtype=DT))

    def forward(self, x):
        return F.group_norm(x.permute(0, 3, 1, 2), GROUPS, self.weight, self.bias, 1e-5).permute(0, 2, 3, 1)


class MHA(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d, dtype=DT) for _ in range(4))

    def forward(self, x, ctx):
        n, t, d = x.shape
        dh = d // self.heads
        split = lambda a: a.reshape(n, -1, self.heads, dh).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(ctx)), split(self.v_proj(ctx))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(n, t, d))


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = Norm(cin), Conv(cin, cout, 3)
        self.norm2, self.conv2 = Norm(cout), Conv(cout, cout, 3)
        self.skip = Conv(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class AttnBlock(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.norm, self.attn = Norm(c), MHA(c, heads)

    def forward(self, x):
        n, h, w, c = x.shape
        t = self.norm(x).reshape(n, h * w, c)
        return x + self.attn(t, t).reshape(n, h, w, c)


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.res1, self.attn, self.res2 = ResBlock(c, c), AttnBlock(c, HEADS), ResBlock(c, c)

    def forward(self, x):
        return self.res2(self.attn(self.res1(x)))


class Level(nn.Module):
    def __init__(self, cin, cout, resample):
        super().__init__()
        self.res = nn.ModuleList([ResBlock(cin if j == 0 else cout, cout) for j in range(RES)])
        self.kind = resample
        if resample == "down":
            self.downsample = Conv(cout, cout, 3, stride=2)
        elif resample == "up":
            self.upsample = Conv(cout, cout, 3)

    def forward(self, x):
        for b in self.res:
            x = b(x)
        if self.kind == "down":
            x = self.downsample(x)
        elif self.kind == "up":
            x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=2, mode="nearest").permute(0, 2, 3, 1)
            x = self.upsample(x)
        return x


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = Conv(IMG_C, C0, 3)
        self.down = nn.ModuleList([Level(C0, C0, "down"), Level(C0, C1, "down"), Level(C1, C2, None)])
        self.mid = Mid(C2)
        self.norm_out, self.conv_out = Norm(C2), Conv(C2, 2 * LAT, 3)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = Conv(LAT, C2, 3)
        self.mid = Mid(C2)
        self.up = nn.ModuleList([Level(C2, C2, "up"), Level(C2, C1, "up"), Level(C1, C0, None)])
        self.norm_out, self.conv_out = Norm(C0), Conv(C0, IMG_C, 3)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in self.up:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def initialize(model):
    """Float32-representable values: weights ~ N(0, 1/fan_in), norm scales 1 + 0.2 N, biases 0.2 N."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                v = torch.randn(p.shape, dtype=DT) / math.sqrt(p[0].numel())
            elif "norm" in name and name.endswith("weight"):
                v = 1 + 0.2 * torch.randn(p.shape, dtype=DT)
            else:
                v = 0.2 * torch.randn(p.shape, dtype=DT)
            p.copy_(v.float().double())


def run(prefix, model, x, out):
    initialize(model)
    x = x.clone().requires_grad_()
    y = model(x)
    dy = torch.randn(y.shape, dtype=DT)
    (y * dy).sum().backward()
    for name, p in model.named_parameters():
        out[prefix + name] = ("F32", p.detach())
        out[prefix + "grad." + name] = ("F64", p.grad)
    out[prefix + "input.x"] = ("F64", x.detach())
    out[prefix + "output.y"] = ("F64", y.detach())
    out[prefix + "input.dy"] = ("F64", dy)
    out[prefix + "grad.x"] = ("F64", x.grad)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, t) in tensors.items():
        t = t.contiguous()
        fmt = {"F32": "f", "F64": "d"}[dtype]
        blob = struct.pack("<%d%s" % (t.numel(), fmt), *t.flatten().tolist())
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"generator": "tools/reference/vae_reference.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    torch.manual_seed(0)
    out = {}
    run("tiny.encoder.", Encoder(), torch.rand(N, SIZE, SIZE, IMG_C, dtype=DT) * 2 - 1, out)
    run("tiny.decoder.", Decoder(), torch.randn(N, SIZE // 4, SIZE // 4, LAT, dtype=DT), out)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "vae_reference.safetensors")
    write_safetensors(os.path.normpath(path), out)
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes,", len(out), "tensors")


if __name__ == "__main__":
    main()
