#!/usr/bin/python3
"""Writes an image folder for LoRA fine-tuning (README "LoRA fine-tuning"): Fashion-MNIST test images,
two of each class (the first of each in the test set), padded to 32x32 as the shipped model saw them,
with a visible change: bright 2x2 dots scattered over the picture ("sparkly"), captioned
"a photo of a sparkly {class}" in metadata.jsonl. With --plain-per-class K, also K unchanged test images
of each class (the next ones), captioned "a photo of a {class}": DreamBooth's prior preservation, so
that the adapters learn what "sparkly" adds rather than making every picture sparkly.

    /usr/bin/python3 tools/sparkly_fashion.py OUT_DIR [--per-class 2] [--plain-per-class 0] [--fashion-dir DIR]
    /usr/bin/python3 tools/sparkly_fashion.py --score GRID.png   (a txt2img --scale 1 --no-captions grid: 28x28 cells)

--score prints, per grid row, the mean "sparkle" of its images: how much brighter the dot positions are
than the pixels right around them (gray levels, 0-255; the training images: about 150 to 250, a plain
Fashion-MNIST image about 0).
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


def read_png_gray(path):
    """An 8-bit grayscale, non-interlaced PNG (what io::write_png writes for one channel) as [H, W]."""
    with open(path, "rb") as f:
        data = f.read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour != 0:
                sys.exit("sparkly_fashion: %s is not 8-bit grayscale" % path)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    img = np.zeros((h, w), dtype=np.int32)
    prev = np.zeros(w, dtype=np.int32)
    for y in range(h):
        ftype, line = raw[y * (w + 1)], np.frombuffer(raw[y * (w + 1) + 1:(y + 1) * (w + 1)], np.uint8).astype(np.int32)
        out = np.zeros(w, dtype=np.int32)
        for x in range(w):
            a = out[x - 1] if x else 0
            b, c = prev[x], (prev[x - 1] if x else 0)
            pred = [0, a, b, (a + b) // 2][ftype] if ftype < 4 else \
                min((a, b, c), key=lambda v: (abs(a + b - c - v), (a, b, c).index(v)))
            out[x] = (line[x] + pred) & 0xFF
        img[y], prev = out, out
    return img


def sparkle(cell):
    """Mean brightness of the dot pixels minus that of the 1-pixel ring around each dot, on a 28x28 cell."""
    dots, rings = [], []
    for y, x in DOTS:
        y, x = y - 2, x - 2  # the 2-pixel border is cropped off
        block = cell[y - 1:y + 3, x - 1:x + 3].astype(float)
        inner = block[1:3, 1:3]
        dots.append(inner.mean())
        rings.append((block.sum() - inner.sum()) / 12)
    return float(np.mean(dots) - np.mean(rings))


def score(path, side=28, gap=1):
    img = read_png_gray(path)
    rows, cols = (img.shape[0] + gap) // (side + gap), (img.shape[1] + gap) // (side + gap)
    for r in range(rows):
        cells = [img[r * (side + gap):r * (side + gap) + side, c * (side + gap):c * (side + gap) + side]
                 for c in range(cols)]
        print("row %d: sparkle %.1f" % (r, np.mean([sparkle(c) for c in cells])))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--score":
        score(sys.argv[2])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--per-class", type=int, default=2)
    p.add_argument("--plain-per-class", type=int, default=0)
    p.add_argument("--fashion-dir", default=os.environ.get("DIFFUSE_FASHION_MNIST_DIR",
                                                            "/usr/share/datasets/fashion-mnist"))
    a = p.parse_args()
    if a.per_class < 1 or a.plain_per_class < 0:
        sys.exit("sparkly_fashion: --per-class must be at least 1 and --plain-per-class not negative")
    images = read_idx(os.path.join(a.fashion_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.fashion_dir, "t10k-labels-idx1-ubyte.gz"))
    os.makedirs(a.out_dir, exist_ok=True)
    lines = []
    for c, name in enumerate(CLASSES):
        for k, i in enumerate(np.flatnonzero(labels == c)[:a.per_class + a.plain_per_class]):
            sparkly = k < a.per_class
            canvas = np.zeros((32, 32), dtype=np.uint8)
            canvas[2:30, 2:30] = images[i]
            if sparkly:
                for y, x in DOTS:
                    canvas[y:y + 2, x:x + 2] = 255
            file = "%s_%s%d.png" % (name.replace(" ", "_"), "" if sparkly else "plain_", k)
            write_png_gray(os.path.join(a.out_dir, file), canvas)
            article = "a" if sparkly or name[0] not in "aeiou" else "an"
            text = "a photo of %s %s%s" % (article, "sparkly " if sparkly else "", name)
            lines.append(json.dumps({"file_name": file, "text": text}))
    with open(os.path.join(a.out_dir, "metadata.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d images to %s" % (len(lines), a.out_dir))


if __name__ == "__main__":
    main()
