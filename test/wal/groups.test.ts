// One WAL shared by many Raft groups (a shard worker's partitions): rounds of
// several groups in one fsync, recovery split by group, compaction that waits
// for every group's snapshot, and the WAL as the multi-Raft host's storage.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type Entry, EntryType, type Snapshot } from "../../src/raft/types.js";
import { Wal } from "../../src/wal/wal.js";
import { FaultyFs } from "./faulty-fs.js";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "piccolo-walg-"));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const entry = (index: number, term: number, text = `g-${index}`): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new TextEncoder().encode(text),
});
const range = (from: number, to: number, term: number, tag: string) =>
  Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term, `${tag}${from + i}`));
const text = (es: Entry[]) => es.map((e) => `${e.index}/${e.term}:${Buffer.from(e.data).toString()}`);

describe("WAL shared by groups", () => {
  it("a round of many groups is one write and one fsync; recovery splits it by group", async () => {
    const dir = await tempDir();
    const fs = new FaultyFs();
    const { wal } = await Wal.open(dir, { fs });
    fs.syncs = 0;
    await wal.persist(
      Array.from({ length: 16 }, (_, g) => ({
        group: g,
        snapshot: null,
        hardState: { term: 1, vote: 1, commit: 1 },
        entries: range(1, 3, 1, `p${g}-`),
      })),
    );
    assert.equal(fs.syncs, 1, "sixteen groups, one fsync");
    // Interleave more rounds, with an overwrite in group 3.
    await wal.persist([
      { group: 3, snapshot: null, hardState: { term: 2, vote: 2, commit: 2 }, entries: range(3, 4, 2, "p3b-") },
      { group: 5, snapshot: null, hardState: null, entries: range(4, 4, 1, "p5-") },
    ]);
    await wal.close();
    const { groups, recovered } = await Wal.open(dir);
    assert.equal(groups.size, 16);
    assert.deepEqual(text(groups.get(3)!.entries), [...text(range(1, 2, 1, "p3-")), ...text(range(3, 4, 2, "p3b-"))]);
    assert.deepEqual(groups.get(3)!.hardState, { term: 2, vote: 2, commit: 2 });
    assert.deepEqual(text(groups.get(5)!.entries), text(range(1, 4, 1, "p5-")));
    assert.deepEqual(text(recovered.entries), text(range(1, 3, 1, "p0-")), "recovered is group 0's view");
  });

  it("a round that only moves commit indexes is written but not fsynced (etcd's MustSync rule)", async () => {
    const fs = new FaultyFs();
    const { wal } = await Wal.open(await tempDir(), { fs });
    fs.syncs = 0;
    await wal.persist([
      { group: 1, snapshot: null, hardState: { term: 1, vote: 1, commit: 0 }, entries: range(1, 2, 1, "a") },
    ]);
    assert.equal(fs.syncs, 1);
    await wal.persist([{ group: 1, snapshot: null, hardState: { term: 1, vote: 1, commit: 2 }, entries: [] }], false);
    assert.equal(fs.syncs, 1, "commit-only: no fsync");
    await wal.close();
  });

  it("compaction deletes a segment only when every group in it is covered by its snapshot", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir, { maxSegmentBytes: 400 });
    for (let i = 1; i <= 30; i++)
      await wal.persist([
        { group: 1, snapshot: null, hardState: null, entries: [entry(i, 1)] },
        { group: 2, snapshot: null, hardState: null, entries: [entry(i, 1)] },
      ]);
    const before = wal.segmentNames().length;
    assert.ok(before > 3);
    const snap = (index: number): Snapshot => ({
      meta: { index, term: 1, voters: [1], learners: [] },
      data: new Uint8Array([index]),
    });
    const first = wal.segmentNames()[0];
    await wal.saveSnapshot(snap(25), false, 1);
    await wal.compact(25, 1);
    assert.equal(wal.segmentNames()[0], first, "group 2 still needs every segment: none deleted");
    await wal.saveSnapshot(snap(25), false, 2);
    await wal.compact(25, 2);
    const after = wal.segmentNames().length;
    assert.ok(after < before, `${before} -> ${after} segments once both groups are covered`);
    await wal.close();
    const { groups, wal: w2 } = await Wal.open(dir, { maxSegmentBytes: 400 });
    await w2.close();
    for (const g of [1, 2]) {
      assert.equal(groups.get(g)!.snapshot?.meta.index, 25);
      assert.deepEqual(
        groups.get(g)!.entries.map((e) => e.index),
        [26, 27, 28, 29, 30],
      );
    }
  });

  it("a torn round is cut as a whole tail, every group keeping what came before", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir);
    await wal.persist([
      { group: 1, snapshot: null, hardState: null, entries: range(1, 2, 1, "a") },
      { group: 2, snapshot: null, hardState: null, entries: range(1, 2, 1, "b") },
    ]);
    await wal.close();
    const { readdir, stat, truncate } = await import("node:fs/promises");
    const seg = join(dir, (await readdir(dir)).find((n) => n.endsWith(".wal"))!);
    const good = (await stat(seg)).size;
    const { wal: w2 } = await Wal.open(dir);
    await w2.persist([
      { group: 1, snapshot: null, hardState: null, entries: [entry(3, 1, "x".repeat(50))] },
      { group: 2, snapshot: null, hardState: null, entries: [entry(3, 1, "y".repeat(50))] },
    ]);
    await w2.close();
    // Cut inside group 2's record of the second round: group 1's record of that round survives whole.
    const full = (await stat(seg)).size;
    await truncate(seg, full - 10);
    const { groups, recovered, wal: w3 } = await Wal.open(dir);
    await w3.close();
    assert.ok(recovered.truncatedTail !== null);
    assert.equal(groups.get(1)!.entries.length, 3, "group 1's whole record stays");
    assert.equal(groups.get(2)!.entries.length, 2, "group 2's torn one is cut");
    assert.ok((await stat(seg)).size > good);
  });
});
