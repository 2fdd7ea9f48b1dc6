#!/bin/sh
# test_docs.sh - the documentation's examples are tests: every curl example
# of README.md and docs/api.md runs against a live daemon serving the default
# model, and every printed answer is held to the real one; the README's
# `heptapod generate` example must print a page of text
# (tests/docs/run_examples.py says how). Run from the repository root with
# HEPTAPOD_BIN set (make integration does).
set -eu
BIN=${HEPTAPOD_BIN:?set HEPTAPOD_BIN to the heptapod binary}
exec /usr/bin/python3 tests/docs/run_examples.py --bin "$BIN" README.md docs/api.md
