#!/usr/bin/python3
"""Turns a state dict of the seed package's NonLinearTransformer into a checkpoint.

    /usr/bin/python3 tools/import_seed.py STATE_DICT.pt OUT.safetensors [options]

The package is *nonlinear-transformer* 0.0.3 (github.com/kyegomez/HeptapodLM); its
models run in the engine as the architecture `nonlinear-transformer-0.0.3` of
docs/MODEL.md section 7. The tensors keep the package's names and values (written as
F32); the metadata holds what the state dict tells (vocab_size, dim, depth) and what it
cannot, from the options below, whose defaults are the package's own:

  --window R          radius of every block's attention (NonLinearTransformerBlock's
                      window_size, which NonLinearTransformer leaves at 1)
  --model-window R    radius of the attention after every block (NonLinearTransformer's
                      window_size, default 3)
  --filter-thres F    Autoregressive2DWrapper.generate's filter_thres (0.9): the
                      checkpoint's default top_k = int((1 - F) * vocab_size)
  --mask-token ID     the token that fills cells generation has not reached
                      (Autoregressive2DWrapper's pad_value, 0)
  --max-size N        largest grid side served (Autoregressive2DWrapper's
                      matrix_size, 32); grids are square
  --tokenizer T       `byte` if ids 0..255 are bytes (vocab_size >= 256), else `none`

STATE_DICT.pt is what torch.save(model.state_dict()) wrote, for the model itself or for
an Autoregressive2DWrapper around it (keys under `net.`); a dict holding it under
`state_dict` or `model` is accepted too. The file is read with weights_only loading
where torch has it. Exits non-zero with a message naming the fault.
"""

import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heptapod_ref as ref  # noqa: E402

ARCH = "nonlinear-transformer-0.0.3"


def fail(msg):
    sys.exit(f"import_seed: {msg}")


def load_state_dict(path):
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch without weights_only
            obj = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unpickling fault is the file's
        fail(f"{path}: cannot read a state dict: {e}")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        fail(f"{path}: not a state dict (a dict of tensors)")
    sd = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            fail(f"{path}: entry {k!r} is not a tensor")
        sd[k[4:] if k.startswith("net.") else k] = v
    return sd


def package_inv_freq(dim):
    # Rotary2DEmbedding's buffer, as the package computes it.
    return 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))


def check(path, sd):
    """(vocab, dim, depth) of a NonLinearTransformer state dict; every tensor checked."""
    if "embedding.weight" not in sd:
        fail(f"{path}: no embedding.weight: not a NonLinearTransformer state dict")
    emb = sd["embedding.weight"]
    if emb.dim() != 2:
        fail(f"{path}: embedding.weight has shape {list(emb.shape)}, expected [vocab, dim]")
    V, D = emb.shape
    if D % 2:
        fail(f"{path}: dim {D} is odd; the package itself cannot run such a model")
    blocks = set()
    for k in sd:
        m = re.match(r"blocks\.(\d+)\.", k)
        if m:
            blocks.add(int(m.group(1)))
    depth = max(blocks) + 1 if blocks else 0
    if depth == 0 or blocks != set(range(depth)):
        fail(f"{path}: blocks {sorted(blocks)} are not 0..depth-1")
    want = {"embedding.weight": [V, D], "rotary_emb.inv_freq": [D // 2],
            "to_logits.weight": [V, D], "to_logits.bias": [V]}
    for l in range(depth):
        want.update({f"blocks.{l}.norm.gamma": [D], f"blocks.{l}.norm.beta": [D],
                     f"blocks.{l}.mlp.0.weight": [4 * D, D], f"blocks.{l}.mlp.0.bias": [4 * D],
                     f"blocks.{l}.mlp.2.weight": [D, 4 * D], f"blocks.{l}.mlp.2.bias": [D]})
    extra = sorted(set(sd) - set(want))
    if extra:
        fail(f"{path}: unexpected tensors {extra[:5]}")
    for name, shape in want.items():
        if name not in sd:
            # Buffers the package fills itself; a state dict saved without
            # buffers still describes the same model.
            if name == "rotary_emb.inv_freq":
                sd[name] = package_inv_freq(D)
            elif name.endswith("norm.beta"):
                sd[name] = torch.zeros(D)
            else:
                fail(f"{path}: missing tensor {name}")
            print(f"import_seed: {name} missing, set to the package's value", file=sys.stderr)
        t = sd[name]
        if list(t.shape) != shape:
            fail(f"{path}: {name} has shape {list(t.shape)}, expected {shape}")
        if not t.is_floating_point():
            fail(f"{path}: {name} is {t.dtype}, not floating point")
        if not torch.isfinite(t).all():
            fail(f"{path}: {name} holds non-finite values")
    if not torch.equal(sd["rotary_emb.inv_freq"].float(), package_inv_freq(D)):
        print("import_seed: rotary_emb.inv_freq differs from the package's formula; "
              "its stored values are used", file=sys.stderr)
    return V, D, depth, list(want)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("state_dict")
    ap.add_argument("out")
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--model-window", type=int, default=3)
    ap.add_argument("--filter-thres", type=float, default=0.9)
    ap.add_argument("--mask-token", type=int, default=0)
    ap.add_argument("--max-size", type=int, default=32)
    ap.add_argument("--tokenizer", choices=("none", "byte"), default="none")
    a = ap.parse_args(argv)

    sd = load_state_dict(a.state_dict)
    V, D, depth, order = check(a.state_dict, sd)
    if a.window < 0 or a.model_window < 0:
        fail("window radii must be >= 0")
    if not 0 <= a.mask_token < V:
        fail(f"--mask-token {a.mask_token} is outside the vocabulary 0..{V - 1}")
    if a.max_size < 1:
        fail("--max-size must be >= 1")
    if a.tokenizer == "byte" and V < 256:
        fail(f"--tokenizer byte needs vocab_size >= 256, not {V}")
    # The package's own arithmetic: k = int((1 - thres) * V); k < 1 makes its
    # generate fail, so the checkpoint keeps the closest working filter.
    top_k = int((1 - a.filter_thres) * V)
    if top_k < 1:
        print(f"import_seed: filter_thres {a.filter_thres} keeps no token of {V}; top_k 1",
              file=sys.stderr)
        top_k = 1
    top_k = min(top_k, V)
    md = {"format": "heptapod", "arch": ARCH, "vocab_size": str(V), "dim": str(D),
          "depth": str(depth), "window": str(a.window), "model_window": str(a.model_window),
          "mask_token": str(a.mask_token), "max_height": str(a.max_size),
          "max_width": str(a.max_size), "tokenizer": a.tokenizer, "order": "raster",
          "top_k": str(top_k), "norm_eps": "1e-05",
          "source": f"nonlinear-transformer 0.0.3 state dict {os.path.basename(a.state_dict)}"}
    ref.write_safetensors(a.out, [(n, "F32", sd[n].shape, ref.tensor_bytes(sd[n], "F32"))
                                  for n in order], md)
    print(f"import_seed: wrote {a.out}: vocab {V}, dim {D}, depth {depth}, window {a.window}, "
          f"model_window {a.model_window}, top_k {top_k}", file=sys.stderr)


if __name__ == "__main__":
    main()
