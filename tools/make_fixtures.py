#!/usr/bin/python3
"""Writes the parity fixtures of tests/fixtures from the reference of MODEL.md.

    /usr/bin/python3 tools/make_fixtures.py tests/fixtures

Everything is deterministic (fixed seeds): random-weight checkpoints, forward cases
(token grids and the reference logits) and greedy generation cases (the grid after each
iteration). Running it again rewrites identical files. See tests/fixtures/README.md.
"""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heptapod_ref as ref  # noqa: E402

# Greedy generation must not hinge on float noise: every argmax margin (logits) and every
# confidence gap at a re-mask boundary must exceed this, or another seed is tried.
GEN_MARGIN = 1e-3


def meta(**kw):
    md = {"format": "heptapod", "arch": "heptapod-v1", "tokenizer": "none",
          "max_height": "32", "max_width": "32"}
    md.update({k: str(v) for k, v in kw.items()})
    return md


MODELS = {
    # (a) different windows per layer, mlp_hidden != 4*D.
    "small": meta(vocab_size=24, dim=32, depth=2, heads=2, window="1,2", dilation=1,
                  mlp_hidden=48, mask_token=23),
    # (b) r = 0, dilation 2 and a global layer; non-default rope_base and norm_eps.
    "dilated_global": meta(vocab_size=19, dim=24, depth=3, heads=3, window="2,0,global",
                           dilation="2,1,1", mlp_hidden=40, rope_base=100, norm_eps="1e-06",
                           mask_token=0),
    # (e) byte tokenizer for the CLI and server.
    "byte": meta(vocab_size=257, dim=32, depth=2, heads=4, window=2, mask_token=256,
                 tokenizer="byte", max_height=32, max_width=128),
    # Greedy generation: larger weights so the outputs are far from uniform.
    "gen": meta(vocab_size=20, dim=16, depth=2, heads=2, window="global,1", mlp_hidden=24,
                mask_token=19, max_height=16, max_width=16),
    # (f) the optional absolute position table, on grids smaller than the table.
    "pos_emb": meta(vocab_size=12, dim=16, depth=2, heads=2, window="global,1", mlp_hidden=24,
                    mask_token=11, max_height=9, max_width=7),
    "byte_gen": meta(vocab_size=257, dim=16, depth=2, heads=2, window="2,global",
                     mlp_hidden=32, mask_token=256, tokenizer="byte", max_height=16,
                     max_width=64),
}

# Forward cases: with every weight N(0, 0.02) attention is nearly uniform and GELU nearly
# linear, so a wrong RoPE or a tanh GELU would move the logits by less than the
# tolerance. These scales make q.k and the MLP pre-activations O(1); check_mutations
# proves that such mistakes fail the fixtures.
FWD_STD = 0.1
FWD_STDS = {"tok_emb.weight": 1.0, "qkv.weight": 0.3, "fc1.weight": 0.3,
            "fc2.weight": 0.1, "proj.weight": 0.1, "head.weight": 0.3}

GEN_STDS = {"tok_emb.weight": 1.0, "head.weight": 1.0, "qkv.weight": 0.4,
            "proj.weight": 0.3, "fc1.weight": 0.3, "fc2.weight": 0.3}


def fmt(x):
    """JSON text for nested lists of ints and floats; floats to 8 significant digits."""
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(fmt(e) for e in x) + "]"
    if isinstance(x, bool):
        raise TypeError("bool in fixture")
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError("non-finite value in fixture")
        return format(x, ".8g")
    return json.dumps(x)


def write_json(path, obj):
    """One top-level key per line, grids with one row per line where they fit."""
    lines = []
    for k, v in obj.items():
        lines.append(f"  {json.dumps(k)}: {fmt(v)}")
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def grids_of(seed, sizes, V):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (h, w), generator=g) for h, w in sizes]


def logits_of(model, grids):
    out = []
    with torch.no_grad():
        for t in grids:
            out.append(model(t.unsqueeze(0))[0])
    return out


