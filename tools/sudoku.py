#!/usr/bin/python3
"""Sudoku grids for training and checking the Sudoku model.

    /usr/bin/python3 tools/sudoku.py grids --count 5 --seed 1     print complete grids
    /usr/bin/python3 tools/sudoku.py solve 53..7....6..195...      count solutions (<= 2)
    /usr/bin/python3 tools/sudoku.py tier 53..7....6..195...       the deduction it needs

Complete grids come from randomized backtracking (a random candidate order in every
cell, cells filled most-constrained first), seeded, so a seed always gives the same
grids. Training draws from a pool of such grids and applies a random symmetry of
Sudoku to each draw (digit relabelling, row permutations inside each band, column
permutations inside each stack, band and stack permutations, transposition): every
symmetry maps a valid grid to a valid grid, and together they multiply the pool by
about 1.2e12 without its grids being limited to one equivalence class.

A grid is a numpy uint8 array [9, 9] of digits 1..9 (0 = blank in puzzles).
The solver (bitmask backtracking) counts solutions up to a limit, which is how the
evaluation keeps only puzzles with exactly one solution.
"""

import argparse
import sys
from itertools import combinations

import numpy as np

ALL = 0x3FE  # bits 1..9


def _box(y, x):
    return (y // 3) * 3 + x // 3


def _state(grid):
    """Row, column and box masks of the digits placed in grid (list of 81 ints)."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for c, v in enumerate(grid):
        if v:
            y, x = divmod(c, 9)
            bit = 1 << v
            if (rows[y] | cols[x] | boxes[_box(y, x)]) & bit:
                return None  # a digit repeated in a row, column or box
            rows[y] |= bit
            cols[x] |= bit
            boxes[_box(y, x)] |= bit
    return rows, cols, boxes


def _search(grid, rows, cols, boxes, rng, limit, found):
    """Backtracking over the most constrained blank cell. With rng, candidates are tried
    in random order and the first solution is kept in found; otherwise solutions are
    counted up to limit. Returns the number of solutions found (<= limit)."""
    best, best_cand, best_n = -1, 0, 10
    for c in range(81):
        if grid[c]:
            continue
        y, x = divmod(c, 9)
        cand = ALL & ~(rows[y] | cols[x] | boxes[_box(y, x)])
        n = bin(cand).count("1")
        if n < best_n:
            best, best_cand, best_n = c, cand, n
            if n <= 1:
                break
    if best < 0:
        found.append(list(grid))
        return 1
    if best_n == 0:
        return 0
    y, x = divmod(best, 9)
    b = _box(y, x)
    digits = [v for v in range(1, 10) if best_cand >> v & 1]
    if rng is not None:
        rng.shuffle(digits)
    total = 0
    for v in digits:
        bit = 1 << v
        grid[best] = v
        rows[y] |= bit
        cols[x] |= bit
        boxes[b] |= bit
        total += _search(grid, rows, cols, boxes, rng, limit - total, found)
        rows[y] &= ~bit
        cols[x] &= ~bit
        boxes[b] &= ~bit
        grid[best] = 0
        if total >= limit:
            break
    return total


def count_solutions(puzzle, limit=2):
    """(number of solutions up to limit, the first solution or None) of a puzzle given
    as 81 ints or a [9, 9] array with 0 for blanks."""
    grid = [int(v) for v in np.asarray(puzzle).reshape(-1)]
    if len(grid) != 81 or any(not 0 <= v <= 9 for v in grid):
        raise ValueError("a puzzle is 81 cells of 0..9")
    st = _state(grid)
    if st is None:
        return 0, None
    found = []
    n = _search(grid, *st, None, limit, found)
    return n, (np.array(found[0], dtype=np.uint8).reshape(9, 9) if found else None)


def random_grid(rng):
    """One complete grid by randomized backtracking; rng is a random.Random."""
    grid = [0] * 81
    found = []
    _search(grid, [0] * 9, [0] * 9, [0] * 9, rng, 1, found)
    return np.array(found[0], dtype=np.uint8).reshape(9, 9)


def is_valid_grid(g):
    """True if g [9, 9] holds every digit once in each row, column and box."""
    g = np.asarray(g).reshape(9, 9)
    want = set(range(1, 10))
    for i in range(9):
        if set(g[i].tolist()) != want or set(g[:, i].tolist()) != want:
            return False
        by, bx = divmod(i, 3)
        if set(g[3 * by:3 * by + 3, 3 * bx:3 * bx + 3].reshape(-1).tolist()) != want:
            return False
    return True


def grid_pool(count, seed):
    """count complete grids [count, 9, 9] uint8 from randomized backtracking."""
    import random
    rng = random.Random(seed)
    return np.stack([random_grid(rng) for _ in range(count)])


def _perm3x3(rng, n):
    """n permutations of 0..8 that keep the three groups of three (bands or stacks):
    permute the groups, then the members of each group. [n, 9] int."""
    groups = np.argsort(rng.random((n, 3)), 1)
    inner = np.argsort(rng.random((n, 3, 3)), 2)
    return (groups[:, :, None] * 3 + inner).reshape(n, 9)


def transform(grids, rng):
    """A random symmetry of Sudoku applied to each grid of grids [n, 9, 9]."""
    n = len(grids)
    rowp, colp = _perm3x3(rng, n), _perm3x3(rng, n)
    idx = np.arange(n)[:, None, None]
    out = grids[idx, rowp[:, :, None], colp[:, None, :]]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip].transpose(0, 2, 1)
    relabel = np.concatenate([np.zeros((n, 1), dtype=np.int64),
                              1 + np.argsort(rng.random((n, 9)), 1)], 1)
    return np.take_along_axis(relabel, out.reshape(n, 81).astype(np.int64), 1) \
        .reshape(n, 9, 9).astype(np.uint8)


# --- training data --------------------------------------------------------------

DIGIT0 = 48  # cells hold the bytes '1'..'9' (ids 49..57) for a byte-tokenizer model
MASK = 256


class Sampler:
    """Training batches for a byte-tokenizer model with mask token 256: complete grids
    from a seeded pool under random symmetries, each with its own fraction of cells
    masked, drawn uniformly in [lo, hi] (hard puzzles leave ~55-64 of 81 cells open).

    With corrupt > 0, that share of each grid's visible cells shows a wrong digit, and
    every cell is scored (the third value is all True): the model learns its own digit
    at a visible cell too, and to doubt one that its row, column or box contradicts,
    which is the score re-opening (MODEL.md 5.2) reads. Otherwise only masked cells
    are scored and the draws are those of earlier versions."""

    def __init__(self, seed, cells, pool=10000, lo=0.1, hi=0.9, corrupt=0.0):
        self.rng = np.random.default_rng(seed)
        self.pool = grid_pool(pool, seed)
        self.n = max(1, cells // 81)
        self.lo, self.hi = lo, hi
        self.corrupt = corrupt

    def batch(self):
        import torch
        n, rng = self.n, self.rng
        grids = transform(self.pool[rng.integers(0, len(self.pool), n)], rng)
        k = np.maximum(1, np.round(rng.uniform(self.lo, self.hi, n) * 81)).astype(int)
        rank = np.argsort(rng.random((n, 81)), 1)
        masked = (rank < k[:, None]).reshape(n, 9, 9)
        ids = grids.astype(np.int64) + DIGIT0
        inputs = np.where(masked, MASK, ids)
        scored = masked
        if self.corrupt > 0:
            wrong = (rng.random((n, 9, 9)) < self.corrupt) & ~masked
            shift = rng.integers(1, 9, (n, 9, 9))  # a digit other than the true one
            inputs = np.where(wrong, (ids - DIGIT0 - 1 + shift) % 9 + 1 + DIGIT0, inputs)
            scored = np.ones_like(masked)
        return torch.from_numpy(inputs), torch.from_numpy(ids), torch.from_numpy(scored)


# Starting values that give a 9x9 model Sudoku's units from the first step. Without
# them a small model spends most of an hour at the loss of a uniform guess (log2 9 bits)
# before attention finds rows, columns and boxes. Every weight is trained from there.
CODE_FREQS = (1, 2, 4)  # sum_k cos(2 pi k d / 9) is 3 at d = 0 and <= 0 for d = 1..8
CODE_DIMS = 2 * len(CODE_FREQS)


def unit_codes(dim, scale=3.0):
    """[9, 9, dim]: the row, column and box index u of each cell, each as the CODE_DIMS
    numbers cos/sin(2 pi k u / 9), k in CODE_FREQS, times scale, in dims 0..17. The dot
    product of two codes is 3 scale^2 for the same unit and <= 0 otherwise."""
    if dim < 3 * CODE_DIMS:
        raise ValueError(f"unit codes need dim >= {3 * CODE_DIMS}, got {dim}")
    t = np.zeros((9, 9, dim), dtype=np.float32)
    for y in range(9):
        for x in range(9):
            for n, u in enumerate((y, x, _box(y, x))):
                for i, k in enumerate(CODE_FREQS):
                    a = 2 * np.pi * k * u / 9
                    t[y, x, n * CODE_DIMS + 2 * i] = scale * np.cos(a)
                    t[y, x, n * CODE_DIMS + 2 * i + 1] = scale * np.sin(a)
    return t


def unit_heads(qkv_weight, dim, heads, gain=1.5, noise=0.02, seed=0):
    """Sets the q and k rows of heads 0, 1 and 2 of a block's qkv weight [3D, D] so that
    they read the row, column and box codes of unit_codes: head n's score is large for
    the cells of the same unit and small for all others. The codes go to the head dims
    that rotary embedding turns least (the lowest frequencies of each half: angles of
    at most 0.08 rad on a 9x9 grid), so the offsets barely change the scores."""
    dh = dim // heads
    m2 = dh // 4
    if heads < 3 or m2 < 2:
        raise ValueError("unit heads need >= 3 heads of >= 8 dims")
    # the two lowest-frequency pairs of the row half and the column half
    slots = []
    for off in (0, dh // 2):
        for j in (m2 - 1, m2 - 2):
            slots += [off + j, off + j + m2]
    slots = slots[:CODE_DIMS]
    g = np.random.default_rng(seed)
    w = qkv_weight
    for n in range(3):
        for part in (0, 1):  # q, k
            rows = slice(part * dim + n * dh, part * dim + (n + 1) * dh)
            w[rows] = g.normal(0, noise, (dh, dim)).astype(np.float32)
            for i, s in enumerate(slots):
                w[part * dim + n * dh + s, n * CODE_DIMS + i] = gain
    return w


def heldout(count, ratio, seed):
    """Evaluation batch (inputs, targets, masked) as numpy: grids from a pool of another
    seed than training's, exactly round(ratio * 81) cells masked in each."""
    rng = np.random.default_rng(seed)
    grids = transform(grid_pool(count, seed), rng).astype(np.int64) + DIGIT0
    k = int(round(ratio * 81))
    masked = (np.argsort(rng.random((count, 81)), 1) < k).reshape(count, 9, 9)
    return np.where(masked, MASK, grids), grids, masked


def parse_puzzle(text):
    """81 characters, digits 1-9 given and any of '0._' blank -> [9, 9] uint8."""
    s = "".join(ch for ch in text if not ch.isspace())
    if len(s) != 81:
        raise ValueError(f"a puzzle is 81 cells, got {len(s)}")
    out = []
    for ch in s:
        if ch in "123456789":
            out.append(int(ch))
        elif ch in "0._-":
            out.append(0)
        else:
            raise ValueError(f"unexpected character {ch!r} in a puzzle")
    return np.array(out, dtype=np.uint8).reshape(9, 9)


# --- how much deduction a puzzle needs --------------------------------------

_UNITS = ([[(y, x) for x in range(9)] for y in range(9)] +
          [[(y, x) for y in range(9)] for x in range(9)] +
          [[(by + dy, bx + dx) for dy in range(3) for dx in range(3)]
           for by in (0, 3, 6) for bx in (0, 3, 6)])
_PEERS = {(y, x): set().union(*(u for u in _UNITS if (y, x) in u)) - {(y, x)}
          for y in range(9) for x in range(9)}
TIERS = ("singles", "locked candidates", "subsets", "beyond")


# Each technique makes at most one deduction and says whether it made one, so the
# next always starts from candidates with every solved digit removed from its peers.

def _eliminate(cand):
    """Removes each solved cell's digit from its peers."""
    changed = False
    for c, d in cand.items():
        if len(d) == 1:
            for p in _PEERS[c]:
                if d <= cand[p]:
                    cand[p] = cand[p] - d
                    changed = True
    return changed


def _hidden_single(cand):
    for u in _UNITS:
        for d in range(1, 10):
            where = [c for c in u if d in cand[c]]
            if len(where) == 1 and len(cand[where[0]]) > 1:
                cand[where[0]] = {d}
                return True
    return False


def _locked(cand):
    """Pointing and claiming: a digit confined to a box-line intersection in one of
    the two units leaves the rest of the other."""
    for b in _UNITS[18:]:
        for line in _UNITS[:18]:
            inter = set(b) & set(line)
            if not inter:
                continue
            for d in range(1, 10):
                for src, dst in ((b, line), (line, b)):
                    where = {c for c in src if d in cand[c]}
                    hit = [c for c in dst if c not in inter and d in cand[c]]
                    if where and where <= inter and hit:
                        for c in hit:
                            cand[c] = cand[c] - {d}
                        return True
    return False


def _subset(cand):
    """Naked and hidden pairs and triples."""
    for u in _UNITS:
        open_ = [c for c in u if len(cand[c]) > 1]
        for k in (2, 3):
            for cells in combinations(open_, k):
                ds = set().union(*(cand[c] for c in cells))
                hit = [c for c in open_ if c not in cells and cand[c] & ds]
                if len(ds) == k and hit:
                    for c in hit:
                        cand[c] = cand[c] - ds
                    return True
            for ds in combinations(sorted(set().union(*(cand[c] for c in open_))), k):
                ds = set(ds)
                where = [c for c in open_ if cand[c] & ds]
                if len(where) == k and any(cand[c] - ds for c in where):
                    for c in where:
                        cand[c] = cand[c] & ds
                    return True
    return False


def logic_solve(puzzle, tier):
    """The [9, 9] grid the techniques up to TIERS[tier] deduce from the puzzle
    without guessing (0 where they leave a cell open)."""
    steps = (_eliminate, _hidden_single, _locked, _subset)[:tier + 2]
    cand = {(y, x): {int(puzzle[y, x])} if puzzle[y, x] else set(range(1, 10))
            for y in range(9) for x in range(9)}
    while any(f(cand) for f in steps):
        if any(not d for d in cand.values()):
            raise ValueError("the puzzle contradicts itself")
    out = np.zeros((9, 9), dtype=np.uint8)
    for (y, x), d in cand.items():
        if len(d) == 1:
            out[y, x] = next(iter(d))
    return out


def logic_tier(puzzle):
    """The first of TIERS whose techniques (each tier adds to the ones before it)
    solve the [9, 9] puzzle with no guessing: "singles" (naked and hidden singles),
    "locked candidates" (pointing, claiming), "subsets" (naked and hidden pairs and
    triples), or "beyond" (anything longer: fish, chains, trial and error)."""
    for tier in range(len(TIERS) - 1):
        if logic_solve(puzzle, tier).all():
            return TIERS[tier]
    return TIERS[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grids")
    g.add_argument("--count", type=int, default=1)
    g.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("solve")
    s.add_argument("puzzle")
    t = sub.add_parser("tier")
    t.add_argument("puzzle")
    args = ap.parse_args()
    if args.cmd == "tier":
        print(logic_tier(parse_puzzle(args.puzzle)))
        return 0
    if args.cmd == "grids":
        for grid in grid_pool(args.count, args.seed):
            print("".join(str(v) for v in grid.reshape(-1)))
    else:
        n, sol = count_solutions(parse_puzzle(args.puzzle))
        print({0: "no solution", 1: "unique", 2: "several solutions"}[n])
        if sol is not None:
            print("".join(str(v) for v in sol.reshape(-1)))
        return 0 if n == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
