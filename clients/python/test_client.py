"""test_client.py - heptapod_client against live daemons, plus a scripted
server for the retry timings that a live daemon cannot give on cue.

    HEPTAPOD_BIN=build/heptapod /usr/bin/python3 clients/python/test_client.py

Run from the repository root (tests/integration/test_client_python.sh does).
Each daemon listens on 127.0.0.1 on a free port and is stopped at the end.
"""
import ast
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from heptapod_client import Client, HeptapodError, SSEParser  # noqa: E402

BIN = os.environ.get("HEPTAPOD_BIN", "build/heptapod")
FIXTURE = "tests/fixtures/byte_f32.safetensors"
DEFAULT_MODEL = "models/default.safetensors"


class Daemon:
    """`heptapod serve` on a free port of 127.0.0.1, ready when constructed."""

    def __init__(self, *flags):
        self.log = open(os.path.join(TMP, "daemon-%d.log" % id(self)), "w+")
        self.proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", "0"]
                                     + list(flags), stdout=subprocess.DEVNULL, stderr=self.log)
        end = time.monotonic() + 30
        self.url = None
        while time.monotonic() < end and not self.url:
            self.log.seek(0)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.log.read())
            self.url = m.group(1) if m else None
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError("the daemon did not start")
        while not Client(self.url, timeout=2).ready():
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError("the daemon never became ready")
            time.sleep(0.05)

    def metric(self, sample):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                name, _, value = line.rpartition(" ")
                if name == sample:
                    return float(value)
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def setUpModule():
    global TMP, LIVE, KEYED
    import tempfile
    TMP = tempfile.mkdtemp()
    LIVE = Daemon("--model", FIXTURE, "--retry-after-s", "1")
    KEYED = Daemon("--model", FIXTURE, "--api-key", "client-test-key")


def tearDownModule():
    LIVE.stop()
    KEYED.stop()
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)


class Generate(unittest.TestCase):
    def test_generate_answers_the_grid(self):
        page = Client(LIVE.url).generate(text=["Hi"], height=3, width=5, iterations=4, seed=11)
        self.assertEqual((page["height"], page["width"], page["iterations"]), (3, 5, 4))
        self.assertEqual(len(page["grid"]), 3)
        self.assertTrue(all(len(row) == 5 for row in page["grid"]))
        self.assertEqual(page["grid"][0][:2], [ord("H"), ord("i")])
        self.assertEqual(page["text"][0][:2], "Hi")
        self.assertEqual(page["seed"], 11)
        self.assertIn("total_ms", page["timings"])

    def test_stream_yields_every_iteration_then_done(self):
        events = list(Client(LIVE.url).stream(text=["Hi"], height=3, width=5, iterations=4,
                                              seed=11))
        self.assertEqual([e["event"] for e in events], ["iteration"] * 4 + ["done"])
        self.assertEqual([e["data"]["iteration"] for e in events[:4]], [1, 2, 3, 4])
        opens = [e["data"]["open"] for e in events[:4]]
        self.assertEqual(opens, sorted(opens, reverse=True))
        self.assertEqual(opens[-1], 0)
        self.assertEqual(events[-1]["data"]["seed"], 11)
        # The same seed and request: the last iteration is generate()'s grid.
        page = Client(LIVE.url).generate(text=["Hi"], height=3, width=5, iterations=4, seed=11)
        self.assertEqual(events[3]["data"]["grid"], page["grid"])

    def test_models(self):
        models = Client(LIVE.url).models()
        self.assertEqual([m["name"] for m in models], ["byte_f32"])
        self.assertIn("max_height", models[0]["limits"])

    def test_leaving_a_stream_cancels_it(self):
        before = LIVE.metric('heptapod_generations_total{model="byte_f32",outcome="cancelled"}')
        for event in Client(LIVE.url).stream(height=32, width=128, iterations=64, seed=3):
            self.assertEqual(event["event"], "iteration")
            break  # closes the generator, and with it the connection
        end = time.monotonic() + 20
        while time.monotonic() < end:
            after = LIVE.metric(
                'heptapod_generations_total{model="byte_f32",outcome="cancelled"}')
            if after == before + 1:
                break
            time.sleep(0.05)
        self.assertEqual(after, before + 1)


