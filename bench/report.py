#!/usr/bin/python3
"""The table of `make bench`, from the lines bench/bench.sh collected.

    /usr/bin/python3 bench/report.py --random-model R --default-model M LINES

LINES holds, each prefixed by its environment (`pinned`: OpenBLAS held to the kernel
OPENBLAS_CORETYPE names; `native`: that variable and OPENBLAS_L2_SIZE unset):
`kernel ...` and `sgemm threads=T gflops=G` and `eng ...` lines of engine_bench
--matrix, and `ref ...` lines of tools/bench_ref.py. Ratios:

- x f32: the engine in this precision / the engine in f32, same threads, same run;
- x torch: the engine / PyTorch at its best on as many cores (1 core: torch 1 thread,
  OpenBLAS 1 thread; 2 cores: the fastest of torch 1-2 threads x OpenBLAS 1-2
  threads), f32 and bf16 against PyTorch f32, int8 against PyTorch's best int8
  (quantize_dynamic; onednn or qnnpack, whichever is faster).

PyTorch's int8 Linear layers do not call OpenBLAS, so its int8 figures are measured
once (pinned) and serve both columns.
"""

import argparse
import sys

ENVS = ("pinned", "native")
PRECISIONS = ("f32", "bf16", "int8")
NOISY_PCT = 25  # repeats spread wider than this (% of the median) get a *
PHASES = ("embed+ln", "qkv+rope", "attention", "proj+ln", "fc1+gelu", "fc2+ln", "head")


def parse_line(line):
    """(env, kind, {key: value}); message= takes the rest of the line."""
    head, _, rest = line.partition(" message=")
    words = head.split()
    if len(words) < 2:
        return None
    kv = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    if rest or line.rstrip().endswith(" message="):
        kv["message"] = rest.strip()
    return words[0], words[1], kv


class Runs:
    def __init__(self, lines):
        self.kernel, self.sgemm, self.eng, self.ref, self.ref_na = {}, {}, {}, {}, []
        for line in lines:
            p = parse_line(line)
            if not p:
                continue
            env, kind, kv = p
            if kind == "kernel":
                self.kernel[env] = kv
            elif kind == "sgemm":
                self.sgemm[(env, int(kv["threads"]))] = float(kv["gflops"])
            elif kind == "eng":
                path, hw = kv["case"].rsplit(":", 1)
                self.eng[(env, path, hw, kv["precision"], int(kv["threads"]))] = kv
            elif kind == "ref":
                if kv.get("status") == "n/a" or "cells_per_s" not in kv:
                    self.ref_na.append((env, kv))
                    continue
                hw = f"{kv['height']}x{kv['width']}"
                key = (env, kv["model"], hw, kv["precision"], kv["qengine"],
                       int(kv["threads"]), kv["blas_threads"])
                self.ref[key] = float(kv["cells_per_s"])

    def ref_settings(self, env, path, hw, prec):
        """{(qengine, torch threads, blas threads): cells/s} of one case."""
        if prec == "int8":
            env = "pinned"
        return {(k[4], k[5], k[6]): v for k, v in self.ref.items()
                if k[0] == env and k[1] == path and k[2] == hw and k[3] == prec}

    def ref_best(self, env, path, hw, prec, cores):
        """(cells/s, setting) of PyTorch's best on `cores` cores, or (None, None)."""
        s = self.ref_settings(env, path, hw, prec)
        if cores == 1:  # one core: one torch thread, one OpenBLAS thread (int8: no BLAS)
            s = {k: v for k, v in s.items() if k[1] == 1 and (prec == "int8" or k[2] == "1")}
        if not s:
            return None, None
        k = max(s, key=s.get)
        return s[k], k


