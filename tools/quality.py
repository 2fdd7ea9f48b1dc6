#!/usr/bin/python3
"""What bf16 and int8 cost against f32, measured on the C engine (make quality).

    /usr/bin/python3 tools/quality.py [--model models/default.safetensors]
        [--bin build/heptapod] [--precisions bf16,int8] [--pages 96] [--threads 2]

Every figure compares the engine in a precision with the same engine in f32, through
the CLI (`heptapod forward|generate --precision P`):

(a) bits per masked byte of the default model on the pages of `make evaluate`
    (tools/evaluate.py: the same texts, pages, 15% and 50% masks); the target is to
    stay within 0.02 bits of f32 on every text and ratio.
(b) greedy grids: a fixed set of requests on the default model (an empty 16x64 page,
    held-out pages with their first rows given, pages with half their cells given),
    generated at temperature 0 with 8 iterations and a fixed seed for the re-mask
    noise; the figure is the cells of the final grid that differ from f32's, over
    the open cells.
(c) logits on the fixture models (tests/fixtures/*.safetensors of arch heptapod-v1),
    on fixed random grids of a few sizes: the relative error, max over cells of
    max_v |z - z_f32| / max_v |z_f32| (each cell against its own largest f32 logit,
    which keeps near-zero logits from dominating), the largest absolute difference,
    and how often the most probable id is f32's.

A precision the engine refuses (not built in) is reported as "n/a: <message>". The
exit status is 1 when a precision that runs misses the 0.02-bit target.
"""

import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as corpus  # noqa: E402
import evaluate as ev  # noqa: E402

TARGET_BITS = 0.02
GREEDY_ITERATIONS = 8
FIXTURE_SIZES = ((1, 1), (2, 7), (5, 5), (8, 12), (16, 16))