class Errors(unittest.TestCase):
    def test_out_of_range_carries_status_code_and_field(self):
        with self.assertRaises(HeptapodError) as cm:
            Client(LIVE.url).generate(height=1000, width=4)
        e = cm.exception
        self.assertEqual((e.status, e.code, e.field), (422, "out_of_range", "height"))
        self.assertIn("max_height", e.message)
        self.assertTrue(e.request_id)

    def test_unknown_field_is_refused_not_dropped(self):
        with self.assertRaises(HeptapodError) as cm:
            Client(LIVE.url).generate(height=2, width=2, temprature=0.5)
        self.assertEqual((cm.exception.status, cm.exception.field), (400, "temprature"))

    def test_unknown_model(self):
        with self.assertRaises(HeptapodError) as cm:
            Client(LIVE.url).generate(model="nope", height=2, width=2)
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "not_found"))

    def test_stream_errors_before_and_after_the_first_event(self):
        with self.assertRaises(HeptapodError) as cm:
            list(Client(LIVE.url).stream(height=1000, width=4))
        self.assertEqual(cm.exception.status, 422)
        # A deadline that passes mid-stream is an `error` event.
        with self.assertRaises(HeptapodError) as cm:
            list(Client(LIVE.url).stream(height=32, width=128, iterations=64, deadline_ms=1))
        self.assertEqual((cm.exception.status, cm.exception.code), (200, "deadline_exceeded"))

    def test_api_key(self):
        with self.assertRaises(HeptapodError) as cm:
            Client(KEYED.url).models()
        self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))
        with self.assertRaises(HeptapodError) as cm:
            Client(KEYED.url, api_key="wrong").generate(height=1, width=1)
        self.assertEqual(cm.exception.status, 401)
        page = Client(KEYED.url, api_key="client-test-key").generate(height=1, width=1)
        self.assertEqual(page["height"], 1)

    def test_no_daemon(self):
        with self.assertRaises(HeptapodError) as cm:
            Client("http://127.0.0.1:9", timeout=2).generate(height=1, width=1)
        self.assertEqual((cm.exception.status, cm.exception.code), (None, "unreachable"))

    def test_bad_base_url(self):
        with self.assertRaises(ValueError):
            Client("localhost:8080")


