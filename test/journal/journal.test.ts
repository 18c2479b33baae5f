// The shard journal on its own (src/journal/): real files in a temporary
// directory, driven synchronously as a shard worker drives it. The
// end-to-end tests (test/durability/) kill real nodes; these reach the cases
// a process cannot be made to hit on demand: a tear at every byte offset, a
// bit flip in the middle, a disk that fills mid-batch, a snapshot walked
// while the map changes under it, seeded.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { ErrorCode } from "../../src/errors.js";
import { budgetFs, type DiskBudget, type JournalFile, type JournalFs, realFs } from "../../src/journal/files.js";
import { type FsyncPolicy, Journal } from "../../src/journal/journal.js";
import { JournalCorruptError } from "../../src/journal/recover.js";
import { EVERYSEC_INTERVAL_MS } from "../../src/limits.js";
import { CommandView, commandBytes, encodeCommand, Op, Result } from "../../src/shard/command.js";
import type { ShardCore } from "../../src/shard/execute.js";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), "piccolo-journal-"));
  roots.push(d);
  return join(d, "shard-0");
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const NOW = 1_700_000_000_000;

function open(
  dir: string,
  options: {
    fsync?: FsyncPolicy;
    snapshotLogBytes?: number;
    budget?: number | DiskBudget;
    stepKeys?: number;
    /** A file layer of the test's own (it fails fsyncs); the budget applies to realFs only. */
    fs?: JournalFs;
    backgroundSync?: boolean;
  } = {},
) {
  const logs: string[] = [];
  const { journal, recovery } = Journal.open({
    dir,
    fsync: options.fsync ?? "always",
    backgroundSync: options.backgroundSync ?? false,
    snapshotLogBytes: options.snapshotLogBytes ?? 64 * 1024 * 1024,
    fs:
      options.fs ??
      (options.budget === undefined
        ? realFs
        : budgetFs(realFs, typeof options.budget === "number" ? { left: options.budget } : options.budget)),
    retryMs: 0,
    snapshotStepKeys: options.stepKeys ?? 4096,
    log: (_level, message) => logs.push(message),
  });
  return { journal, recovery, logs };
}

/** Runs one command on the journal's core, as the worker does; returns the result's fields. */
function run(
  j: Journal,
  op: number,
  key: string,
  value: string | null = null,
  extra: { arg0?: number; expireAtMs?: number; nowMs?: number } = {},
) {
  const k = enc.encode(key);
  const v = value === null ? null : enc.encode(value);
  const fields = {
    tag: 1,
    op,
    flags: 0,
    nowMs: extra.nowMs ?? NOW,
    expireAtMs: extra.expireAtMs ?? 0,
    arg0: extra.arg0 ?? 0,
    arg1: 0,
    key: k,
    value: v,
  };
  const bytes = new Uint8Array(commandBytes(k.length, v === null ? 0 : v.length));
  encodeCommand(bytes, 0, fields as never);
  const view = new CommandView();
  assert.ok(view.wrap(bytes));
  const r = new Result().reset(1);
  if (j.failed !== null && op !== Op.GET) {
    r.status = ErrorCode.STORAGE_FAILED;
    return r;
  }
  j.core.execute(view, r);
  assert.ok(j.afterCommand());
  return { status: r.status, version: r.version, value: r.value === null ? null : dec.decode(r.value) };
}

function get(
  core: ShardCore,
  key: string,
  nowMs = NOW,
): { value: string; version: number; expiresAtMs: number } | null {
  const slot = core.store.find(enc.encode(key));
  if (slot < 0) return null;
  const exp = core.store.expiresAtMs(slot);
  if (exp !== 0 && exp <= nowMs) return null;
  return { value: dec.decode(core.store.value(slot)), version: core.store.version(slot), expiresAtMs: exp };
}

/**
 * After a failed fsync (the journal failed, "kept" acknowledged before it): a write is refused; the
 * retry (retryMs 0) takes a fresh segment and writes resume; a restart has "kept" and "after", never
 * "refused".
 */
