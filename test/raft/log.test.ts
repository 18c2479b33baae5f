// The Raft log's columns and shared chunks (decision 0108) against a plain list of entries, on random
// sequences of what the core does to a log: appends (with truncation of a conflicting tail), commits,
// durability, applying, compaction and snapshot installs. Every entry handed out must keep its bytes
// whatever happens to the log afterwards. Fixed seeds.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RaftLog } from "../../src/raft/log.js";
import { type Entry, EntryType } from "../../src/raft/types.js";

const BASE = { index: 0, term: 0, voters: [1, 2, 3], learners: [] };

/** Data of every kind the log treats apart: empty (a no-op), small (shared chunks), large (its own array). */
const sizeArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 3000, max: 9000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 16 * 1024 - 2, max: 40_000 }) },
);

const opArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("append" as const),
      back: fc.nat(6),
      sizes: fc.array(sizeArb, { minLength: 1, maxLength: 8 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("advance" as const),
      stable: fc.nat(10),
      commit: fc.nat(10),
      apply: fc.nat(10),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("compact" as const), back: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("restore" as const), ahead: fc.integer({ min: 1, max: 20 }) }) },
);

/** Bytes that say which entry (index, term) they belong to, so a mixed-up view is caught. */
function dataFor(index: number, term: number, size: number): Uint8Array {
  const d = new Uint8Array(size);
  for (let i = 0; i < size; i++) d[i] = (index * 31 + term * 7 + i) & 0xff;
  return d;
}

describe("Raft log", () => {
  it("agrees with a plain list of entries under appends, truncations, compaction and snapshots", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 200, size: "medium" }), (ops) => {
        const log = new RaftLog(BASE);
        // The model: entries from `first` on, and the snapshot point before them.
        let model: Entry[] = [];
        let first = 1;
        let term = 1;
        // Entries handed out, with a copy of their bytes then: they must never change.
        const handedOut: [Entry, Uint8Array][] = [];
        const check = () => {
          assert.equal(log.firstIndex(), first);
          assert.equal(log.lastIndex(), first + model.length - 1);
          for (const e of model) {
            assert.equal(log.term(e.index), e.term);
            const got = log.entry(e.index);
            assert.equal(got.type, e.type);
            assert.deepEqual(got.data, e.data, `entry ${e.index}'s data`);
          }
          const all = log.slice(first, first + model.length - 1);
          assert.deepEqual(
            all.map((e) => [e.index, e.term, e.type, e.data.length]),
            model.map((e) => [e.index, e.term, e.type, e.data.length]),
          );
          const unstable = log.unstableEntries();
          assert.equal(log.hasUnstable(), unstable.length > 0);
          assert.deepEqual(
            unstable.map((e) => e.index),
            model.filter((e) => e.index > log.stable).map((e) => e.index),
          );
          assert.equal(log.hasNextCommitted(), log.nextCommitted(1).length > 0);
          for (const e of [...unstable, ...log.nextCommitted(Number.POSITIVE_INFINITY)])
            handedOut.push([e, e.data.slice()]);
        };
        for (const op of ops) {
          if (op.t === "append") {
            // A leader of a new term may overwrite an uncommitted tail: start at most `back` before the end.
            const at = Math.max(log.committed + 1, log.lastIndex() + 1 - op.back);
            if (at <= log.lastIndex()) term++;
            const entries = op.sizes.map((size, i) => {
              const index = at + i;
              const type = size === 0 ? EntryType.Noop : EntryType.Normal;
              return { index, term, type, data: dataFor(index, term, size) } as Entry;
            });
            log.append(entries);
            model = [...model.filter((e) => e.index < at), ...entries.map((e) => ({ ...e, data: e.data.slice() }))];
            // Small data is copied into the log's chunks (large data is kept as it came, as before, and its
            // owner never writes it again): scribbling on a small one passed in changes nothing.
            for (const e of entries) if (e.data.length <= 300) e.data.fill(0xee);
          } else if (op.t === "advance") {
            log.stableTo(Math.min(log.lastIndex(), log.stable + op.stable));
            log.commitTo(Math.min(log.lastIndex(), log.committed + op.commit));
            const applyTo = Math.min(log.committed, log.stable, log.applied + op.apply);
            if (applyTo > log.applied) log.appliedTo(applyTo);
          } else if (op.t === "compact") {
            const index = log.applied - op.back;
            if (index >= first) {
              log.compact(index);
              model = model.filter((e) => e.index > index);
              first = index + 1;
            }
          } else {
            const index = Math.max(log.committed, log.lastIndex()) + op.ahead;
            log.restore({ index, term, voters: [1, 2, 3], learners: [] });
            log.snapshotApplied(index);
            model = [];
            first = index + 1;
          }
          check();
        }
        for (const [e, bytes] of handedOut) assert.deepEqual(e.data, bytes, `entry ${e.index} kept its bytes`);
      }),
      { seed: 21, numRuns: 150 },
    );
  });

  it("moves its columns down when compaction left room at the front, and grows them when not", () => {
    const log = new RaftLog(BASE);
    const add = (from: number, to: number) => {
      const entries: Entry[] = [];
      for (let i = from; i <= to; i++)
        entries.push({ index: i, term: 1, type: EntryType.Normal, data: dataFor(i, 1, 40) });
      log.append(entries);
      log.stableTo(to);
      log.commitTo(to);
      log.appliedTo(to);
    };
    add(1, 64); // the columns' first capacity, full
    log.compact(50); // 14 entries left, at the columns' end
    add(65, 100); // no room at the end: moved down (14 of 64 in use), then 36 more
    add(101, 200); // full with more than half in use: doubled
    for (const i of [51, 64, 65, 100, 101, 200]) assert.deepEqual(log.entry(i).data, dataFor(i, 1, 40), `entry ${i}`);
    assert.deepEqual(
      log.slice(51, 200).map((e) => e.index),
      Array.from({ length: 150 }, (_, k) => 51 + k),
    );
  });

  it("keeps small entries in shared chunks and drops the chunks a compaction empties", () => {
    const log = new RaftLog(BASE);
    const n = 10_000;
    const entries: Entry[] = [];
    for (let i = 1; i <= n; i++) entries.push({ index: i, term: 1, type: EntryType.Normal, data: dataFor(i, 1, 128) });
    log.append(entries);
    log.stableTo(n);
    log.commitTo(n);
    log.appliedTo(n);
    // 10,000 entries of 128 bytes: 1.25 MB of data in about twenty 64 KiB chunks, not 10,000 arrays.
    const chunks = (log as unknown as { chunks: Uint8Array[] }).chunks;
    assert.ok(chunks.length >= 19 && chunks.length <= 25, `${chunks.length} chunks`);
    log.compact(n - 10);
    const kept = (log as unknown as { chunks: Uint8Array[] }).chunks;
    assert.ok(kept.length <= 2, `after compaction ${kept.length} chunks are kept`);
    assert.deepEqual(log.entry(n).data, dataFor(n, 1, 128));
  });
});
