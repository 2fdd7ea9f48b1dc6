// playground.js - the page at GET /: a form for one POST /generate, a grid
// that redraws from the SSE stream after every iteration, and the controls
// around it. All requests go through heptapod.js with URLs relative to the
// page, so the page works wherever the daemon is mounted (directly, or
// behind deploy/nginx.conf or deploy/haproxy.cfg).
//
// State is one object: the model chosen, `given` (height x width ids, null
// for an open cell: what the request fixes) and the last grid drawn. The
// prompt textarea and the grid both edit `given`; each redraws the other.
// Tests read the DOM: every cell carries data-id (its id, "" when open),
// #grid carries data-iteration and data-state (idle, running, done,
// stopped, error). A model of 9x9 grids is a Sudoku solver: its grid is
// drawn as a board (#grid.sudoku, thick lines around the 3x3 boxes) and
// starts from an example puzzle.

import { Client, HeptapodError } from "./heptapod.js";

const $ = (id) => document.getElementById(id);
const OPEN = "_";
const NUMBERS = ["height", "width", "iterations", "temperature", "top_k", "top_p", "seed", "remask_noise", "remask"];

const st = {
  models: [],
  model: null, // an item of /v1/models
  given: [], // [height*width] id | null
  shown: [], // [height*width] id | null: the grid on screen
  fresh: new Set(), // cells committed by the iteration on screen
  h: 0,
  w: 0,
  cursor: 0,
  running: null, // AbortController of the generation in flight
};

const isByte = () => !st.model || st.model.hparams.tokenizer === "byte";
const isSudoku = () => !!st.model && st.model.limits.max_height === 9 && st.model.limits.max_width === 9;
// A puzzle for the Sudoku model (the first "medium" one of tools/sudoku/puzzles.txt);
// "_" is an open cell.
const SUDOKU_PUZZLE = [
  "9___7___4",
  "_2_85__7_",
  "35_9___2_",
  "_3___5___",
  "78___9_6_",
  "145__2__7",
  "_7__91_8_",
  "____3___9",
  "______14_",
];
const SUDOKU_ITERATIONS = 64;
const client = () => new Client({ baseUrl: ".", apiKey: $("api_key").value.trim() });

// ---- showing things ---------------------------------------------------------

function status(text) {
  $("status").textContent = text;
}

function showError(e) {
  const box = $("error");
  for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  if (!e) {
    box.hidden = true;
    return;
  }
  if (e instanceof HeptapodError) {
    let text = `${e.status} ${e.code}: ${e.message}`;
    if (e.retryAfter !== null) text += ` (retry after ${e.retryAfter} s)`;
    box.textContent = text;
    const input = e.field && $(e.field.replace(/\[.*$/, ""));
    if (input) input.setAttribute("aria-invalid", "true");
  } else {
    box.textContent = String(e.message || e);
  }
  box.hidden = false;
}

// A cell as a character: printable ASCII as itself, other bytes as U+FFFD,
// non-byte models' ids as the last digit (the grid is for shape; data-id
// holds the exact id).
function glyph(id) {
  if (id === null) return "·";
  if (!isByte()) return String(id % 10);
  return id >= 0x20 && id < 0x7f ? String.fromCharCode(id) : "\uFFFD";
}

function buildGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  grid.classList.toggle("sudoku", isSudoku());
  grid.style.gridTemplateColumns = isSudoku() ? "" : `repeat(${st.w}, 1.15ch)`;
  for (let i = 0; i < st.h * st.w; i++) {
    const c = document.createElement("span");
    c.id = "c" + i;
    c.setAttribute("role", "gridcell");
    grid.append(c);
  }
  st.cursor = Math.min(st.cursor, st.h * st.w - 1);
  drawGrid();
}

function drawGrid() {
  const cells = $("grid").children;
  for (let i = 0; i < cells.length; i++) {
    const id = st.given[i] ?? st.shown[i] ?? null;
    const c = cells[i];
    c.textContent = glyph(id);
    c.dataset.id = id === null ? "" : String(id);
    let cls = "cell";
    if (st.given[i] !== null) cls += " fixed";
    else if (id === null) cls += " open";
    else if (st.fresh.has(i)) cls += " new";
    if (i === st.cursor) cls += " cursor";
    if (isSudoku()) {
      // thick lines right of columns 2 and 5 and below rows 2 and 5
      if (i % st.w === 2 || i % st.w === 5) cls += " box-r";
      if (Math.floor(i / st.w) === 2 || Math.floor(i / st.w) === 5) cls += " box-b";
    }
    c.className = cls;
  }
  if (cells.length) $("grid").setAttribute("aria-activedescendant", "c" + st.cursor);
}

// ---- the prompt and the grid edit `given` ----------------------------------------

