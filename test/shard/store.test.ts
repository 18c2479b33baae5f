// The slab-and-index store against a plain Map model: random operations
// with binary keys and values of every size class (and past the slab limit),
// scans that must visit every key, and churn that must reuse freed memory.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { SLAB_MAX_RECORD_BYTES, ShardStore } from "../../src/shard/store.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function allKeys(store: ShardStore, count = 7): string[] {
  const seen: string[] = [];
  let cursor = 0;
  do {
    cursor = store.scan(cursor, count, (slot) => seen.push(hex(store.key(slot))));
  } while (cursor !== 0);
  return seen;
}

describe("ShardStore", () => {
  it("agrees with a Map model on random operations", () => {
    // Mostly keys from a small pool, so that deletes and TTLs meet keys that exist.
    const keyArb = fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 15 }).map((i) => Buffer.from(`k${i}:`.repeat((i % 4) + 1))) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 24 }) },
    );
    const valueArb = fc.oneof(
      { weight: 8, arbitrary: fc.uint8Array({ maxLength: 300 }) },
      // Lengths of every size up to 600 bytes, where size classes step by ~12.5% (an array arbitrary keeps
      // to short ones): a TTL set there may stay in its record's class.
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 600 }).map((n) => new Uint8Array(n).fill(n & 0xff)) },
      {
        weight: 1,
        arbitrary: fc.integer({ min: 0, max: 3 * SLAB_MAX_RECORD_BYTES }).map((n) => new Uint8Array(n).fill(n & 0xff)),
      },
    );
    // Half without a TTL (0), half with: records of both layouts, and TTLs set on and taken from both.
    const expArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 }));
    const opArb = fc.oneof(
      fc.record({ t: fc.constant("set" as const), k: keyArb, v: valueArb, exp: expArb }),
      fc.record({ t: fc.constant("del" as const), k: keyArb }),
      fc.record({ t: fc.constant("exp" as const), k: keyArb, exp: expArb }),
      fc.record({ t: fc.constant("sweep" as const), now: fc.integer({ min: 0, max: 100 }) }),
      fc.record({ t: fc.constant("clear" as const) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 400, size: "medium" }), (ops) => {
        const store = new ShardStore();
        const model = new Map<string, { v: Uint8Array; ver: number; exp: number }>();
        let version = 0;
        const agrees = (k: string, e: { v: Uint8Array; ver: number; exp: number } | undefined) => {
          const slot = store.find(Buffer.from(k, "hex"));
          assert.equal(slot >= 0, e !== undefined, `key ${k} present iff in the model`);
          if (e === undefined) return;
          assert.deepEqual(store.value(slot), e.v);
          assert.equal(store.version(slot), e.ver);
          assert.equal(store.expiresAtMs(slot), e.exp);
        };
        for (const op of ops) {
          if (op.t === "set") {
            version++;
            const slot = store.set(op.k, op.v, version, op.exp);
            model.set(hex(op.k), { v: op.v, ver: version, exp: op.exp });
            assert.equal(store.find(op.k), slot);
          } else if (op.t === "del") {
            const slot = store.find(op.k);
            assert.equal(slot >= 0, model.has(hex(op.k)));
            if (slot >= 0) store.deleteSlot(slot);
            model.delete(hex(op.k));
          } else if (op.t === "exp") {
            const slot = store.find(op.k);
            if (slot >= 0) {
              store.setExpiry(slot, op.exp);
              model.get(hex(op.k))!.exp = op.exp;
            }
          } else if (op.t === "sweep") {
            let removed = 0;
            for (let i = 0; i < 100; i++) removed += store.sweepExpired(op.now, 50);
            let expected = 0;
            for (const [k, e] of model) {
              if (e.exp !== 0 && e.exp <= op.now) {
                model.delete(k);
                expected++;
              }
            }
            assert.equal(removed, expected, "a full sweep removes exactly the expired keys");
          } else {
            store.clear();
            model.clear();
          }
          assert.equal(store.size, model.size);
          // The key just touched, at once: a later op (a clear, an overwrite) would hide a wrong record.
          if ("k" in op) agrees(hex(op.k), model.get(hex(op.k)));
        }
        for (const [k, e] of model) agrees(k, e);
        assert.deepEqual(allKeys(store).sort(), [...model.keys()].sort());
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it("grows past many rebuilds and scans every key exactly once", () => {
    const store = new ShardStore();
    for (let i = 0; i < 50_000; i++) store.set(Buffer.from(`key:${i}`), Buffer.from(`v${i}`), i + 1, 0);
    assert.equal(store.size, 50_000);
    const keys = allKeys(store, 1000);
    assert.equal(keys.length, 50_000);
    assert.equal(new Set(keys).size, 50_000);
    const slot = store.find(Buffer.from("key:31337"));
    assert.equal(Buffer.from(store.value(slot)).toString(), "v31337");
  });

  it("a key present for a whole scan is visited even when the index is rebuilt mid-scan", () => {
    const store = new ShardStore();
    for (let i = 0; i < 500; i++) store.set(Buffer.from(`old:${i}`), Buffer.from("x"), 1, 0);
    const seen = new Set<string>();
    let cursor = store.scan(0, 100, (s) => seen.add(Buffer.from(store.key(s)).toString()));
    for (let i = 0; i < 5000; i++) store.set(Buffer.from(`new:${i}`), Buffer.from("y"), 1, 0); // forces rebuilds
    while (cursor !== 0) cursor = store.scan(cursor, 100, (s) => seen.add(Buffer.from(store.key(s)).toString()));
    for (let i = 0; i < 500; i++) assert.ok(seen.has(`old:${i}`), `old:${i} visited`);
  });

  it("reuses freed memory: set/delete churn does not grow it", () => {
    const store = new ShardStore();
    const value = new Uint8Array(64);
    const fill = (round: number) => {
      for (let i = 0; i < 20_000; i++) store.set(Buffer.from(`r${round}:${i}`), value, 1, 0);
    };
    const drain = (round: number) => {
      for (let i = 0; i < 20_000; i++) store.deleteSlot(store.find(Buffer.from(`r${round}:${i}`)));
    };
    fill(0);
    drain(0);
    const afterFirst = store.memoryBytes();
    for (let round = 1; round < 10; round++) {
      fill(round);
      drain(round);
    }
    assert.ok(store.memoryBytes() <= afterFirst, `${store.memoryBytes()} <= ${afterFirst}`);
    store.clear();
    assert.ok(store.memoryBytes() < 64 * 1024, "clear() returns the pages");
  });

  it("overwrites in place within a size class and moves across classes", () => {
    const store = new ShardStore();
    const k = Buffer.from("k");
    store.set(k, new Uint8Array(10).fill(1), 1, 0);
    store.set(k, new Uint8Array(12).fill(2), 2, 0);
    store.set(k, new Uint8Array(5000).fill(3), 3, 0);
    store.set(k, new Uint8Array(SLAB_MAX_RECORD_BYTES * 2).fill(4), 4, 0);
    store.set(k, new Uint8Array(1).fill(5), 5, 0);
    const slot = store.find(k);
    assert.deepEqual([...store.value(slot)], [5]);
    assert.equal(store.version(slot), 5);
    assert.equal(store.size, 1);
  });

  it("carries an expiry only in the records of keys with a TTL: 16 bytes of header without, 24 with", () => {
    // 16-byte keys with 64-byte values: 96-byte records without a TTL, 10,922 to a 1 MiB page; with a
    // TTL, 104 bytes, 10,082 to a page. memoryBytes() counts whole pages, plus the index (under 1 MiB).
    const pages = (s: ShardStore) => Math.floor(s.memoryBytes() / (1024 * 1024));
    const value = new Uint8Array(64).fill(7);
    const key = (i: number) => Buffer.from(`key:${String(i).padStart(12, "0")}`);
    const plain = new ShardStore();
    for (let i = 0; i < 10_922; i++) plain.set(key(i), value, 1, 0);
    assert.equal(pages(plain), 1, "10,922 records of 96 bytes fill one page");
    const timed = new ShardStore();
    for (let i = 0; i < 10_922; i++) timed.set(key(i), value, 1, 5_000);
    assert.equal(pages(timed), 2, "with a TTL they are 104 bytes: a second page");
    // A TTL set later moves the record to the next class and keeps everything else; PERSIST reads as none.
    const slot = plain.find(key(5));
    plain.setExpiry(slot, 9_000);
    assert.equal(plain.expiresAtMs(slot), 9_000);
    assert.deepEqual(plain.value(slot), value);
    assert.deepEqual(Buffer.from(plain.key(slot)), key(5));
    assert.equal(plain.version(slot), 1);
    assert.equal(pages(plain), 2, "the moved record opened a page of the 104-byte class");
    plain.setExpiry(slot, 0);
    assert.equal(plain.expiresAtMs(slot), 0);
    assert.equal(plain.ttlKeys, 0);
    plain.set(key(5), value, 2, 0);
    assert.equal(plain.expiresAtMs(plain.find(key(5))), 0);
    assert.equal(plain.version(plain.find(key(5))), 2);
  });

  it("keeps expiry positions only while some key has a TTL (4 bytes per index slot)", () => {
    // memoryBytes() = whole 1 MiB pages + the index (under 1 MiB here): slots and hashes, 8 bytes per
    // slot, the expiry positions, 4 per slot while kept, and the expiry list, 64 entries of 4 bytes.
    const indexBytes = () => store.memoryBytes() % (1024 * 1024);
    const store = new ShardStore();
    const value = new Uint8Array(64);
    const fill = (from: number, to: number) => {
      for (let i = from; i < to; i++) store.set(Buffer.from(`k:${i}`), value, 1, 0);
    };
    fill(0, 10_000); // 16,384 slots: 10,000 keys keep it at most 3/4 full
    assert.equal(indexBytes(), 16_384 * 8 + 256, "no TTL: no positions");
    store.setExpiry(store.find(Buffer.from("k:7")), 1_000);
    assert.equal(indexBytes(), 16_384 * 12 + 256, "the first TTL brings 4 bytes per slot");
    fill(10_000, 20_000); // rebuilt at 32,768 slots, the key with a TTL still listed
    assert.equal(indexBytes(), 32_768 * 12 + 256);
    assert.equal(store.ttlKeys, 1);
    assert.equal(store.sweepExpired(2_000, 10), 1, "the sweep still finds it after the rebuild");
    assert.equal(store.find(Buffer.from("k:7")), -1);
    fill(20_000, 30_000); // rebuilt at 65,536 slots with no key left with a TTL: the positions go
    assert.equal(indexBytes(), 65_536 * 8 + 256);
    store.setExpiry(store.find(Buffer.from("k:8")), 1_000);
    assert.equal(indexBytes(), 65_536 * 12 + 256, "and come back with the next TTL");
    assert.equal(store.sweepExpired(2_000, 10), 1);
  });
});
