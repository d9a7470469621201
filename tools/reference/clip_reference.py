#!/usr/bin/python3
"""PyTorch reference for clip::TextEncoder at clip::TinyConfig (tests/test_clip.cpp).

Run with Debian's python3-torch:  /usr/bin/python3 tools/reference/clip_reference.py
Writes (generated; do not edit by hand), in float64:
  tests/data/clip_reference.safetensors            seed head off
  tests/data/clip_reference_seed_head.safetensors  seed head on (Flatten -> Linear -> Linear -> Reshape)
each holding every parameter under diffuse's state-dict name and layout, the inputs
("input.ids" I32 [N, Ctx], "input.mask" BOOL [N, Ctx], true = padding; "input.dy"), the output
("output.y", the context [N, Ctx, D]) and the gradients of L = sum(y * dy) ("grad.<param name>").
Token ids carry no gradient.

The architecture (include/diffuse/models/clip.hpp, include/diffuse/blocks/transformer_layer.hpp):
  token + position embedding -> layers x pre-LN transformer layer
      (x + MHA(LN1(x), key_padding_mask); r + fc2(GELU(fc1(LN2(r))))) -> final LN
  -> [seed head: zero the padded rows, flatten, Linear(Ctx*D -> head_hidden), Linear(-> Ctx*D), reshape]
"""
import json
import math
import os
import struct

import torch

# clip::TinyConfig; VOCAB is text::Tokenizer::vocab_size (the C++ test fails on a shape mismatch
# if the tokenizer's vocabulary grows: rerun this script then).
VOCAB, CTX, D, HEADS, LAYERS, HIDDEN, HEAD_HIDDEN = 332, 6, 8, 2, 2, 16, 8
# Three prompts as the tokenizer packs them: start=1, end=2, pad=0; words from 259 on.
IDS = [[1, 259, 267, 264, 305, 2],   # no padding
       [1, 260, 301, 2, 0, 0],       # two padded positions
       [1, 2, 0, 0, 0, 0]]           # the empty prompt
MASK = [[i == 0 for i in row] for row in IDS]


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(D)
        self.attn = torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.ln2 = torch.nn.LayerNorm(D)
        self.fc1 = torch.nn.Linear(D, HIDDEN)
        self.fc2 = torch.nn.Linear(HIDDEN, D)

    def forward(self, x, mask):
        h = self.ln1(x)
        r = x + self.attn(h, h, h, key_padding_mask=mask, need_weights=False)[0]
        return r + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(r))))

    def state(self, prefix):
        a = self.attn
        q, k, v = a.in_proj_weight.split(D)
        qb, kb, vb = a.in_proj_bias.split(D)
        return {prefix + "ln1.weight": self.ln1.weight, prefix + "ln1.bias": self.ln1.bias,
                prefix + "attn.q_proj.weight": q, prefix + "attn.q_proj.bias": qb,
                prefix + "attn.k_proj.weight": k, prefix + "attn.k_proj.bias": kb,
                prefix + "attn.v_proj.weight": v, prefix + "attn.v_proj.bias": vb,
                prefix + "attn.out_proj.weight": a.out_proj.weight, prefix + "attn.out_proj.bias": a.out_proj.bias,
                prefix + "ln2.weight": self.ln2.weight, prefix + "ln2.bias": self.ln2.bias,
                prefix + "mlp.fc1.weight": self.fc1.weight, prefix + "mlp.fc1.bias": self.fc1.bias,
                prefix + "mlp.fc2.weight": self.fc2.weight, prefix + "mlp.fc2.bias": self.fc2.bias}


class TextEncoder(torch.nn.Module):
    def __init__(self, seed_head):
        super().__init__()
        self.token = torch.nn.Embedding(VOCAB, D)
        self.position = torch.nn.Embedding(CTX, D)
        self.layers = torch.nn.ModuleList([Layer() for _ in range(LAYERS)])
        self.ln_final = torch.nn.LayerNorm(D)
        self.seed_head = seed_head
        if seed_head:
            self.head_fc1 = torch.nn.Linear(CTX * D, HEAD_HIDDEN)
            self.head_fc2 = torch.nn.Linear(HEAD_HIDDEN, CTX * D)

    def forward(self, ids, mask):
        x = self.token(ids) + self.position.weight[None, : ids.shape[1]]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.ln_final(x)
        if self.seed_head:
            x = x.masked_fill(mask[..., None], 0.0)
            x = self.head_fc2(self.head_fc1(x.flatten(1))).reshape(ids.shape[0], CTX, D)
        return x

    def state(self):
        s = {"embed.token.weight": self.token.weight, "embed.position.weight": self.position.weight}
        for i, layer in enumerate(self.layers):
            s.update(layer.state(f"layers.{i}."))
        s["ln_final.weight"] = self.ln_final.weight
        s["ln_final.bias"] = self.ln_final.bias
        if self.seed_head:
            s.update({"head.fc1.weight": self.head_fc1.weight, "head.fc1.bias": self.head_fc1.bias,
                      "head.fc2.weight": self.head_fc2.weight, "head.fc2.bias": self.head_fc2.bias})
        return s


def perturb_defaults(model):
    """LayerNorm and attention-bias defaults (ones, zeros) would hide layout mistakes: randomize them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
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


def run(seed_head):
    torch.manual_seed(1 if seed_head else 0)
    model = TextEncoder(seed_head).to(torch.float64)
    perturb_defaults(model)
    ids = torch.tensor(IDS, dtype=torch.int64)
    mask = torch.tensor(MASK, dtype=torch.bool)
    y = model(ids, mask)
    dy = torch.randn(y.shape, dtype=torch.float64)
    (y * dy).sum().backward()

    state = model.state()
    out = {name: f64(p) for name, p in state.items()}
    out["input.ids"] = ("I32", ids.shape, struct.pack(f"<{ids.numel()}i", *ids.reshape(-1).tolist()))
    out["input.mask"] = ("BOOL", mask.shape, bytes(int(b) for b in mask.reshape(-1).tolist()))
    out["input.dy"] = f64(dy)
    out["output.y"] = f64(y)
    for name, p in state.items():
        # split views of in_proj share one .grad: take the matching slice of the packed gradient
        out["grad." + name] = f64(grad_of(model, name, p))
    return out


def grad_of(model, name, p):
    if ".attn." in name and "out_proj" not in name:
        layer = model.layers[int(name.split(".")[1])].attn
        which = "qkv".index(name.split(".attn.")[1][0])
        g = layer.in_proj_weight.grad if name.endswith("weight") else layer.in_proj_bias.grad
        return g.split(D)[which]
    return p.grad


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    for seed_head, fname in ((False, "clip_reference.safetensors"), (True, "clip_reference_seed_head.safetensors")):
        path = os.path.join(root, "tests", "data", fname)
        write_safetensors(path, run(seed_head))
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
