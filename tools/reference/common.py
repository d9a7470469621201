"""Shared pieces of the PyTorch reference generators in tools/reference/ (imported, not run).

  data_path(name)               tests/data/<name>
  write_safetensors(path, ...)  a minimal writer of the safetensors format (json + struct)
  f64 / f32 / i32 / boolean     (dtype, tensor) entries for it; f32 insists on exact values
  hex_array(name, values)       a C++ `inline constexpr double` array of exact hexadecimal literals
  Params                        our state dict: diffuse's name -> torch parameter, seen in our layout
  perturb_defaults, initialize_f32   deterministic parameter values
  ResBlock, SelfAttn, CrossAttn, Stack, VaeEncoder, VaeDecoder, TextEncoder, UNet, LearnedTime:
      the models of include/diffuse/{blocks,models}/ built from torch.nn modules (NCHW inside;
      the callers permute from and to our channels-last layout), each with collect(prefix, P)
      naming its parameters as the C++ visit() does.
  VaeConfig / ClipConfig / UnetConfig and their TINY presets: the C++ Tiny configs.

Attention is torch.nn.MultiheadAttention(batch_first=True): an independent implementation of what
diffuse's MultiHeadAttention computes. PyTorch packs q/k/v into in_proj_weight when the key width
equals the query width; Params splits it into our q_proj / k_proj / v_proj.
"""
import json
import math
import os
import struct
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def data_path(name):
    return os.path.join(ROOT, "tests", "data", name)


# ------------------------------------------------------------------------------------------------
# Output files

def f64(t):
    return ("F64", t.detach().to(torch.float64))


def f32(t):
    """Values that are exactly float32 (initialize_f32 draws them so): stored in half the bytes."""
    t = t.detach().to(torch.float64)
    if not torch.equal(t.float().double(), t):
        raise ValueError("f32: the tensor is not exactly representable in float32")
    return ("F32", t)


def i32(t):
    return ("I32", t.detach())


def boolean(t):
    return ("BOOL", t.detach())


