#!/usr/bin/python3
"""PyTorch reference for unet::UNet at unet::TinyConfig (tests/test_unet_parity.cpp).

Run with Debian's python3-torch:  /usr/bin/python3 tools/reference/unet_reference.py
Writes tests/data/unet_reference.safetensors (generated; do not edit by hand), in float64:
every parameter under diffuse's state-dict name and layout (conv weights [Cout, K, K, Cin]),
the inputs ("input.z" [N, h, w, c] channels-last, "input.t" I32 [N], "input.context" [N, Ctx, Dctx],
"input.mask" BOOL [N, Ctx], true = padded key; "input.dy"), the output ("output.y" [N, h, w, c]) and
the gradients of L = sum(y * dy): "grad.z", "grad.context" and "grad.<param name>".

The architecture (include/diffuse/models/unet.hpp; blocks from include/diffuse/blocks/), NCHW here:
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
Attention is torch.nn.MultiheadAttention(batch_first=True); its packed in_proj (self attention) is
split into our q_proj / k_proj / v_proj.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

# unet::TinyConfig
LATENT, CHANNELS = 4, 2
WIDTHS = [4, 8]
ATTENTION = [False, True]
RES_BLOCKS, HEADS, GROUPS = 1, 2, 2
CTX, DCTX = 3, 4
TIME_FEATURES, TIME_DIM = 4, 8
N = 2
TIMESTEPS = [3, 999]
MASK = [[False, False, False], [False, False, True]]


def silu(x):
    return F.silu(x)


def tokens(x):  # [N, C, H, W] -> [N, H*W, C]
    return x.flatten(2).transpose(1, 2)


def untokens(t, like):  # [N, H*W, C] -> [N, C, H, W]
    return t.transpose(1, 2).reshape(like.shape)


class Params:
    """Our state-dict name -> (value, gradient) in diffuse's layout, collected after backward."""

    def __init__(self):
        self.items = []

    def conv(self, prefix, conv):
        self.items.append((prefix + ".weight", conv.weight, lambda t: t.permute(0, 2, 3, 1)))
        self.items.append((prefix + ".bias", conv.bias, None))

    def plain(self, prefix, module):  # Linear, GroupNorm, LayerNorm
        self.items.append((prefix + ".weight", module.weight, None))
        self.items.append((prefix + ".bias", module.bias, None))

    def mha(self, prefix, a):
        C = a.embed_dim
        for i, which in enumerate("qkv"):
            if a._qkv_same_embed_dim:
                self.items.append((f"{prefix}.{which}_proj.weight", a.in_proj_weight,
                                   lambda t, i=i: t[i * C:(i + 1) * C]))
            else:
                self.items.append((f"{prefix}.{which}_proj.weight", getattr(a, f"{which}_proj_weight"), None))
            self.items.append((f"{prefix}.{which}_proj.bias", a.in_proj_bias, lambda t, i=i: t[i * C:(i + 1) * C]))
        self.plain(prefix + ".out_proj", a.out_proj)

    def values_and_grads(self):
        out = {}
        for name, p, f in self.items:
            f = f or (lambda t: t)
            out[name] = (f(p.detach()), f(p.grad))
        return out


