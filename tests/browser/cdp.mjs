// cdp.mjs - a minimal Chrome DevTools Protocol client for the browser
// tests: it starts Debian's chromium headless with --remote-debugging-pipe
// (commands go in on its fd 3, answers and events come out of its fd 4, as
// NUL-terminated JSON), so it needs neither a WebSocket library nor npm.
//
//   const b = await launch();
//   const page = await b.newPage();          // a target with a flat session
//   await page.send("Page.enable");
//   page.on("Runtime.consoleAPICalled", (p) => ...);
//   await b.close();

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Headless, no sandbox (the tests run as root), nothing that phones home.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-extensions",
  "--disable-dev-shm-usage",
  "--remote-debugging-pipe",
];

class Session {
  constructor(browser, id) {
    this.browser = browser;
    this.id = id;
    this.handlers = new Map();
  }

  /** Sends a command to this target; resolves with its result. */
  send(method, params = {}) {
    return this.browser.send(method, params, this.id);
  }

  /** Calls fn(params) on every event of that name from this target. */
  on(method, fn) {
    if (!this.handlers.has(method)) this.handlers.set(method, []);
    this.handlers.get(method).push(fn);
  }

  /** Resolves with the params of the next event of that name. */
  once(method, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms`)), timeoutMs);
      const fn = (p) => {
        clearTimeout(t);
        this.handlers.set(method, this.handlers.get(method).filter((f) => f !== fn));
        resolve(p);
      };
      this.on(method, fn);
    });
  }

  /** Evaluates an expression in the page; resolves with its (JSON) value,
   * awaiting a promise; a thrown exception rejects. */
  async eval(expression) {
    const r = await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) {
      const d = r.exceptionDetails;
      throw new Error(`page: ${d.exception?.description || d.text}`);
    }
    return r.result.value;
  }
}

class Browser {
  constructor(proc, dir) {
    this.proc = proc;
    this.dir = dir;
    this.next = 1;
    this.pending = new Map();
    this.sessions = new Map();
    this.stderr = "";
    this.buf = "";
    proc.stderr.on("data", (d) => (this.stderr = (this.stderr + d).slice(-8000)));
    proc.stdio[4].on("data", (d) => this.receive(d));
    proc.on("exit", (code, sig) => {
      for (const { reject } of this.pending.values())
        reject(new Error(`chromium exited (${code ?? sig}): ${this.stderr.slice(-2000)}`));
      this.pending.clear();
    });
  }

  receive(chunk) {
    this.buf += chunk.toString("utf8");
    let end;
    while ((end = this.buf.indexOf("\0")) >= 0) {
      const msg = JSON.parse(this.buf.slice(0, end));
      this.buf = this.buf.slice(end + 1);
      if (msg.id !== undefined) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (!p) continue;
        if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
        else p.resolve(msg.result);
      } else {
        const s = this.sessions.get(msg.sessionId);
        for (const fn of s?.handlers.get(msg.method) || []) fn(msg.params);
      }
    }
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.next++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.proc.stdio[3].write(JSON.stringify(msg) + "\0");
    });
  }

  /** A new tab on about:blank, attached with its own session. */
  async newPage() {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const s = new Session(this, sessionId);
    this.sessions.set(sessionId, s);
    return s;
  }

  /** Closes the browser and removes its profile. */
  async close() {
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.send("Browser.close").catch(() => {});
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts chromium (CHROMIUM env, default /usr/bin/chromium) with a fresh
 * profile; resolves once the protocol answers. */
export async function launch({ executable = process.env.CHROMIUM || "/usr/bin/chromium", args = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "heptapod-chromium-"));
  const proc = spawn(executable, [...FLAGS, `--user-data-dir=${dir}`, ...args, "about:blank"], {
    stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"],
  });
  const b = new Browser(proc, dir);
  await new Promise((resolve, reject) => {
    proc.once("spawn", resolve);
    proc.once("error", reject);
  });
  await b.send("Browser.getVersion");
  return b;
}
