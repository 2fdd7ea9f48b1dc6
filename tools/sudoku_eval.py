#!/usr/bin/python3
"""Solve rate of the Sudoku model on held-out puzzles, by grade, order and iterations.

    /usr/bin/python3 tools/sudoku_eval.py --model models/sudoku.safetensors \\
        [--puzzles tools/sudoku/puzzles.txt] [--orders confidence,margin] \\
        [--iterations 16,32,64] [--remask 0,0.1] [--bin build/bench/sudoku_solve]

The puzzles come from the pinned npm generator sudoku-gen (tools/sudoku/puzzles.js),
not from the training generator. Each one is checked first with the project's own
solver (tools/sudoku.py): only puzzles with exactly one solution, equal to the one the
generator gives, are kept, and the kept count per grade is printed. The model then
solves every kept puzzle through the C engine (bench/sudoku_solve: eng_step, greedy,
batched). A puzzle counts as solved when every open cell holds its solution digit, so
every row, column and box holds 1-9 once and the given cells are unchanged.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sudoku  # noqa: E402

GRADES = ("easy", "medium", "hard", "expert")


def load_puzzles(path):
    """[(grade, puzzle str, solution str)] of the file, unique-solution puzzles only,
    and {grade: (kept, total)}."""
    kept, counts = [], {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                grade, puzzle, solution = line.split()
                grid = sudoku.parse_puzzle(puzzle)
            except ValueError as e:
                sys.exit(f"{path}:{n}: {e}")
            k, t = counts.get(grade, (0, 0))
            found, sol = sudoku.count_solutions(grid)
            ok = found == 1 and "".join(str(v) for v in sol.reshape(-1)) == solution
            counts[grade] = (k + ok, t + 1)
            if ok:
                kept.append((grade, puzzle, solution))
    return kept, counts


def judge(puzzle, solution, answer):
    """True if answer fills every open cell of puzzle correctly (givens unchanged)."""
    if len(answer) != 81 or answer != solution:
        return False
    return all(p in ".0" or p == a for p, a in zip(puzzle, answer)) and \
        sudoku.is_valid_grid(sudoku.parse_puzzle(answer))


def share(solved, pick):
    """'97.0% (97/100)' of the solved flags where pick is true."""
    n = sum(pick)
    ok = sum(s for s, p in zip(solved, pick) if p)
    return f"{100.0 * ok / n:.1f}% ({ok}/{n})" if n else "-"


def run(binary, model, puzzles, order, iterations, remask, threads, batch):
    cmd = [binary, "--model", model, "--order", order, "--iterations", str(iterations),
           "--threads", str(threads), "--batch", str(batch), "--remask", remask]
    inp = "".join(p + "\n" for _, p, _ in puzzles)
    r = subprocess.run(cmd, input=inp, capture_output=True, text=True)
    if r.returncode:
        return None, r.stderr.strip()
    return r.stdout.split("\n")[:len(puzzles)], ""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/sudoku.safetensors")
    ap.add_argument("--puzzles", default=os.path.join(here, "sudoku", "puzzles.txt"))
    ap.add_argument("--bin", default="build/bench/sudoku_solve")
    ap.add_argument("--orders", default="confidence,margin,raster")
    ap.add_argument("--iterations", default="16,32,64")
    ap.add_argument("--remask", default="0",
                    help="re-opened share(s) of committed cells per iteration (MODEL.md 5.2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--limit", type=int, default=0, help="at most this many puzzles a grade")
    args = ap.parse_args()

    puzzles, counts = load_puzzles(args.puzzles)
    if args.limit:
        taken, short = {}, []
        for p in puzzles:
            taken[p[0]] = taken.get(p[0], 0) + 1
            if taken[p[0]] <= args.limit:
                short.append(p)
        puzzles = short
    grades = [g for g in GRADES if g in counts] + sorted(set(counts) - set(GRADES))
    tiers = [sudoku.logic_tier(sudoku.parse_puzzle(p)) for _, p, _ in puzzles]
    print(f"puzzles: {args.puzzles}")
    for g in grades:
        k, t = counts[g]
        blanks = [p.count(".") for gg, p, _ in puzzles if gg == g]
        span = f"{min(blanks)}-{max(blanks)} blanks" if blanks else "none kept"
        mine = [x for (gg, _, _), x in zip(puzzles, tiers) if gg == g]
        need = ", ".join(f"{mine.count(x)} {x}" for x in sudoku.TIERS if x in mine)
        print(f"  {g}: {k} of {t} have a unique solution ({span}); they need: {need}")
    print(f"model: {args.model}\n")
    print("| order | iterations | remask | " + " | ".join(grades) + " | seconds |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in grades) + " | --- |")
    runs = [(o, int(k), r) for o in args.orders.split(",")
            for k in args.iterations.split(",") for r in args.remask.split(",")]
    by_tier = []
    for order, k, remask in runs:
        t0 = time.time()
        answers, err = run(args.bin, args.model, puzzles, order, k, remask, args.threads,
                           args.batch)
        secs = time.time() - t0
        if answers is None:
            print(f"| {order} | {k} | {remask} | " + " | ".join("-" for _ in grades) +
                  f" | ({err}) |", flush=True)
            continue
        solved = [judge(p, s, a) for (_, p, s), a in zip(puzzles, answers)]
        cells = [share(solved, [gg == g for gg, _, _ in puzzles]) for g in grades]
        print(f"| {order} | {k} | {remask} | " + " | ".join(cells) + f" | {secs:.0f} |",
              flush=True)
        by_tier.append(f"| {order} | {k} | {remask} | " + " | ".join(
            share(solved, [x == t for x in tiers]) for t in sudoku.TIERS) + " |")
    # The same runs by the deduction a puzzle needs (tools/sudoku.py logic_tier).
    print("\n| order | iterations | remask | " + " | ".join(sudoku.TIERS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in sudoku.TIERS) + " |")
    print("\n".join(by_tier))


if __name__ == "__main__":
    sys.exit(main())
