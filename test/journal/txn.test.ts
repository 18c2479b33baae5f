// A multi-shard transaction in the journals, at every point a crash can cut
// it (docs/transactions.md, "Crash atomicity"). Two shards' journals on real
// files, driven as two workers drive them at the barrier; "crash" is closing
// the files where the process would have died (close() writes nothing new:
// what is on disk is what a kill -9 leaves), then recovery as a node's start
// does it: each shard's last transaction, and txnCompleted for a part in doubt.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { budgetFs, realFs } from "../../src/journal/files.js";
import { Journal } from "../../src/journal/journal.js";
import { txnCompleted } from "../../src/journal/recover.js";
import { CommandView, commandBytes, encodeCommand, Op, Result } from "../../src/shard/command.js";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const NOW = 1_700_000_000_000;

function freshRoot(): string {
  const d = mkdtempSync(join(tmpdir(), "piccolo-journal-txn-"));
  roots.push(d);
  return d;
}

function open(root: string, shard: number, budget?: number): Journal {
  return Journal.open({
    dir: join(root, `shard-${shard}`),
    fsync: "everysec",
    snapshotLogBytes: 64 * 1024 * 1024,
    fs: budget === undefined ? realFs : budgetFs(realFs, { left: budget }),
    retryMs: 0,
    log: () => {},
  }).journal;
}

/** A node's start: open every shard, decide the parts in doubt from every shard's last transaction. */
function start(root: string, shards = 2): Journal[] {
  const js = Array.from({ length: shards }, (_, s) => open(root, s));
  for (const j of js) {
    const d = j.inDoubt;
    if (d !== null) j.resolveInDoubt(txnCompleted(d.id, d.participants, (s) => js[s]!.lastTxn));
  }
  return js;
}

function put(j: Journal, key: string, value: string): void {
  const k = enc.encode(key);
  const v = enc.encode(value);
  const bytes = new Uint8Array(commandBytes(k.length, v.length));
  encodeCommand(bytes, 0, {
    op: Op.PUT,
    flags: 0,
    tag: 0,
    nowMs: NOW,
    expireAtMs: 0,
    arg0: 0,
    arg1: 0,
    key: k,
    value: v,
  });
  const view = new CommandView();
  assert.ok(view.wrap(bytes));
  j.core.execute(view, new Result().reset(0));
}

function value(j: Journal, key: string): string | null {
  const slot = j.core.store.find(enc.encode(key));
  return slot < 0 ? null : dec.decode(j.core.store.value(slot));
}

/** Shard `j`'s part of transaction `id`: begun, its write applied, written (and fsynced). */
function writePart(j: Journal, id: number, key: string, v: string): void {
  assert.ok(j.beginPart(id, [0, 1]));
  put(j, key, v);
  assert.ok(j.sealPart());
}

const closeAll = (js: Journal[]) => {
  for (const j of js) j.close();
};

describe("a multi-shard transaction cut by a crash", () => {
  it("both parts written, neither shard moved on: the transaction stands on both", () => {
    const root = freshRoot();
    const [a, b] = start(root);
    writePart(a!, 7, "a", "1");
    writePart(b!, 7, "b", "1");
    closeAll([a!, b!]);
    const js = start(root);
    assert.deepEqual(
      js.map((j) => j.lastTxn),
      [
        { id: 7, state: "applied" },
        { id: 7, state: "applied" },
      ],
    );
    assert.equal(value(js[0]!, "a"), "1");
    assert.equal(value(js[1]!, "b"), "1");
    closeAll(js);
  });

  it("one part written, the other never: the written one is cut off, and stays gone", () => {
    const root = freshRoot();
    const [a, b] = start(root);
    put(a!, "before", "kept");
    assert.ok(a!.commit());
    writePart(a!, 3, "a", "1");
    closeAll([a!, b!]);
    const js = start(root);
    assert.equal(value(js[0]!, "a"), null, "the lone part is dropped");
    assert.equal(value(js[0]!, "before"), "kept", "what came before it stays");
    assert.deepEqual(js[0]!.lastTxn, { id: 3, state: "aborted" });
    put(js[0]!, "after", "x");
    assert.ok(js[0]!.commit());
    closeAll(js);
    // The part was cut off the file: now that records follow where it was, it must not come back.
    const again = start(root);
    assert.equal(value(again[0]!, "a"), null);
    assert.equal(value(again[0]!, "after"), "x");
    assert.equal(again[0]!.inDoubt, null);
    closeAll(again);
  });

  it("a part in doubt on one shard while the other moved on past it: it completed, and is applied", () => {
    const root = freshRoot();
    const [a, b] = start(root);
    writePart(a!, 5, "a", "1");
    writePart(b!, 5, "b", "1");
    b!.confirmPart(5);
    put(b!, "later", "x");
    assert.ok(b!.commit());
    // And b saved a snapshot since: its last transaction is known from the snapshot alone.
    assert.ok(b!.startSnapshot(NOW));
    assert.ok(b!.finishSnapshot());
    closeAll([a!, b!]);
    const js = start(root);
    assert.equal(value(js[0]!, "a"), "1");
    assert.equal(value(js[1]!, "b"), "1");
    closeAll(js);
  });

  it("an abort written by one participant voids the part the other had written", () => {
    const root = freshRoot();
    const [a, b] = start(root);
    put(a!, "a", "0");
    assert.ok(a!.commit());
    writePart(a!, 9, "a", "1");
    writePart(b!, 9, "b", "1");
    // The barrier said a part failed: a voids its part (and reads its map back); the crash comes before b does.
    assert.ok(a!.abortPart(9));
    assert.equal(value(a!, "a"), "0", "the abort takes the part out of the map at once");
    closeAll([a!, b!]);
    const js = start(root);
    assert.equal(value(js[0]!, "a"), "0");
    assert.equal(value(js[1]!, "b"), null, "b's part is dropped: a's abort says the transaction did not happen");
    closeAll(js);
  });

  it("a part whose write fails: the shard's map is read back without it, and a restart agrees", () => {
    const root = freshRoot();
    const a = open(root, 0, 4096);
    put(a, "a", "0");
    assert.ok(a.commit());
    assert.ok(a.beginPart(11, [0, 1]));
    put(a, "a", "x".repeat(8192)); // over the disk's budget
    assert.equal(a.sealPart(), false);
    assert.match(a.failed ?? "", /ENOSPC/);
    a.reload();
    assert.equal(value(a, "a"), "0");
    a.close();
    const b = open(root, 1);
    b.close();
    const js = start(root);
    assert.equal(value(js[0]!, "a"), "0");
    closeAll(js);
  });
});