def _rope_swapped(H, W, dh, base, device=None):
    c, s = _ORIG["rope_tables"](W, H, dh, base, device)
    return c.transpose(0, 1), s.transpose(0, 1)


def _rope_off(H, W, dh, base, device=None):
    c, s = _ORIG["rope_tables"](H, W, dh, base, device)
    return torch.ones_like(c), torch.zeros_like(s)


def _rope_default_base(H, W, dh, base, device=None):
    return _ORIG["rope_tables"](H, W, dh, 10000.0 if base != 10000.0 else 100.0, device)


def _rope_interleaved(t, cos, sin):
    # Adjacent pairs (2j, 2j+1) instead of rotate-half; the angles stay per pair.
    sh = t.shape
    c = torch.cat([cos[..., : sh[-1] // 4], cos[..., sh[-1] // 2: 3 * sh[-1] // 4]], -1)
    s = torch.cat([sin[..., : sh[-1] // 4], sin[..., sh[-1] // 2: 3 * sh[-1] // 4]], -1)
    a = t.reshape(*sh[:-1], sh[-1] // 2, 2)
    x0, x1 = a[..., 0], a[..., 1]
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], -1).reshape(sh)


def _attn_unclipped(q, k, v, r, d):
    # Neighbours outside the grid counted as zero keys and values.
    if r == ref.GLOBAL:
        return _ORIG["local_attention"](q, k, v, r, d)
    B, nh, H, W, dh = q.shape
    p = d * r
    kp = torch.nn.functional.pad(k, (0, 0, p, p, p, p))
    vp = torch.nn.functional.pad(v, (0, 0, p, p, p, p))
    scores, vals = [], []
    for i in range(-r, r + 1):
        for j in range(-r, r + 1):
            ks = kp[:, :, p + d * i: p + d * i + H, p + d * j: p + d * j + W]
            scores.append((q * ks).sum(-1) / dh ** 0.5)
            vals.append(vp[:, :, p + d * i: p + d * i + H, p + d * j: p + d * j + W])
    pr = torch.softmax(torch.stack(scores, 0), 0)
    return sum(pr[n].unsqueeze(-1) * vals[n] for n in range(len(vals)))


def _attn_undilated(q, k, v, r, d):
    return _ORIG["local_attention"](q, k, v, r, 1)


def _attn_unscaled(q, k, v, r, d):
    return _ORIG["local_attention"](q * q.shape[-1] ** 0.5, k, v, r, d)


def _gelu_tanh(x, approximate="none"):
    return _ORIG["gelu"](x, approximate="tanh")


def _pos_off(table, H, W):
    return torch.zeros_like(table[:H, :W])


def _pos_packed(table, H, W):
    # rows of the table taken as if it were as wide as the grid
    return table.reshape(-1, table.shape[-1])[:H * W].reshape(H, W, -1)


_ORIG = {"rope_tables": ref.rope_tables, "rope2d": ref.rope2d,
         "position_rows": ref.position_rows,
         "local_attention": ref.local_attention, "gelu": torch.nn.functional.gelu}

# (name, module, attribute, replacement, applies(model hp) -> bool)
MUTATIONS = [
    ("rope rows/columns swapped", ref, "rope_tables", _rope_swapped, lambda hp: True),
    ("no rope", ref, "rope_tables", _rope_off, lambda hp: True),
    ("rope_base ignored", ref, "rope_tables", _rope_default_base,
     lambda hp: hp["rope_base"] != 10000.0),
    ("rope on adjacent pairs", ref, "rope2d", _rope_interleaved, lambda hp: True),
    ("border keys not clipped", ref, "local_attention", _attn_unclipped,
     lambda hp: any(r > 0 for r in hp["window"])),
    ("dilation ignored", ref, "local_attention", _attn_undilated,
     lambda hp: any(d > 1 and r > 0 for r, d in zip(hp["window"], hp["dilation"]))),
    ("no 1/sqrt(dh)", ref, "local_attention", _attn_unscaled, lambda hp: True),
    ("position table left out", ref, "position_rows", _pos_off, lambda hp: hp.get("pos_emb")),
    ("position table read at the grid's width", ref, "position_rows", _pos_packed,
     lambda hp: hp.get("pos_emb")),
]

# The tanh GELU differs from the erf form by a few 1e-4 relative, about the tolerance
# itself, so no fixture can fail it by a wide margin; it is measured and printed only.
# C implementations should use erff() and a unit test of their own.
INFO_MUTATIONS = [
    ("tanh GELU", torch.nn.functional, "gelu", _gelu_tanh, lambda hp: True),
]


def check_mutations(name, model, grids, z, tol):
    """Each plausible implementation mistake must move the logits by > 10x tolerance.
    Returns (smallest ratio of a MUTATIONS diff to tol, {info label: ratio})."""
    worst, info = [], {}
    for label, mod, attr, repl, applies in MUTATIONS + INFO_MUTATIONS:
        if not applies(model.hp):
            continue
        setattr(mod, attr, repl)
        try:
            zm = logits_of(model, grids)
        finally:
            setattr(mod, attr, _ORIG[attr])
        diff = max(float((a - b).abs().max()) for a, b in zip(zm, z))
        if (label, mod, attr, repl, applies) in INFO_MUTATIONS:
            info[label] = diff / tol
            continue
        if not diff > 10 * tol:
            raise RuntimeError(f"forward_{name}: mutation '{label}' moves logits by only "
                               f"{diff:.3g} (tolerance {tol:.3g})")
        worst.append(diff / tol)
    return min(worst), info


def forward_case(outdir, name, model_file, model, grids, note):
    z = logits_of(model, grids)
    zmax = max(float(t.abs().max()) for t in z)
    tol = 1e-4 * (1 + zmax)
    ratio, info = check_mutations(name, model, grids, z, tol)
    extra = "".join(f", {k} {v:.2f}x" for k, v in info.items())
    print(f"forward_{name}: max|Z| {zmax:.3g}, every mutation > {ratio:.0f}x tolerance{extra}")
    obj = {
        "note": note,
        "model": model_file,
        "grids": [t.tolist() for t in grids],
        "logits": [t.tolist() for t in z],
        "tolerance": float(format(tol, ".6g")),
    }
    path = os.path.join(outdir, f"forward_{name}.json")
    write_json(path, obj)
    return path


def gen_margins(trace, mask):
    """Smallest argmax margin and smallest confidence gap at a re-mask boundary."""
    arg_m, conf_m = math.inf, math.inf
    for it in trace:
        cells = list(it["conf"])
        z = it["logits"][cells].double().clone()
        z[:, mask] = -math.inf
        top2 = torch.topk(z, 2, dim=1).values
        arg_m = min(arg_m, float((top2[:, 0] - top2[:, 1]).min()))
        order, n = it["order"], it["n_keep"]
        if 0 < n < len(order):
            conf_m = min(conf_m, it["conf"][order[n]] - it["conf"][order[n - 1]])
    return arg_m, conf_m


def scattered(h, w, n, seed, V, avoid):
    """An [h][w] grid with n given cells at seeded random places, -1 elsewhere."""
    g = torch.Generator().manual_seed(seed)
    grid = [[-1] * w for _ in range(h)]
    for c in torch.randperm(h * w, generator=g)[:n].tolist():
        v = int(torch.randint(0, V - 1, (1,), generator=g))
        grid[c // w][c % w] = v if v < avoid else v + 1  # never the mask token
    return grid


def gen_cases(name):
    """(case name, height, width, given, iterations) for a generation model.

    Every case gives some cells: on an all-open grid every input token is the mask
    token, so all cells have the same logits in exact arithmetic (the model has no
    absolute position) and the re-mask order would be decided by rounding noise.
    """
    if name == "gen":
        V, mask = 20, 19
        return [
            ("gen_4x6_k1", 4, 6, scattered(4, 6, 4, 1, V, mask), 1),
            ("gen_5x7_k4", 5, 7, scattered(5, 7, 5, 2, V, mask), 4),
            ("gen_6x6_k3", 6, 6, scattered(6, 6, 8, 3, V, mask), 3),
            ("gen_1x9_k5", 1, 9, scattered(1, 9, 2, 4, V, mask), 5),
            ("gen_7x1_k2", 7, 1, scattered(7, 1, 2, 5, V, mask), 2),
            ("gen_3x4_k12", 3, 4, scattered(3, 4, 2, 6, V, mask), 12),
            ("gen_8x10_k6", 8, 10, scattered(8, 10, 12, 7, V, mask), 6),
        ]
    text = b"the grid"
    g = [[-1] * 12 for _ in range(3)]
    for i, b in enumerate(text):
        g[1][2 + i] = b
    g[0][0], g[2][11] = ord("A"), ord(".")
    return [("gen_byte_3x12_k4", 3, 12, g, 4)]


def make_gen_model(name):
    """Picks the first seed whose generation cases all clear GEN_MARGIN."""
    md = MODELS[name]
    hp = ref.parse_hparams(md)
    for seed in range(100, 200):
        model = ref.init_random(ref.HeptapodModel(hp), seed, std=0.1, overrides=GEN_STDS)
        model.eval()
        results, ok = [], True
        worst = (math.inf, math.inf)
        for case, h, w, given, k in gen_cases(name):
            trace = []
            grids = ref.generate(model, given, k, trace=trace)
            am, cm = gen_margins(trace, hp["mask_token"])
            worst = (min(worst[0], am), min(worst[1], cm))
            if am <= GEN_MARGIN or cm <= GEN_MARGIN:
                ok = False
                break
            results.append((case, h, w, given, k, grids, am, cm))
        if ok:
            return model, seed, results, worst
    raise RuntimeError(f"{name}: no seed in range gives margins above {GEN_MARGIN}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixtures.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    written = []

    def ckpt(name, model, md, dtype="F32"):
        f = f"{name}.safetensors"
        ref.save_checkpoint(os.path.join(outdir, f), model, md, dtype)
        loaded, _ = ref.load_checkpoint(os.path.join(outdir, f))  # logits from stored weights
        written.append(f)
        return f, loaded

    small = ref.init_random(ref.HeptapodModel(ref.parse_hparams(MODELS["small"])), 1,
                           std=FWD_STD, overrides=FWD_STDS)
    small_f, small_m = ckpt("small_f32", small, MODELS["small"])
    f16_f, f16_m = ckpt("small_f16", small, MODELS["small"], "F16")
    bf16_f, bf16_m = ckpt("small_bf16", small, MODELS["small"], "BF16")
    dg = ref.init_random(ref.HeptapodModel(ref.parse_hparams(MODELS["dilated_global"])), 2,
                           std=FWD_STD, overrides=FWD_STDS)
    dg_f, dg_m = ckpt("dilated_global", dg, MODELS["dilated_global"])
    byte = ref.init_random(ref.HeptapodModel(ref.parse_hparams(MODELS["byte"])), 3,
                           std=FWD_STD, overrides=FWD_STDS)
    byte_f, byte_m = ckpt("byte_f32", byte, MODELS["byte"])

    pos_hp = dict(ref.parse_hparams(MODELS["pos_emb"]), pos_emb=True)
    pos = ref.init_random(ref.HeptapodModel(pos_hp), 4, std=FWD_STD,
                          overrides=dict(FWD_STDS, **{"pos_emb.weight": 1.0}))
    pos_f, pos_m = ckpt("pos_emb", pos, MODELS["pos_emb"])

    V = 24
    cases = [
        ("square", small_f, small_m, grids_of(10, [(6, 6), (6, 6)], V),
         "two 6x6 grids (one batch), windows 1,2"),
        ("nonsquare", small_f, small_m, grids_of(11, [(9, 14)], V),
         "one 9x14 grid, windows 1,2"),
        ("tiny", small_f, small_m, grids_of(12, [(1, 1), (1, 7), (7, 1), (2, 2)], V),
         "1x1, 1x7, 7x1 and 2x2: radius 2 larger than the grid"),
        ("mixed_batch", small_f, small_m,
         grids_of(13, [(4, 4), (1, 1), (3, 8), (8, 3), (4, 4), (5, 5)], V),
         "grids of different sizes meant to be run in one call"),
        ("f16", f16_f, f16_m, grids_of(14, [(6, 6), (3, 5)], V),
         "F16 checkpoint; logits from the F16-rounded weights"),
        ("bf16", bf16_f, bf16_m, grids_of(14, [(6, 6), (3, 5)], V),
         "BF16 checkpoint; logits from the BF16-rounded weights"),
        ("dilated_global", dg_f, dg_m, grids_of(15, [(7, 9), (9, 7)], 19),
         "depth 3: r 2 with dilation 2, r 0, global; rope_base 100, norm_eps 1e-6"),
        ("dilated_global_small", dg_f, dg_m,
         grids_of(16, [(1, 1), (1, 5), (5, 1), (2, 3), (3, 3), (4, 6)], 19),
         "dilated window larger than the grid and global layer on small grids, mixed sizes"),
    ]
    text = [list(b"hello, world"), list(b"grid of text"), list(b"  0123456789"),
            [256] * 5 + list(b"mask") + [256] * 3]
    cases.append(("byte", byte_f, byte_m, [torch.tensor(text)],
                  "byte tokenizer, V = 257, a 4x12 grid of text with mask tokens (256)"))
    cases.append(("pos_emb", pos_f, pos_m, grids_of(17, [(9, 7), (3, 4), (1, 1), (9, 7)], 12),
                  "position table [9, 7, 16]: full-size grids and smaller ones in one batch"))
    for name, mf, m, grids, note in cases:
        written.append(os.path.basename(forward_case(outdir, name, mf, m, grids, note)))

    for gname in ("gen", "byte_gen"):
        model, seed, results, worst = make_gen_model(gname)
        f, loaded = ckpt(gname, model, MODELS[gname])
        for case, h, w, given, k, grids, am, cm in results:
            # The stored F32 file must reproduce the grids exactly.
            again = ref.generate(loaded, given, k)
            assert again == grids, f"{case}: reloaded model generates differently"
            # Nor may the ids depend on float32 rounding: float64 gives the same grids.
            m64 = ref.HeptapodModel(loaded.hp).double()
            m64.load_state_dict(loaded.state_dict())
            assert ref.generate(m64, given, k) == grids, f"{case}: float64 differs"
            obj = {
                "note": f"greedy (temperature 0); weights seed {seed}; smallest argmax "
                        f"margin {am:.4g}, smallest confidence gap at a re-mask boundary "
                        f"{'none' if math.isinf(cm) else format(cm, '.4g')}",
                "model": f, "height": h, "width": w, "given": given, "iterations": k,
                "temperature": 0, "mask_token": int(MODELS[gname]["mask_token"]),
                "grids": grids,
            }
            path = os.path.join(outdir, f"generate_{case[len('gen_'):]}.json")
            write_json(path, obj)
            written.append(os.path.basename(path))
        print(f"{gname}: seed {seed}, worst argmax margin {worst[0]:.4g}, "
              f"worst conf gap {worst[1]:.4g}")

    total = 0
    for f in written:
        size = os.path.getsize(os.path.join(outdir, f))
        total += size
        print(f"{size:9d}  {f}")
    print(f"{total:9d}  total")


if __name__ == "__main__":
    main()
