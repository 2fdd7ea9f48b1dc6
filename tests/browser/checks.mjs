// checks.mjs - what the Node tests of tests/browser/ share: one "ok: ..." or
// "FAIL: ..." line per check, the count of failures, and the verdict that
// ends the process (exit 1 on any failure).

let failures = 0;

export const ok = (what) => console.log("ok: " + what);

export const fail = (what) => {
  console.log("FAIL: " + what);
  failures++;
};

/** Compares as JSON; prints both sides (cut short) when they differ. */
export const expect = (what, got, want) => {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g === w) ok(what);
  else fail(`${what}: got ${g.slice(0, 300)}, want ${w.slice(0, 300)}`);
};

export function finish() {
  console.log(failures ? `${failures} failure(s)` : "all passed");
  process.exit(failures ? 1 : 0);
}
