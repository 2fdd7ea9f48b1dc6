// playground_test.mjs URL SCREENSHOT [DAEMON] - drives the playground at
// URL/ in headless chromium (cdp.mjs) against a live daemon serving the
// default model, as a user would: keyboard and mouse events, never the
// page's own functions. DAEMON (default URL) is where the test itself reads
// /metrics and asks the JSON API, when URL is a proxy in front of it.
// Prints one ok/FAIL line per check; exits 1 on any failure.
//
//  1. the page loads, lists the models and logs no console error;
//  2. Tab walks the controls in order, and every control shows focus;
//  3. Enter generates: every iteration reaches the DOM (counted by a
//     MutationObserver on #grid's data-iteration), one timing row each;
//  4. the grid on the page equals the JSON API's answer to the request that
//     "copy as curl" shows (same seed and settings), and the prompt's cells
//     stay fixed;
//  5. a screenshot is written to SCREENSHOT; then a click fixes a cell,
//     Delete frees it and a typed character fixes one, in the request too;
//  6. an out-of-range setting shows the error body's code and message;
//  7. a click on Generate then Escape stops a long generation, and the
//     daemon's metrics count it as cancelled;
//  8. choosing the Sudoku model (when the daemon serves one) draws a 9x9
//     board of 81 cells with the example puzzle fixed, and Generate fills
//     every open cell with a digit;
//  9. at phone width the page does not scroll sideways (the grid does).

import { writeFileSync } from "node:fs";
import { launch } from "./cdp.mjs";
import { expect, fail, finish, ok } from "./checks.mjs";

