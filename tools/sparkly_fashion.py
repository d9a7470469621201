#!/usr/bin/python3
"""Writes an image folder for LoRA fine-tuning (README "LoRA fine-tuning"): Fashion-MNIST test images,
two of each class (the first of each in the test set), padded to 32x32 as the shipped model saw them,
with a visible change: bright 2x2 dots scattered over the picture ("sparkly"), captioned
"a photo of a sparkly {class}" in metadata.jsonl.

    /usr/bin/python3 tools/sparkly_fashion.py OUT_DIR [--per-class 2] [--fashion-dir DIR]
"""
import argparse
import gzip
import json
import os
import struct
import sys
import zlib

import numpy as np

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
# Dot positions (top-left of each 2x2 dot) on the 32x32 canvas: a fixed scatter, the same on every image.
DOTS = [(5, 7), (4, 20), (9, 14), (11, 25), (15, 4), (16, 18), (19, 11), (21, 26), (25, 6), (26, 16), (12, 9),
        (23, 21)]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


def write_png_gray(path, img):
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, payload):
        c = struct.pack(">I", len(payload)) + kind + payload
        return c + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--per-class", type=int, default=2)
    p.add_argument("--fashion-dir", default=os.environ.get("DIFFUSE_FASHION_MNIST_DIR",
                                                            "/usr/share/datasets/fashion-mnist"))
    a = p.parse_args()
    if a.per_class < 1:
        sys.exit("sparkly_fashion: --per-class must be at least 1")
    images = read_idx(os.path.join(a.fashion_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.fashion_dir, "t10k-labels-idx1-ubyte.gz"))
    os.makedirs(a.out_dir, exist_ok=True)
    lines = []
    for c, name in enumerate(CLASSES):
        for k, i in enumerate(np.flatnonzero(labels == c)[:a.per_class]):
            canvas = np.zeros((32, 32), dtype=np.uint8)
            canvas[2:30, 2:30] = images[i]
            for y, x in DOTS:
                canvas[y:y + 2, x:x + 2] = 255
            file = "%s_%d.png" % (name.replace(" ", "_"), k)
            write_png_gray(os.path.join(a.out_dir, file), canvas)
            lines.append(json.dumps({"file_name": file, "text": "a photo of a sparkly " + name}))
    with open(os.path.join(a.out_dir, "metadata.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d images to %s" % (len(lines), a.out_dir))


if __name__ == "__main__":
    main()
