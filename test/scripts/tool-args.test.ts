// The developer tools' command lines (npm run sim, sim:kv, chaos; src/tool-args.ts): --help prints the
// usage and exits 0; an unknown option or a missing value says what was wrong and exits 2, no stack trace.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";

const TOOLS = [
  { name: "sim", file: "../../src/sim/cli.js", usage: /^npm run sim -- \[options\]/m },
  { name: "sim:kv", file: "../../src/sim/kv-cli.js", usage: /^npm run sim:kv -- \[options\]/m },
  { name: "chaos", file: "../../src/chaos/cli.js", usage: /^npm run chaos -- \[options\]/m },
];

function run(file: string, ...args: string[]) {
  return spawnSync(process.execPath, [fileURLToPath(new URL(file, import.meta.url)), ...args], {
    encoding: "utf8",
    timeout: 30_000,
  });
}

describe("the developer tools' arguments", () => {
  for (const t of TOOLS) {
    it(`npm run ${t.name} -- --help prints its usage and exits 0`, () => {
      const r = run(t.file, "--help");
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, t.usage);
      assert.match(r.stdout, /--seed S/);
    });

    it(`npm run ${t.name} -- --bogus says what is wrong, shows the usage, exits 2`, () => {
      const r = run(t.file, "--bogus");
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /Unknown option '--bogus'/);
      assert.match(r.stderr, t.usage);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    });
  }

  it("a missing value and a stray argument are usage errors too", () => {
    const missing = run("../../src/sim/cli.js", "--seed");
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /--seed/);
    const stray = run("../../src/sim/cli.js", "extra");
    assert.equal(stray.status, 2, stray.stderr);
    assert.match(stray.stderr, /extra/);
  });
});
