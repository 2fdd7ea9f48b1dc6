// heptapod.js - a small client for the heptapod API, as an ES module: the
// playground at GET / uses it, and so can any page or Node 18+ program
// (both have fetch). The daemon serves it at /static/heptapod.js.
//
//   import { Client } from "/static/heptapod.js";
//   const hp = new Client();                     // same origin; or { baseUrl, apiKey }
//   const r = await hp.generate({ text: ["Once upon a time"], height: 4, width: 32 });
//   for await (const ev of hp.stream({ height: 4, width: 32 }, { signal }))
//     if (ev.event === "iteration") draw(ev.data.grid);
//
// Every failure is a HeptapodError with the error body's code and message,
// the HTTP status and Retry-After (seconds). An aborted signal ends a
// request with the fetch's own AbortError; the daemon sees the connection
// close and cancels the generation before its next iteration.

/** An error answer of the daemon (or a failure to read one). */
export class HeptapodError extends Error {
  /**
   * @param {object} o code (e.g. "out_of_range"), message, field (or null),
   *   status (HTTP status; 200 for an error event inside a stream),
   *   retryAfter (seconds, or null), requestId (or null)
   */
  constructor({ code, message, field = null, status, retryAfter = null, requestId = null }) {
    super(message);
    this.name = "HeptapodError";
    this.code = code;
    this.field = field;
    this.status = status;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }
}

/** Retry-After as seconds: a number of seconds or an HTTP date; null if absent. */
function retryAfterOf(res) {
  const v = res.headers.get("retry-after");
  if (v === null) return null;
  if (/^\d+$/.test(v.trim())) return Number(v);
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, Math.ceil((t - Date.now()) / 1000));
}

/** The HeptapodError for a response that is not a success. */
async function errorOf(res) {
  const text = await res.text().catch(() => "");
  let e = null;
  try {
    e = JSON.parse(text).error;
  } catch {
    // not the daemon's JSON: a proxy's page, say
  }
  const ok = e && typeof e.code === "string" && typeof e.message === "string";
  return new HeptapodError({
    code: ok ? e.code : "http_" + res.status,
    message: ok ? e.message : `HTTP ${res.status}: ${text.slice(0, 200) || res.statusText}`,
    field: ok && e.field ? e.field : null,
    status: res.status,
    retryAfter: retryAfterOf(res),
    requestId: res.headers.get("x-request-id"),
  });
}

/**
 * Parses a text/event-stream body into {event, data} records (data is the
 * joined data lines as a string), per the EventSource rules: lines end in
 * \n, \r\n or \r; ":" lines are comments; a blank line ends an event.
 * @param {ReadableStream<Uint8Array>} body
 */
export async function* parseSSE(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let event = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let m;
      // A lone \r at the end may be the first half of \r\n: wait for more.
      while ((m = /\r\n|\n|\r(?=[^\n])/.exec(buf))) {
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
          continue;
        }
        if (line[0] === ":") continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val[0] === " ") val = val.slice(1);
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** A client of one daemon. */
export class Client {
  /**
   * @param {object} [o] baseUrl ("" : the page's own origin), apiKey (sent
   *   as Authorization: Bearer), fetch (an implementation; default: global)
   */
  constructor({ baseUrl = "", apiKey = "", fetch: f = globalThis.fetch.bind(globalThis) } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.fetch = f;
  }

  async request(method, path, body, signal, accept) {
    const headers = { Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.apiKey) headers.Authorization = "Bearer " + this.apiKey;
    const res = await this.fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  /** The loaded models: the body of GET /v1/models. */
  async models({ signal } = {}) {
    return (await this.request("GET", "/v1/models", undefined, signal, "application/json")).json();
  }

  /** One model by name (GET /v1/models/{name}). */
  async model(name, { signal } = {}) {
    const path = "/v1/models/" + encodeURIComponent(name);
    return (await this.request("GET", path, undefined, signal, "application/json")).json();
  }

  /**
   * One generation, answered once the grid is finished.
   * @param {object} req a POST /generate body ("stream" is forced off)
   * @returns {Promise<object>} the result: grid, text, seed, timings, ...
   */
  async generate(req, { signal } = {}) {
    const body = { ...req, stream: false };
    return (await this.request("POST", "/generate", body, signal, "application/json")).json();
  }

  /**
   * One generation as it refines: yields {event: "iteration", data} per
   * iteration (iteration, iterations, open, grid, text) and finally
   * {event: "done", data} (seed, timings, ...). An error event is thrown as a
   * HeptapodError with status 200; a stream that ends without done or error
   * throws code "incomplete". Leaving the loop early closes the connection.
   */
  async *stream(req, { signal } = {}) {
    const body = { ...req, stream: true };
    const res = await this.request("POST", "/generate", body, signal, "text/event-stream");
    const requestId = res.headers.get("x-request-id");
    for await (const { event, data } of parseSSE(res.body)) {
      signal?.throwIfAborted(); // events already read are not handed out after an abort
      const d = JSON.parse(data);
      if (event === "error") {
        const e = d.error || {};
        throw new HeptapodError({ ...e, status: res.status, requestId });
      }
      yield { event, data: d };
      if (event === "done") return;
    }
    throw new HeptapodError({
      code: "incomplete",
      message: "the stream ended before its done event",
      status: res.status,
      requestId,
    });
  }
}