def setting_name(k, prec):
    qe, t, b = k
    name = f"torch {t}" + ("" if prec == "int8" else f" + BLAS {b}")
    return (f"{qe}, " if prec == "int8" else "") + name


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def case_table(runs, path, hw, title):
    out = [title]
    envs = [e for e in ENVS if e in runs.kernel]
    kern = {e: runs.kernel[e].get("corename", "?") for e in envs}
    head = "  {:<26}".format("engine  precision threads")
    for e in envs:
        head += f" | {e + ' (' + kern[e] + ')':<43}"
    out.append(head)
    sub = "  {:<26}".format("")
    for e in envs:
        sub += " | {:>8} {:>8} {:>7} {:>7} {:>9}".format("cells/s", "GFLOP/s", "%sgemm", "x f32",
                                                        "x torch")
    out.append(sub)
    for prec in PRECISIONS:
        for t in (1, 2):
            rows = {e: runs.eng.get((e, path, hw, prec, t)) for e in envs}
            if not any(rows.values()):
                continue
            line = f"  {'':8}{prec:<10}{t:>7}"
            line = f"{line:<28}"
            msgs = {r.get("message") for r in rows.values() if r and r.get("status") != "ok"}
            if all(r and r.get("status") != "ok" for r in rows.values()) and len(msgs) == 1:
                out.append(line + f" | n/a: {msgs.pop()}")
                continue
            for e in envs:
                r = rows[e]
                if not r or r.get("status") != "ok":
                    cell = "n/a: " + (r.get("message", "not run") if r else "not run")
                    line += f" | {cell[:43]:<43}"
                    continue
                cps = float(r["cells_per_s"])
                f32 = runs.eng.get((e, path, hw, "f32", t))
                f32cps = float(f32["cells_per_s"]) if f32 and f32.get("status") == "ok" else 0
                tprec = "int8" if prec == "int8" else "f32"
                best, _ = runs.ref_best(e, path, hw, tprec, t)
                noisy = "*" if float(r.get("spread_pct", 0)) > NOISY_PCT else " "
                line += " | {:>7.0f}{} {:>8.1f} {:>6.0f}% {:>7} {:>9}".format(
                    cps, noisy, float(r["gflops"]), float(r["pct_sgemm"]),
                    fmt_ratio(cps, f32cps), fmt_ratio(cps, best))
            out.append(line)
    if len(out) == 3:
        out.append("  (the engine gave no figures for this case)")
    # PyTorch beside it, its GFLOP/s from the engine's count of the same forward.
    flops_per_cell = next((float(r["gflops"]) * 1e9 / float(r["cells_per_s"])
                           for k, r in runs.eng.items() if k[1] == path and k[2] == hw
                           and r.get("status") == "ok"), None)
    for prec in ("f32", "int8"):
        for cores in (1, 2):
            line = f"  PyTorch {prec:<5} {cores} core{'s' if cores > 1 else ' '}"
            line = f"{line:<28}"
            any_ok = False
            for e in envs:
                best, k = runs.ref_best(e, path, hw, prec, cores)
                if best:
                    any_ok = True
                    gf = f"{best * flops_per_cell / 1e9:>8.1f}" if flops_per_cell else " " * 8
                    cell = f"{best:>8.0f} {gf}  best: {setting_name(k, prec)}"
                else:
                    cell = "n/a"
                line += f" | {cell:<43}"
            if any_ok:
                out.append(line)
    tried = []
    for e in envs:
        for prec in ("f32", "int8"):
            if prec == "int8" and e != "pinned":
                continue
            s = runs.ref_settings(e, path, hw, prec)
            if s:
                items = ", ".join(f"{setting_name(k, prec)} {v:.0f}"
                                  for k, v in sorted(s.items()))
                best = max(s, key=s.get)
                tried.append(f"    {prec} ({e if prec == 'f32' else 'no BLAS'}): {items}; "
                             f"fastest: {setting_name(best, prec)}")
    if tried:
        out.append("  PyTorch settings tried (cells/s):")
        out += tried
    return out


def phase_lines(runs, cases):
    out = ["time by phase at 2 threads (% of the forward):",
           "  {:<34} {}".format("case / precision / environment",
                                " ".join(f"{p:>9}" for p in PHASES))]
    for path, hw, name in cases:
        for prec in PRECISIONS:
            for e in ENVS:
                r = runs.eng.get((e, path, hw, prec, 2))
                if not r or r.get("status") != "ok" or "phases" not in r:
                    continue
                ph = dict(x.split(":") for x in r["phases"].split(","))
                label = f"{name} {hw} {prec} {e}"
                out.append("  {:<34} {}".format(label[:34], " ".join(
                    f"{float(ph.get(p, 0)):>9.1f}" for p in PHASES)))
    return out