class Overload(unittest.TestCase):
    """429 from a live daemon whose queue holds one request."""

    def setUp(self):
        self.daemon = Daemon("--model", FIXTURE, "--max-queue", "1", "--max-batch-cells", "4096",
                             "--retry-after-s", "1")

    def tearDown(self):
        self.daemon.stop()

    def burst(self, client, n=4):
        results = [None] * n

        def one(i):
            try:
                results[i] = client.generate(height=32, width=32, iterations=24, seed=i)
            except HeptapodError as e:
                results[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return results

    def test_429_carries_retry_after_and_retries_succeed(self):
        refused = [r for r in self.burst(Client(self.daemon.url)) if isinstance(r, HeptapodError)]
        self.assertTrue(refused, "no request was refused with a queue of one")
        for e in refused:
            self.assertEqual((e.status, e.code, e.retry_after), (429, "overloaded", 1.0))
        # The same burst with retries: every request gets its grid in the end.
        results = self.burst(Client(self.daemon.url, retries=20))
        self.assertTrue(all(isinstance(r, dict) for r in results), results)


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers POST /generate from the class's script: (status, headers, body)."""
    script = []
    seen = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Scripted.seen.append((time.monotonic(), dict(self.headers)))
        status, headers, body = Scripted.script.pop(0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Retry(unittest.TestCase):
    """Retry-After honoured, attempts bounded, a too-long wait not slept."""

    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    busy = (429, {"Retry-After": "1", "Content-Type": "application/json"},
            b'{"error":{"code":"overloaded","message":"queue full"}}')
    draining = (503, {"Retry-After": "1"},
                b'{"error":{"code":"unavailable","message":"draining"}}')
    ok = (200, {"Content-Type": "application/json"}, b'{"grid":[[1]]}')

    def setUp(self):
        Scripted.seen = []

    def test_waits_retry_after_between_attempts(self):
        Scripted.script = [self.busy, self.draining, self.ok]
        t0 = time.monotonic()
        page = Client(self.url, retries=2, api_key="k").generate(height=1, width=1)
        self.assertEqual(page, {"grid": [[1]]})
        self.assertEqual(len(Scripted.seen), 3)
        gaps = [b[0] - a[0] for a, b in zip(Scripted.seen, Scripted.seen[1:])]
        self.assertTrue(all(g >= 0.95 for g in gaps), gaps)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(Scripted.seen[0][1].get("Authorization"), "Bearer k")

    def test_attempts_are_bounded(self):
        Scripted.script = [self.busy, self.busy]
        with self.assertRaises(HeptapodError) as cm:
            Client(self.url, retries=1).generate(height=1, width=1)
        self.assertEqual((cm.exception.status, cm.exception.retry_after), (429, 1.0))
        self.assertEqual(len(Scripted.seen), 2)

    def test_no_retry_by_default_or_beyond_max_wait(self):
        Scripted.script = [self.busy]
        with self.assertRaises(HeptapodError):
            Client(self.url).generate(height=1, width=1)
        long_wait = (503, {"Retry-After": "120"}, b'{"error":{"code":"unavailable","message":"x"}}')
        Scripted.script = [long_wait]
        t0 = time.monotonic()
        with self.assertRaises(HeptapodError) as cm:
            Client(self.url, retries=3, max_retry_wait=5).generate(height=1, width=1)
        self.assertEqual(cm.exception.retry_after, 120.0)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertEqual(len(Scripted.seen), 2)

    def test_an_answer_that_is_not_the_api(self):
        Scripted.script = [(502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>")]
        with self.assertRaises(HeptapodError) as cm:
            Client(self.url).generate(height=1, width=1)
        self.assertEqual((cm.exception.status, cm.exception.code), (502, "bad_response"))


class Parser(unittest.TestCase):
    def feed(self, text):
        p, out = SSEParser(), []
        for line in re.split(r"\r\n|\r|\n", text):
            e = p.feed(line)
            if e:
                out.append(e)
        return out

    def test_multiline_data_comments_and_line_ends(self):
        text = (": keep-alive\r\n\r\nevent: iteration\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
                ":\revent:done\rdata:{}\r\r" "event: empty\n\n" "data: x\n\n")
        self.assertEqual(self.feed(text), [("iteration", '{"a":\n1}'), ("done", "{}"),
                                           ("message", "x")])


class Readme(unittest.TestCase):
    def test_the_readme_example_runs(self):
        """The README's Python block, against the default model it is written for."""
        with open("README.md", encoding="utf-8") as f:
            readme = f.read()
        code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
        daemon = Daemon("--model", DEFAULT_MODEL)
        try:
            p = subprocess.run([sys.executable, "-c", code.replace("localhost:8080",
                                                                   daemon.url[7:])],
                               env=dict(os.environ, PYTHONPATH=HERE), capture_output=True,
                               text=True, timeout=60)
        finally:
            daemon.stop()
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertTrue(lines[0].startswith("It was a dark and stormy night"), lines)
        events = [l.split() for l in lines if l.startswith(("iteration ", "done "))]
        self.assertEqual([e[0] for e in events], ["iteration"] * 4 + ["done"], lines)
        self.assertEqual(events[3], ["iteration", "0"])  # cells still open after the last
        self.assertIn("422 out_of_range height height: 1000 is above the model's max_height 64",
                      lines)


class Python39(unittest.TestCase):
    def test_the_client_parses_as_python_3_9(self):
        with open(os.path.join(HERE, "heptapod_client.py"), encoding="utf-8") as f:
            src = f.read()
        ast.parse(src, feature_version=(3, 9))


if __name__ == "__main__":
    unittest.main(verbosity=2)