def header(path):
    """The safetensors metadata of path (no tensors read)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def forward(binary, model, grids, V, threads, precision):
    """Logits [sum(h*w), V] of a list of int grids in one `heptapod forward` call."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "grids.json"), os.path.join(tmp, "logits.f32")
        with open(src, "w") as f:
            json.dump([g.tolist() for g in grids], f)
        r = subprocess.run([binary, "forward", "--model", model, "--input", src, "--output",
                            dst, "--binary", "--threads", str(threads), "--precision",
                            precision], stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise ev.EngineRefused(r.stderr.strip())
        return np.fromfile(dst, dtype="<f4").reshape(-1, V)


def generate(binary, model, given, seed, threads, precision):
    """The final grid of a greedy `heptapod generate` on given (-1: open)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "given.json")
        with open(src, "w") as f:
            json.dump(given.tolist(), f)
        r = subprocess.run([binary, "generate", "--model", model, "--given", src,
                            "--iterations", str(GREEDY_ITERATIONS), "--temperature", "0",
                            "--seed", str(seed), "--threads", str(threads), "--precision",
                            precision, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            raise ev.EngineRefused(r.stderr.strip())
        return np.array(json.loads(r.stdout.strip().splitlines()[-1])["grid"])


def engine_name(label):
    """The precision behind a column: "f32*" is f32 again (--precisions f32, a check
    that the tool finds no difference where there is none)."""
    return label.rstrip("*")


def fmt_na(msg):
    """"heptapod forward: PATH: fault" -> "n/a: fault" (the command and the path off)."""
    parts = msg.split(": ")
    if parts[0].startswith("heptapod ") and len(parts) > 1:
        parts = parts[1:]
    if len(parts) > 1 and os.path.exists(parts[0]):
        parts = parts[1:]
    return "n/a: " + ": ".join(parts)


# --- (a) bits per byte --------------------------------------------------------------

def bits_per_byte(args, precs, V, mask):
    """{precision: [(text, ratio, cells, bits)] or error message}."""
    out = {p: [] for p in precs}
    for text in args.texts.split(","):
        allpages = corpus.pages(corpus.load_split(args.data, text), ev.HEIGHT, ev.WIDTH)
        pick = np.unique(np.linspace(0, len(allpages) - 1, min(args.pages, len(allpages)))
                         .round().astype(int))
        pages = allpages[pick].astype(np.int64)
        for ri, ratio in enumerate(ev.RATIOS):
            masked = corpus.masked_cells(pages, ratio, seed=7000 + ri)  # evaluate.py's masks
            inputs = np.where(masked, mask, pages)
            for p in precs:
                if isinstance(out[p], str):
                    continue
                try:
                    z = ev.engine_logits(args.bin, args.model, inputs, V, args.threads,
                                         engine_name(p))
                except ev.EngineRefused as e:
                    out[p] = str(e)
                    continue
                bits, _, _ = ev.score(ev.log_softmax(z[masked]), pages[masked])
                out[p].append((text, ratio, int(masked.sum()), bits))
            print(f"  ... {text} {int(ratio * 100)}% done", file=sys.stderr, flush=True)
    return out


def report_bits(res, precs):
    print(f"(a) bits per masked byte on the `make evaluate` pages (target: within "
          f"{TARGET_BITS} bits of f32)")
    if isinstance(res["f32"], str):
        print(f"  f32 {fmt_na(res['f32'])}")
        return False
    others = [p for p in precs if p != "f32"]
    print(f"  {'text':8} {'mask':>4} {'cells':>6} | {'f32':>6} | " +
          " | ".join(f"{p + ' (diff)':>17}" for p in others))
    for i, (text, ratio, cells, bits) in enumerate(res["f32"]):
        row = f"  {text:8} {int(ratio * 100):3}% {cells:6} | {bits:6.3f} |"
        for p in others:
            if isinstance(res[p], str):
                row += f" {'n/a':>17} |"
            else:
                b = res[p][i][3]
                row += f" {b:8.3f} ({b - bits:+.3f}) |"
        print(row.rstrip("|").rstrip())
    ok = True
    for p in others:
        if isinstance(res[p], str):
            print(f"  {p}: {fmt_na(res[p])}")
            continue
        worst = max(abs(r[3] - f[3]) for r, f in zip(res[p], res["f32"]))
        met = worst <= TARGET_BITS
        ok &= met
        print(f"  {p}: largest |diff| {worst:.4f} bits ({'met' if met else 'MISSED'})")
    return ok


# --- (b) greedy grids ----------------------------------------------------------------

def greedy_requests(args):
    """[(name, given [16, 64] with -1 for open cells, seed)]: a fixed set."""
    H, W = ev.HEIGHT, ev.WIDTH
    reqs = [("empty page", np.full((H, W), -1), 0)]
    for text, n in (("heldout", 4), ("moby", 2)):
        pages = corpus.pages(corpus.load_split(args.data, text), H, W)
        pick = np.linspace(0, len(pages) - 1, n + 2).round().astype(int)[1:-1]
        for k, i in enumerate(pick):
            g = pages[i].astype(np.int64)
            top = g.copy()
            top[4:] = -1  # the first 4 rows given: continue the page
            reqs.append((f"{text} page {i}, rows 1-4 given", top, k + 1))
            if text == "heldout" and k < 2:
                half = np.where(corpus.masked_cells(g[None], 0.5, seed=9000 + k)[0], -1, g)
                reqs.append((f"{text} page {i}, half given", half, k + 11))
    return reqs


def greedy(args, precs):
    reqs = greedy_requests(args)
    grids = {p: [] for p in precs}
    for p in precs:
        for name, given, seed in reqs:
            try:
                grids[p].append(generate(args.bin, args.model, given, seed, args.threads,
                                         engine_name(p)))
            except ev.EngineRefused as e:
                grids[p] = str(e)
                break
        print(f"  ... greedy grids in {p} done", file=sys.stderr, flush=True)
    print(f"(b) greedy grids ({GREEDY_ITERATIONS} iterations, temperature 0, seeded re-mask "
          f"noise): cells of the final grid that differ from f32's")
    if isinstance(grids["f32"], str):
        print(f"  f32 {fmt_na(grids['f32'])}")
        return
    others = [p for p in precs if p != "f32"]
    print(f"  {'request':36} {'open':>5} | " + " | ".join(f"{p:>14}" for p in others))
    total = {p: 0 for p in others}
    opened = 0
    for i, (name, given, _) in enumerate(reqs):
        n_open = int((given < 0).sum())
        opened += n_open
        row = f"  {name:36} {n_open:5} |"
        for p in others:
            if isinstance(grids[p], str):
                row += f" {'n/a':>14} |"
                continue
            d = int((grids[p][i] != grids["f32"][i]).sum())
            total[p] += d
            row += f" {d:5} ({100 * d / n_open:5.1f}%) |"
        print(row.rstrip("|").rstrip())
    for p in others:
        if isinstance(grids[p], str):
            print(f"  {p}: {fmt_na(grids[p])}")
        else:
            same = sum(bool((a == b).all()) for a, b in zip(grids[p], grids["f32"]))
            print(f"  {p}: {total[p]} of {opened} open cells differ "
                  f"({100 * total[p] / opened:.1f}%); {same} of {len(reqs)} grids identical")


# --- (c) logits on the fixture models ------------------------------------------------

def fixture_logits(args, precs):
    print("(c) logits on the fixture models: max over cells of max|z - z_f32| / max|z_f32|; "
          "max |z - z_f32|; top-1 agreement with f32")
    others = [p for p in precs if p != "f32"]
    print(f"  {'model':28} {'cells':>5} | " + " | ".join(f"{p:>27}" for p in others))
    refused, other = {}, []
    for path in sorted(glob.glob(os.path.join(args.fixtures, "*.safetensors"))):
        md = header(path)
        if md.get("arch") != "heptapod-v1":  # another architecture: no grid forward
            other.append(f"{os.path.basename(path)} ({md.get('arch')})")
            continue
        V, mh, mw = int(md["vocab_size"]), int(md["max_height"]), int(md["max_width"])
        rng = np.random.default_rng(5)
        grids = [rng.integers(0, V, (min(h, mh), min(w, mw))) for h, w in FIXTURE_SIZES]
        cells = sum(g.size for g in grids)
        try:
            zf = forward(args.bin, path, grids, V, args.threads, "f32")
        except ev.EngineRefused as e:
            print(f"  {os.path.basename(path):28} {cells:5} | f32 {fmt_na(str(e))}")
            continue
        row = f"  {os.path.basename(path):28} {cells:5} |"
        for p in others:
            if p in refused:
                row += f" {'n/a':>27} |"
                continue
            try:
                z = forward(args.bin, path, grids, V, args.threads, engine_name(p))
            except ev.EngineRefused as e:
                refused[p] = str(e)
                row += f" {'n/a':>27} |"
                continue
            diff = np.abs(z.astype(np.float64) - zf)
            scale = np.maximum(np.abs(zf).max(-1), 1e-30)
            rel = float((diff.max(-1) / scale).max())
            top1 = float((z.argmax(-1) == zf.argmax(-1)).mean())
            row += f" {rel:9.2e} {diff.max():8.2e} {100 * top1:6.1f}% |"
        print(row.rstrip("|").rstrip())
    for p, msg in refused.items():
        print(f"  {p}: {fmt_na(msg)}")
    if other:
        print(f"  not heptapod-v1, left out: {', '.join(other)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default.safetensors")
    ap.add_argument("--bin", default="build/heptapod")
    ap.add_argument("--data", default="data")
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--precisions", default="bf16,int8",
                    help="compared with f32 (f32 itself: a check of the tool, all zeros)")
    ap.add_argument("--texts", default="heldout,moby,gpl3")
    ap.add_argument("--pages", type=int, default=96, help="pages per text (at most)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="parts to leave out: a comma list of a, b, c")
    args = ap.parse_args()
    asked = [p for p in args.precisions.split(",") if p]
    precs = ["f32"] + [p + "*" if p == "f32" else p for p in asked]
    bad = [p for p in asked if p not in ("f32", "bf16", "int8")]
    if bad:
        ap.error(f"--precisions: not bf16 or int8: {bad}")
    md = header(args.model)
    V, mask = int(md["vocab_size"]), int(md["mask_token"])
    print(f"quality of {', '.join(precs[1:])} against f32: {args.model}, engine {args.bin}, "
          f"{args.threads} threads")
    ok = True
    if "a" not in args.skip:
        ok = report_bits(bits_per_byte(args, precs, V, mask), precs)
    if "b" not in args.skip:
        greedy(args, precs)
    if "c" not in args.skip:
        fixture_logits(args, precs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
