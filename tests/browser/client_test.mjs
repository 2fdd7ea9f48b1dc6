// client_test.mjs URL - the JavaScript client (server/static/heptapod.js, as
// the daemon serves it at /static/heptapod.js) under Node against a live
// daemon started with --api-key test-key: models, one model, generate,
// stream, typed errors, abort, and the SSE parser on hand-made framings.
// Prints one ok/FAIL line per check; exits 1 on any failure.

import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, fail, finish, ok } from "./checks.mjs";

const [url] = process.argv.slice(2);
async function rejects(what, promise) {
  try {
    await promise;
    fail(what + ": did not throw");
    return null;
  } catch (e) {
    return e;
  }
}

// The module exactly as the daemon serves it.
const dir = mkdtempSync(join(tmpdir(), "heptapod-js-"));
const src = await (await fetch(url + "/static/heptapod.js")).text();
writeFileSync(join(dir, "heptapod.mjs"), src);
const { Client, HeptapodError, parseSSE } = await import(join(dir, "heptapod.mjs"));
rmSync(dir, { recursive: true });

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
async function until(what, fn, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(50);
  }
}
// "ACTIVE QUEUED": the fixture model's active requests and queue depth.
async function gauges(want) {
  const m = await (await fetch(url + "/metrics")).text();
  const g = (name) => (new RegExp(`^${name}\\{model="byte_f32"\\} (\\d+)$`, "m").exec(m) || [])[1];
  return `${g("heptapod_active_requests")} ${g("heptapod_queue_depth")}` === want;
}

const hp = new Client({ baseUrl: url + "/", apiKey: "test-key" });
try {
  // --- models --------------------------------------------------------------------
  const list = await hp.models();
  expect("models() lists the fixture model with its id", list.data.map((m) => [m.id, m.name]), [["byte_f32", "byte_f32"]]);
  const one = await hp.model("byte_f32");
  expect("model(name) answers that model", one, list.data[0]);
  let e = await rejects("an unknown model", hp.model("nope"));
  expect("model('nope') throws not_found 404",
    [e instanceof HeptapodError, e?.code, e?.status], [true, "not_found", 404]);

  // --- generate and stream agree ---------------------------------------------------
  const req = { text: ["ab_d"], height: 3, width: 6, iterations: 4, seed: 5, temperature: 0.9 };
  const r = await hp.generate(req);
  expect("generate() answers the grid with the seed asked", [r.seed, r.grid.length, r.grid[0].length], [5, 3, 6]);
  const events = [];
  for await (const ev of hp.stream(req)) events.push(ev);
  expect("stream() yields every iteration, then done",
    events.map((ev) => ev.event + (ev.data.iteration ?? "")),
    ["iteration1", "iteration2", "iteration3", "iteration4", "done"]);
  expect("the last streamed grid is generate()'s grid", events[3].data.grid, r.grid);
  expect("the done event carries the seed", events[4].data.seed, 5);

  // --- typed errors --------------------------------------------------------------------
  e = await rejects("an out-of-range request", hp.generate({ height: 2, width: 2, top_p: 2 }));
  expect("a 422 becomes a HeptapodError with code, status and field",
    [e?.name, e?.code, e?.status, e?.field], ["HeptapodError", "out_of_range", 422, "top_p"]);
  expect("the error carries the daemon's message and request id",
    [/top_p/.test(e?.message), typeof e?.requestId], [true, "string"]);
  e = await rejects("a streaming error before the stream", (async () => {
    for await (const _ of hp.stream({ height: 0, width: 2 })) void _;
  })());
  expect("stream() of a bad request throws before any event", [e?.code, e?.status], ["out_of_range", 422]);
  e = await rejects("no API key", new Client({ baseUrl: url }).generate({ height: 1, width: 1 }));
  expect("a missing key is unauthorized 401", [e?.code, e?.status], ["unauthorized", 401]);

  // A full queue (the daemon runs --max-batch-cells 1024 --max-queue 1): one
  // long request runs, one waits, the third is refused. Retry-After is
  // computed from the queued work and the measured rate: whole seconds.
  const long = { height: 16, width: 64, iterations: 100000, seed: 1 };
  const ctl = new AbortController();
  const held = [hp.generate(long, { signal: ctl.signal }).catch((x) => x)];
  await until("the first request runs", () => gauges("1 0"));
  held.push(hp.generate(long, { signal: ctl.signal }).catch((x) => x));
  await until("the second request waits", () => gauges("1 1"));
  e = await rejects("a full queue", hp.generate(long, { signal: ctl.signal }));
  expect("a full queue is overloaded 429 with retryAfter in seconds",
    [e?.code, e?.status, Number.isInteger(e?.retryAfter) && e.retryAfter >= 1],
    ["overloaded", 429, true]);

  // --- abort ---------------------------------------------------------------------------
  ctl.abort();
  expect("abort() ends pending generate() calls with an AbortError",
    (await Promise.all(held)).map((x) => x?.name), ["AbortError", "AbortError"]);
  // The daemon notices the closed connections and frees the queue.
  await until("the aborted requests to leave", () => gauges("0 0"));
  ok("aborted requests leave the daemon");
  const sctl = new AbortController();
  let seen = 0;
  e = await rejects("an aborted stream", (async () => {
    for await (const ev of hp.stream(long, { signal: sctl.signal }))
      if (ev.event === "iteration" && ++seen === 2) sctl.abort();
  })());
  expect("an aborted stream throws AbortError after the events read", [e?.name, seen], ["AbortError", 2]);

  // --- the SSE parser on framings a proxy or another server may produce ------------------
  const body = (chunks) =>
    new ReadableStream({
      start(c) {
        for (const s of chunks) c.enqueue(new TextEncoder().encode(s));
        c.close();
      },
    });
  const parsed = [];
  for await (const ev of parseSSE(body([": hello\r\n\r\nevent: it", "eration\r\ndata: {\"a\":\r", "\ndata: 1}\r\n\r\n",
    "data: x\n\nevent:done\ndata:{}\n\n", "event: half\ndata: lost"])))
    parsed.push(ev);
  expect("parseSSE: CRLF, split lines, multi-line data, comments, no space after the colon",
    parsed, [{ event: "iteration", data: "{\"a\":\n1}" }, { event: "message", data: "x" }, { event: "done", data: "{}" }]);
} catch (e) {
  fail(e.stack || e.message);
}
finish();
