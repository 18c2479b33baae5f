// Damaged and half-cleaned data directories, made with real nodes and then
// changed on disk the way a crash or a disk would: a torn tail is cut and
// logged and the node serves; a flipped byte in a log segment (with a valid
// record after it, or in a sealed segment) or in a snapshot refuses to
// start, naming the file and the offset and what to do; a crash between a
// snapshot and the clean-up of the files it replaces recovers exactly.
import assert from "node:assert/strict";
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import {
  biggestSegment,
  type DurableNode,
  failedStart,
  fileSize,
  journalFiles,
  killAll,
  recordStarts,
  removeDir,
  shardDirs,
  startDurable,
  tempRoot,
} from "../support/durable.js";
import { HEADER_BYTES } from "../../src/wal/record.js";
import { eventually } from "../support/eventually.js";

const roots: string[] = [];
function newRoot(): string {
  const root = tempRoot();
  roots.push(root);
  return root;
}
afterEach(async () => {
  await killAll();
});
after(() => {
  for (const r of roots) removeDir(r);
});

const key = (i: number) => `t:${String(i).padStart(4, "0")}`;

/** Writes `n` keys one at a time (each its own batch, so its own record), then stops cleanly. */
async function writeKeys(node: DurableNode, from: number, n: number, tag = "v"): Promise<void> {
  const c = await node.client();
  for (let i = from; i < from + n; i++) await c.put(key(i), `${tag}${i}`);
  await c.close();
}

/** The keys whose effects the record at `at` in `file` holds. */
function keysInRecord(file: string, at: number): string[] {
  const buf = readFileSync(file);
  const len = buf.readUInt32LE(at);
  const payload = buf.subarray(at + HEADER_BYTES, at + HEADER_BYTES + len).toString("latin1");
  return payload.match(/t:\d{4}/g) ?? [];
}

function flipByte(file: string, at: number): void {
  const buf = readFileSync(file);
  buf[at] = buf[at]! ^ 0x40;
  writeFileSync(file, buf);
}

describe("a torn tail", () => {
  it("is cut off the last segment, logged with the file and offset, and the node serves the rest", async () => {
    const dir = join(newRoot(), "data");
    let node = await startDurable(dir);
    await writeKeys(node, 0, 60);
    await node.kill9(); // a crash, as a torn tail comes from
    const seg = biggestSegment(dir);
    const starts = recordStarts(seg);
    assert.ok(starts.length >= 10, `one record per write: ${starts.length}`);
    const lastAt = starts[starts.length - 1]!;
    const torn = keysInRecord(seg, lastAt);
    assert.ok(torn.length >= 1, "the last record holds a key");
    const size = fileSize(seg);
    truncateSync(seg, lastAt + Math.floor((size - lastAt) / 2)); // the write the process died in

    node = await startDurable(dir);
    // stderr is its own pipe: the warning may arrive after the "listening" line on stdout.
    await eventually("the torn tail is logged", async () =>
      assert.match(node.stderr(), /cut a torn write off the end of the log/, node.stderr()),
    );
    assert.ok(node.stderr().includes(seg), `the warning names ${seg}: ${node.stderr()}`);
    assert.match(node.stderr(), new RegExp(`"offset":\\s*${lastAt}\\b`), node.stderr());
    assert.equal(fileSize(seg), lastAt, "the segment was cut exactly where the torn record began");
    assert.equal(node.recoveredKeys, 60 - torn.length);
    const c = await node.client();
    for (let i = 0; i < 60; i++) {
      const e = await c.get(key(i));
      if (torn.includes(key(i))) assert.equal(e, null, `${key(i)} was in the torn record`);
      else assert.equal(e?.value.toString(), `v${i}`, `${key(i)} before the tear is intact`);
    }
    // It serves writes, and the next start finds nothing to cut.
    await c.put("after-tear", "1");
    await c.close();
    assert.equal(await node.stop(), 0);
    node = await startDurable(dir);
    assert.equal(node.recoveredKeys, 60 - torn.length + 1);
    await node.stop();
    assert.doesNotMatch(node.stderr(), /torn/, "all of its stderr, once it has exited");
  });
});

