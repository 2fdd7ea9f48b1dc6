#!/usr/bin/python3
"""Self-check of tools/sudoku.py (grids, symmetries, the solver, the training batches)
and of the solve-rate path: bench/sudoku_solve with the shipped model, sudoku_eval's judge.

    /usr/bin/python3 tools/test_sudoku.py   (make test-tools; SUDOKU_SOLVE names the binary)
"""

import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sudoku  # noqa: E402
import sudoku_eval  # noqa: E402
import selftest  # noqa: E402

ROOT = os.path.dirname(HERE)
SOLVE = os.environ.get("SUDOKU_SOLVE", os.path.join(ROOT, "build", "bench", "sudoku_solve"))
MODEL = os.path.join(ROOT, "models", "sudoku.safetensors")

# A well-known puzzle with one solution, and that solution.
PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def test_grids_are_valid_and_seeded():
    a, b, c = sudoku.grid_pool(20, 5), sudoku.grid_pool(20, 5), sudoku.grid_pool(20, 6)
    assert all(sudoku.is_valid_grid(g) for g in a)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len({g.tobytes() for g in a}) == 20


def test_validity_check_can_fail():
    g = sudoku.grid_pool(1, 1)[0].copy()
    g[0, 0], g[0, 1] = g[0, 1], g[0, 0]  # the columns now repeat a digit
    assert not sudoku.is_valid_grid(g)


def test_symmetries_keep_grids_valid_and_vary():
    pool = sudoku.grid_pool(5, 2)
    rng = np.random.default_rng(0)
    out = sudoku.transform(np.repeat(pool, 200, 0), rng)
    assert all(sudoku.is_valid_grid(g) for g in out)
    assert len({g.tobytes() for g in out}) == len(out)
    # every digit reaches every cell, so no cell's digit is fixed by the pool
    for y, x in ((0, 0), (4, 4), (8, 8)):
        assert set(out[:, y, x].tolist()) == set(range(1, 10))


def test_solver():
    n, sol = sudoku.count_solutions(sudoku.parse_puzzle(PUZZLE))
    assert n == 1 and "".join(map(str, sol.reshape(-1))) == SOLUTION
    # remove givens until there are several solutions
    n, _ = sudoku.count_solutions(sudoku.parse_puzzle("." * 80 + "1"))
    assert n == 2
    # a repeated digit: no solution
    n, sol = sudoku.count_solutions(sudoku.parse_puzzle("11" + "." * 79))
    assert n == 0 and sol is None
    for bad in ("123", "x" * 81):
        try:
            sudoku.parse_puzzle(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"parse_puzzle accepted {bad!r}")


def test_training_batches():
    s = sudoku.Sampler(3, 81 * 64, pool=50, lo=0.1, hi=0.9)
    inputs, targets, masked = s.batch()
    assert tuple(inputs.shape) == (64, 9, 9)
    t = targets.numpy() - sudoku.DIGIT0
    assert all(sudoku.is_valid_grid(g) for g in t)
    m = masked.numpy()
    assert (inputs.numpy()[m] == sudoku.MASK).all()
    assert (inputs.numpy()[~m] == targets.numpy()[~m]).all()
    frac = m.reshape(64, -1).mean(1)
    assert frac.min() >= 0.09 and frac.max() <= 0.91 and frac.std() > 0.1
    # corrupt: the same draws of grids and masks, a share of the visible cells shows
    # another digit, and every cell is scored
    c = sudoku.Sampler(3, 81 * 64, pool=50, lo=0.1, hi=0.9, corrupt=0.2)
    ci, ct, scored = c.batch()
    assert (ct.numpy() == targets.numpy()).all() and scored.numpy().all()
    ci = ci.numpy()
    assert (ci[m] == sudoku.MASK).all()
    vis = ~m
    wrong = ci[vis] != ct.numpy()[vis]
    assert 0.15 < wrong.mean() < 0.25, wrong.mean()
    assert ((ci[vis] >= sudoku.DIGIT0 + 1) & (ci[vis] <= sudoku.DIGIT0 + 9)).all()


