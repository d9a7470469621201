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

The architecture is common.TextEncoder (include/diffuse/models/clip.hpp,
include/diffuse/blocks/transformer_layer.hpp):
  token + position embedding -> layers x pre-LN transformer layer
      (x + MHA(LN1(x), key_padding_mask); r + fc2(GELU(fc1(LN2(r))))) -> final LN
  -> [seed head: zero the padded rows, flatten, Linear(Ctx*D -> head_hidden), Linear(-> Ctx*D), reshape]
Parameters: PyTorch's default initialization, norm and attention-bias defaults perturbed.
"""
import dataclasses
import os

import torch

from common import CLIP_TINY, TextEncoder, boolean, collected, data_path, f64, i32, perturb_defaults, write_safetensors

# Three prompts as the tokenizer packs them: start=1, end=2, pad=0; words from 259 on.
IDS = [[1, 259, 267, 264, 305, 2],   # no padding
       [1, 260, 301, 2, 0, 0],       # two padded positions
       [1, 2, 0, 0, 0, 0]]           # the empty prompt
MASK = [[i == 0 for i in row] for row in IDS]


def run(seed_head):
    torch.manual_seed(1 if seed_head else 0)
    model = TextEncoder(dataclasses.replace(CLIP_TINY, seed_head=seed_head)).to(torch.float64)
    perturb_defaults(model)
    ids = torch.tensor(IDS, dtype=torch.int64)
    mask = torch.tensor(MASK, dtype=torch.bool)
    y = model(ids, mask)
    dy = torch.randn(y.shape, dtype=torch.float64)
    (y * dy).sum().backward()

    P = collected(model)
    out = {name: f64(v) for name, v in P.values().items()}
    out["input.ids"] = i32(ids.to(torch.int32))
    out["input.mask"] = boolean(mask)
    out["input.dy"] = f64(dy)
    out["output.y"] = f64(y)
    out.update({"grad." + name: f64(g) for name, g in P.grads().items()})
    return out


def main():
    for seed_head, fname in ((False, "clip_reference.safetensors"), (True, "clip_reference_seed_head.safetensors")):
        path = data_path(fname)
        write_safetensors(path, run(seed_head))
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
