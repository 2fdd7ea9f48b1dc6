#!/usr/bin/python3
"""How many of the words a byte model writes on a page are dictionary words.

    /usr/bin/python3 tools/word_rate.py [--model models/default.safetensors]
        [--orders confidence,margin,raster] [--remask 0] [--remask-noise X] [--pages 100]

For each order it generates --pages pages with `heptapod generate` (12x64 by
default, the prompt line of README's example as row 0, seeds 1..pages, the CLI's
defaults otherwise: 8 iterations, temperature 1.0, the model's remask_noise unless
--remask-noise is given) and
splits the rows it wrote (every row but the prompt's) into words: maximal runs of
ASCII letters. A word is a dictionary word when its lower case is an entry of the
word list (Debian's wamerican, /usr/share/dict/words, lower-cased, possessives
"'s" dropped), single letters counting only for "a" and "i". It reports, per
order, the share of dictionary words among all words (the rate), the same share
among words of 3 letters or more, the mean number of words a page and the share
of letters among the written cells, with a 95% interval of the rate over pages.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

PROMPT = "The committee met on Monday to discuss the new school budget."
WORD = re.compile(r"[A-Za-z]+")


def load_words(path):
    words = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.strip().lower()
            if w.endswith("'s"):
                w = w[:-2]
            if w.isascii() and w.isalpha() and (len(w) > 1 or w in ("a", "i")):
                words.add(w)
    return words


def pages(args, order, remask):
    """The final grids of --pages runs, as lists of text rows."""
    out = []
    for seed in range(1, args.pages + 1):
        cmd = [args.bin, "generate", "--model", args.model, "--height", str(args.height),
               "--width", str(args.width), "--prompt", PROMPT, "--seed", str(seed),
               "--order", order, "--remask", str(remask), "--json"]
        if args.remask_noise is not None:
            cmd += ["--remask-noise", str(args.remask_noise)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        last = json.loads(r.stdout.strip().splitlines()[-1])
        rows = ["".join(chr(v) if 0 <= v < 256 else "\0" for v in row) for row in last["grid"]]
        out.append(rows[1:])  # the prompt's row is given, not written
    return out


def rate(rows_of_pages, words):
    per_page, n_all, n_dict, n_long, n_long_dict, letters, cells = [], 0, 0, 0, 0, 0, 0
    for rows in rows_of_pages:
        found = [w.lower() for row in rows for w in WORD.findall(row)]
        good = sum(w in words for w in found)
        n_all += len(found)
        n_dict += good
        long_ = [w for w in found if len(w) >= 3]
        n_long += len(long_)
        n_long_dict += sum(w in words for w in long_)
        letters += sum(len(w) for w in found)
        cells += sum(len(r) for r in rows)
        if found:
            per_page.append(good / len(found))
    mean = sum(per_page) / len(per_page)
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_page) / max(1, len(per_page) - 1))
    return {"rate": n_dict / n_all, "rate_3plus": n_long_dict / max(1, n_long),
            "words_per_page": n_all / len(rows_of_pages), "letters": letters / cells,
            "ci95": 1.96 * sd / math.sqrt(len(per_page))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/heptapod")
    ap.add_argument("--model", default="models/default.safetensors")
    ap.add_argument("--words", default="/usr/share/dict/words",
                    help="word list, one a line (Debian package wamerican)")
    ap.add_argument("--orders", default="confidence,margin,raster")
    ap.add_argument("--remask", default="0", help="comma list of remask values")
    ap.add_argument("--remask-noise", type=float, default=None,
                    help="default: the model's metadata remask_noise")
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--height", type=int, default=12)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()
    if not os.path.exists(args.words):
        sys.exit(f"{args.words}: no word list (apt-get install wamerican; make tools-deps)")
    words = load_words(args.words)
    print(f"{len(words)} words from {args.words}; {args.pages} pages of "
          f"{args.height}x{args.width} from {args.model}, prompt row excluded, remask_noise "
          f"{'the model' + chr(39) + 's' if args.remask_noise is None else args.remask_noise}")
    print(f"{'order':<11} {'remask':>6} {'rate':>7} {'+-95%':>6} {'3+ letters':>10} "
          f"{'words/page':>10} {'letters':>7}")
    for order in args.orders.split(","):
        for remask in args.remask.split(","):
            r = rate(pages(args, order, float(remask)), words)
            print(f"{order:<11} {float(remask):>6g} {100 * r['rate']:6.1f}% "
                  f"{100 * r['ci95']:5.1f}% {100 * r['rate_3plus']:9.1f}% "
                  f"{r['words_per_page']:10.1f} {100 * r['letters']:6.1f}%", flush=True)


if __name__ == "__main__":
    main()
