// sse_fetch.mjs URL BODY [ABORT_AFTER] - reads a POST /generate stream the
// way a browser page does (fetch, a TextDecoderStream and a reader, as in
// docs/api.md) and prints "EVENTS ITERATIONS LAST". With ABORT_AFTER it
// aborts the fetch after that many events, as a page that goes away does,
// and LAST is "aborted".
const [url, body, abortAfter] = process.argv.slice(2);
const ctl = new AbortController();
const res = await fetch(url + "/generate", {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body,
  signal: ctl.signal,
});
const type = res.headers.get("content-type") || "";
if (res.status !== 200 || !type.startsWith("text/event-stream")) {
  console.log(`status ${res.status} ${type}`);
  process.exit(1);
}
const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
let buf = "";
let events = 0;
let iterations = 0;
let last = "none";
read: for (;;) {
  const { value, done } = await reader.read();
  if (done) break;
  buf += value;
  let end;
  while ((end = buf.indexOf("\n\n")) >= 0) {
    const block = buf.slice(0, end);
    buf = buf.slice(end + 2);
    const name = /^event: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (!name || !data) continue; // a ": keepalive" comment
    JSON.parse(data);
    events++;
    if (name === "iteration") iterations++;
    else last = name;
    if (abortAfter && events >= Number(abortAfter)) {
      ctl.abort();
      last = "aborted";
      break read;
    }
  }
}
console.log(`${events} ${iterations} ${last}`);