def targets(runs, path, hw):
    """Issue 9's targets at 2 threads on the D256 32x32 case."""
    def cps(e, prec):
        r = runs.eng.get((e, path, hw, prec, 2))
        return float(r["cells_per_s"]) if r and r.get("status") == "ok" else None

    def pct(e):
        r = runs.eng.get((e, path, hw, "f32", 2))
        return float(r["pct_sgemm"]) if r and r.get("status") == "ok" else None

    def verdict(x, t):
        return "n/a" if x is None else ("met" if x >= t else "MISSED")

    out = ["targets (2 threads, D256 32x32, same run):"]
    for e, t in (("native", 85), ("pinned", 80)):
        x = pct(e)
        out.append(f"  f32 forward / sgemm, {e}: " + (f"{x:.0f}%" if x else "n/a") +
                   f" (>= {t}%: {verdict(x, t)})")
    for prec, e, t in (("int8", "pinned", 2.5), ("int8", "native", 1.5), ("bf16", "native", 1.4)):
        a, b = cps(e, prec), cps(e, "f32")
        x = a / b if a and b else None
        out.append(f"  {prec} / f32, {e}: " + (f"{x:.2f}x" if x else "n/a") +
                   f" (>= {t}x: {verdict(x, t)})")
    best, k = runs.ref_best("pinned", path, hw, "int8", 2)
    for e in ENVS:
        a = cps(e, "int8")
        x = a / best if a and best else None
        out.append(f"  int8 / PyTorch's best int8 ({setting_name(k, 'int8') if k else '-'}), {e}: "
                   + (f"{x:.2f}x" if x else "n/a") + f" (>= 2x: {verdict(x, 2)})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random-model", required=True)
    ap.add_argument("--default-model", required=True)
    ap.add_argument("lines")
    args = ap.parse_args()
    with open(args.lines) as f:
        runs = Runs(f.read().splitlines())
    if not runs.eng:
        print("bench: the engine produced no figures")
        return 1

    out = ["make bench: cells/s and GFLOP/s of one forward (int8, bf16: GOP/s, the same "
           "multiply-adds counted alike), median of the interleaved repeats",
           "  %sgemm: over the f32 sgemm of the same kernel and threads (bf16 and int8 may "
           "pass 100%); x f32: over the engine in f32; x torch: over PyTorch's best on as "
           "many cores (int8: PyTorch int8)"]
    for e in ENVS:
        k = runs.kernel.get(e)
        if k:
            out.append(f"  {e}: OpenBLAS kernel {k.get('corename')} (OPENBLAS_CORETYPE="
                       f"{k.get('OPENBLAS_CORETYPE')}, OPENBLAS_L2_SIZE={k.get('OPENBLAS_L2_SIZE')}"
                       f"), engine kernels {k.get('isa')}")
    out.append("")
    out.append("sgemm 2048^3 (GFLOP/s)      " + "".join(f"{e:>10}" for e in ENVS))
    for t in (1, 2):
        out.append(f"  {t} thread{'s' if t > 1 else ' '}                 " +
                   "".join(f"{runs.sgemm.get((e, t), 0):>10.1f}" for e in ENVS))
    out.append("")

    cases = []
    for path, hw, name in ((args.random_model, "32x32", "random"),
                           (args.default_model, "16x64", "default")):
        desc = next((r["model"] for k, r in runs.eng.items() if k[1] == path and k[2] == hw
                     and r.get("model", "?") != "?"), "?")
        title = (f"{desc.replace('-', ' ')} ({'random weights' if name == 'random' else path}), "
                 f"{hw} grids, batch 1")
        out += case_table(runs, path, hw, title)
        out.append("")
        cases.append((path, hw, name))
    out += phase_lines(runs, cases)
    out.append("")
    out += targets(runs, args.random_model, "32x32")
    for e, kv in runs.ref_na:
        out.append(f"note: PyTorch {kv.get('precision', '')} {kv.get('qengine', '')} ({e}): "
                   f"n/a: {kv.get('message', '?')}")
    out.append(f"* the repeats spread over more than {NOISY_PCT}% of the median: a busy machine.")
    out.append("Figures move with the machine's load: compare within one run.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
