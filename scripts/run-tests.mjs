#!/usr/bin/env node
// Runs every compiled test file under dist/test with Node's built-in runner.
// Node 20's `node --test` takes explicit paths (globs arrived in Node 21), so
// we collect the files here. Pass a substring to run a subset:
//   npm test -- ring      runs only test files whose path contains "ring".
//
// Three bounds, so a hang fails loudly and CI never waits on it silently:
//   a test         3 min: scripts/test-watchdog.mjs names the test and ends its file;
//   a test file    10 min, hooks included: `--test-timeout`, which Node 20
//                  applies to each file; the runner names the file;
//   the whole run  27 min (CI allows 30, install and build included): this script stops everything and says so.
// The spec reporter's summary (ℹ tests / pass / fail ...) ends every run that
// finishes, as CI expects. PICCOLO_TEST_TIMEOUT_MS, PICCOLO_TEST_FILE_TIMEOUT_MS,
// PICCOLO_TEST_RUN_TIMEOUT_MS and PICCOLO_TEST_ROOT (default dist/test) change
// them, for test/scripts/run-tests.test.ts, which checks all three.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const FILE_TIMEOUT_MS = Number(process.env.PICCOLO_TEST_FILE_TIMEOUT_MS ?? 10 * 60_000);
const RUN_TIMEOUT_MS = Number(process.env.PICCOLO_TEST_RUN_TIMEOUT_MS ?? 27 * 60_000);

const root = process.env.PICCOLO_TEST_ROOT ?? "dist/test";
// `npm test -- a b`: the files whose paths contain any of the arguments (none: every file).
const filters = process.argv.slice(2);
const filter = filters.join('" or "');
const files = readdirSync(root, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith(".test.js") && (filters.length === 0 || filters.some((x) => f.includes(x))))
  .map((f) => join(root, f))
  .sort();
if (files.length === 0) {
  console.error(`no test files under ${root} matching "${filter}"`);
  process.exit(1);
}
const watchdog = new URL("./test-watchdog.mjs", import.meta.url).href;
// Its own process group, so the whole tree (test files, the nodes they started) can be stopped at once.
const child = spawn(
  process.execPath,
  [`--import=${watchdog}`, "--test", "--test-reporter=spec", `--test-timeout=${FILE_TIMEOUT_MS}`, ...files],
  { stdio: "inherit", detached: true },
);
const stopAll = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
};
const overall = setTimeout(() => {
  console.error(`\n✖ the test run exceeded ${RUN_TIMEOUT_MS / 1000} s: stopping it (a hang?)`);
  stopAll("SIGKILL");
  process.exit(1);
}, RUN_TIMEOUT_MS);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => stopAll(signal));
child.on("exit", (code, signal) => {
  clearTimeout(overall);
  process.exit(code ?? (signal === null ? 1 : 128));
});