describe("corruption refuses to start", () => {
  it("a flipped byte mid-segment, with valid records after it: exit 71 naming the file, the offset and what to do; nothing is cut", async () => {
    const dir = join(newRoot(), "data");
    const node = await startDurable(dir);
    await writeKeys(node, 0, 80);
    assert.equal(await node.stop(), 0);
    const seg = biggestSegment(dir);
    const starts = recordStarts(seg);
    const i = Math.floor(starts.length / 2);
    flipByte(seg, starts[i]! + HEADER_BYTES + 2);
    const damaged = readFileSync(seg);

    const f = await failedStart(dir);
    assert.equal(f.code, 71, `stderr: ${f.stderr}`);
    const shard = basename(join(seg, ".."));
    assert.ok(
      f.stderr.includes(
        `cannot start: shard ${shard.slice(6)}: data corrupt: ${seg} at byte ${starts[i]}: a record fails its checksum or layout, with a valid record after it at byte ${starts[i + 1]}`,
      ),
      f.stderr,
    );
    assert.match(f.stderr, /Keep a copy of the data directory; to start from what is intact, move this file/);
    assert.deepEqual(readFileSync(seg), damaged, "a refused start changes nothing on disk");
  });

  it("damage at the end of a sealed (not the last) segment is corruption, not a torn tail", async () => {
    const dir = join(newRoot(), "data");
    let node = await startDurable(dir);
    await writeKeys(node, 0, 30);
    assert.equal(await node.stop(), 0);
    node = await startDurable(dir); // appends go to a new segment: the first is sealed
    await writeKeys(node, 30, 30);
    assert.equal(await node.stop(), 0);
    const shard = shardDirs(dir).find((d) => journalFiles(d).segments.filter((s) => fileSize(s) > 0).length >= 2);
    assert.ok(shard !== undefined, "a shard has two non-empty segments");
    const sealed = journalFiles(shard).segments[0]!;
    const starts = recordStarts(sealed);
    const last = starts[starts.length - 1]!;
    flipByte(sealed, last + HEADER_BYTES + 1);
    const f = await failedStart(dir);
    assert.equal(f.code, 71, f.stderr);
    assert.ok(
      f.stderr.includes(
        `data corrupt: ${sealed} at byte ${last}: a record fails its checksum or layout, in a sealed segment`,
      ),
      f.stderr,
    );
    // Cutting the sealed segment's tail would also be wrong: nothing was cut.
    assert.equal(recordStarts(sealed).at(-1), last);
  });

  it("a flipped byte in a snapshot: exit 71 naming the snapshot and the offset; moving it aside starts from the log after it", async () => {
    const dir = join(newRoot(), "data");
    const node = await startDurable(dir, ["--shards", "1"]); // one snapshot, one log: the advice's outcome is exact
    await writeKeys(node, 0, 400);
    const r = node.redis();
    assert.equal(await r.save(), "OK");
    await writeKeys(node, 400, 5, "after-save");
    assert.equal(await node.stop(), 0);
    const shard = shardDirs(dir)[0]!;
    const snap = journalFiles(shard).snapshots[0]!;
    const starts = recordStarts(snap);
    assert.ok(starts.length >= 3, `head, keys, end: ${starts.length} records`);
    const mid = Math.floor(fileSize(snap) / 2);
    const record = starts.filter((s) => s <= mid).at(-1)!;
    flipByte(snap, mid);

    const f = await failedStart(dir);
    assert.equal(f.code, 71, f.stderr);
    assert.ok(f.stderr.includes(`data corrupt: ${snap} at byte ${record}:`), f.stderr);
    assert.match(f.stderr, /move this file .* aside/);

    // What the message says to do: keep a copy, move the snapshot aside, accept the loss of what it held.
    const aside = join(newRoot(), "aside");
    mkdirSync(aside);
    renameSync(snap, join(aside, basename(snap)));
    const again = await startDurable(dir);
    assert.equal(again.recoveredKeys, 5, "the writes after the SAVE, from the log");
    const c = await again.client();
    assert.equal((await c.get(key(402)))?.value.toString(), "after-save402");
    assert.equal(await c.get(key(0)), null);
    await c.close();
    await again.stop();
  });

  it("a snapshot cut short (no END record) refuses to start", async () => {
    const dir = join(newRoot(), "data");
    const node = await startDurable(dir);
    await writeKeys(node, 0, 200);
    assert.equal(await node.redis().save(), "OK");
    assert.equal(await node.stop(), 0);
    const snap = shardDirs(dir)
      .flatMap((d) => journalFiles(d).snapshots)
      .reduce((a, b) => (fileSize(b) > fileSize(a) ? b : a));
    const starts = recordStarts(snap);
    truncateSync(snap, starts[starts.length - 1]!); // exactly at a record boundary: only the END is missing
    const f = await failedStart(dir);
    assert.equal(f.code, 71, f.stderr);
    assert.ok(f.stderr.includes(`data corrupt: ${snap} at byte`), f.stderr);
  });
});

