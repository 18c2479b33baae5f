// The log's CRC32C: the standard check value, and the native addon loaded on
// the first checksum, not by importing the journal (an in-memory node never
// loads it; decision 0292).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { crc32c } from "../../src/wal/crc32c.js";

describe("crc32c", () => {
  it("gives CRC32C's check value, and continues from a state", () => {
    assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
    assert.equal(crc32c(Buffer.from("56789"), crc32c(Buffer.from("1234"))), 0xe3069283);
  });

  it("loads the addon on the first checksum, not when the journal is imported", () => {
    // A fresh process: this test file's own process has computed a checksum already.
    const journal = new URL("../../src/journal/journal.js", import.meta.url).href;
    const crc = new URL("../../src/wal/crc32c.js", import.meta.url).href;
    const script = `
      import { createRequire } from "node:module";
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes("@node-rs/crc32"));
      await import(${JSON.stringify(journal)});
      const before = loaded();
      const { crc32c } = await import(${JSON.stringify(crc)});
      crc32c(Buffer.from("x"));
      console.log(JSON.stringify({ before, after: loaded() }));`;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.deepEqual(JSON.parse(out), { before: false, after: true });
  });
});
