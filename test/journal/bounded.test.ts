// The data directory stays bounded under a steady overwrite load: the log
// triggers snapshots, and each snapshot deletes the log it covers
// (docs/durability.md, "The bound on the data directory": at most about 3D
// + --snapshot-log-bytes per shard, D the live data, plus the writes made
// during one snapshot). Driven as a shard worker drives its journal, on
// real files.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { realFs } from "../../src/journal/files.js";
import { Journal } from "../../src/journal/journal.js";
import { CommandView, commandBytes, encodeCommand, Op, Result } from "../../src/shard/command.js";

const root = mkdtempSync(join(tmpdir(), "piccolo-journal-bound-"));
after(() => rmSync(root, { recursive: true, force: true }));

const enc = new TextEncoder();

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

describe("the data directory under a steady overwrite load", () => {
  it("stays within 3 x live data + the snapshot threshold, snapshot after snapshot", () => {
    const dir = join(root, "shard-0");
    const threshold = 64 * 1024;
    const open = () =>
      Journal.open({ dir, fsync: "no", snapshotLogBytes: threshold, snapshotStepKeys: 64, fs: realFs, log: () => {} })
        .journal;
    const j = open();
    const keys = 500;
    const value = new Uint8Array(100).fill(7);
    const view = new CommandView();
    const r = new Result();
    const buf = new Uint8Array(commandBytes(16, value.length));
    let snapshots = 0;
    let wasSaving = false;
    let worst = 0;
    for (let i = 0; i < 40_000; i++) {
      const key = enc.encode(`key:${String(i % keys).padStart(12, "0")}`);
      encodeCommand(buf, 0, {
        tag: 1,
        op: Op.PUT,
        flags: 0,
        nowMs: 1,
        expireAtMs: 0,
        arg0: 0,
        arg1: 0,
        key,
        value,
      } as never);
      assert.ok(view.wrap(buf));
      j.core.execute(view, r.reset(1));
      if (i % 20 === 19) {
        assert.ok(j.commit());
        const saving = j.tick(i);
        if (wasSaving && !saving) snapshots++;
        wasSaving = saving;
        // D: the live data as a snapshot holds it (24 bytes of header per key, plus key and value).
        const live = keys * (24 + 16 + value.length);
        const bytes = dirBytes(dir);
        worst = Math.max(worst, bytes / (3 * live + threshold));
        assert.ok(bytes <= 3 * live + threshold + 64 * 1024, `${bytes} bytes on disk after ${i + 1} writes`);
      }
    }
    assert.ok(snapshots >= 10, `the log triggered snapshots (${snapshots})`);
    assert.ok(worst > 0.3, `the bound is not vacuous (worst ${worst.toFixed(2)} of it)`);
    j.close();
    const again = open();
    assert.equal(again.core.store.size, keys);
    again.close();
  });
});
