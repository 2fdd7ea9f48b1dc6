#!/usr/bin/python3
"""run_examples.py - the curl examples of the documentation, run against a live
daemon, and each printed answer held to the real one.

    run_examples.py --bin build/heptapod README.md docs/api.md
    run_examples.py --url http://127.0.0.1:8080 [--wrap 'chroot ROOT env --chdir=DIR'] README.md

Every fenced ```sh block of each file is read as shell commands (backslash
continuations and multi-line quoted strings joined). Commands starting with
`curl` are run with `sh -c`, `localhost:8080` replaced by the daemon's address;
each must exit 0, print something, and answer a 2xx status (read through a
curlrc `--write-out` on stderr), except the last command of a block whose
printed sample is an error.
`heptapod generate` commands (or `build/heptapod generate`) run the binary
from the repository root and must print a page that is mostly text. Other
commands (`make`, `heptapod serve`) are listed as not run.

A printed sample is a fenced block right after a block of commands (only blank
lines between), or any fenced block after a `<!-- doctest: sample -->` line; it
is the expected output of the last command run. It is compared by kind:

  JSON   same keys at every level, same types (numbers are one type; a grid
         cell may be a number or null), same list lengths, and the same values,
         except those that depend on the clock or the floating-point run:
         request_id, timings, `seed` when the request sets none, the cells of
         `grid` and the characters of `text` rows (whose lengths must agree).
         `{...}` stands for any object, and `...` as the last element of a
         list for more elements shaped like the first.
  SSE    (a sample starting with `event:`) the same event names in the same
         order, each `data` compared as JSON above.
  HTTP   (a sample starting with `HTTP/`, from `curl -i`) the same status and
         header names, and the same header values but Date and X-Request-Id.
  text   the same number of lines, none longer than the real line.

So a stale sample (a missing or renamed field, another limit in an error
message, another default echoed) fails. Annotations, as HTML comments on their
own line before a block, invisible on the rendered page:

  <!-- doctest: serve --api-key doc-key; env KEY=doc-key -->
      the next block's commands run against a daemon started with these extra
      flags, with these environment variables set;
  <!-- doctest: fresh -->
      the next block's commands run against a daemon of their own, started for
      them (one that has served nothing yet);
  <!-- doctest: sample; replace '"iterations": 8' '"iterations": 1' -->
      the next block is the output of the last curl command, with these
      replacements in its text.
  <!-- doctest: sample; exact -->
      the next block is the output of the last command, character for
      character (for answers that are a fact, such as a solved Sudoku).

The daemon serves the models `make run` serves (--model, repeated, overrides).

With --url the daemon is not started; blocks that need their own daemon are
reported and left to the run that starts one. --wrap prefixes each command
(e.g. `chroot ROOT env --chdir=/root/heptapod`, so that the root's own curl,
jq and build/heptapod answer).

Exits 0 when every example passes, 1 otherwise, 2 on a usage error.
"""
import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

DOC_HOST = "localhost:8080"
COMMAND_TIMEOUT_S = 60
# Values that depend on the clock, or on the arithmetic of the machine that
# computed the grid; their types and shapes are still compared.
CLOCK_KEYS = {"request_id", "queued_ms", "compute_ms", "total_ms", "first_iteration_ms"}
OUTPUT_KEYS = {"grid", "text"}
CLOCK_HEADERS = {"date", "x-request-id"}
ANY_OBJECT = "<doctest: any object>"
MORE = "<doctest: more elements>"
# A page of `heptapod generate` is "mostly text" above this share of
# non-space cells (the greedy default it replaced gave about 3%).
MIN_TEXT_SHARE = 0.35


# --- reading the documents --------------------------------------------------------


class Block:
    """One fenced code block: its language, text, first line number, the
    annotations before it, and whether it directly follows the previous block."""

    def __init__(self, lang, text, line, notes, adjacent):
        self.lang, self.text, self.line = lang, text, line
        self.notes, self.adjacent = notes, adjacent