describe("a crash between a snapshot and the clean-up of what it replaces", () => {
  it("killed right after the snapshot's rename (PICCOLO_TEST_CRASH_AT=after-snapshot): recovery finishes the clean-up and loses nothing", async () => {
    const dir = join(newRoot(), "data");
    let node = await startDurable(dir, ["--shards", "1"]);
    const c = await node.client();
    const versions = new Map<string, number>();
    for (let i = 0; i < 100; i++) versions.set(key(i), await c.put(key(i), `first${i}`));
    assert.equal(await node.redis().save(), "OK"); // an older snapshot, for the clean-up to delete too
    for (let i = 0; i < 100; i += 2) versions.set(key(i), await c.put(key(i), `second${i}`));
    for (let i = 1; i < 100; i += 10) {
      assert.equal(await c.delete(key(i)), true);
      versions.delete(key(i));
    }
    await c.close();
    assert.equal(await node.stop(), 0);

    node = await startDurable(dir, [], { PICCOLO_TEST_CRASH_AT: "after-snapshot" });
    await assert.rejects(node.redis().save(), "the process dies in the SAVE");
    const { signal } = await node.exited;
    assert.equal(signal, "SIGKILL");
    const shard = shardDirs(dir)[0]!;
    const { segments, snapshots } = journalFiles(shard);
    assert.equal(snapshots.length, 2, `the old snapshot is still there beside the new: ${readdirSync(shard)}`);
    const newSeq = Number(basename(snapshots[1]!).slice(5, 21));
    assert.ok(
      segments.some((s) => Number(basename(s).slice(0, 16)) < newSeq),
      "segments the new snapshot covers are still there",
    );

    node = await startDurable(dir, ["--log-level", "info"]);
    await eventually("the finished clean-up is logged", async () =>
      assert.match(node.stderr(), /finished a clean-up a crash interrupted/, node.stderr()),
    );
    const after = journalFiles(shard);
    assert.deepEqual(after.snapshots, [snapshots[1]]);
    assert.ok(
      after.segments.every((s) => Number(basename(s).slice(0, 16)) >= newSeq),
      `${after.segments}`,
    );
    assert.equal(node.recoveredKeys, versions.size);
    const c2 = await node.client();
    for (let i = 0; i < 100; i++) {
      const e = await c2.get(key(i));
      if (!versions.has(key(i))) assert.equal(e, null, `${key(i)} stays deleted`);
      else {
        assert.equal(e?.value.toString(), i % 2 === 0 ? `second${i}` : `first${i}`, key(i));
        assert.equal(e?.version, versions.get(key(i)), `${key(i)}'s version`);
      }
    }
    await c2.close();
    await node.stop();
  });

  it("old segments and an old snapshot copied back beside a newer snapshot are not replayed over it", async () => {
    const dir = join(newRoot(), "data");
    const node = await startDurable(dir, ["--shards", "1"]);
    const r = node.redis();
    const shard = join(dir, "shard-0");
    const copy = join(newRoot(), "copy");
    for (let i = 0; i < 50; i++) await r.set(key(i), `first${i}`);
    assert.equal(await r.save(), "OK"); // snapshot A
    for (let i = 0; i < 50; i++) await r.set(key(i), `old${i}`);
    cpSync(shard, copy, { recursive: true }); // snapshot A and the log after it, holding the old values
    assert.ok(journalFiles(copy).segments.some((s) => fileSize(s) > 0));
    for (let i = 0; i < 50; i++) await r.set(key(i), `new${i}`);
    for (let i = 0; i < 50; i += 5) await r.del(key(i));
    assert.equal(await r.save(), "OK"); // snapshot B: A and the segments before B are deleted
    assert.equal(await node.stop(), 0);
    const current = journalFiles(shard);
    for (const f of readdirSync(copy)) if (!readdirSync(shard).includes(f)) copyFileSync(join(copy, f), join(shard, f));
    assert.ok(journalFiles(shard).snapshots.length === 2, "both snapshots are there");

    const again = await startDurable(dir);
    assert.deepEqual(journalFiles(shard).snapshots, current.snapshots, "the older snapshot is deleted");
    assert.equal(again.recoveredKeys, 40);
    const r2 = again.redis();
    for (let i = 0; i < 50; i++) assert.equal(await r2.get(key(i)), i % 5 === 0 ? null : `new${i}`, key(i));
    await again.stop();
  });
});
