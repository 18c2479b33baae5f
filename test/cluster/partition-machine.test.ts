// The partitions' state machine: shard commands from the log, applied the
// same on every replica; the log's clock never goes back; reads outside the
// log change nothing; snapshots round-trip; and in a three-member cluster a
// member that fell behind a compaction catches up by snapshot to the same map.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryStorage, MultiRaft } from "../../src/cluster/multi-raft.js";
import { PartitionMachine } from "../../src/cluster/partition-machine.js";
import type { GroupMessage } from "../../src/cluster/peer-codec.js";
import { ErrorCode } from "../../src/errors.js";
import { type Entry, EntryType } from "../../src/raft/types.js";
import { commandBytes, encodeCommand, Op, Result } from "../../src/shard/command.js";
import { mulberry32 } from "../support/random.js";

const enc = new TextEncoder();
function cmd(op: number, key: string, nowMs: number, value: string | null = null, expireAtMs = 0): Uint8Array {
  const k = enc.encode(key);
  const v = value === null ? null : enc.encode(value);
  const out = new Uint8Array(commandBytes(k.length, v?.length ?? 0));
  encodeCommand(out, 0, { op: op as never, flags: 0, tag: 7, nowMs, expireAtMs, arg0: 0, arg1: 0, key: k, value: v });
  return out;
}
let index = 0;
const entry = (data: Uint8Array): Entry => ({ index: ++index, term: 1, type: EntryType.Normal, data });
function result(b: Uint8Array): Result {
  const r = new Result();
  assert.ok(r.decode(b));
  return r;
}

describe("partition state machine", () => {
  it("applies shard commands from the log and answers like a node's shard", () => {
    const m = new PartitionMachine();
    const put = result(m.apply(3, entry(cmd(Op.PUT, "a", 1000, "one"))));
    assert.equal(put.status, ErrorCode.OK);
    assert.equal(put.tag, 7);
    const get = result(m.apply(3, entry(cmd(Op.GET, "a", 1001))));
    assert.equal(Buffer.from(get.value!).toString(), "one");
    assert.equal(get.version, put.version);
    // Partitions are separate maps.
    assert.equal(result(m.apply(4, entry(cmd(Op.GET, "a", 1001)))).flag, 0);
    // A malformed command in the log is refused the same way everywhere.
    assert.equal(result(m.apply(3, entry(new Uint8Array(5)))).status, ErrorCode.INVALID_ARGUMENT);
  });

  it("the log's clock never goes back: a leader with a slower clock cannot revive an expired key", () => {
    const m = new PartitionMachine();
    m.apply(1, entry(cmd(Op.PUT, "k", 1000, "v", 1500)));
    m.apply(1, entry(cmd(Op.PUT, "other", 2000, "x"))); // the log's clock is now 2000
    // A new leader whose clock says 1200 reads k: at the log's time, 2000, it has expired.
    assert.equal(result(m.apply(1, entry(cmd(Op.GET, "k", 1200)))).flag, 0);
  });

  it("a read outside the log sees expiry at local time but changes nothing", () => {
    const m = new PartitionMachine();
    m.apply(1, entry(cmd(Op.PUT, "k", 1000, "v", 1500)));
    const before = m.snapshot(1);
    const r = result(m.read(1, cmd(Op.GET, "k", 0), 1600));
    assert.equal(r.flag, 0, "expired at local time 1600");
    assert.deepEqual(m.snapshot(1), before, "but still in the map, as on every follower");
    assert.equal(result(m.read(1, cmd(Op.PUT, "k", 0, "x"), 1600)).status, ErrorCode.INVALID_ARGUMENT, "no writes");
    assert.equal(Buffer.from(result(m.read(1, cmd(Op.GET, "k", 0), 1400)).value!).toString(), "v");
  });

  it("a sweep in the log removes the same expired keys on every replica", () => {
    const a = new PartitionMachine();
    const b = new PartitionMachine();
    assert.equal(a.ttlSeen(5), false);
    const log = [
      cmd(Op.PUT, "short", 1000, "x", 2000),
      cmd(Op.PUT, "long", 1000, "y", 900_000),
      cmd(Op.PUT, "forever", 1000, "z"),
    ];
    // A sweep command: no key, no value, at time 5000, examining up to 100 keys.
    const sweep = new Uint8Array(commandBytes(0, 0));
    encodeCommand(sweep, 0, {
      op: Op.SWEEP,
      flags: 0,
      tag: 1,
      nowMs: 5000,
      expireAtMs: 0,
      arg0: 100,
      arg1: 0,
      key: new Uint8Array(0),
      value: null,
    });
    for (const m of [a, b]) for (const c of [...log, sweep]) m.apply(5, entry(c));
    assert.equal(a.ttlSeen(5), true);
    assert.deepEqual(a.snapshot(5), b.snapshot(5), "identical maps");
    assert.equal(a.core(5).store.size, 2, "the expired key is gone from the map itself");
  });

  it("snapshots round-trip: versions, expiry, the version counter and the clock", () => {
    const m = new PartitionMachine();
    for (let i = 0; i < 500; i++) m.apply(2, entry(cmd(Op.PUT, `k${i}`, 5000 + i, `v${i}`, i % 3 === 0 ? 9000 : 0)));
    m.apply(2, entry(cmd(Op.DELETE, "k7", 6000)));
    const snap = m.snapshot(2);
    const n = new PartitionMachine();
    n.restore(2, { meta: { index: 1, term: 1, voters: [1], learners: [] }, data: snap });
    assert.deepEqual(n.snapshot(2), snap);
    // The next write takes the same version on both.
    const a = result(m.apply(2, entry(cmd(Op.PUT, "new", 1, "z"))));
    const b = result(n.apply(2, entry(cmd(Op.PUT, "new", 1, "z"))));
    assert.equal(a.version, b.version);
    assert.equal(result(n.apply(2, entry(cmd(Op.GET, "k7", 7000)))).flag, 0);
  });
});