def read_blocks(path):
    blocks, notes, fence, buf, start = [], [], None, [], 0
    gap_is_blank = False
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines, 1):
        if fence is None:
            m = re.match(r"^(`{3,})\s*([\w-]*)\s*$", line)
            if m:
                fence, lang, buf, start = m.group(1), m.group(2), [], i + 1
                adjacent = gap_is_blank and bool(blocks)
                continue
            note = re.match(r"^<!--\s*doctest:\s*(.*?)\s*-->\s*$", line)
            if note:
                notes.append(note.group(1))
            elif line.strip():
                gap_is_blank = False
        elif line.strip() == fence:
            blocks.append(Block(lang, "\n".join(buf), start, notes, adjacent))
            fence, notes, gap_is_blank = None, [], True
        else:
            buf.append(line)
    return blocks


def parse_notes(notes):
    """The annotations before a block as a dict: serve (flags), env, sample,
    replace (pairs)."""
    out = {"serve": None, "env": {}, "sample": False, "replace": [], "fresh": False,
           "exact": False}
    for note in notes:
        for clause in note.split(";"):
            words = shlex.split(clause)
            if not words:
                continue
            verb, args = words[0], words[1:]
            if verb == "serve":
                out["serve"] = args
            elif verb == "env":
                out["env"].update(a.split("=", 1) for a in args)
            elif verb == "sample":
                out["sample"] = True
            elif verb == "fresh":
                out["fresh"] = True
            elif verb == "exact":
                out["exact"] = True
            elif verb == "replace":
                if len(args) != 2:
                    raise ValueError("replace takes OLD NEW: %r" % clause)
                out["replace"].append(tuple(args))
            else:
                raise ValueError("unknown doctest annotation %r" % verb)
    return out


