// The package as a user installs it (scripts/pack-install.mjs): `npm pack`,
// the tarball installed into an empty project and globally under a
// temporary prefix, `piccolo --version`, and a node started from the
// installed package answering a client that imports "piccolo". The script
// packs the dist/ this run built (--no-build: rebuilding would rewrite dist/
// under the test files running beside this one). It needs npm and, unless
// npm's cache holds every dependency, the registry; it takes a minute or two.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { it } from "node:test";

const SCRIPT = fileURLToPath(new URL("../../../scripts/pack-install.mjs", import.meta.url));
/** Under the suite's 3-minute bound per test (scripts/test-watchdog.mjs), so this test fails with the script's output. */
const DEADLINE_MS = 170_000;

it("packs, installs outside the clone, runs piccolo --version and a client round trip", {
  timeout: DEADLINE_MS + 5_000,
}, async () => {
  // npm must not think it runs inside this test runner's process tree.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, [SCRIPT, "--no-build"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const deadline = setTimeout(() => {
    out += `\n(the script ran past ${DEADLINE_MS} ms: stopped)\n`;
    child.kill("SIGTERM");
  }, DEADLINE_MS);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(deadline);
  // The steps and their times, in the test's output.
  for (const line of out.split("\n").filter((l) => l.startsWith("pack-install:"))) console.log(line);
  assert.equal(code, 0, out);
  assert.match(out, /pack-install: ok/);
  assert.match(out, /round trip ok/);
});