class ResBlock(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = torch.nn.GroupNorm(GROUPS, cin)
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = torch.nn.Linear(TIME_DIM, cout)
        self.norm2 = torch.nn.GroupNorm(GROUPS, cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = torch.nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(silu(self.norm1(x))) + self.time_proj(silu(temb))[:, :, None, None]
        y = self.conv2(silu(self.norm2(h)))
        return y + (self.skip(x) if self.skip is not None else x)

    def collect(self, prefix, P):
        P.plain(prefix + ".norm1", self.norm1)
        P.conv(prefix + ".conv1", self.conv1)
        P.plain(prefix + ".time_proj", self.time_proj)
        P.plain(prefix + ".norm2", self.norm2)
        P.conv(prefix + ".conv2", self.conv2)
        if self.skip is not None:
            P.conv(prefix + ".skip", self.skip)


class CrossAttn(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = torch.nn.LayerNorm(c)
        self.attn = torch.nn.MultiheadAttention(c, HEADS, batch_first=True, kdim=DCTX, vdim=DCTX)

    def forward(self, x, context, mask):
        h = self.norm(tokens(x))
        return x + untokens(self.attn(h, context, context, key_padding_mask=mask, need_weights=False)[0], x)

    def collect(self, prefix, P):
        P.plain(prefix + ".norm", self.norm)
        P.mha(prefix + ".attn", self.attn)


class SelfAttn(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = torch.nn.GroupNorm(GROUPS, c)
        self.attn = torch.nn.MultiheadAttention(c, HEADS, batch_first=True)

    def forward(self, x):
        h = tokens(self.norm(x))
        return x + untokens(self.attn(h, h, h, need_weights=False)[0], x)

    def collect(self, prefix, P):
        P.plain(prefix + ".norm", self.norm)
        P.mha(prefix + ".attn", self.attn)


class Stack(torch.nn.Module):
    def __init__(self, cin, w, attn):
        super().__init__()
        self.res = torch.nn.ModuleList([ResBlock(cin if i == 0 else w, w) for i in range(RES_BLOCKS)])
        self.attn = torch.nn.ModuleList([CrossAttn(w) for _ in range(RES_BLOCKS)]) if attn else None

    def forward(self, x, temb, context, mask):
        for i, r in enumerate(self.res):
            x = r(x, temb)
            if self.attn is not None:
                x = self.attn[i](x, context, mask)
        return x

    def collect(self, prefix, P):
        for i, r in enumerate(self.res):
            r.collect(f"{prefix}.res.{i}", P)
            if self.attn is not None:
                self.attn[i].collect(f"{prefix}.attn.{i}", P)


class UNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        L = len(WIDTHS)
        self.linear_1 = torch.nn.Linear(TIME_FEATURES, TIME_DIM)
        self.linear_2 = torch.nn.Linear(TIME_DIM, TIME_DIM)
        self.conv_in = torch.nn.Conv2d(CHANNELS, WIDTHS[0], 3, padding=1)
        self.down = torch.nn.ModuleList(
            [Stack(WIDTHS[0] if l == 0 else WIDTHS[l - 1], WIDTHS[l], ATTENTION[l]) for l in range(L)])
        self.downsample = torch.nn.ModuleList(
            [torch.nn.Conv2d(WIDTHS[l], WIDTHS[l], 3, stride=2, padding=1) for l in range(L - 1)])
        w = WIDTHS[-1]
        self.mid_res1, self.mid_attn = ResBlock(w, w), SelfAttn(w)
        self.mid_cross, self.mid_res2 = CrossAttn(w), ResBlock(w, w)
        up_in = [WIDTHS[l + 1] if l < L - 1 else WIDTHS[-1] for l in range(L)]
        self.up = torch.nn.ModuleList([Stack(up_in[l] + WIDTHS[l], WIDTHS[l], ATTENTION[l]) for l in range(L)])
        self.upsample = torch.nn.ModuleList(
            [torch.nn.Conv2d(WIDTHS[l], WIDTHS[l], 3, padding=1) for l in range(1, L)])  # level l at index l-1
        self.norm_out = torch.nn.GroupNorm(GROUPS, WIDTHS[0])
        self.conv_out = torch.nn.Conv2d(WIDTHS[0], CHANNELS, 3, padding=1)

    @staticmethod
    def sinusoid(t):
        half = TIME_FEATURES // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        args = t.to(torch.float64)[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # flip_sin_to_cos=True

    def forward(self, z, t, context, mask):
        L = len(WIDTHS)
        temb = self.linear_2(silu(self.linear_1(self.sinusoid(t))))
        h = self.conv_in(z)
        skips = []
        for l in range(L):
            h = self.down[l](h, temb, context, mask)
            skips.append(h)
            if l < L - 1:
                h = self.downsample[l](h)
        h = self.mid_res2(self.mid_cross(self.mid_attn(self.mid_res1(h, temb)), context, mask), temb)
        for l in reversed(range(L)):
            h = self.up[l](torch.cat([h, skips[l]], dim=1), temb, context, mask)
            if l > 0:
                h = self.upsample[l - 1](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(silu(self.norm_out(h)))

    def collect(self):
        P = Params()
        P.plain("time_embedding.linear_1", self.linear_1)
        P.plain("time_embedding.linear_2", self.linear_2)
        P.conv("conv_in", self.conv_in)
        for l, s in enumerate(self.down):
            s.collect(f"down.{l}", P)
            if l < len(WIDTHS) - 1:
                P.conv(f"down.{l}.downsample", self.downsample[l])
        self.mid_res1.collect("mid.res1", P)
        self.mid_attn.collect("mid.attn", P)
        self.mid_cross.collect("mid.cross", P)
        self.mid_res2.collect("mid.res2", P)
        for l, s in enumerate(self.up):
            s.collect(f"up.{l}", P)
            if l > 0:
                P.conv(f"up.{l}.upsample.conv", self.upsample[l - 1])
        P.plain("norm_out", self.norm_out)
        P.conv("conv_out", self.conv_out)
        return P


def perturb_defaults(model):
    """Norm (ones, zeros) and attention-bias (zeros) defaults would hide layout mistakes: randomize them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                m.weight.add_(0.2 * torch.randn_like(m.weight))
                m.bias.add_(0.2 * torch.randn_like(m.bias))
            if isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_bias.add_(0.2 * torch.randn_like(m.in_proj_bias))
                m.out_proj.bias.add_(0.2 * torch.randn_like(m.out_proj.bias))


def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape, bytes). A minimal writer of the safetensors format."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def f64(t):
    t = t.detach().to(torch.float64).contiguous()
    return ("F64", t.shape, struct.pack(f"<{t.numel()}d", *t.reshape(-1).tolist()))


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def main():
    torch.manual_seed(0)
    model = UNet().to(torch.float64)
    perturb_defaults(model)
    z = torch.randn(N, CHANNELS, LATENT, LATENT, dtype=torch.float64, requires_grad=True)
    context = torch.randn(N, CTX, DCTX, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(TIMESTEPS, dtype=torch.int32)
    mask = torch.tensor(MASK, dtype=torch.bool)
    y = model(z, t, context, mask)
    dy = torch.randn(y.shape, dtype=torch.float64)
    (y * dy).sum().backward()

    out = {}
    grads = {}
    for name, (value, grad) in model.collect().values_and_grads().items():
        out[name] = f64(value)
        grads["grad." + name] = f64(grad)
    out["input.z"] = f64(nhwc(z))
    out["input.t"] = ("I32", t.shape, struct.pack(f"<{N}i", *t.tolist()))
    out["input.context"] = f64(context)
    out["input.mask"] = ("BOOL", mask.shape, bytes(int(b) for b in mask.reshape(-1).tolist()))
    out["input.dy"] = f64(nhwc(dy))
    out["output.y"] = f64(nhwc(y))
    out["grad.z"] = f64(nhwc(z.grad))
    out["grad.context"] = f64(context.grad)
    out.update(grads)

    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    path = os.path.join(root, "tests", "data", "unet_reference.safetensors")
    write_safetensors(path, out)
    print("wrote", path, os.path.getsize(path), "bytes,", len(grads), "parameters")


if __name__ == "__main__":
    main()