describe("partitions replicated, compacted, and caught up by snapshot", () => {
  it("a member cut off during compaction rejoins through InstallSnapshot with the same map", async () => {
    const MEMBERS = [1, 2, 3];
    const GROUPS = 4;
    const nodes = MEMBERS.map((id) => {
      const sm = new PartitionMachine();
      const storage = new MemoryStorage();
      const mr = new MultiRaft({
        member: id,
        groups: Array.from({ length: GROUPS }, (_, g) => ({ group: g, voters: MEMBERS })),
        storage,
        stateMachine: sm,
        rand: mulberry32(100 + id),
      });
      return { id, sm, mr, storage, cut: false };
    });
    let inflight: GroupMessage[][] = [];
    const round = async () => {
      const deliver = inflight;
      inflight = [];
      for (const b of deliver) {
        const to = nodes[b[0]!.message.to - 1]!;
        const from = b[0]!.message.from;
        if (to.cut || nodes[from - 1]!.cut) continue;
        to.mr.step(b);
      }
      for (const n of nodes) {
        n.mr.tick();
        for (const b of (await n.mr.process()).values()) inflight.push(b);
      }
    };
    const leader = (g: number) => nodes.find((n) => !n.cut && n.mr.status(g).isLeader);
    const write = async (g: number, key: string, value: string) => {
      for (let i = 0; i < 300 && !leader(g); i++) await round();
      let done = false;
      leader(g)!
        .mr.propose(g, cmd(Op.PUT, key, Date.now(), value))
        .then(() => (done = true));
      for (let i = 0; i < 300 && !done; i++) await round();
      assert.ok(done, `write ${key} committed`);
    };
    for (let i = 0; i < 20; i++) await write(i % GROUPS, `before-${i}`, `${i}`);
    const three = nodes[2]!;
    three.cut = true;
    for (let i = 0; i < 40; i++) await write(i % GROUPS, `during-${i}`, `${i}`);
    // Members 1 and 2 compact every group: the entries member 3 misses are gone from their logs.
    for (const n of nodes.slice(0, 2)) for (let g = 0; g < GROUPS; g++) await n.mr.compact(g);
    three.cut = false;
    for (let r = 0; r < 400; r++) {
      await round();
      const done = Array.from({ length: GROUPS }, (_, g) => g).every(
        (g) => three.mr.status(g).applied >= leader(g)!.mr.status(g).commit,
      );
      if (done) break;
    }
    for (let g = 0; g < GROUPS; g++) {
      const want = leader(g)!.sm.snapshot(g);
      assert.deepEqual(three.sm.snapshot(g), want, `group ${g}: member 3's map equals the leader's`);
      assert.ok(three.storage.state.get(g)?.snapshot, `group ${g}: member 3 caught up by an installed snapshot`);
    }
    assert.equal(Buffer.from(result(three.sm.read(1, cmd(Op.GET, "during-1", 0), Date.now())).value!).toString(), "1");
  });
});
