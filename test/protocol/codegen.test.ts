// The generated Cap'n Proto code must match the schema it claims to come from.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

// Tests run from the repository root (npm test).
const schema = "schema/piccolo.capnp";
const gen = "src/protocol/gen";

describe("generated protocol code", () => {
  it("was generated from the current schema (hash check)", () => {
    const hash = createHash("sha256").update(readFileSync(schema)).digest("hex");
    const recorded = readFileSync(join(gen, "schema.sha256"), "utf8").split(/\s+/)[0];
    assert.equal(recorded, hash, "schema changed since the last codegen: run `npm run codegen` and commit");
  });

  it("is byte for byte what the compiler generates now", (t) => {
    if (spawnSync("capnp", ["--version"]).status !== 0) {
      t.skip("the Cap'n Proto compiler is not installed (apt-get install capnproto); the hash check above still ran");
      return;
    }
    const out = mkdtempSync(join(tmpdir(), "piccolo-codegen-"));
    try {
      const r = spawnSync(process.execPath, ["scripts/codegen.mjs", "--out", out], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(
        readFileSync(join(out, "piccolo.ts"), "utf8"),
        readFileSync(join(gen, "piccolo.ts"), "utf8"),
        "src/protocol/gen/piccolo.ts is stale or edited by hand: run `npm run codegen` and commit",
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
