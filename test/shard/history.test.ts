// The change history (src/shard/history.ts) against a model: every change in
// an array, the oldest dropped as the history drops them. Seeded random runs
// of puts, deletes, expiries, jumps of the seq (a cluster's log positions),
// rollbacks and reads with prefixes and byte limits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ChangeType, decodeChanges, History } from "../../src/shard/history.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Model {
  seq: number;
  type: number;
  key: string;
  value: string | null;
}

describe("the change history", () => {
  it("reads exactly the model's changes after any kept position, by prefix, across chunks, gaps and rollbacks", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("put" as const),
              key: fc.integer({ min: 0, max: 30 }),
              size: fc.integer({ min: 0, max: 40_000 }),
            }),
            fc.record({ kind: fc.constant("del" as const), key: fc.integer({ min: 0, max: 30 }) }),
            fc.record({ kind: fc.constant("expired" as const), key: fc.integer({ min: 0, max: 30 }) }),
            fc.record({ kind: fc.constant("skip" as const), by: fc.integer({ min: 1, max: 70_000 }) }),
            fc.record({ kind: fc.constant("rollback" as const), back: fc.integer({ min: 0, max: 5 }) }),
          ),
          { minLength: 1, maxLength: 300 },
        ),
        fc.integer({ min: 0, max: 1000 }),
        (ops, pick) => {
          const h = new History(600 * 1024);
          const model: Model[] = [];
          let committed = 0; // a rollback goes back to here, as a failed commit does
          for (const [i, op] of ops.entries()) {
            if (op.kind === "put") {
              const v = "x".repeat(op.size);
              h.set(enc.encode(`k${op.key}`), enc.encode(v), i + 1, 0);
              model.push({
                seq: h.lastSeq,
                type: ChangeType.PUT,
                key: `k${op.key}`,
                value: op.size <= 65536 ? v : null,
              });
            } else if (op.kind === "del") {
              h.del(enc.encode(`k${op.key}`));
              model.push({ seq: h.lastSeq, type: ChangeType.DELETE, key: `k${op.key}`, value: null });
            } else if (op.kind === "expired") {
              h.expired(enc.encode(`k${op.key}`));
              model.push({ seq: h.lastSeq, type: ChangeType.EXPIRED, key: `k${op.key}`, value: null });
            } else if (op.kind === "skip") {
              h.skipTo(h.lastSeq + op.by);
            } else {
              const to = Math.max(committed, h.lastSeq - op.back);
              // Only changes nobody read may be rolled back; the model forgets them too.
              while (model.length > 0 && model[model.length - 1]!.seq > to) model.pop();
              h.rollback(to);
              committed = h.lastSeq;
            }
            if (i % 7 === 0) committed = h.lastSeq;
          }
          const kept = model.filter((m) => m.seq > h.oldestSeq);
          // The history never keeps less than its limit's worth minus a chunk, and never drops what is newer than what it kept.
          assert.ok(kept.length === 0 || model.slice(model.indexOf(kept[0]!)).length === kept.length);
          const positions = [h.oldestSeq, ...kept.map((m) => m.seq)];
          const after = positions[pick % positions.length]!;
          for (const prefix of ["", "k1", "k2"]) {
            const want = model.filter((m) => m.seq > after && m.key.startsWith(prefix));
            const got: Model[] = [];
            let from = after;
            for (let guard = 0; guard < 10_000; guard++) {
              const r = h.read(from, enc.encode(prefix), false, 100_000);
              assert.ok(r !== null, "a kept position is never compacted");
              for (const c of decodeChanges(r.bytes))
                got.push({
                  seq: c.seq,
                  type: c.type,
                  key: dec.decode(c.key),
                  value: c.value === null ? null : dec.decode(c.value),
                });
              if (r.count === 0) break;
              assert.ok(r.next > from, "reading moves on");
              from = r.next;
            }
            assert.deepEqual(got, want);
          }
          if (h.oldestSeq > 0)
            assert.equal(h.read(h.oldestSeq - 1, new Uint8Array(0), false, 1 << 20), null, "older: compacted");
        },
      ),
      { seed: 4242, numRuns: 150 },
    );
  });
});