def test_unit_codes_and_heads():
    t = sudoku.unit_codes(32)
    for (a, b, same) in (((0, 0), (0, 8), True), ((0, 0), (8, 0), True), ((0, 0), (2, 2), True),
                         ((0, 0), (4, 4), False)):
        # a cell pair shares some unit exactly when some part of the codes agrees
        dots = [float(t[a][n * 6:(n + 1) * 6] @ t[b][n * 6:(n + 1) * 6]) for n in range(3)]
        assert (max(dots) > 20) == same, (a, b, dots)
    w = np.zeros((3 * 48, 48), dtype=np.float32)
    sudoku.unit_heads(w, 48, 4)
    assert np.count_nonzero(w[:48]) > 0 and np.count_nonzero(w[96:]) == 0  # v untouched


def test_logic_tiers():
    """Each tier's deductions are sound (what they fill is the unique solution) and
    the tiers order the puzzles: one that needs more is not solved by less."""
    kept, _ = sudoku_eval.load_puzzles(os.path.join(HERE, "sudoku", "puzzles.txt"))
    sample = [k for i, k in enumerate(kept) if i % 10 == 0]  # 10 of each grade
    seen = set()
    for _, p, sol in sample:
        grid = sudoku.parse_puzzle(p)
        want = sudoku.parse_puzzle(sol)
        tier = sudoku.TIERS.index(sudoku.logic_tier(grid))
        seen.add(tier)
        for t in range(len(sudoku.TIERS) - 1):
            got = sudoku.logic_solve(grid, t)
            assert ((got == 0) | (got == want)).all(), (p, t)
            assert bool(got.all()) == (t >= tier), (p, t, tier)
    assert {0, 1, 2} <= seen
    assert sudoku.logic_tier(sudoku.parse_puzzle(PUZZLE)) == "singles"
    try:
        sudoku.logic_solve(sudoku.parse_puzzle("11" + "." * 79), 0)
    except ValueError:
        pass
    else:
        raise AssertionError("a contradiction was not reported")


def solve(puzzles, *flags):
    r = subprocess.run([SOLVE, "--model", MODEL, *flags], input="".join(p + "\n" for p in puzzles),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout.split(), r.stderr


def test_judge():
    assert sudoku_eval.judge(PUZZLE, SOLUTION, SOLUTION)
    wrong = SOLUTION[:2] + ("5" if SOLUTION[2] != "5" else "6") + SOLUTION[3:]
    assert not sudoku_eval.judge(PUZZLE, SOLUTION, wrong)
    assert not sudoku_eval.judge(PUZZLE, SOLUTION, SOLUTION[:80])
    assert not sudoku_eval.judge(PUZZLE, SOLUTION, "." * 81)


def test_engine_solves_easy_puzzles():
    """The shipped model, through the C engine, solves the first easy held-out puzzles
    (its card: 100% of easy with margin at 64 iterations); givens stay as they are."""
    kept, _ = sudoku_eval.load_puzzles(os.path.join(HERE, "sudoku", "puzzles.txt"))
    easy = [(p, s) for g, p, s in kept if g == "easy"][:10]
    assert len(easy) == 10
    for flags in (("--order", "margin", "--iterations", "64"),
                  ("--order", "margin", "--iterations", "64", "--remask", "0.05")):
        rc, out, err = solve([p for p, _ in easy], *flags, "--batch", "4")
        assert rc == 0, err
        assert len(out) == len(easy)
        for (p, sol), a in zip(easy, out):
            assert all(c == "." or c == x for c, x in zip(p, a)), (p, a)
            if "--remask" not in flags:
                assert sudoku_eval.judge(p, sol, a), (p, a)
            else:
                assert "." not in a  # the last iteration leaves nothing open


def test_engine_solve_refuses_bad_input():
    rc, _, err = solve([PUZZLE], "--remask", "1.5")
    assert rc != 0 and "remask" in err, err
    rc, _, err = solve(["12x" + PUZZLE[3:]])
    assert rc == 1 and "line 1" in err, err
    rc, _, err = solve([PUZZLE], "--order", "sideways")
    assert rc == 2 and "sideways" in err, err


if __name__ == "__main__":
    selftest.run(globals())
