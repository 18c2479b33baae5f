// The test runner's bounds (scripts/run-tests.mjs, scripts/test-watchdog.mjs):
// a hanging test fails naming itself, a hanging file (a hook) fails naming
// the file, a run longer than its bound is stopped and says so, and a run
// that finishes ends with the summary CI reads. Each case runs the real
// runner on small test files written to a temporary directory, with the
// bounds shortened through the runner's environment variables.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";

const RUNNER = fileURLToPath(new URL("../../../scripts/run-tests.mjs", import.meta.url));

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "piccolo-runner-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the runner on the files under `root` whose path contains `filter`; resolves with its output. */
function runner(
  root: string,
  filter: string,
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; ms: number }> {
  const t0 = Date.now();
  // The runner must not think it is itself a test file's process.
  const { NODE_TEST_CONTEXT: _, ...rest } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUNNER, filter], {
      env: { ...rest, PICCOLO_TEST_ROOT: root, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the runner itself hung; output:\n${out}`));
    }, 60_000);
    child.once("exit", (code) => {
      clearTimeout(guard);
      setImmediate(() => resolve({ code, out, ms: Date.now() - t0 }));
    });
  });
}

const HANGING_TEST = `
import { describe, it } from "node:test";
import { createServer } from "node:net";
describe("a suite", () => {
  it("passes first", () => {});
  it("hangs holding a socket", async () => {
    createServer().listen(0, "127.0.0.1");
    await new Promise(() => {});
  });
});
`;

const HANGING_HOOK = `
import { before, it } from "node:test";
before(async () => {
  setInterval(() => {}, 1000);
  await new Promise(() => {});
});
it("waits on its hook", () => {});
`;

const PASSING = `
import { it } from "node:test";
it("one", () => {});
it("two", () => {});
`;

describe("the test runner's bounds", () => {
  it("a hanging test fails, named, within its bound; the other files run and the summary is printed", async () => {
    await writeFile(join(dir, "a-hang.test.js"), HANGING_TEST);
    await writeFile(join(dir, "a-pass.test.js"), PASSING);
    const r = await runner(dir, "a-", { PICCOLO_TEST_TIMEOUT_MS: "1500" });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /✖ TIMEOUT: test "hangs holding a socket" in \S+a-hang\.test\.js ran longer than 1500 ms/);
    assert.match(r.out, /✔ one/);
    assert.match(r.out, /ℹ tests \d+\nℹ suites \d+\nℹ pass 3\nℹ fail 1\n/);
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
  });

  it("a hanging hook fails its file, named, within the file bound", async () => {
    await writeFile(join(dir, "b-hook.test.js"), HANGING_HOOK);
    const r = await runner(dir, "b-", { PICCOLO_TEST_FILE_TIMEOUT_MS: "2000" });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /✖ \S+b-hook\.test\.js \([\d.]+ms\)\n\s+'test timed out after 2000ms'/);
    assert.match(r.out, /ℹ fail|ℹ cancelled/);
  });

  it("a run longer than its bound is stopped, saying so", async () => {
    await writeFile(join(dir, "c-hook.test.js"), HANGING_HOOK);
    const r = await runner(dir, "c-", { PICCOLO_TEST_RUN_TIMEOUT_MS: "2000" });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /✖ the test run exceeded 2 s: stopping it/);
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
  });

  it("a run that passes exits 0 with the summary", async () => {
    await writeFile(join(dir, "d-pass.test.js"), PASSING);
    const r = await runner(dir, "d-", {});
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /ℹ tests 2\n[\s\S]*ℹ pass 2\nℹ fail 0\n/);
  });
});
