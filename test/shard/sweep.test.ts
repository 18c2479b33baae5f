// The active expiry sweep's stated guarantee (src/limits.ts): each tick
// examines the next EXPIRE_SWEEP_SAMPLE_COUNT keys with a TTL, none without,
// so an expired key is removed within ceil(2E / SAMPLE) ticks (E: keys with
// a TTL), at the first tick when E <= SAMPLE; a tick goes on while samples
// are over a quarter expired, for at most EXPIRE_SWEEP_BUDGET_MS.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  EXPIRE_SWEEP_BUDGET_MS,
  EXPIRE_SWEEP_INTERVAL_MS,
  EXPIRE_SWEEP_SAMPLE_COUNT,
  expiryLagMs,
  REBUILD_TICK_SLOTS,
} from "../../src/limits.js";
import { ShardCore } from "../../src/shard/execute.js";
import { ShardStore } from "../../src/shard/store.js";
import { sweepTick } from "../../src/shard/sweep.js";

const key = (s: string) => Buffer.from(s);
const v = new Uint8Array(8);

describe("expiry sweep", () => {
  it("examines only keys with a TTL: 100,000 keys without one do not slow it", () => {
    const store = new ShardStore();
    for (let i = 0; i < 100_000; i++) store.set(key(`plain:${i}`), v, 1, 0);
    for (let i = 0; i < 500; i++) store.set(key(`ttl:${i}`), v, 1, 1000);
    assert.equal(store.ttlKeys, 500);
    // Not expired yet: a step examines 200 keys with a TTL and removes none.
    assert.equal(store.sweepExpired(999, 200), 0);
    // Expired: every step removes a full sample until the list is empty.
    assert.equal(store.sweepExpired(1000, 200), 200);
    assert.equal(store.sweepExpired(1000, 200), 200);
    assert.equal(store.sweepExpired(1000, 200), 100);
    assert.equal(store.ttlKeys, 0);
    assert.equal(store.size, 100_000);
  });

  it("the expiry list follows set, overwrite, setExpiry, delete, rebuild and clear", () => {
    const store = new ShardStore();
    store.set(key("a"), v, 1, 50);
    store.set(key("b"), v, 1, 0);
    assert.equal(store.ttlKeys, 1);
    store.set(key("a"), v, 2, 60); // still listed once
    store.set(key("b"), new Uint8Array(5000), 2, 70); // moves size class, gains a TTL
    assert.equal(store.ttlKeys, 2);
    store.set(key("a"), v, 3, 0); // a plain put clears the TTL
    assert.equal(store.ttlKeys, 1);
    store.setExpiry(store.find(key("a")), 80);
    store.setExpiry(store.find(key("b")), 0);
    assert.equal(store.ttlKeys, 1);
    for (let i = 0; i < 5000; i++) store.set(key(`k${i}`), v, 1, i % 2 === 0 ? 100 : 0); // rebuilds
    assert.equal(store.ttlKeys, 2501);
    for (let i = 0; i < 5000; i += 4) store.deleteSlot(store.find(key(`k${i}`)));
    assert.equal(store.ttlKeys, 1251);
    assert.equal(store.sweepExpired(100, 10_000), 1251, "every listed key is found after rebuilds");
    assert.equal(store.find(key("a")), -1);
    assert.ok(store.find(key("b")) >= 0);
    store.set(key("c"), v, 1, 5);
    store.clear();
    assert.equal(store.ttlKeys, 0);
    assert.equal(store.sweepExpired(100, 200), 0);
  });

  it("an expired key is removed within ceil(2E / sample) ticks, whatever else happens", () => {
    const sample = 5;
    const k = fc.integer({ min: 0, max: 150 });
    const ttl = fc.integer({ min: -1, max: 30 });
    const opArb = fc.oneof(
      { weight: 4, arbitrary: fc.record({ t: fc.constant("set" as const), k, ttl }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant("exp" as const), k, ttl }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant("del" as const), k }) },
      { weight: 3, arbitrary: fc.record({ t: fc.constant("tick" as const) }) },
    );
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1000, maxLength: 2000 }), (ops) => {
        const store = new ShardStore();
        // Keys with a TTL, by name: expiry time, and the tick from which it was due.
        const model = new Map<number, { exp: number; dueSince: number }>();
        let now = 100; // ticks; never 0, which means "no TTL"
        let maxTtlKeys = 0;
        const setExp = (k: number, ttl: number) => {
          // ttl -1: no TTL; else expires `ttl` ticks from now (0: already due).
          if (ttl < 0) model.delete(k);
          else model.set(k, { exp: now + ttl, dueSince: -1 });
        };
        for (const op of ops) {
          if (op.t === "set") {
            store.set(key(`k${op.k}`), v, 1, op.ttl < 0 ? 0 : now + op.ttl);
            setExp(op.k, op.ttl);
          } else if (op.t === "exp") {
            const slot = store.find(key(`k${op.k}`));
            if (slot < 0) continue;
            store.setExpiry(slot, op.ttl < 0 ? 0 : now + op.ttl);
            setExp(op.k, op.ttl);
          } else if (op.t === "del") {
            const slot = store.find(key(`k${op.k}`));
            if (slot >= 0) store.deleteSlot(slot);
            model.delete(op.k);
          } else {
            now++;
            for (const e of model.values()) if (e.dueSince < 0 && e.exp !== 0 && e.exp <= now) e.dueSince = now;
            store.sweepExpired(now, sample);
            for (const [k, e] of model) {
              const gone = store.find(key(`k${k}`)) < 0;
              if (gone) {
                assert.ok(e.exp <= now, `k${k} removed only once expired`);
                model.delete(k);
                continue;
              }
              if (e.dueSince < 0) continue;
              const bound = maxTtlKeys <= sample ? 1 : Math.ceil((2 * maxTtlKeys) / sample);
              // Ticks dueSince..now have run and it is still there: fewer than the bound.
              assert.ok(now - e.dueSince + 1 < bound, `k${k} due at tick ${e.dueSince}, still there after tick ${now}`);
            }
          }
          maxTtlKeys = Math.max(maxTtlKeys, store.ttlKeys);
          assert.equal(store.ttlKeys, model.size);
        }
      }),
      { seed: 11, numRuns: 300 },
    );
  });

  it("a tick keeps going through a backlog, within its time budget", () => {
    const core = new ShardCore();
    for (let i = 0; i < 10_000; i++) core.store.set(key(`e${i}`), v, 1, 10);
    // A clock that advances 1 ms per reading (one reading per step): the
    // tick stops once the budget is spent, after BUDGET steps.
    let t = 0;
    const clock = () => t++;
    const removed = sweepTick(core, 10, clock);
    assert.equal(removed, EXPIRE_SWEEP_BUDGET_MS * EXPIRE_SWEEP_SAMPLE_COUNT);
    // A real clock: the whole backlog goes in one tick (it is far under the budget).
    assert.equal(sweepTick(core, 10) + removed, 10_000);
    assert.equal(core.expired, 10_000);
  });

  it("a tick stops when a sample is a quarter expired or less", () => {
    const core = new ShardCore();
    for (let i = 0; i < 1000; i++) core.store.set(key(`m${i}`), v, 1, i % 5 === 0 ? 10 : 1_000_000);
    // One in five expired (20%): one step of 200 keys, then stop.
    assert.equal(sweepTick(core, 10), 40);
  });

  it("a tick takes a step of an index rebuild a load left unfinished: it ends while the shard is idle", () => {
    const core = new ShardCore();
    let n = 0;
    // Up to the insert that starts the rebuild of 2^18 slots (at 0.7 of them: doubling to 2^19; the builds
    // before it end by inserts, each within its capacity / STEP_SLOTS), a seventh of the keys with a TTL.
    while (!(core.store.rebuilding && n > 150_000)) core.store.set(key(`k${n++}`), v, 1, n % 7 === 0 ? 1_000_000 : 0);
    const epoch = core.store.indexEpoch;
    const ttlKeys = core.store.ttlKeys;
    let ticks = 0;
    while (core.store.rebuilding) {
      sweepTick(core, 10);
      ticks++;
      assert.ok(ticks <= Math.ceil(2 ** 18 / REBUILD_TICK_SLOTS), "REBUILD_TICK_SLOTS old slots a tick");
    }
    assert.ok(ticks > 1, `a build of ${n} keys takes more than one tick`);
    assert.equal(core.store.indexEpoch, epoch + 1);
    assert.equal(core.store.size, n);
    assert.equal(core.store.ttlKeys, ttlKeys);
    for (let i = 0; i < n; i += 97) assert.ok(core.store.find(key(`k${i}`)) >= 0);
    // The keys with a TTL are still swept under their new slot numbers.
    assert.equal(sweepTick(core, 2_000_000) + sweepTick(core, 2_000_000), ttlKeys);
    assert.equal(core.store.size, n - ttlKeys);
  });

  it("expiryLagMs states the bound in ticks", () => {
    assert.equal(expiryLagMs(0), EXPIRE_SWEEP_INTERVAL_MS);
    assert.equal(expiryLagMs(EXPIRE_SWEEP_SAMPLE_COUNT), EXPIRE_SWEEP_INTERVAL_MS);
    assert.equal(expiryLagMs(500), 5 * EXPIRE_SWEEP_INTERVAL_MS);
  });
});
