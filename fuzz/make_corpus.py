#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_checkpoint.c: a few tiny valid heptapod-v1
checkpoints (F32, F16, BF16, misaligned data, per-block lists) that the
fuzzer mutates. Usage: python3 fuzz/make_corpus.py fuzz/corpus/checkpoint"""
import json
import os
import struct
import sys


def shapes(V, D, L, F):
    out = {"tok_emb.weight": [V, D]}
    for l in range(L):
        b = f"blocks.{l}."
        out.update({b + "norm1.weight": [D], b + "norm1.bias": [D],
                    b + "attn.qkv.weight": [3 * D, D], b + "attn.qkv.bias": [3 * D],
                    b + "attn.proj.weight": [D, D], b + "attn.proj.bias": [D],
                    b + "norm2.weight": [D], b + "norm2.bias": [D],
                    b + "mlp.fc1.weight": [F, D], b + "mlp.fc1.bias": [F],
                    b + "mlp.fc2.weight": [D, F], b + "mlp.fc2.bias": [D]})
    out.update({"norm.weight": [D], "norm.bias": [D], "head.weight": [V, D], "head.bias": [V]})
    return out


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    # BF16: the high half of the float32 (the values are exact in it)
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def write(path, dtype, L, meta, align=0):
    V, D = 3, 4
    md = {"format": "heptapod", "arch": "heptapod-v1", "vocab_size": str(V), "dim": str(D),
          "depth": str(L), "heads": "1", "window": "1", "mask_token": str(V - 1),
          "max_height": "8", "max_width": "8"}
    md.update(meta)
    F = int(md.get("mlp_hidden", 4 * D))
    header, blobs, off = {"__metadata__": md}, [], 0
    for i, (name, shape) in enumerate(shapes(V, D, L, F).items()):
        n = 1
        for d in shape:
            n *= d
        b = encode([((i * 5 + j) % 16 - 8) / 4 for j in range(n)], dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((align - 8 - len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "f32"), "F32", 1, {"mlp_hidden": "4"})
    write(os.path.join(out, "f16_defaults"), "F16", 1, {"tokenizer": "byte"})
    write(os.path.join(out, "bf16_lists"), "BF16", 2,
          {"window": "2,global", "dilation": "1,2", "mlp_hidden": "4", "rope_base": "100",
           "norm_eps": "1e-06", "tokenizer": "none"})
    write(os.path.join(out, "f32_misaligned"), "F32", 1, {"mlp_hidden": "4"}, align=2)


if __name__ == "__main__":
    main()
