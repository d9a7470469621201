#!/usr/bin/env python3
"""Writes the Noto Emoji images as an image folder with captions: exactly the layout a user's own
data set has (OUT/images/*.png + OUT/metadata.jsonl, one {"file_name": ..., "text": [...]} per line),
so the emoji model trains through the generic path.

The images come from npm's `emoji-datasource-google` package (MIT; the Noto Emoji images are
Apache-2.0), fetched with `npm pack` (the npm registry is the one source reachable besides Debian).
Each base emoji (skin-tone variants and the five skin-tone swatches left out) gets its 64x64 PNG and
captions made from its name, short names and category:
    "red apple", "an emoji of a red apple", "food and drink: red apple", "apple"

Usage: tools/emoji_dataset.py OUT [--version V] [--package FILE.tgz]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

VERSION = "16.0.0"


def words(s):
    """Lower case, '&' spelled out, '_' and ':' as spaces, runs of spaces folded."""
    s = s.lower().replace("&", "and").replace("_", " ").replace(":", " ")
    return re.sub(r"\s+", " ", s).strip()


def article(phrase):
    return "an" if phrase[:1] in "aeiou" else "a"


def captions(e):
    name = words(e["name"] or e["short_name"])
    cat = words(e["category"])
    out = [name, f"an emoji of {article(name)} {name}", f"{cat}: {name}"]
    for s in e.get("short_names", []):
        s = words(s)
        if s and s not in out:
            out.append(s)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to create (must not exist or be empty)")
    ap.add_argument("--version", default=VERSION, help=f"package version (default {VERSION})")
    ap.add_argument("--package", help="an already downloaded emoji-datasource-google .tgz")
    a = ap.parse_args()
    if os.path.isdir(a.out) and os.listdir(a.out):
        sys.exit(f"emoji_dataset: {a.out} is not empty")
    with tempfile.TemporaryDirectory() as tmp:
        tgz = a.package
        if not tgz:
            name = subprocess.run(["npm", "pack", "--silent", f"emoji-datasource-google@{a.version}"], cwd=tmp,
                                  check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            tgz = os.path.join(tmp, name)
        os.makedirs(os.path.join(a.out, "images"))
        with tarfile.open(tgz) as t:
            emoji = json.load(t.extractfile("package/emoji.json"))
            members = {m.name: m for m in t.getmembers()}
            n = 0
            with open(os.path.join(a.out, "metadata.jsonl"), "w") as meta:
                for e in sorted(emoji, key=lambda e: e["sort_order"]):
                    if e["category"] == "Component" or not e.get("has_img_google"):
                        continue
                    src = members.get(f"package/img/google/64/{e['image']}")
                    if src is None:
                        continue
                    file_name = f"images/{e['image']}"
                    with open(os.path.join(a.out, file_name), "wb") as f:
                        f.write(t.extractfile(src).read())
                    meta.write(json.dumps({"file_name": file_name, "text": captions(e)}) + "\n")
                    n += 1
    print(f"emoji_dataset: {n} images with captions in {a.out}")


if __name__ == "__main__":
    main()
