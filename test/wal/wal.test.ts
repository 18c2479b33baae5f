// The write-ahead log on real files in a temporary directory: recovery after
// restart, torn tails cut at every byte, flipped bits, a full disk, sync
// policies, rotation and compaction, and a seeded model check.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { type Entry, EntryType, type HardState, type Snapshot } from "../../src/raft/types.js";
import { blockingFs, nodeFs } from "../../src/wal/fs.js";
import { WalCorruptError } from "../../src/wal/recover.js";
import { Wal, WalError } from "../../src/wal/wal.js";
import { FaultyFs } from "./faulty-fs.js";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "piccolo-wal-"));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function entry(index: number, term: number, text = `cmd${index}`): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) };
}
function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}
const plain = (es: Entry[]) => es.map((e) => ({ ...e, data: Buffer.from(e.data).toString() }));

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith(".wal")).sort();
}

describe("WAL", () => {
  it("recovers entries and hard state after a restart", async () => {
    const dir = await tempDir();
    const { wal, recovered } = await Wal.open(dir);
    assert.deepEqual(recovered, {
      hardState: { term: 0, vote: 0, commit: 0 },
      snapshot: null,
      entries: [],
      truncatedTail: null,
    });
    await wal.append(entries(1, 3, 1), { term: 1, vote: 2, commit: 2 });
    await wal.append(entries(4, 5, 2), { term: 2, vote: 0, commit: 4 });
    await wal.close();
    const again = await Wal.open(dir);
    assert.deepEqual(again.recovered.hardState, { term: 2, vote: 0, commit: 4 });
    assert.deepEqual(plain(again.recovered.entries), plain([...entries(1, 3, 1), ...entries(4, 5, 2)]));
    await again.wal.close();
    await assert.rejects(again.wal.append(entries(6, 6, 2)), (e: WalError) => e.code === "WAL_CLOSED");
  });

  it("a batch starting inside the log replaces its suffix (a follower's overwritten conflict)", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir);
    await wal.append(entries(1, 5, 1));
    await wal.append(entries(3, 4, 2));
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir);
    await w2.close();
    assert.deepEqual(plain(recovered.entries), plain([...entries(1, 2, 1), ...entries(3, 4, 2)]));
  });

  it("cuts a torn last record at every byte offset and keeps exactly the records before it", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir);
    await wal.append(entries(1, 2, 1), { term: 1, vote: 1, commit: 1 });
    await wal.close();
    const [seg] = await segmentFiles(dir);
    const path = join(dir, seg!);
    const good = (await stat(path)).size;
    const { wal: w2 } = await Wal.open(dir);
    // The last record is the entry alone: a torn hard-state record after a
    // whole entry record would rightly keep the entry.
    await w2.append([entry(3, 1, "x".repeat(40))]);
    await w2.close();
    const full = await readFile(path);
    for (let cut = good; cut < full.length; cut++) {
      await writeFile(path, full.subarray(0, cut));
      const { wal: w, recovered } = await Wal.open(dir);
      assert.deepEqual(plain(recovered.entries), plain(entries(1, 2, 1)), `cut at ${cut}`);
      assert.deepEqual(recovered.hardState, { term: 1, vote: 1, commit: 1 }, `cut at ${cut}`);
      assert.equal(recovered.truncatedTail?.offset ?? good, good, `cut at ${cut}`);
      assert.equal((await stat(path)).size, good, "the torn bytes are gone from the file");
      // And the log goes on from there.
      await w.append([entry(3, 1, "y")]);
      await w.close();
      const { wal: w3, recovered: r2 } = await Wal.open(dir);
      await w3.close();
      assert.equal(r2.entries.length, 3);
    }
  });

  it("a flipped bit in the last record truncates it; in an earlier record it refuses to start", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir);
    await wal.append(entries(1, 1, 1));
    await wal.close();
    const [seg] = await segmentFiles(dir);
    const path = join(dir, seg!);
    const firstEnd = (await stat(path)).size;
    const w2 = (await Wal.open(dir)).wal;
    await w2.append(entries(2, 2, 1));
    await w2.close();
    const full = await readFile(path);
    for (let byte = 0; byte < full.length; byte++) {
      for (const bit of [0, 7]) {
        const bad = Buffer.from(full);
        bad[byte]! ^= 1 << bit;
        await writeFile(path, bad);
        if (byte >= firstEnd) {
          const { wal: w, recovered } = await Wal.open(dir);
          await w.close();
          assert.deepEqual(plain(recovered.entries), plain(entries(1, 1, 1)), `flip at ${byte}.${bit}: truncated`);
        } else {
          await assert.rejects(
            Wal.open(dir),
            (e: unknown) => e instanceof WalCorruptError && e.file === seg,
            `flip at ${byte}.${bit} must be reported as corruption`,
          );
        }
      }
    }
  });

  it("corruption in a sealed segment refuses to start, naming the file and offset", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir, { maxSegmentBytes: 200 });
    for (let i = 1; i <= 20; i++) await wal.append([entry(i, 1)]);
    await wal.close();
    const segs = await segmentFiles(dir);
    assert.ok(segs.length > 2, `rotated into ${segs.length} segments`);
    const path = join(dir, segs[0]!);
    const bad = await readFile(path);
    bad[bad.length - 3]! ^= 0x10;
    await writeFile(path, bad);
    await assert.rejects(Wal.open(dir), (e: unknown) => {
      assert.ok(e instanceof WalCorruptError);
      assert.equal(e.file, segs[0]);
      assert.match(e.message, /refusing to start/);
      return true;
    });
  });

  it("rotates segments, saves snapshots, compacts covered segments, and recovers from snapshot + tail", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir, { maxSegmentBytes: 300 });
    for (let i = 1; i <= 40; i++) await wal.append([entry(i, 1)], { term: 1, vote: 1, commit: i - 1 });
    const before = await segmentFiles(dir);
    const snap: Snapshot = {
      meta: { index: 30, term: 1, voters: [1, 2, 3], learners: [4] },
      data: new TextEncoder().encode("state@30"),
    };
    await wal.saveSnapshot(snap, false);
    await wal.compact(30);
    const afterCompact = await segmentFiles(dir);
    assert.ok(afterCompact.length < before.length, `${before.length} -> ${afterCompact.length} segments`);
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir);
    await w2.close();
    assert.deepEqual(recovered.snapshot?.meta, snap.meta);
    assert.equal(Buffer.from(recovered.snapshot!.data).toString(), "state@30");
    assert.deepEqual(plain(recovered.entries), plain(entries(31, 40, 1)));
    assert.deepEqual(recovered.hardState, { term: 1, vote: 1, commit: 39 });
  });

  it("a snapshot received from the leader replaces the whole log", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir);
    await wal.append(entries(1, 10, 1));
    const snap: Snapshot = { meta: { index: 7, term: 3, voters: [1, 2, 3], learners: [] }, data: new Uint8Array([7]) };
    await wal.saveSnapshot(snap, true);
    await wal.append(entries(8, 9, 3), { term: 3, vote: 0, commit: 7 });
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir);
    await w2.close();
    assert.equal(recovered.snapshot?.meta.index, 7);
    assert.deepEqual(plain(recovered.entries), plain(entries(8, 9, 3)));
  });

  it("a damaged snapshot file refuses to start", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir);
    await wal.append(entries(1, 2, 1));
    await wal.saveSnapshot({ meta: { index: 2, term: 1, voters: [1], learners: [] }, data: new Uint8Array(8) }, false);
    await wal.close();
    const snapName = (await readdir(dir)).find((n) => n.endsWith(".snap"))!;
    const bad = await readFile(join(dir, snapName));
    bad[bad.length - 1]! ^= 1;
    await writeFile(join(dir, snapName), bad);
    await assert.rejects(Wal.open(dir), WalCorruptError);
  });

  it("a full disk (ENOSPC) fails the append cleanly, refuses later ones, and loses nothing acknowledged", async () => {
    const dir = await tempDir();
    const fs = new FaultyFs();
    const { wal } = await Wal.open(dir, { fs });
    await wal.append(entries(1, 3, 1), { term: 1, vote: 1, commit: 3 });
    fs.spaceLeft = 50;
    await assert.rejects(wal.append([entry(4, 1, "z".repeat(200))]), (e: unknown) => {
      assert.ok(e instanceof WalError);
      assert.equal(e.code, "WAL_FAILED");
      assert.match(e.message, /ENOSPC/);
      return true;
    });
    await assert.rejects(wal.append(entries(5, 5, 1)), (e: WalError) => e.code === "WAL_FAILED");
    fs.spaceLeft = Number.POSITIVE_INFINITY;
    await wal.close().catch(() => {}); // the failed WAL still holds its file open
    const { wal: w2, recovered } = await Wal.open(dir);
    await w2.close();
    assert.deepEqual(
      plain(recovered.entries),
      plain(entries(1, 3, 1)),
      "the acknowledged entries, and the torn one cut",
    );
    assert.ok(recovered.truncatedTail !== null, "the short write was found and cut");
  });

  it("refuses an entry larger than the record limit before writing anything", async () => {
    const dir = await tempDir();
    const { wal } = await Wal.open(dir, { maxRecordBytes: 1024 });
    await assert.rejects(
      wal.append([entry(1, 1, "q".repeat(2000))]),
      (e: WalError) => e.code === "WAL_RECORD_TOO_LARGE",
    );
    // Many small entries over the limit in total are split into several records.
    await wal.append(Array.from({ length: 100 }, (_, i) => entry(i + 1, 1, "w".repeat(30))));
    await wal.close();
    const { wal: w2, recovered } = await Wal.open(dir, { maxRecordBytes: 1024 });
    await w2.close();
    assert.equal(recovered.entries.length, 100);
  });

  it("sync policies: always fsyncs each append; batch and concurrent appends share fsyncs; off never fsyncs", async () => {
    const count = async (sync: "always" | "batch" | "off", concurrent: boolean) => {
      const fs = new FaultyFs();
      const { wal } = await Wal.open(await tempDir(), { fs, sync });
      fs.syncs = 0;
      if (concurrent) await Promise.all(Array.from({ length: 20 }, (_, i) => wal.append([entry(i + 1, 1)])));
      else for (let i = 1; i <= 20; i++) await wal.append([entry(i, 1)]);
      await wal.close();
      return fs.syncs;
    };
    assert.equal(await count("always", false), 20);
    assert.ok((await count("always", true)) < 20, "concurrent appends share an fsync (group commit)");
    assert.ok((await count("batch", true)) <= 2);
    assert.equal(await count("off", false), 0);
  });

  for (const [how, fs] of [
    ["through the thread pool", nodeFs],
    ["with blocking calls (a group worker's)", blockingFs],
  ] as const)
    it(`matches a model over random appends, overwrites, snapshots, compactions and restarts (seeded), ${how}`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.oneof(
              fc.record({ op: fc.constant("append" as const), back: fc.nat(3), n: fc.integer({ min: 1, max: 4 }) }),
              fc.record({ op: fc.constant("snapshot" as const), back: fc.nat(3) }),
              fc.record({ op: fc.constant("restart" as const) }),
            ),
            { maxLength: 25 },
          ),
          async (ops) => {
            const dir = await tempDir();
            let { wal } = await Wal.open(dir, { maxSegmentBytes: 256, fs });
            let model: Entry[] = [];
            let base = 0;
            let term = 1;
            let hs: HardState = { term: 0, vote: 0, commit: 0 };
            for (const o of ops) {
              const last = model.length > 0 ? model[model.length - 1]!.index : base;
              if (o.op === "append") {
                const from = Math.max(base + 1, last + 1 - o.back);
                term++;
                const es = entries(from, from + o.n - 1, term);
                hs = { term, vote: 1, commit: base };
                await wal.append(es, hs);
                model = [...model.filter((e) => e.index < from), ...es];
              } else if (o.op === "snapshot") {
                const index = last - o.back;
                if (index <= base) continue;
                const t = model.find((e) => e.index === index)!.term;
                await wal.saveSnapshot(
                  { meta: { index, term: t, voters: [1], learners: [] }, data: new Uint8Array(3) },
                  false,
                );
                await wal.compact(index);
                base = index;
                model = model.filter((e) => e.index > index);
              } else {
                await wal.close();
                const r = await Wal.open(dir, { maxSegmentBytes: 256, fs });
                wal = r.wal;
                assert.deepEqual(plain(r.recovered.entries), plain(model));
                assert.deepEqual(r.recovered.hardState, hs);
                assert.equal(r.recovered.snapshot?.meta.index ?? 0, base);
              }
            }
            await wal.close();
            const r = await Wal.open(dir, { maxSegmentBytes: 256, fs });
            await r.wal.close();
            assert.deepEqual(plain(r.recovered.entries), plain(model));
          },
        ),
        { numRuns: 60, seed: 20261125 },
      );
    });
});