function resize() {
  const h = Math.max(1, Math.min(Number($("height").value) || 1, 256));
  const w = Math.max(1, Math.min(Number($("width").value) || 1, 256));
  const old = st.given;
  const oh = st.h;
  const ow = st.w;
  st.given = new Array(h * w).fill(null);
  for (let y = 0; y < Math.min(h, oh); y++)
    for (let x = 0; x < Math.min(w, ow); x++) st.given[y * w + x] = old[y * ow + x];
  st.h = h;
  st.w = w;
  st.shown = [];
  st.fresh.clear();
  buildGrid();
}

function promptToGiven() {
  if (!isByte()) return;
  st.given.fill(null);
  const enc = new TextEncoder();
  $("prompt")
    .value.split("\n")
    .slice(0, st.h)
    .forEach((row, y) => {
      const bytes = enc.encode(row);
      for (let x = 0; x < Math.min(bytes.length, st.w); x++)
        st.given[y * st.w + x] = bytes[x] === OPEN.charCodeAt(0) ? null : bytes[x];
    });
  drawGrid();
}

// Rows of `given` as text when every fixed cell is printable ASCII (and not
// the open mark); otherwise null: the request then sends ids.
function givenAsText() {
  const rows = [];
  for (let y = 0; y < st.h; y++) {
    let row = "";
    for (let x = 0; x < st.w; x++) {
      const id = st.given[y * st.w + x];
      if (id === null) row += OPEN;
      else if (id >= 0x20 && id < 0x7f && id !== OPEN.charCodeAt(0)) row += String.fromCharCode(id);
      else return null;
    }
    rows.push(row.replace(/_+$/, ""));
  }
  while (rows.length && rows[rows.length - 1] === "") rows.pop();
  return rows;
}

function givenToPrompt() {
  const rows = givenAsText();
  if (rows) $("prompt").value = rows.join("\n");
}

function setCell(i, id) {
  st.given[i] = id;
  givenToPrompt();
  drawGrid();
  updateCurl();
}

function toggleCell(i) {
  if (st.given[i] !== null) setCell(i, null);
  else if (st.shown[i] !== undefined && st.shown[i] !== null) setCell(i, st.shown[i]);
}

function moveCursor(i) {
  st.cursor = Math.max(0, Math.min(i, st.h * st.w - 1));
  drawGrid();
}

function gridKey(ev) {
  const { key } = ev;
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -st.w, ArrowDown: st.w, Home: -(st.cursor % st.w) };
  if (key in moves) moveCursor(st.cursor + moves[key]);
  else if (key === " ") toggleCell(st.cursor);
  else if (key === "Delete" || key === "Backspace") setCell(st.cursor, null);
  else if (key.length === 1 && isByte() && key.charCodeAt(0) >= 0x20 && key.charCodeAt(0) < 0x7f && key !== OPEN) {
    setCell(st.cursor, key.charCodeAt(0));
    moveCursor(st.cursor + 1);
  } else return;
  ev.preventDefault();
}

// ---- the request -------------------------------------------------------------

function buildRequest() {
  const req = { model: st.model ? st.model.id : undefined };
  for (const name of NUMBERS) {
    const v = $(name).value.trim();
    if (v !== "") req[name] = Number(v);
  }
  if ($("order").value) req.order = $("order").value;
  if (st.given.some((id) => id !== null)) {
    const rows = isByte() ? givenAsText() : null;
    if (rows) req.text = rows;
    else
      req.given = Array.from({ length: st.h }, (_, y) => st.given.slice(y * st.w, (y + 1) * st.w));
  }
  return req;
}

