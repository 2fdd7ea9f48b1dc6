#!/usr/bin/python3
"""Times the PyTorch reference forward pass (MODEL.md section 3) on random tokens.

    /usr/bin/python3 tools/bench_ref.py --model CKPT --height 16 --width 64 \\
        --batch 4 --threads 1 [--seconds 10]
    /usr/bin/python3 tools/bench_ref.py --model CKPT --height 32 --width 32 \\
        --threads 1,2 --blas-threads 2 --precision f32,int8 --qengine onednn,qnnpack \\
        --repeats 5 --seconds 3

Prints one machine-readable line per setting (torch threads x precision x quantized
engine):
    ref cells_per_s=... ms_per_batch=... batches=... height=... width=... batch=...
        threads=... blas_threads=... precision=... qengine=... spread_pct=... model=...

- --threads: torch's own (OpenMP) threads, torch.set_num_threads; a comma list runs
  each in turn.
- --blas-threads: OpenBLAS's threads (OPENBLAS_NUM_THREADS, read when torch loads
  OpenBLAS, so set here before the import). Torch's f32 Linear layers are OpenBLAS
  sgemm calls; the rest of the forward runs on torch's threads. Unset, OpenBLAS takes
  one thread per core.
- --precision int8: torch.ao.quantization.quantize_dynamic on every nn.Linear (int8
  weights, activations quantized on the fly), on each --qengine that this torch
  supports (Debian's 1.13: onednn and qnnpack; no fbgemm). The int8 Linear layers
  do not call OpenBLAS.

With --repeats R the measuring time is cut into R chunks and the settings are
interleaved chunk by chunk, so that a change in the machine's load falls on all of
them alike; cells_per_s is the median over the chunks. A setting that has used 1.5x
its measuring time stops early (chunks= says how many it had).
"""

import argparse
import os
import statistics
import sys
import time


def int_list(s):
    out = [int(x) for x in s.split(",") if x]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers >= 1: {s!r}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int_list, default=[1],
                    help="torch threads, a comma list (default 1)")
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="OpenBLAS threads (default: OPENBLAS_NUM_THREADS or one per core)")
    ap.add_argument("--precision", default="f32", help="comma list of f32, int8")
    ap.add_argument("--qengine", default="onednn",
                    help="quantized engines for int8, a comma list (default onednn)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="measuring time per setting after the warm-up (default 10)")
    ap.add_argument("--repeats", type=int, default=1, help="chunks per setting (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    precisions = args.precision.split(",")
    if min(args.height, args.width, args.batch, args.repeats) < 1 or args.seconds <= 0:
        ap.error("height, width, batch and repeats must be >= 1, seconds > 0")
    if any(p not in ("f32", "int8") for p in precisions):
        ap.error(f"--precision: expected f32 and/or int8, got {args.precision!r}")
    if args.blas_threads < 0:
        ap.error("--blas-threads must be >= 1")

    # OpenBLAS reads its thread count once, when torch loads it.
    if args.blas_threads:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    import torch
    from torch import nn
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import heptapod_ref as ref
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")

    model, _ = ref.load_checkpoint(args.model)
    hp = model.hp
    g = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, hp["vocab_size"], (args.batch, args.height, args.width),
                           generator=g)

    # (precision, quantized engine, module) for each variant that can run here.
    variants = []
    for p in precisions:
        if p == "f32":
            variants.append(("f32", "-", model))
            continue
        for qe in args.qengine.split(","):
            if qe not in torch.backends.quantized.supported_engines:
                print(f"ref model={args.model} precision=int8 qengine={qe} status=n/a "
                      f"message=not supported by "
                      f"this torch (supported: {torch.backends.quantized.supported_engines})",
                      flush=True)
                continue
            torch.backends.quantized.engine = qe
            q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
            if qe == "qnnpack":  # it ignores reduce_range and warns on every call; version
                for mod in q.modules():  # 3 makes the same call without the flag
                    if hasattr(mod, "_packed_params"):
                        mod.version = 3
            variants.append(("int8", qe, q))

    settings = [(t, v) for v in variants for t in args.threads]
    times = {i: [] for i in range(len(settings))}
    counts = {i: 0 for i in range(len(settings))}
    chunk = args.seconds / args.repeats
    spent = {i: 0.0 for i in range(len(settings))}
    with torch.inference_mode():
        for p, qe, m in variants:  # warm-up: allocator, packed weights
            if qe != "-":
                torch.backends.quantized.engine = qe
            m(tokens)
        for _ in range(args.repeats):
            for i, (t, (p, qe, m)) in enumerate(settings):
                # A setting far slower than planned (an oversubscribed one on a busy
                # machine can take seconds per forward) stops early: the median of
                # the chunks it had.
                if spent[i] >= 1.5 * args.seconds:
                    continue
                torch.set_num_threads(t)
                if qe != "-":
                    torch.backends.quantized.engine = qe
                n, t0 = 0, time.perf_counter()
                while True:
                    m(tokens)
                    n += 1
                    el = time.perf_counter() - t0
                    if el >= chunk:
                        break
                times[i].append(el / n)
                counts[i] += n
                spent[i] += el
    cells = args.batch * args.height * args.width
    for i, (t, (p, qe, m)) in enumerate(settings):
        per = statistics.median(times[i])
        spread = (max(times[i]) - min(times[i])) / per
        print(f"ref cells_per_s={cells / per:.1f} ms_per_batch={1000 * per:.3f} "
              f"batches={counts[i]} chunks={len(times[i])} height={args.height} width={args.width} batch={args.batch} "
              f"threads={t} blas_threads={blas} precision={p} qengine={qe} "
              f"spread_pct={100 * spread:.1f} dim={hp['dim']} depth={hp['depth']} model={args.model}",
              flush=True)


if __name__ == "__main__":
    main()