def split_commands(text):
    """Shell commands of a block: continuation lines and open quotes joined,
    blank and comment-only lines dropped."""
    commands, cur = [], ""
    for line in text.split("\n"):
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cur += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(cur, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        commands.append(cur.strip())
        cur = ""
    if cur.strip():
        commands.append(cur.strip())
    return commands


def command_kind(cmd):
    words = shlex.split(cmd, comments=True)
    if words and words[0] == "curl":
        return "curl"
    if len(words) > 1 and os.path.basename(words[0]) == "heptapod" and words[1] == "generate":
        return "generate"
    return None


# --- comparing a sample with the real answer ------------------------------------------


def load_sample_json(text):
    """JSON with the two elisions: `{...}` and a trailing `...` list element."""
    text = re.sub(r"\{\s*\.\.\.\s*\}", lambda m: json.dumps(ANY_OBJECT), text)
    text = re.sub(r",\s*\.\.\.\s*\]", lambda m: ", %s]" % json.dumps(MORE), text)
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError("the sample is not JSON: %s" % e) from None


def kind_of(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(v)]


def compare(want, got, path, volatile, problems):
    """Appends to problems every way got differs from the sample want."""
    key = path.rsplit(".", 1)[-1].split("[")[0]
    if want == ANY_OBJECT:
        if not isinstance(got, dict):
            problems.append("%s: want an object, got %s" % (path, kind_of(got)))
        return
    in_output = re.search(r"\.(%s)(\[|$)" % "|".join(OUTPUT_KEYS), path) is not None
    if in_output and kind_of(want) in ("null", "number") and kind_of(got) in ("null", "number"):
        return  # a grid cell: open or a token
    if kind_of(want) != kind_of(got):
        problems.append("%s: want %s %s, got %s %s" % (path, kind_of(want), json.dumps(want),
                                                      kind_of(got), json.dumps(got)))
        return
    if isinstance(want, dict):
        for k in sorted(set(want) - set(got)):
            problems.append("%s.%s: in the sample, not in the answer" % (path, k))
        for k in sorted(set(got) - set(want)):
            problems.append("%s.%s: in the answer, not in the sample" % (path, k))
        for k in sorted(set(want) & set(got)):
            compare(want[k], got[k], "%s.%s" % (path, k), volatile, problems)
    elif isinstance(want, list):
        more = bool(want) and want[-1] == MORE
        shown = want[:-1] if more else want
        if (len(got) < len(shown)) if more else (len(got) != len(shown)):
            problems.append("%s: %d elements in the sample, %d in the answer"
                            % (path, len(shown), len(got)))
            return
        for i, g in enumerate(got if shown else []):
            compare(shown[min(i, len(shown) - 1)], g, "%s[%d]" % (path, i), volatile,
                        problems)
    elif key in volatile or key in CLOCK_KEYS:
        pass
    elif in_output and isinstance(want, str):
        if len(want) != len(got):
            problems.append("%s: a row of %d characters in the sample, %d in the answer"
                            % (path, len(want), len(got)))
    elif want != got:
        problems.append("%s: %s in the sample, %s in the answer"
                        % (path, json.dumps(want), json.dumps(got)))


def parse_sse(text):
    """(event name, data text) pairs; comment lines skipped, data lines joined."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text.strip()):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events


def parse_head(text):
    """(status code, {lower-case header name: value}) of an HTTP answer's head."""
    lines = text.strip().replace("\r", "").split("\n")
    status = lines[0].split()[1] if len(lines[0].split()) > 1 else ""
    headers = {}
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def compare_head(want_text, got_text):
    """An answer's status line and headers against a sample head: the same
    status, the same header names, the same values but for the clock's and
    the request id."""
    (ws, wh), (gs, gh) = parse_head(want_text), parse_head(got_text)
    problems = [] if ws == gs else ["status %s in the sample, %s in the answer" % (ws, gs)]
    for k in sorted(set(wh) - set(gh)):
        problems.append("header %s: in the sample, not in the answer" % k)
    for k in sorted(set(gh) - set(wh)):
        problems.append("header %s: in the answer, not in the sample" % k)
    for k in sorted(set(wh) & set(gh)):
        if k not in CLOCK_HEADERS and wh[k] != gh[k]:
            problems.append("header %s: %r in the sample, %r in the answer" % (k, wh[k], gh[k]))
    return problems


def check_sample(sample, output, volatile, exact=False):
    """Problems of the real output against the sample block (a list)."""
    problems = []
    text = sample.text
    if exact:
        want, got = text.rstrip("\n").split("\n"), output.rstrip("\n").split("\n")
        return [] if want == got else ["the answer differs from the sample:\n      " +
                                       "\n      ".join(got[:20])]
    if sample.lang == "json":
        try:
            got = json.loads(output)
        except ValueError as e:
            return ["the answer is not JSON (%s): %.200s" % (e, output)]
        try:
            compare(load_sample_json(text), got, "$", volatile, problems)
        except ValueError as e:
            problems.append(str(e))
    elif text.lstrip().startswith("HTTP/"):
        problems = compare_head(text, output)
    elif text.lstrip().startswith("event:"):
        want, got = parse_sse(text), parse_sse(output)
        wn, gn = [n for n, _ in want], [n for n, _ in got]
        if wn != gn:
            return ["events %s in the sample, %s in the answer" % (wn, gn)]
        for i, ((name, w), (_, g)) in enumerate(zip(want, got)):
            try:
                compare(load_sample_json(w), json.loads(g), "%s#%d" % (name, i + 1), volatile,
                        problems)
            except ValueError as e:
                problems.append("event %d: %s" % (i + 1, e))
    else:
        want, got = text.split("\n"), output.rstrip("\n").split("\n")
        if len(want) != len(got):
            return ["%d lines in the sample, %d in the answer" % (len(want), len(got))]
        for i, (w, g) in enumerate(zip(want, got)):
            if len(w.rstrip()) > len(g):
                problems.append("line %d: %d characters in the sample, %d in the answer"
                                % (i + 1, len(w.rstrip()), len(g)))
    return problems


# --- the daemon ---------------------------------------------------------------------------


class Daemon:
    """`heptapod serve` on 127.0.0.1, a free port, with the default model."""

    def __init__(self, binary, flags, log_dir):
        self.log_path = os.path.join(log_dir, "daemon-%d.log" % len(os.listdir(log_dir)))
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [binary, "serve", "--host", "127.0.0.1", "--port", "0"] + flags,
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = None
        end = time.monotonic() + 30
        while time.monotonic() < end and self.proc.poll() is None:
            with open(self.log_path) as f:
                m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", f.read())
            if m:
                self.url = m.group(1)
                break
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError("the daemon did not start: " + open(self.log_path).read()[-2000:])
        while time.monotonic() < end:
            try:  # probes answer without the API key unless --auth-health
                with urllib.request.urlopen(self.url + "/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the daemon never became ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- running --------------------------------------------------------------------------------


class Runner:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.daemons = {}
        self.failures, self.passed, self.not_run = [], [], []
        # Every curl also reports its status on stderr, unless the command
        # sets its own --write-out.
        self.curl_home = os.path.join(tmp, "curlhome")
        os.mkdir(self.curl_home)
        with open(os.path.join(self.curl_home, ".curlrc"), "w") as f:
            f.write('write-out = "%{stderr}\\ndoctest-status: %{http_code}\\n"\n')

    def daemon_url(self, flags, fresh=None):
        """A daemon with these flags, shared by the examples that name the
        same flags; `fresh` (the example's place) gets one of its own."""
        if self.args.url:
            return self.args.url
        key = (tuple(flags), fresh)
        if key not in self.daemons:
            models = [f for m in self.args.model for f in ("--model", m)]
            self.daemons[key] = Daemon(self.args.bin, models + flags,
                                       self.tmp)
        return self.daemons[key].url

    def close(self):
        for d in self.daemons.values():
            d.stop()

    def run(self, cmd, url, env):
        if url:
            cmd = cmd.replace(DOC_HOST, url.split("://", 1)[1])
        if not self.args.wrap:  # wrapped, the command runs the wrapped root's build
            cmd = re.sub(r"^(build/)?heptapod ", shlex.quote(self.args.bin) + " ", cmd)
        argv = shlex.split(self.args.wrap) + ["sh", "-c", cmd] if self.args.wrap else \
            ["sh", "-c", cmd]
        full_env = dict(os.environ, **env)
        if not self.args.wrap:
            full_env["CURL_HOME"] = self.curl_home
        p = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT_S, env=full_env,
                           cwd=self.args.root)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        statuses = re.findall(r"^doctest-status: (\d+)$", err, re.M)
        return p.returncode, out, err, statuses

    def check_file(self, path):
        blocks = read_blocks(path)
        last = None  # (where, command text, url, env) of the last curl run
        last_out = None
        prev_commands = False
        for i, b in enumerate(blocks):
            where = "%s:%d" % (os.path.relpath(path, self.args.root), b.line)
            try:
                notes = parse_notes(b.notes)
            except ValueError as e:
                self.failures.append("%s: %s" % (where, e))
                continue
            if b.lang in ("sh", "bash", "console"):
                commands = split_commands(b.text)
                # Only the command whose printed answer is an error may fail.
                after = blocks[i + 1] if i + 1 < len(blocks) else None
                error_shown = after is not None and after.lang != "sh" and (
                    after.adjacent or any(n.startswith("sample") for n in after.notes)) and \
                    '"error"' in after.text
                ran = False
                for j, cmd in enumerate(commands):
                    kind = command_kind(cmd)
                    if kind is None:
                        self.not_run.append("%s: %s" % (where, cmd.split("\n")[0]))
                        continue
                    if (notes["serve"] is not None or notes["fresh"]) and self.args.url:
                        self.not_run.append("%s: %s (needs its own daemon: %s)"
                                            % (where, cmd.split("\n")[0],
                                               " ".join(notes["serve"])))
                        continue
                    fresh = where if notes["fresh"] else None
                    url = self.daemon_url(notes["serve"] or [], fresh) if kind == "curl" else ""
                    last_out = self.example(where, cmd, kind, url, notes["env"],
                                            may_fail=error_shown and j == len(commands) - 1)
                    last = (where, cmd, url, notes["env"])
                    ran = True
                prev_commands = ran
                continue
            is_sample = notes["sample"] or (b.adjacent and prev_commands)
            prev_commands = False
            if not is_sample:
                continue
            if last is None:
                self.failures.append("%s: a sample with no command run before it" % where)
                continue
            src_where, cmd, url, env = last
            out = last_out
            label = "%s: sample of %s" % (where, src_where)
            if notes["replace"]:
                for old, new in notes["replace"]:
                    if old not in cmd:
                        self.failures.append("%s: %r is not in the command" % (label, old))
                        break
                    cmd = cmd.replace(old, new)
                else:
                    out = self.example(where, cmd, "curl", url, env, quiet=True)
                label += " (%s)" % ", ".join("%s -> %s" % r for r in notes["replace"])
            if out is None:
                self.failures.append("%s: its command failed" % label)
                continue
            volatile = set() if '"seed"' in cmd else {"seed"}
            problems = check_sample(b, out, volatile, notes["exact"])
            if problems:
                self.failures.append("%s: the printed sample is stale:\n    %s"
                                     % (label, "\n    ".join(problems[:12])))
            else:
                kind = "exact" if notes["exact"] else "json" if b.lang == "json" else (
                    "sse" if b.text.startswith("event:") else
                    "http" if b.text.startswith("HTTP/") else "text")
                self.passed.append("%s [%s]" % (label, kind))

    def example(self, where, cmd, kind, url, env, quiet=False, may_fail=False):
        """Runs one command; returns its output, or None after a failure."""
        first = " ".join(cmd.split())
        label = "%s: %s" % (where, first if len(first) < 110 else first[:107] + "...")
        try:
            rc, out, err, statuses = self.run(cmd, url, env)
        except subprocess.TimeoutExpired:
            self.failures.append("%s: no answer within %d s" % (label, COMMAND_TIMEOUT_S))
            return None
        problem = None
        if rc != 0:
            problem = "exit status %d; stderr: %.300s" % (rc, err)
        elif not out.strip():
            problem = "printed nothing"
        elif any(not s.startswith("2") for s in statuses) and not may_fail:
            problem = "HTTP status %s: %.300s" % (",".join(statuses), out)
        elif kind == "generate":
            problem = check_page(out)
        if problem:
            self.failures.append("%s: %s" % (label, problem))
            return None
        if not quiet:
            self.passed.append(label + (" [HTTP %s]" % ",".join(statuses) if statuses else ""))
        return out


def check_page(out):
    """The last iteration `heptapod generate` printed is finished and mostly text."""
    pages = out.strip("\n").split("\n\n")
    head, *rows = pages[-1].split("\n")
    m = re.match(r"^iteration (\d+)/(\d+), (\d+) masked$", head)
    if not m or m.group(1) != m.group(2) or m.group(3) != "0":
        return "the last page is not a finished iteration: %r" % head
    width = max(len(r) for r in rows)
    cells = "".join(r.ljust(width) for r in rows)
    share = sum(c != " " for c in cells) / len(cells)
    if share < MIN_TEXT_SHARE:
        return "an almost blank page: %.0f%% of the cells hold text (want >= %.0f%%)" % (
            100 * share, 100 * MIN_TEXT_SHARE)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--bin", default=os.environ.get("HEPTAPOD_BIN", "build/heptapod"))
    ap.add_argument("--model", action="append",
                    help="a model the daemon serves (repeat; default: models/default.safetensors "
                         "and models/sudoku.safetensors, as `make run`)")
    ap.add_argument("--url", help="a running daemon to use instead of starting one")
    ap.add_argument("--wrap", help="a command prefix for every example, e.g. 'chroot ROOT'")
    ap.add_argument("--root", default=os.path.normpath(os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", "..")), help="the repository (working directory)")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    args.model = args.model or ["models/default.safetensors", "models/sudoku.safetensors"]
    with tempfile.TemporaryDirectory() as tmp:
        r = Runner(args, tmp)
        try:
            for path in args.files:
                r.check_file(path)
        except RuntimeError as e:
            r.failures.append(str(e))
        finally:
            r.close()
    for p in r.passed:
        print("ok: " + p)
    for n in r.not_run:
        print("not run: " + n)
    for f in r.failures:
        print("FAIL: " + f)
    if r.failures:
        print("%d of %d documentation checks failed" % (len(r.failures),
                                                        len(r.failures) + len(r.passed)))
        return 1
    print("all %d documentation checks passed" % len(r.passed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
