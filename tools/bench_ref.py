#!/usr/bin/python3
"""Times the PyTorch reference forward pass (MODEL.md section 3) on random tokens.

    /usr/bin/python3 tools/bench_ref.py --model CKPT --height 16 --width 64 \\
        --batch 4 --threads 1 [--seconds 10]

Prints one machine-readable line:
    ref cells_per_s=... ms_per_batch=... batches=... height=... width=... batch=... threads=...
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heptapod_ref as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="measuring time after the warm-up (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if min(args.height, args.width, args.batch, args.threads) < 1 or args.seconds <= 0:
        ap.error("height, width, batch and threads must be >= 1, seconds > 0")

    torch.set_num_threads(args.threads)
    model, _ = ref.load_checkpoint(args.model)
    hp = model.hp
    g = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, hp["vocab_size"], (args.batch, args.height, args.width),
                           generator=g)
    with torch.inference_mode():
        model(tokens)  # warm-up: allocator, thread pool
        n, t0 = 0, time.perf_counter()
        while True:
            model(tokens)
            n += 1
            el = time.perf_counter() - t0
            if el >= args.seconds:
                break
    cells = n * args.batch * args.height * args.width
    print(f"ref cells_per_s={cells / el:.1f} ms_per_batch={1000 * el / n:.3f} batches={n} "
          f"height={args.height} width={args.width} batch={args.batch} "
          f"threads={args.threads} dim={hp['dim']} depth={hp['depth']}", flush=True)


if __name__ == "__main__":
    main()