_PACK = {"F64": "d", "F32": "f", "I32": "i"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> (dtype, tensor) in file order; dtype F64, F32, I32 or BOOL (little-endian).
    metadata: optional {str: str}, written last in the header as "__metadata__"."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, t) in tensors.items():
        values = t.contiguous().reshape(-1).tolist()
        if dtype == "BOOL":
            blob = bytes(int(bool(v)) for v in values)
        else:
            blob = struct.pack("<%d%s" % (len(values), _PACK[dtype]), *values)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def hex_array(name, values):
    """A C++ array of doubles written as exact hexadecimal floating literals."""
    values = list(values)
    body = ", ".join(float.hex(v) for v in values)
    return f"inline constexpr double {name}[{len(values)}] = {{\n    " + body + "};\n"


# ------------------------------------------------------------------------------------------------
# Layouts

def nchw(x):  # [N, H, W, C] -> [N, C, H, W]
    return x.permute(0, 3, 1, 2)


def nhwc(x):  # [N, C, H, W] -> [N, H, W, C]
    return x.permute(0, 2, 3, 1)


def tokens(x):  # [N, C, H, W] -> [N, H*W, C]
    return x.flatten(2).transpose(1, 2)


def untokens(t, like):  # [N, H*W, C] -> [N, C, H, W]
    return t.transpose(1, 2).reshape(like.shape)


class Params:
    """Our state dict: (name, torch parameter, view onto our layout, kind) in visit() order.
    kind: "weight" (matrices, conv kernels, tables), "scale" (norm weights) or "bias"."""

    def __init__(self):
        self.items = []

    def add(self, name, p, view=None, kind=None):
        kind = kind or ("weight" if view is None and p.dim() > 1 else "bias")
        self.items.append((name, p, view or (lambda t: t), kind))

    def conv(self, prefix, conv):  # torch [Cout, Cin, K, K] -> ours [Cout, K, K, Cin]
        self.add(prefix + ".weight", conv.weight, lambda t: t.permute(0, 2, 3, 1), "weight")
        self.add(prefix + ".bias", conv.bias)

    def plain(self, prefix, module):  # Linear
        self.add(prefix + ".weight", module.weight)
        self.add(prefix + ".bias", module.bias)

    def norm(self, prefix, module):  # LayerNorm, GroupNorm
        self.add(prefix + ".weight", module.weight, kind="scale")
        self.add(prefix + ".bias", module.bias)

    def table(self, prefix, module):  # Embedding
        self.add(prefix + ".weight", module.weight)

    def mha(self, prefix, a):
        C = a.embed_dim
        for i, which in enumerate("qkv"):
            rows = lambda t, i=i: t[i * C:(i + 1) * C]
            if a._qkv_same_embed_dim:
                self.add(f"{prefix}.{which}_proj.weight", a.in_proj_weight, rows, "weight")
            else:
                self.add(f"{prefix}.{which}_proj.weight", getattr(a, f"{which}_proj_weight"))
            self.add(f"{prefix}.{which}_proj.bias", a.in_proj_bias, rows, "bias")
        self.plain(prefix + ".out_proj", a.out_proj)

    def names(self):
        return [name for name, _, _, _ in self.items]

    def values(self):
        return {name: view(p.detach()) for name, p, view, _ in self.items}

    def grads(self):
        return {name: view(p.grad) for name, p, view, _ in self.items}


def collected(model, prefix=""):
    P = Params()
    model.collect(prefix, P)
    return P


def perturb_defaults(model):
    """Norm (ones, zeros) and attention-bias (zeros) defaults would hide layout mistakes: randomize them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.add_(0.2 * torch.randn_like(m.weight))
                m.bias.add_(0.2 * torch.randn_like(m.bias))
            if isinstance(m, nn.MultiheadAttention):
                m.in_proj_bias.add_(0.2 * torch.randn_like(m.in_proj_bias))
                m.out_proj.bias.add_(0.2 * torch.randn_like(m.out_proj.bias))


def initialize_f32(P):
    """Float32-representable values drawn in P's order and our layout: weights ~ N(0, 1/fan_in)
    (fan_in = the elements of one output row), norm scales 1 + 0.2 N, biases 0.2 N."""
    with torch.no_grad():
        for _, p, view, kind in P.items:
            v = view(p)
            if kind == "weight":
                w = torch.randn(v.shape, dtype=torch.float64) / math.sqrt(v[0].numel())
            elif kind == "scale":
                w = 1 + 0.2 * torch.randn(v.shape, dtype=torch.float64)
            else:
                w = 0.2 * torch.randn(v.shape, dtype=torch.float64)
            v.copy_(w.float().double())


# ------------------------------------------------------------------------------------------------
# Configurations (the C++ presets of include/diffuse/models/)

@dataclass(frozen=True)
class VaeConfig:
    image_size: int
    image_channels: int
    channels: tuple  # C0, C1, C2
    latent_channels: int
    res_blocks: int
    groups: int  # GroupNorm groups
    heads: int


@dataclass(frozen=True)
class ClipConfig:
    vocab: int
    context_length: int
    width: int
    heads: int
    layers: int
    hidden: int
    seed_head: bool = False
    head_hidden: int = 0


@dataclass(frozen=True)
class UnetConfig:
    latent_size: int
    latent_channels: int
    widths: tuple
    attention: tuple
    res_blocks: int
    heads: int
    groups: int
    context_length: int
    context_width: int
    time_features: int
    time_dim: int


VAE_TINY = VaeConfig(8, 1, (4, 8, 8), 2, 1, 2, 1)  # vae::TinyConfig
# clip::TinyConfig. vocab is text::Tokenizer::vocab_size (the C++ tests fail on a shape mismatch if
# the tokenizer's vocabulary grows: rerun the scripts then).
CLIP_TINY = ClipConfig(332, 6, 8, 2, 2, 16, False, 8)
UNET_TINY = UnetConfig(4, 2, (4, 8), (False, True), 1, 2, 2, 3, 4, 4, 8)  # unet::TinyConfig


# ------------------------------------------------------------------------------------------------
# Blocks (include/diffuse/blocks/), NCHW

class ResBlock(nn.Module):
    """ResidualBlock: conv1(SiLU(GN(x))) [+ time_proj(SiLU(temb))] -> conv2(SiLU(GN(.))) + (x or 1x1 skip)."""

    def __init__(self, cin, cout, groups, temb_dim=None):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, cout) if temb_dim else None
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        y = self.conv2(F.silu(self.norm2(h)))
        return y + (self.skip(x) if self.skip is not None else x)

    def collect(self, prefix, P):
        P.norm(prefix + "norm1", self.norm1)
        P.conv(prefix + "conv1", self.conv1)
        if self.time_proj is not None:
            P.plain(prefix + "time_proj", self.time_proj)
        P.norm(prefix + "norm2", self.norm2)
        P.conv(prefix + "conv2", self.conv2)
        if self.skip is not None:
            P.conv(prefix + "skip", self.skip)


class SelfAttn(nn.Module):
    """AttentionBlock: x + MHA(GN(x) tokens)."""

    def __init__(self, c, heads, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)

    def forward(self, x):
        h = tokens(self.norm(x))
        return x + untokens(self.attn(h, h, h, need_weights=False)[0], x)

    def collect(self, prefix, P):
        P.norm(prefix + "norm", self.norm)
        P.mha(prefix + "attn", self.attn)


class CrossAttn(nn.Module):
    """CrossAttentionBlock: x + MHA(LN(x tokens), context, key_padding_mask)."""

    def __init__(self, c, heads, dctx):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True, kdim=dctx, vdim=dctx)

    def forward(self, x, context, mask):
        h = self.norm(tokens(x))
        return x + untokens(self.attn(h, context, context, key_padding_mask=mask, need_weights=False)[0], x)

    def collect(self, prefix, P):
        P.norm(prefix + "norm", self.norm)
        P.mha(prefix + "attn", self.attn)


class Stack(nn.Module):
    """n residual blocks (the first cin -> w), each followed by cross-attention when attn.
    Names res.<i>, attn.<i> (flat in the owner's prefix)."""

    def __init__(self, cin, w, n, groups, temb_dim=None, attn=False, heads=1, dctx=None):
        super().__init__()
        self.res = nn.ModuleList([ResBlock(cin if i == 0 else w, w, groups, temb_dim) for i in range(n)])
        self.attn = nn.ModuleList([CrossAttn(w, heads, dctx) for _ in range(n)]) if attn else None

    def forward(self, x, temb=None, context=None, mask=None):
        for i, r in enumerate(self.res):
            x = r(x, temb)
            if self.attn is not None:
                x = self.attn[i](x, context, mask)
        return x

    def collect(self, prefix, P):
        for i, r in enumerate(self.res):
            r.collect(f"{prefix}res.{i}.", P)
            if self.attn is not None:
                self.attn[i].collect(f"{prefix}attn.{i}.", P)


# ------------------------------------------------------------------------------------------------
# vae::Encoder / vae::Decoder (include/diffuse/models/vae.hpp), NCHW

class VaeMid(nn.Module):
    def __init__(self, c, cfg):
        super().__init__()
        self.res1 = ResBlock(c, c, cfg.groups)
        self.attn = SelfAttn(c, cfg.heads, cfg.groups)
        self.res2 = ResBlock(c, c, cfg.groups)

    def forward(self, x):
        return self.res2(self.attn(self.res1(x)))

    def collect(self, prefix, P):
        self.res1.collect(prefix + "res1.", P)
        self.attn.collect(prefix + "attn.", P)
        self.res2.collect(prefix + "res2.", P)


class VaeLevel(nn.Module):
    """Residual stack, then a strided 3x3 conv ("down"), or nearest 2x + 3x3 conv ("up"), or nothing."""

    def __init__(self, cin, cout, cfg, resample):
        super().__init__()
        self.res = Stack(cin, cout, cfg.res_blocks, cfg.groups)
        self.kind = resample
        if resample == "down":
            self.downsample = nn.Conv2d(cout, cout, 3, stride=2, padding=1)
        elif resample == "up":
            self.upsample = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        x = self.res(x)
        if self.kind == "down":
            x = self.downsample(x)
        elif self.kind == "up":
            x = self.upsample(F.interpolate(x, scale_factor=2, mode="nearest"))
        return x

    def collect(self, prefix, P):
        self.res.collect(prefix, P)
        if self.kind == "down":
            P.conv(prefix + "downsample", self.downsample)
        elif self.kind == "up":
            P.conv(prefix + "upsample", self.upsample)


class VaeEncoder(nn.Module):
    """image [N, Cimg, S, S] -> moments [N, 2L, S/4, S/4] (mean | log-variance)."""

    def __init__(self, cfg):
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.conv_in = nn.Conv2d(cfg.image_channels, c0, 3, padding=1)
        self.down = nn.ModuleList([VaeLevel(c0, c0, cfg, "down"), VaeLevel(c0, c1, cfg, "down"),
                                   VaeLevel(c1, c2, cfg, None)])
        self.mid = VaeMid(c2, cfg)
        self.norm_out = nn.GroupNorm(cfg.groups, c2)
        self.conv_out = nn.Conv2d(c2, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))

    def collect(self, prefix, P):
        P.conv(prefix + "conv_in", self.conv_in)
        for l, level in enumerate(self.down):
            level.collect(f"{prefix}down.{l}.", P)
        self.mid.collect(prefix + "mid.", P)
        P.norm(prefix + "norm_out", self.norm_out)
        P.conv(prefix + "conv_out", self.conv_out)


class VaeDecoder(nn.Module):
    """latent [N, L, S/4, S/4] -> image [N, Cimg, S, S] (linear output)."""

    def __init__(self, cfg):
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.conv_in = nn.Conv2d(cfg.latent_channels, c2, 3, padding=1)
        self.mid = VaeMid(c2, cfg)
        self.up = nn.ModuleList([VaeLevel(c2, c2, cfg, "up"), VaeLevel(c2, c1, cfg, "up"), VaeLevel(c1, c0, cfg, None)])
        self.norm_out = nn.GroupNorm(cfg.groups, c0)
        self.conv_out = nn.Conv2d(c0, cfg.image_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in self.up:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def collect(self, prefix, P):
        P.conv(prefix + "conv_in", self.conv_in)
        self.mid.collect(prefix + "mid.", P)
        for l, level in enumerate(self.up):
            level.collect(f"{prefix}up.{l}.", P)
        P.norm(prefix + "norm_out", self.norm_out)
        P.conv(prefix + "conv_out", self.conv_out)


# ------------------------------------------------------------------------------------------------
# clip::TextEncoder (include/diffuse/models/clip.hpp, blocks/transformer_layer.hpp)

class ClipLayer(nn.Module):
    """Pre-LN transformer layer: r = x + MHA(LN1(x), key_padding_mask); r + fc2(GELU(fc1(LN2(r))))."""

    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.fc1 = nn.Linear(cfg.width, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.width)

    def forward(self, x, mask):
        h = self.ln1(x)
        r = x + self.attn(h, h, h, key_padding_mask=mask, need_weights=False)[0]
        return r + self.fc2(F.gelu(self.fc1(self.ln2(r))))

    def collect(self, prefix, P):
        P.norm(prefix + "ln1", self.ln1)
        P.mha(prefix + "attn", self.attn)
        P.norm(prefix + "ln2", self.ln2)
        P.plain(prefix + "mlp.fc1", self.fc1)
        P.plain(prefix + "mlp.fc2", self.fc2)


class TextEncoder(nn.Module):
    """ids [N, Ctx], mask [N, Ctx] (true = padding) -> context [N, Ctx, D]: token + position embedding,
    layers, final LN [, the seed head: zero the padded rows, flatten, Linear, Linear, reshape]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.token = nn.Embedding(cfg.vocab, cfg.width)
        self.position = nn.Embedding(cfg.context_length, cfg.width)
        self.layers = nn.ModuleList([ClipLayer(cfg) for _ in range(cfg.layers)])
        self.ln_final = nn.LayerNorm(cfg.width)
        if cfg.seed_head:
            flat = cfg.context_length * cfg.width
            self.head_fc1 = nn.Linear(flat, cfg.head_hidden)
            self.head_fc2 = nn.Linear(cfg.head_hidden, flat)

    def forward(self, ids, mask):
        x = self.token(ids) + self.position.weight[None, : ids.shape[1]]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.ln_final(x)
        if self.cfg.seed_head:
            x = x.masked_fill(mask[..., None], 0.0)
            x = self.head_fc2(self.head_fc1(x.flatten(1))).reshape(x.shape)
        return x

    def collect(self, prefix, P):
        P.table(prefix + "embed.token", self.token)
        P.table(prefix + "embed.position", self.position)
        for i, layer in enumerate(self.layers):
            layer.collect(f"{prefix}layers.{i}.", P)
        P.norm(prefix + "ln_final", self.ln_final)
        if self.cfg.seed_head:
            P.plain(prefix + "head.fc1", self.head_fc1)
            P.plain(prefix + "head.fc2", self.head_fc2)


# ------------------------------------------------------------------------------------------------
# Time embeddings (include/diffuse/blocks/time_embedding.hpp)

def sinusoid(t, features, dtype=None):
    """diffusers' get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0), computed in
    float64 and rounded to dtype (default: torch's default dtype), as the C++ computes it in double
    and rounds to T."""
    half = features // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(dtype or torch.get_default_dtype())


class LearnedTime(nn.Module):
    """LearnedTimeEmbedding: table[t] (a row per timestep) -> Linear. Names embedding, linear."""

    def __init__(self, steps, features, out):
        super().__init__()
        self.embedding = nn.Embedding(steps, features)
        self.linear = nn.Linear(features, out)

    def forward(self, t):
        return self.linear(self.embedding(t.long()))

    def collect(self, prefix, P):
        P.table(prefix + "embedding", self.embedding)
        P.plain(prefix + "linear", self.linear)


# ------------------------------------------------------------------------------------------------
# unet::UNet (include/diffuse/models/unet.hpp), sinusoidal time embedding, NCHW

class UNet(nn.Module):
    """z [N, c, h, h], t [N], context [N, Ctx, Dctx], mask [N, Ctx] -> [N, c, h, h].
    temb = linear_2(SiLU(linear_1(sinusoid(t)))); conv_in; down levels (Stack, skip, strided conv
    but at the last); mid res -> self-attn -> cross-attn -> res; up levels from the bottom
    (cat([h, skip]) -> Stack -> nearest 2x + conv but at level 0); conv_out(SiLU(norm_out(h)))."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        W, L, G = cfg.widths, len(cfg.widths), cfg.groups
        stack = lambda cin, l: Stack(cin, W[l], cfg.res_blocks, G, cfg.time_dim, cfg.attention[l], cfg.heads,
                                     cfg.context_width)
        self.linear_1 = nn.Linear(cfg.time_features, cfg.time_dim)
        self.linear_2 = nn.Linear(cfg.time_dim, cfg.time_dim)
        self.conv_in = nn.Conv2d(cfg.latent_channels, W[0], 3, padding=1)
        self.down = nn.ModuleList([stack(W[0] if l == 0 else W[l - 1], l) for l in range(L)])
        self.downsample = nn.ModuleList([nn.Conv2d(W[l], W[l], 3, stride=2, padding=1) for l in range(L - 1)])
        w = W[-1]
        self.mid_res1, self.mid_attn = ResBlock(w, w, G, cfg.time_dim), SelfAttn(w, cfg.heads, G)
        self.mid_cross, self.mid_res2 = CrossAttn(w, cfg.heads, cfg.context_width), ResBlock(w, w, G, cfg.time_dim)
        up_in = [W[l + 1] if l < L - 1 else W[-1] for l in range(L)]
        self.up = nn.ModuleList([stack(up_in[l] + W[l], l) for l in range(L)])
        self.upsample = nn.ModuleList([nn.Conv2d(W[l], W[l], 3, padding=1) for l in range(1, L)])  # level l at l-1
        self.norm_out = nn.GroupNorm(G, W[0])
        self.conv_out = nn.Conv2d(W[0], cfg.latent_channels, 3, padding=1)

    def forward(self, z, t, context, mask):
        L = len(self.cfg.widths)
        temb = self.linear_2(F.silu(self.linear_1(sinusoid(t, self.cfg.time_features, self.linear_1.weight.dtype))))
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
        return self.conv_out(F.silu(self.norm_out(h)))

    def collect(self, prefix, P):
        P.plain(prefix + "time_embedding.linear_1", self.linear_1)
        P.plain(prefix + "time_embedding.linear_2", self.linear_2)
        P.conv(prefix + "conv_in", self.conv_in)
        for l, s in enumerate(self.down):
            s.collect(f"{prefix}down.{l}.", P)
            if l < len(self.cfg.widths) - 1:
                P.conv(f"{prefix}down.{l}.downsample", self.downsample[l])
        self.mid_res1.collect(prefix + "mid.res1.", P)
        self.mid_attn.collect(prefix + "mid.attn.", P)
        self.mid_cross.collect(prefix + "mid.cross.", P)
        self.mid_res2.collect(prefix + "mid.res2.", P)
        for l, s in enumerate(self.up):
            s.collect(f"{prefix}up.{l}.", P)
            if l > 0:
                P.conv(f"{prefix}up.{l}.upsample.conv", self.upsample[l - 1])
        P.norm(prefix + "norm_out", self.norm_out)
        P.conv(prefix + "conv_out", self.conv_out)