function curlOf(req) {
  const url = new URL("generate", document.baseURI).href;
  const body = JSON.stringify({ ...req, stream: true }).replace(/'/g, "'\\''");
  return `curl -sN ${url} -H 'Content-Type: application/json' -d '${body}'`;
}

function updateCurl() {
  $("curl-text").value = curlOf(buildRequest());
}

async function copyCurl() {
  updateCurl();
  const text = $("curl-text").value;
  try {
    await navigator.clipboard.writeText(text);
    status("curl command copied");
  } catch {
    $("curl-text").select(); // no clipboard (plain http, no permission): select it instead
    status("press Ctrl+C to copy the selected curl command");
  }
}

// ---- generating ----------------------------------------------------------------

function setRunning(ctl) {
  st.running = ctl;
  $("generate").disabled = !!ctl;
  $("stop").disabled = !ctl;
}

function onIteration(d, t0, last) {
  const next = d.grid.flat();
  st.fresh = new Set();
  next.forEach((id, i) => {
    if (id !== null && (st.shown[i] ?? null) === null && st.given[i] === null) st.fresh.add(i);
  });
  st.shown = next;
  drawGrid();
  const now = performance.now();
  $("grid").dataset.iteration = String(d.iteration);
  $("progress").textContent = `iteration ${d.iteration} / ${d.iterations}, ${d.open} open`;
  const li = document.createElement("li");
  li.textContent = `iteration ${d.iteration}: ${(now - last).toFixed(0)} ms, ${st.fresh.size} cells committed, ${d.open} open`;
  $("timings").append(li);
  status(`generating: iteration ${d.iteration} of ${d.iterations} (${(now - t0).toFixed(0)} ms)`);
  return now;
}

function onDone(d) {
  const t = d.timings;
  $("summary").textContent =
    `seed ${d.seed}, remask noise ${d.remask_noise}, order ${d.order}, remask ${d.remask}, ` +
    `${d.iterations} iterations: queued ${t.queued_ms} ms, ` +
    `first iteration ${t.first_iteration_ms} ms, compute ${t.compute_ms} ms, total ${t.total_ms} ms ` +
    `(request ${d.request_id})`;
}

async function generate() {
  if (st.running) return;
  showError(null);
  const req = buildRequest();
  updateCurl();
  const ctl = new AbortController();
  setRunning(ctl);
  st.shown = [];
  st.fresh.clear();
  drawGrid();
  $("timings").replaceChildren();
  $("summary").textContent = "";
  $("grid").dataset.iteration = "0";
  $("grid").dataset.state = "running";
  status("waiting for the first iteration…");
  const t0 = performance.now();
  let last = t0;
  try {
    for await (const ev of client().stream(req, { signal: ctl.signal })) {
      if (ev.event === "iteration") last = onIteration(ev.data, t0, last);
      else if (ev.event === "done") onDone(ev.data);
    }
    $("grid").dataset.state = "done";
    status(`done in ${(performance.now() - t0).toFixed(0)} ms`);
  } catch (e) {
    if (e.name === "AbortError") {
      $("grid").dataset.state = "stopped";
      status("stopped: the daemon cancelled the generation");
    } else {
      $("grid").dataset.state = "error";
      showError(e);
      status("failed");
    }
  } finally {
    setRunning(null);
  }
}

function stop() {
  if (st.running) st.running.abort();
}

// ---- models ------------------------------------------------------------------------

function chooseModel(id) {
  st.model = st.models.find((m) => m.id === id) || st.models[0] || null;
  if (!st.model) return;
  const lim = st.model.limits;
  $("height").max = lim.max_height;
  $("width").max = lim.max_width;
  $("iterations").max = lim.max_iterations;
  $("top_k").max = st.model.hparams.vocab_size;
  const noise = st.model.metadata.remask_noise;
  $("remask_noise").placeholder = noise ? `model's: ${noise}` : "0";
  const md = st.model.metadata;
  $("order").options[0].textContent = `model's: ${["margin", "raster"].includes(md.order) ? md.order : "confidence"}`;
  $("remask").placeholder = `model's: ${Number(md.remask) >= 0 && Number(md.remask) < 1 ? Number(md.remask) : 0}`;
  $("prompt-label").hidden = !isByte();
  $("prompt").rows = isSudoku() ? 9 : 3;
  if (isSudoku()) {
    // a board with a puzzle on it, solved greedily
    $("height").value = "9";
    $("width").value = "9";
    $("iterations").value = String(SUDOKU_ITERATIONS);
    $("temperature").value = "0";
    $("prompt").value = SUDOKU_PUZZLE.join("\n");
  }
  resize();
  promptToGiven();
  updateCurl();
}

async function loadModels() {
  try {
    const list = await client().models();
    st.models = list.data;
    const sel = $("model");
    sel.replaceChildren(
      ...list.data.map((m) => {
        const o = document.createElement("option");
        o.value = m.id;
        o.textContent = `${m.id}${m.default ? " (default)" : ""}`;
        return o;
      }),
    );
    sel.value = list.default || (list.data[0] && list.data[0].id) || "";
    chooseModel(sel.value);
    showError(null);
    status(list.data.length ? "ready" : "no model is loaded yet: reload in a moment");
    $("grid").dataset.state = "idle";
  } catch (e) {
    showError(e);
    status("cannot list the models");
  }
}

// ---- wiring --------------------------------------------------------------------------

function init() {
  resize();
  promptToGiven();
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    generate();
  });
  $("stop").addEventListener("click", stop);
  $("curl").addEventListener("click", copyCurl);
  $("clear").addEventListener("click", () => {
    st.given.fill(null);
    $("prompt").value = "";
    drawGrid();
  });
  $("model").addEventListener("change", (ev) => chooseModel(ev.target.value));
  $("api_key").addEventListener("change", loadModels); // a 401 on load is fixed by typing the key
  for (const id of ["height", "width"])
    $(id).addEventListener("change", () => {
      resize();
      promptToGiven();
    });
  $("prompt").addEventListener("input", promptToGiven);
  $("prompt").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      generate();
    }
  });
  $("controls").addEventListener("input", updateCurl);
  $("grid").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      generate();
    } else gridKey(ev);
  });
  $("grid").addEventListener("click", (ev) => {
    const i = Number((ev.target.id || "").slice(1));
    if (!ev.target.id || Number.isNaN(i)) return;
    st.cursor = i;
    toggleCell(i);
    drawGrid();
    $("grid").focus();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") stop();
  });
  loadModels().then(updateCurl);
}

init();
