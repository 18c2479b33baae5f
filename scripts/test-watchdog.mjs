// Loaded into every test file's process by scripts/run-tests.mjs (node
// --import): a per-test timeout that names the test.
//
// On Node 20, `node --test --test-timeout` bounds each test *file* as a
// whole, and a file that times out is reported by its path only: the flag is
// not applied to the tests inside it (checked on v20.20). So every test gets
// a watchdog here: a root-level beforeEach arms a timer named after the test,
// afterEach disarms it. A test still running after PICCOLO_TEST_TIMEOUT_MS
// (default 3 min) prints
//   ✖ TIMEOUT: test "<name>" in <file> ran longer than <ms> ms ...
// and ends its file's process with code 1; the runner reports the file as
// failed and goes on with the others. Hooks (before/after) are bounded by
// the per-file timeout only. Nothing here runs outside a test file's process
// (NODE_TEST_CONTEXT is set only there) or off its main thread.
import { afterEach, beforeEach } from "node:test";
import { isMainThread } from "node:worker_threads";

const ms = Number(process.env.PICCOLO_TEST_TIMEOUT_MS ?? 180_000);

if (isMainThread && process.env.NODE_TEST_CONTEXT !== undefined && ms > 0) {
  const timers = new Map();
  beforeEach((t) => {
    const name = t.name;
    const timer = setTimeout(() => {
      process.stderr.write(
        `\n✖ TIMEOUT: test "${name}" in ${process.argv[1]} ran longer than ${ms} ms (a hang?): ending this file\n`,
      );
      process.exit(1);
    }, ms);
    timer.unref();
    timers.set(t, timer);
  });
  afterEach((t) => {
    clearTimeout(timers.get(t));
    timers.delete(t);
  });
}
