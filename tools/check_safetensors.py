#!/usr/bin/env python3
"""Reads a safetensors file with nothing but Python's standard library: an independent second
implementation that checks the files diffuse writes (tests/test_safetensors.cpp runs it).

Debian 12 has no python3-safetensors package, so this is a hand-written reader following the
format's specification (https://github.com/huggingface/safetensors, "Format"):
8-byte little-endian header length N, N bytes of JSON, then the tensors' little-endian bytes,
which must tile the data section exactly.

  check_safetensors.py FILE            validate; print one line per tensor: name dtype shape
  check_safetensors.py --dump FILE     also print every value, exactly (repr of a Python float)
  check_safetensors.py --write FILE    write a small sample file for the C++ reader to check

Exit status 0 when the file is valid, 1 (with a message on stderr) when it is not.
"""
import json
import math
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
         "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
FLOATS = {"F64", "F32", "F16", "BF16"}
FORMATS = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "I16": "h", "I8": "b",
           "U64": "Q", "U32": "I", "U16": "H", "U8": "B", "BOOL": "?"}


def fail(msg):
    raise ValueError(msg)


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail("file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n == 0 or 8 + n > len(blob):
        fail(f"bad header length {n} for a {len(blob)}-byte file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        fail("__metadata__ must map strings to strings")
    tensors = []
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"}:
            fail(f"{name}: fields {sorted(info)}")
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SIZES:
            fail(f"{name}: unknown dtype {dtype}")
        if end - begin != math.prod(shape) * SIZES[dtype]:
            fail(f"{name}: offsets [{begin}, {end}] do not match {dtype} {shape}")
        tensors.append((begin, end, name, dtype, shape))
    tensors.sort()
    pos = 0
    for begin, end, name, _, _ in tensors:
        if begin != pos:
            fail(f"{name}: starts at {begin}, expected {pos}")
        pos = end
    if pos != len(data):
        fail(f"tensors cover {pos} bytes, the data section holds {len(data)}")
    out = []
    for begin, end, name, dtype, shape in tensors:
        raw = data[begin:end]
        if dtype == "BF16":  # the top half of a float32
            values = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        else:
            values = list(struct.unpack("<" + FORMATS[dtype] * math.prod(shape), raw))
        out.append((name, dtype, shape, values))
    return metadata, out


def write_sample(path):
    """Tensors in an order different from their data, F16 and I64 included, and metadata."""
    f32 = [0.5, -1.25, 3.0, 1e-3, -0.0, 65504.0]
    f16 = [1.0, -2.5, 0.099975586, 6.1035156e-05]
    i64 = [-3, 0, 2**40 + 7]
    data = struct.pack("<6f", *f32) + struct.pack("<4e", *f16) + struct.pack("<3q", *i64)
    header = {
        "step": {"dtype": "I64", "shape": [3], "data_offsets": [32, 56]},
        "layer.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "layer.bias": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]},
        "__metadata__": {"format": "pt", "note": "written by check_safetensors.py \u00e9"},
    }
    text = json.dumps(header).encode("utf-8")  # no padding: readers must not require it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def main(argv):
    if len(argv) == 3 and argv[1] == "--write":
        write_sample(argv[2])
        return 0
    dump = len(argv) == 3 and argv[1] == "--dump"
    if not (dump or len(argv) == 2):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        metadata, tensors = read(argv[-1])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, struct.error) as e:
        print(f"{argv[-1]}: invalid safetensors file: {e}", file=sys.stderr)
        return 1
    for k, v in sorted(metadata.items()):
        print(f"__metadata__\t{k}\t{v}")
    for name, dtype, shape, values in tensors:
        line = f"{name}\t{dtype}\t{','.join(map(str, shape))}"
        if dump:
            line += "\t" + " ".join(repr(float(v)) if dtype in FLOATS else str(int(v)) for v in values)
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