const [url, shotPath, daemon = url] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function metric(name) {
  const text = await (await fetch(daemon + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.split(" ")[1]) : 0;
}

const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("Runtime.consoleAPICalled", (p) => {
    if (p.type === "error" || p.type === "assert")
      errors.push("console: " + p.args.map((a) => a.value ?? a.description).join(" "));
  });
  page.on("Runtime.exceptionThrown", (p) =>
    errors.push("exception: " + (p.exceptionDetails.exception?.description || p.exceptionDetails.text)),
  );
  page.on("Log.entryAdded", (p) => {
    if (p.entry.level === "error") errors.push(`log (${p.entry.source}): ${p.entry.text} ${p.entry.url || ""}`);
  });
  await page.send("Runtime.enable");
  await page.send("Log.enable");
  await page.send("Page.enable");
  await page.send("Emulation.setDeviceMetricsOverride", { width: 1100, height: 860, deviceScaleFactor: 1, mobile: false });

  const key = async (k, code, vk, text) => {
    await page.send("Input.dispatchKeyEvent", { type: "keyDown", key: k, code, windowsVirtualKeyCode: vk, text });
    await page.send("Input.dispatchKeyEvent", { type: "keyUp", key: k, code, windowsVirtualKeyCode: vk });
  };
  const enter = () => key("Enter", "Enter", 13, "\r");
  const escape = () => key("Escape", "Escape", 27);
  const state = () => page.eval(`document.getElementById("grid").dataset.state`);
  const set = (values) =>
    page.eval(`(() => {
      for (const [id, v] of Object.entries(${JSON.stringify(values)})) {
        const el = document.getElementById(id);
        el.value = v;
        el.dispatchEvent(new Event("input", { bubbles: true }));
        el.dispatchEvent(new Event("change", { bubbles: true }));
      }
    })()`);

  // --- 1. load -------------------------------------------------------------------
  const loaded = page.once("Page.loadEventFired");
  await page.send("Page.navigate", { url: url + "/" });
  await loaded;
  await waitFor("the model list", () => page.eval(`document.getElementById("grid").dataset.state === "idle"`));
  expect("the model list offers the default model", await page.eval(`document.getElementById("model").value`), "default");
  expect("no console error while loading", errors, []);

  // --- 2. keyboard: tab order and visible focus ---------------------------------------
  await page.eval(`document.activeElement.blur()`);
  const order = [];
  const bare = [];
  for (let i = 0; i < 18; i++) {
    await key("Tab", "Tab", 9);
    const [id, outline] = await page.eval(
      `document.activeElement === document.body ? ["(page)", "-"]
        : [document.activeElement.id, getComputedStyle(document.activeElement).outlineStyle]`,
    );
    order.push(id);
    if (outline === "none") bare.push(id);
  }
  const want = ["model", "height", "width", "iterations", "temperature", "top_k", "top_p", "seed", "remask_noise",
    "api_key", "prompt", "generate", "curl", "clear", "grid"];
  expect("Tab walks the controls in order", order.filter((id) => want.includes(id)).slice(0, want.length), want);
  expect("every focused control shows a focus outline", bare, []);

  // --- 3. Enter generates and every iteration streams into the DOM --------------------------
  const prompt = "The committee met on Monday";
  await set({ height: "6", width: "40", iterations: "6", temperature: "0.8", top_k: "40", seed: "11", prompt });
  await page.eval(`(() => {
    const g = document.getElementById("grid");
    window.seen = [];
    new MutationObserver(() => seen.push(g.dataset.iteration))
      .observe(g, { attributes: true, attributeFilter: ["data-iteration"] });
  })()`);
  await page.eval(`document.getElementById("seed").focus()`);
  await enter();
  await waitFor("the generation to finish", async () => (await state()) !== "running" && (await state()) !== "idle", 30000);
  expect("the generation ends done", await state(), "done");
  expect("the DOM showed iterations 1..6 in order",
    (await page.eval(`seen`)).filter((v) => v !== "0"), ["1", "2", "3", "4", "5", "6"]);
  expect("one timing row per iteration", await page.eval(`document.querySelectorAll("#timings li").length`), 6);
  const done = await page.eval(`document.getElementById("progress").textContent`);
  expect("the counter shows the last iteration", done.startsWith("iteration 6 / 6"), true);

  // --- 4. the page's grid is the API's grid for the request copy-as-curl shows ----------------
  const ids = await page.eval(`(() => {
    const cells = [...document.querySelectorAll("#grid .cell")].map((c) => c.dataset.id === "" ? null : Number(c.dataset.id));
    return Array.from({ length: 6 }, (_, y) => cells.slice(y * 40, y * 40 + 40));
  })()`);
  const curl = await page.eval(`document.getElementById("curl-text").value`);
  const m = /^curl -sN (\S+) -H 'Content-Type: application\/json' -d '(.*)'$/.exec(curl);
  if (!m) fail("copy as curl: unexpected command " + curl);
  const req = m ? JSON.parse(m[2].replace(/'\\''/g, "'")) : {};
  expect("copy as curl names this daemon's /generate", m && m[1], url + "/generate");
  expect("copy as curl carries the settings", [req.seed, req.height, req.width, req.iterations, req.temperature, req.top_k, req.text],
    [11, 6, 40, 6, 0.8, 40, [prompt]]);
  const res = await fetch(daemon + "/generate", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...req, stream: false }),
  });
  const api = await res.json();
  expect("the JSON API answers the same request", res.status, 200);
  expect("the page's final grid equals the JSON API's grid", ids, api.grid);
  expect("the prompt's cells are fixed on the page",
    await page.eval(`[...document.querySelectorAll("#grid .cell")].slice(0, ${prompt.length}).every((c) => c.classList.contains("fixed"))`),
    true);
  expect("the page's first row starts with the prompt", String.fromCharCode(...ids[0].slice(0, prompt.length)), prompt);
  expect("the page shows the seed of the done event",
    (await page.eval(`document.getElementById("summary").textContent`)).startsWith("seed 11,"), true);

  // --- 5. screenshot ------------------------------------------------------------------------
  const shot = await page.send("Page.captureScreenshot", { format: "png" });
  writeFileSync(shotPath, Buffer.from(shot.data, "base64"));
  ok(`screenshot written to ${shotPath}`);

  // --- 5b. cells: a click fixes a generated cell, Delete frees it, a typed character fixes one
  const click = async (x, y) => {
    for (const type of ["mousePressed", "mouseReleased"])
      await page.send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1 });
  };
  const cell = (i) => page.eval(`(() => { const c = document.getElementById("c${i}"), r = c.getBoundingClientRect();
    return { x: r.x + r.width / 2, y: r.y + r.height / 2, fixed: c.classList.contains("fixed"), id: c.dataset.id }; })()`);
  const promptRows = async () => (await page.eval(`document.getElementById("prompt").value`)).split("\n");
  const picked = ids[2][3];
  let c = await cell(2 * 40 + 3);
  await click(c.x, c.y);
  c = await cell(2 * 40 + 3);
  expect("a click fixes a generated cell to what it shows", [c.fixed, c.id], [true, String(picked)]);
  if (picked >= 0x20 && picked < 0x7f && picked !== 0x5f)
    expect("... and writes it into the prompt rows", (await promptRows())[2], "___" + String.fromCharCode(picked));
  await key("Delete", "Delete", 46);
  c = await cell(2 * 40 + 3);
  expect("Delete frees the cell under the cursor", [c.fixed, await promptRows()], [false, [prompt]]);
  await key("ArrowDown", "ArrowDown", 40);
  await key("Z", "KeyZ", 90, "Z");
  c = await cell(3 * 40 + 3);
  expect("a typed character fixes the cell below", [c.fixed, c.id], [true, "90"]);
  expect("... and the request sends it", JSON.parse(/-d '(.*)'$/.exec(await page.eval(`document.getElementById("curl-text").value`))[1]).text,
    [prompt, "", "", "___Z"]);

  // --- 6. errors come from the error body ------------------------------------------------------
  const before = errors.length;
  await set({ temperature: "-1" });
  await page.eval(`document.getElementById("temperature").focus()`);
  await enter();
  await waitFor("the error", async () => (await state()) === "error");
  const shown = await page.eval(`document.getElementById("error").textContent`);
  expect("the error box shows status and code", shown.startsWith("422 out_of_range: "), true);
  expect("the error box shows the daemon's message", /temperature/.test(shown), true);
  expect("the field named by the error is marked invalid",
    await page.eval(`document.getElementById("temperature").getAttribute("aria-invalid")`), "true");
  // The browser itself logs a failed response; nothing else may appear.
  const extra = errors.splice(before).filter((e) => !/status of 422/.test(e));
  expect("no console error besides the 422 response", extra, []);

  // --- 7. Stop cancels on the daemon ---------------------------------------------------------------
  const cancelled = 'heptapod_generations_total{model="default",outcome="cancelled"}';
  const active = 'heptapod_active_requests{model="default"}';
  const n0 = await metric(cancelled);
  await set({ temperature: "", height: "64", width: "64", iterations: "64", prompt: "" });
  const box = await page.eval(`(() => { const r = document.getElementById("generate").getBoundingClientRect();
    return [r.x + r.width / 2, r.y + r.height / 2]; })()`);
  for (const type of ["mousePressed", "mouseReleased"])
    await page.send("Input.dispatchMouseEvent", { type, x: box[0], y: box[1], button: "left", clickCount: 1 });
  await waitFor("two iterations of the long generation",
    async () => Number(await page.eval(`document.getElementById("grid").dataset.iteration`)) >= 2, 30000);
  await escape();
  await waitFor("the page to stop", async () => (await state()) === "stopped");
  ok("Escape stops the page's generation");
  await waitFor("the daemon to count a cancelled generation", async () => (await metric(cancelled)) === n0 + 1, 10000)
    .then(() => ok(`the daemon counts it cancelled (${n0} -> ${n0 + 1})`))
    .catch(() => fail("cancelled generations did not grow by one"));
  await waitFor("no active request", async () => (await metric(active)) === 0, 10000)
    .then(() => ok("nothing is left computing"))
    .catch(() => fail("a request stayed active after Stop"));
  expect("Generate is enabled again, Stop disabled",
    await page.eval(`[document.getElementById("generate").disabled, document.getElementById("stop").disabled]`), [false, true]);

  // --- 8. the Sudoku board ----------------------------------------------------------------------
  const models = await page.eval(`[...document.getElementById("model").options].map((o) => o.value)`);
  if (models.includes("sudoku")) {
    await set({ model: "sudoku" });
    const board = await page.eval(`(() => {
      const g = document.getElementById("grid"), cells = [...g.querySelectorAll(".cell")];
      return { sudoku: g.classList.contains("sudoku"), n: cells.length,
               fixed: cells.filter((c) => c.classList.contains("fixed")).length,
               thick: cells.filter((c) => c.classList.contains("box-r")).length,
               cols: getComputedStyle(g).gridTemplateColumns.split(" ").length,
               size: [document.getElementById("height").value, document.getElementById("width").value] };
    })()`);
    expect("the Sudoku model draws a 9x9 board of 81 cells",
      [board.sudoku, board.n, board.cols, board.size], [true, 81, 9, ["9", "9"]]);
    expect("the board shows the example puzzle's givens and the box lines", [board.fixed > 17, board.thick], [true, 18]);
    await page.eval(`document.getElementById("generate").click()`);
    await waitFor("the Sudoku generation to finish", async () => (await state()) === "done", 60000);
    const digits = await page.eval(`[...document.querySelectorAll("#grid .cell")].map((c) => c.textContent).join("")`);
    expect("every cell of the board holds a digit 1-9 after Generate", /^[1-9]{81}$/.test(digits), true);
    await set({ model: "default", height: "8", width: "48" });
    expect("choosing the text model again drops the board",
      await page.eval(`document.getElementById("grid").classList.contains("sudoku")`), false);
  } else {
    ok("no Sudoku model served: board checks skipped");
  }

  // --- 9. phone width ---------------------------------------------------------------------------------
  await page.send("Emulation.setDeviceMetricsOverride", { width: 390, height: 800, deviceScaleFactor: 2, mobile: true });
  await sleep(200);
  const [scrollW, innerW] = await page.eval(`[document.documentElement.scrollWidth, window.innerWidth]`);
  expect(`at 390 px the page does not scroll sideways (${scrollW} <= ${innerW})`, scrollW <= innerW, true);

  expect("no console error in the whole session", errors, []);
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}
finish();
