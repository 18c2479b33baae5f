// The generated Cap'n Proto code must match the schema it claims to come
// from. Two checks: the schema's hash recorded at codegen time (always), and
// a fresh run of the compiler compared byte for byte (when `capnp` exists).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest folder above this file holding the schema (works from dist/ and dist-tests/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "schema", "piccolo.capnp"))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, "no schema/piccolo.capnp above the test file");
    dir = up;
  }
  return dir;
}

const root = repoRoot();
const SCHEMA = "schema/piccolo.capnp";
const GEN = join(root, "src", "protocol", "gen");
const REGENERATE = "run `npm run codegen` and commit src/protocol/gen";

describe("generated protocol code", () => {
  it("was generated from the current schema (hash check)", () => {
    const hash = createHash("sha256")
      .update(readFileSync(join(root, SCHEMA)))
      .digest("hex");
    const [recorded, path] = readFileSync(join(GEN, "schema.sha256"), "utf8").trim().split(/\s+/);
    assert.equal(path, SCHEMA, "schema.sha256 names the schema it hashes");
    assert.equal(recorded, hash, `${SCHEMA} changed since the last codegen: ${REGENERATE}`);
  });

  it("is byte for byte what the compiler generates now", (t) => {
    if (spawnSync("capnp", ["--version"]).status !== 0) {
      t.skip("the Cap'n Proto compiler `capnp` is not on PATH (apt-get install capnproto); only the hash check ran");
      return;
    }
    const out = mkdtempSync(join(tmpdir(), "piccolo-codegen-"));
    try {
      const r = spawnSync(process.execPath, ["scripts/codegen.mjs", "--out", out], { cwd: root, encoding: "utf8" });
      assert.equal(r.status, 0, `codegen failed:\n${r.stdout}${r.stderr}`);
      const fresh = readFileSync(join(out, "piccolo.ts"));
      const committed = readFileSync(join(GEN, "piccolo.ts"));
      if (!fresh.equals(committed)) {
        const a = fresh.toString("utf8").split("\n");
        const b = committed.toString("utf8").split("\n");
        let line = 0;
        while (line < a.length && a[line] === b[line]) line++;
        assert.fail(
          `src/protocol/gen/piccolo.ts differs from what the compiler generates (stale, or edited by hand) ` +
            `from line ${line + 1}:\n  generated: ${a[line] ?? "<end>"}\n  committed: ${b[line] ?? "<end>"}\n${REGENERATE}`,
        );
      }
      assert.equal(
        readFileSync(join(out, "schema-info.ts"), "utf8"),
        readFileSync(join(GEN, "schema-info.ts"), "utf8"),
        `src/protocol/gen/schema-info.ts is stale: ${REGENERATE}`,
      );
      assert.equal(
        readFileSync(join(out, "schema.sha256"), "utf8"),
        readFileSync(join(GEN, "schema.sha256"), "utf8"),
        `src/protocol/gen/schema.sha256 is stale: ${REGENERATE}`,
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