function refusesThenResumes(j: Journal, dir: string): void {
  assert.equal(run(j, Op.PUT, "refused", "3").status, ErrorCode.STORAGE_FAILED);
  j.tick(NOW); // retryMs 0: a fresh segment, a probe, an fsync
  assert.equal(j.failed, null, "writes resume");
  run(j, Op.PUT, "after", "4");
  assert.ok(j.commit());
  j.close();
  const b = open(dir);
  assert.equal(get(b.journal.core, "kept")?.value, "1");
  assert.equal(get(b.journal.core, "after")?.value, "4");
  assert.equal(get(b.journal.core, "refused"), null);
  b.journal.close();
}

/** realFs with some of each opened file's calls replaced: the fault a test injects (real files otherwise). */
function withFiles(replace: (f: JournalFile) => Partial<JournalFile>): JournalFs {
  return {
    ...realFs,
    open(path) {
      const f = realFs.open(path);
      return { ...f, ...replace(f) };
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function segments(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith(".wal"))
    .sort();
}

describe("the shard journal", () => {
  it("brings back values, versions, TTLs and deletions after a restart", () => {
    const dir = freshDir();
    const a = open(dir);
    run(a.journal, Op.PUT, "k1", "v1");
    run(a.journal, Op.PUT, "k1", "v2");
    run(a.journal, Op.PUT, "k2", "gone");
    run(a.journal, Op.DELETE, "k2");
    run(a.journal, Op.PUT, "ttl", "x", { expireAtMs: NOW + 60_000 });
    run(a.journal, Op.PUT, "short", "x", { expireAtMs: NOW + 10 });
    run(a.journal, Op.PUT, "persisted", "x", { expireAtMs: NOW + 10 });
    run(a.journal, Op.PERSIST, "persisted");
    const before = a.journal.core.lastVersion;
    assert.ok(a.journal.commit());
    a.journal.close();

    const b = open(dir);
    assert.deepEqual(get(b.journal.core, "k1"), { value: "v2", version: 2, expiresAtMs: 0 });
    assert.equal(get(b.journal.core, "k2"), null);
    assert.equal(get(b.journal.core, "ttl")?.expiresAtMs, NOW + 60_000);
    assert.equal(get(b.journal.core, "short", NOW + 11), null, "expired while down: gone");
    assert.equal(get(b.journal.core, "persisted", NOW + 11)?.expiresAtMs, 0);
    assert.equal(b.journal.core.lastVersion, before);
    // The next write takes a version never used before, so a stale CAS cannot succeed.
    const r = run(b.journal, Op.CAS, "k1", "v3", { arg0: 1 });
    assert.equal(r.status, ErrorCode.VERSION_MISMATCH);
    const ok = run(b.journal, Op.CAS, "k1", "v3", { arg0: 2 });
    assert.equal(ok.status, ErrorCode.OK);
    assert.ok((ok.version ?? 0) > before);
    b.journal.close();
  });

  it("a torn last record, cut at every byte offset: recovery keeps exactly the records before it", () => {
    const dir = freshDir();
    const a = open(dir);
    run(a.journal, Op.PUT, "first", "1");
    assert.ok(a.journal.commit());
    run(a.journal, Op.PUT, "second", "2");
    run(a.journal, Op.PUT, "third", "3");
    assert.ok(a.journal.commit());
    a.journal.close();
    const seg = join(dir, segments(dir)[0]!);
    const whole = readFileSync(seg);
    // The first commit's record ends where the second begins: find it by replaying lengths.
    const firstEnd = 9 + whole.readUInt32LE(0);
    for (let cut = firstEnd + 1; cut < whole.length; cut++) {
      rmSync(dir, { recursive: true, force: true });
      open(dir).journal.close();
      for (const n of segments(dir)) rmSync(join(dir, n));
      writeFileSync(seg, whole.subarray(0, cut));
      const b = open(dir);
      assert.equal(get(b.journal.core, "first")?.value, "1", `cut at ${cut}`);
      assert.equal(get(b.journal.core, "second"), null, `cut at ${cut}: the torn batch is all gone`);
      assert.deepEqual(b.recovery.truncatedTail, { file: seg, offset: firstEnd, bytes: cut - firstEnd });
      assert.equal(readFileSync(seg).length, firstEnd, "the tear is cut off the file");
      b.journal.close();
    }
  });

  it("a flipped byte with a valid record after it refuses to start, naming the file and offset", () => {
    const dir = freshDir();
    const a = open(dir);
    run(a.journal, Op.PUT, "a", "1");
    assert.ok(a.journal.commit());
    run(a.journal, Op.PUT, "b", "2");
    assert.ok(a.journal.commit());
    a.journal.close();
    const seg = join(dir, segments(dir)[0]!);
    const bytes = readFileSync(seg);
    bytes[12] ^= 0x01; // inside the first record's payload
    writeFileSync(seg, bytes);
    assert.throws(
      () => open(dir),
      (err: unknown) =>
        err instanceof JournalCorruptError &&
        err.file === seg &&
        err.offset === 0 &&
        /valid record after it/.test(err.message),
    );
  });

  it("SAVE: a snapshot replaces the log, and a damaged snapshot refuses to start", () => {
    const dir = freshDir();
    const a = open(dir);
    for (let i = 0; i < 500; i++) run(a.journal, Op.PUT, `k${i}`, `v${i}`);
    assert.ok(a.journal.commit());
    assert.ok(a.journal.startSnapshot(NOW));
    assert.ok(a.journal.finishSnapshot());
    run(a.journal, Op.PUT, "after", "x");
    assert.ok(a.journal.commit());
    assert.equal(segments(dir).length, 1, "the segments the snapshot covers are deleted");
    a.journal.close();
    const b = open(dir);
    assert.equal(b.journal.core.store.size, 501);
    assert.equal(get(b.journal.core, "k499")?.value, "v499");
    b.journal.close();
    const snap = readdirSync(dir).find((n) => n.endsWith(".snap"))!;
    const bytes = readFileSync(join(dir, snap));
    bytes[bytes.length - 40] ^= 0x80;
    writeFileSync(join(dir, snap), bytes);
    assert.throws(
      () => open(dir),
      (err: unknown) => err instanceof JournalCorruptError && err.file === join(dir, snap),
    );
  });

  it("a crash between a snapshot's rename and the clean-up: recovery finishes the clean-up and loses nothing", () => {
    const dir = freshDir();
    const a = open(dir);
    for (let i = 0; i < 100; i++) run(a.journal, Op.PUT, `k${i}`, `v${i}`);
    assert.ok(a.journal.commit());
    a.journal.close();
    const oldSegments = segments(dir);
    // Save copies of the old segments, snapshot, then put them back as if the deletion never ran.
    const copies = oldSegments.map((n) => [n, readFileSync(join(dir, n))] as const);
    const b = open(dir);
    assert.ok(b.journal.startSnapshot(NOW));
    assert.ok(b.journal.finishSnapshot());
    b.journal.close();
    for (const [n, bytes] of copies) writeFileSync(join(dir, n), bytes);
    const c = open(dir);
    assert.equal(c.journal.core.store.size, 100);
    assert.deepEqual(new Set(c.recovery.removed), new Set(oldSegments));
    c.journal.close();
  });

  it("a failed fsync (EIO) under always: the batch is refused, never retried on that file, the map comes back from disk, writes resume on a new segment", () => {
    const dir = freshDir();
    let failSyncs = 0;
    const eioFs = withFiles((f) => ({
      sync() {
        if (failSyncs > 0) {
          failSyncs--;
          throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
        }
        f.sync();
      },
    }));
    const { journal: j, logs } = open(dir, { fs: eioFs });
    run(j, Op.PUT, "kept", "1");
    assert.ok(j.commit(), "acknowledged");
    failSyncs = 1;
    run(j, Op.PUT, "lost", "2");
    assert.equal(j.commit(), false, "the fsync failed: the answer becomes STORAGE_FAILED");
    assert.match(j.failed ?? "", /EIO/);
    const core = j.reload();
    assert.equal(get(core, "kept")?.value, "1");
    // The write reached the page cache, so the reloaded map may hold it; what matters is that it was never
    // acknowledged and writes are refused until a fresh segment takes an fsync.
    refusesThenResumes(j, dir);
    assert.ok(logs.some((m) => /cannot write the log/.test(m)));
  });

  it("everysec in the background (the IO thread's journal): tick() starts the fsync and returns; commits go on while it runs; it is counted when it ends", async () => {
    const dir = freshDir();
    const { journal: j } = open(dir, { fsync: "everysec", backgroundSync: true });
    run(j, Op.PUT, "a", "1");
    assert.ok(j.commit());
    await sleep(EVERYSEC_INTERVAL_MS + 50);
    j.tick(NOW);
    assert.equal(j.stats().fsyncs, 0, "the fsync was not run on this thread: its callback cannot have come yet");
    run(j, Op.PUT, "b", "2");
    assert.ok(j.commit(), "a commit while the fsync runs");
    j.tick(NOW);
    assert.equal(j.stats().fsyncs, 0, "one fsync at a time");
    while (j.stats().fsyncs === 0) await sleep(5);
    assert.equal(j.stats().fsyncs, 1);
    assert.equal(j.failed, null);
    j.close();
    const b = open(dir);
    assert.equal(get(b.journal.core, "a")?.value, "1");
    assert.equal(get(b.journal.core, "b")?.value, "2");
    b.journal.close();
  });

  it("a background fsync that fails (EIO) fails the journal at the next commit: that batch is refused, the map comes back from disk, writes resume on a new segment", async () => {
    const dir = freshDir();
    let failBackground = true;
    let failureReported = false;
    const eioFs = withFiles((f) => ({
      syncInBackground(done) {
        if (!failBackground) return f.syncInBackground(done);
        f.syncInBackground(() => {
          failureReported = true;
          done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
        });
      },
    }));
    const { journal: j, logs } = open(dir, { fsync: "everysec", backgroundSync: true, fs: eioFs });
    run(j, Op.PUT, "kept", "1");
    assert.ok(j.commit(), "acknowledged: written, its fsync to come");
    await sleep(EVERYSEC_INTERVAL_MS + 50);
    j.tick(NOW);
    while (!failureReported) await sleep(5);
    assert.equal(j.failed, null, "the failure waits for the next commit, which fails with it");
    run(j, Op.PUT, "lost", "2");
    assert.equal(j.commit(), false, "the fsync failed: this batch's answers become STORAGE_FAILED");
    assert.match(j.failed ?? "", /EIO/);
    assert.equal(j.stats().fsyncs, 0, "a failed fsync is not counted as one");
    const core = j.reload();
    assert.equal(get(core, "kept")?.value, "1");
    assert.equal(get(core, "lost"), null, "the refused batch was never written");
    failBackground = false; // the retry's fsync runs on this thread, and this one succeeds
    refusesThenResumes(j, dir);
    assert.ok(logs.some((m) => /cannot write the log: EIO/.test(m)));
  });

  it("a segment closed while its background fsync is queued keeps its descriptor until the fsync ends", async () => {
    const dir = freshDir();
    realFs.mkdir(dir);
    for (let i = 0; i < 20; i++) {
      const f = realFs.open(join(dir, `close-${i}.wal`));
      f.write(enc.encode("bytes to sync"), 13);
      const outcome = new Promise<Error | null>((resolve) => f.syncInBackground(resolve));
      f.close(); // at once, as a rotation or a failure would: the fsync is still in libuv's queue
      // Closed under it, the fsync would fail with EBADF, or sync whatever file took the number next.
      assert.equal(await outcome, null);
    }
  });

  it("a full disk mid-batch: the batch fails, the map comes back from disk, writes are refused, nothing acknowledged is lost", () => {
    const dir = freshDir();
    const a = open(dir, { budget: 4096 });
    let acknowledged = 0;
    let failedAt = -1;
    for (let i = 0; i < 1000 && failedAt < 0; i++) {
      run(a.journal, Op.PUT, `k${i}`, "x".repeat(100));
      if (a.journal.commit()) acknowledged = i + 1;
      else failedAt = i;
    }
    assert.ok(failedAt > 0, "the budget ran out");
    assert.match(a.journal.failed ?? "", /ENOSPC/);
    // In memory the failed write is there until the host reloads: the worker always does.
    const core = a.journal.reload();
    assert.equal(core.store.size, acknowledged, "the reloaded map holds exactly the acknowledged writes");
    assert.equal(get(core, `k${failedAt}`), null);
    assert.equal(a.journal.commit(), true, "nothing to commit while writes are refused");
    a.journal.close();
    const b = open(dir);
    assert.equal(b.journal.core.store.size, acknowledged);
    b.journal.close();
  });

  it("a disk full for many retries leaves no probe segments behind; once space returns, writes resume and a restart recovers", () => {
    const dir = freshDir();
    const budget: DiskBudget = { left: 4096 };
    const a = open(dir, { budget });
    let acknowledged = 0;
    for (let i = 0; i < 1000 && a.journal.failed === null; i++) {
      run(a.journal, Op.PUT, `k${i}`, "x".repeat(100));
      if (a.journal.commit()) acknowledged = i + 1;
    }
    assert.ok(a.journal.failed !== null);
    a.journal.reload();
    const before = segments(dir);
    // A probe that fails at its first byte, and one torn half-way through: neither may stay.
    for (const left of [0, 3, 0, 5]) {
      budget.left = left;
      a.journal.tick(NOW);
      assert.ok(a.journal.failed !== null, "still full");
    }
    assert.deepEqual(segments(dir), before, "each failed retry removed its probe segment");
    budget.left = 1 << 20;
    a.journal.tick(NOW);
    assert.equal(a.journal.failed, null, "space came back: writes resume");
    run(a.journal, Op.PUT, "later", "y");
    assert.ok(a.journal.commit());
    a.journal.close();
    const b = open(dir);
    assert.equal(b.journal.core.store.size, acknowledged + 1);
    assert.equal(get(b.journal.core, "later")?.value, "y");
    b.journal.close();
  });

  it("a snapshot whose first segment is gone refuses to start, naming the segment; LASTSAVE's time survives a restart", () => {
    const dir = freshDir();
    const a = open(dir);
    const opened = Date.now();
    assert.ok(a.journal.stats().lastSaveMs >= opened - 1000, "before any snapshot the start counts as a save");
    for (let i = 0; i < 10; i++) run(a.journal, Op.PUT, `k${i}`, "v");
    assert.ok(a.journal.commit());
    assert.ok(a.journal.startSnapshot(NOW));
    assert.ok(a.journal.finishSnapshot());
    const saved = a.journal.stats().lastSaveMs;
    a.journal.close();
    const b = open(dir);
    assert.equal(b.journal.stats().lastSaveMs, saved, "the file carries the same time LASTSAVE answered");
    b.journal.close();
    for (const n of segments(dir)) rmSync(join(dir, n));
    assert.throws(
      () => open(dir),
      (err: unknown) =>
        err instanceof JournalCorruptError && /0{15}\d\.wal$/.test(err.file) && /missing/.test(err.message),
    );
  });

  it("seeded: random writes, snapshots walked while the map changes, and restarts match a model", () => {
    fc.assert(
      fc.property(
        fc.array(
          // Weighted so that snapshots often finish between restarts, with writes walked over mid-snapshot.
          fc.oneof(
            {
              weight: 8,
              arbitrary: fc.record({
                t: fc.constant("put" as const),
                k: fc.integer({ min: 0, max: 40 }),
                v: fc.string({ maxLength: 30 }),
              }),
            },
            { weight: 4, arbitrary: fc.record({ t: fc.constant("del" as const), k: fc.integer({ min: 0, max: 40 }) }) },
            {
              weight: 2,
              arbitrary: fc.record({
                t: fc.constant("expire" as const),
                k: fc.integer({ min: 0, max: 40 }),
                ms: fc.integer({ min: -5, max: 50 }),
              }),
            },
            { weight: 4, arbitrary: fc.record({ t: fc.constant("commit" as const) }) },
            { weight: 2, arbitrary: fc.record({ t: fc.constant("snapshot" as const) }) },
            { weight: 12, arbitrary: fc.record({ t: fc.constant("step" as const) }) },
            { weight: 1, arbitrary: fc.record({ t: fc.constant("restart" as const) }) },
            { weight: 1, arbitrary: fc.record({ t: fc.constant("flush" as const) }) },
          ),
          { minLength: 100, maxLength: 300 },
        ),
        (ops) => {
          const dir = freshDir();
          let j = open(dir, { snapshotLogBytes: 4096, stepKeys: 3 }).journal;
          const model = new Map<string, { v: string; exp: number }>();
          let committed = new Map(model);
          let now = NOW;
          for (const op of ops) {
            now += 1;
            if (op.t === "put") {
              run(j, Op.PUT, `k${op.k}`, op.v, { nowMs: now });
              model.set(`k${op.k}`, { v: op.v, exp: 0 });
            } else if (op.t === "del") {
              run(j, Op.DELETE, `k${op.k}`, null, { nowMs: now });
              model.delete(`k${op.k}`);
            } else if (op.t === "expire") {
              const m = model.get(`k${op.k}`);
              const live = m !== undefined && (m.exp === 0 || m.exp > now);
              run(j, Op.EXPIRE, `k${op.k}`, null, { nowMs: now, expireAtMs: now + op.ms });
              if (live) {
                if (now + op.ms <= now) model.delete(`k${op.k}`);
                else m!.exp = now + op.ms;
              }
            } else if (op.t === "flush") {
              run(j, Op.FLUSH, "", null, { nowMs: now });
              model.clear();
            } else if (op.t === "commit") {
              assert.ok(j.commit());
              committed = new Map([...model].map(([k, v]) => [k, { ...v }]));
            } else if (op.t === "snapshot") {
              assert.ok(j.commit());
              committed = new Map([...model].map(([k, v]) => [k, { ...v }]));
              j.startSnapshot(now);
            } else if (op.t === "step") {
              assert.ok(j.commit());
              committed = new Map([...model].map(([k, v]) => [k, { ...v }]));
              j.tick(now);
            } else {
              // A crash: what was not committed is gone; what was must all be there.
              j.effects.clear();
              j.close();
              j = open(dir, { snapshotLogBytes: 4096, stepKeys: 3 }).journal;
              model.clear();
              for (const [k, v] of committed) model.set(k, { ...v });
              for (const [k, v] of model) {
                const got = get(j.core, k, now);
                if (v.exp !== 0 && v.exp <= now) assert.equal(got, null, k);
                else assert.equal(got?.value, v.v, k);
              }
              let live = 0;
              for (const v of model.values()) if (v.exp === 0 || v.exp > now) live++;
              let found = 0;
              j.core.store.scan(0, 1 << 20, (slot) => {
                const e = j.core.store.expiresAtMs(slot);
                if (e === 0 || e > now) found++;
              });
              assert.equal(found, live, "no key comes back that was deleted");
            }
          }
          j.close();
        },
      ),
      { seed: 15, numRuns: 60 },
    );
  });
});
