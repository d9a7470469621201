#!/usr/bin/env python3
"""Writes Fashion-MNIST images as 28x28 gray PNGs, and masks for inpaint, with the standard library only.

  fashion_mnist_png.py --label 6 OUT.png                 the first shirt of the test set
  fashion_mnist_png.py --label 7 --nth 2 OUT.png         the third sneaker
  fashion_mnist_png.py --mask lower-half OUT.png         white (regenerate) below row 14, black above

Labels: 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag,
9 ankle boot. The data set is read from $DIFFUSE_FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist).
"""
import argparse
import gzip
import os
import struct
import sys
import zlib


def write_png(path, rows):
    """rows: lists of 0..255 gray values."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image(label, nth, folder):
    with gzip.open(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = f.read()[8:]
    with gzip.open(os.path.join(folder, "t10k-images-idx3-ubyte.gz")) as f:
        data = f.read()
    count, h, w = struct.unpack(">III", data[4:16])
    hits = [i for i in range(count) if labels[i] == label]
    if nth >= len(hits):
        sys.exit(f"fashion_mnist_png: the test set has {len(hits)} images of label {label}, not {nth + 1}")
    start = 16 + hits[nth] * h * w
    return [list(data[start + y * w : start + (y + 1) * w]) for y in range(h)], hits[nth]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--label", type=int, choices=range(10), help="a test image of this class")
    p.add_argument("--nth", type=int, default=0, help="which image of the class (0: the first)")
    p.add_argument("--mask", choices=["lower-half", "upper-half", "left-half", "right-half"], help="a 28x28 mask")
    a = p.parse_args()
    if (a.label is None) == (a.mask is None):
        p.error("give exactly one of --label or --mask")
    if a.nth < 0:
        p.error("--nth must not be negative")
    if a.mask:
        inside = {"lower-half": lambda y, x: y >= 14, "upper-half": lambda y, x: y < 14,
                  "left-half": lambda y, x: x < 14, "right-half": lambda y, x: x >= 14}[a.mask]
        write_png(a.out, [[255 if inside(y, x) else 0 for x in range(28)] for y in range(28)])
        print(f"wrote {a.out} ({a.mask} mask, 28x28)")
        return
    folder = os.environ.get("DIFFUSE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    rows, index = test_image(a.label, a.nth, folder)
    write_png(a.out, rows)
    print(f"wrote {a.out} (test image {index}, label {a.label})")


if __name__ == "__main__":
    main()
