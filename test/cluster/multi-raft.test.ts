// Many Raft groups per member, three members, one process: a deterministic
// network moves each round's per-peer batches. Checks that every group elects
// a leader, that writes through leaders are applied identically everywhere,
// that a round costs one storage call and one batch per peer however many
// groups take part, that followers redirect with a leader hint, that
// ReadIndex works per group, and that a member restarted from its storage
// catches up without losing an acknowledged write.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryStorage, MultiRaft, NotLeaderError, type StateMachine } from "../../src/cluster/multi-raft.js";
import type { GroupMessage } from "../../src/cluster/peer-codec.js";
import { MessageType } from "../../src/raft/messages.js";
import type { Entry, Snapshot } from "../../src/raft/types.js";
import { mulberry32 } from "../support/random.js";

const GROUPS = 8;
const MEMBERS = [1, 2, 3];
const dec = new TextDecoder();
const enc = new TextEncoder();

/** A map per group; commands are "key=value"; the answer is the applied index. */
class MapMachine implements StateMachine {
  readonly maps = new Map<number, Map<string, string>>();
  apply(group: number, e: Entry): Uint8Array {
    const [k, v] = dec.decode(e.data).split("=");
    let m = this.maps.get(group);
    if (m === undefined) this.maps.set(group, (m = new Map()));
    m.set(k!, v!);
    return enc.encode(String(e.index));
  }
  restore(group: number, s: Snapshot): void {
    this.maps.set(group, new Map(JSON.parse(dec.decode(s.data)) as [string, string][]));
  }
  snapshot(group: number): Uint8Array {
    return enc.encode(JSON.stringify([...(this.maps.get(group) ?? new Map())]));
  }
}

interface Node {
  id: number;
  mr: MultiRaft;
  storage: MemoryStorage;
  sm: MapMachine;
  up: boolean;
}

class Cluster {
  nodes = new Map<number, Node>();
  inflight: GroupMessage[][] = [];
  batchesPerRound: number[] = [];
  constructor(readonly seed: number) {
    for (const id of MEMBERS) this.start(id, new MemoryStorage());
  }
  start(id: number, storage: MemoryStorage): Node {
    const sm = new MapMachine();
    const groups = Array.from({ length: GROUPS }, (_, g) => {
      const restore = storage.restore(g);
      return { group: g, voters: MEMBERS, ...(restore === undefined ? {} : { restore }) };
    });
    const mr = new MultiRaft({ member: id, groups, storage, stateMachine: sm, rand: mulberry32(this.seed * 31 + id) });
    const n = { id, mr, storage, sm, up: true };
    this.nodes.set(id, n);
    return n;
  }
  /** One round: deliver what was sent last round, tick, process every member. */
  async round(): Promise<void> {
    const deliver = this.inflight;
    this.inflight = [];
    for (const batch of deliver) {
      const to = batch[0]!.message.to;
      const n = this.nodes.get(to)!;
      if (n.up) n.mr.step(batch);
    }
    for (const n of this.nodes.values()) {
      if (!n.up) continue;
      n.mr.tick();
      const out = await n.mr.process();
      this.batchesPerRound.push(out.size);
      for (const batch of out.values()) this.inflight.push(batch);
    }
  }
  async until(what: string, done: () => boolean, rounds = 500): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      if (done()) return;
      await this.round();
    }
    assert.fail(`not within ${rounds} rounds: ${what}`);
  }
  leaderOf(group: number): Node | undefined {
    for (const n of this.nodes.values()) if (n.up && n.mr.status(group).isLeader) return n;
    return undefined;
  }
  /** Runs rounds until `p` settles. */
  async settle<T>(p: Promise<T>): Promise<T> {
    let done = false;
    let value: T | undefined;
    let error: unknown = null;
    p.then(
      (v) => {
        done = true;
        value = v;
      },
      (e: unknown) => {
        done = true;
        error = e;
      },
    );
    await this.until("a promise to settle", () => done);
    if (error !== null) throw error;
    return value as T;
  }
}

const allLeaders = (c: Cluster) => () => Array.from({ length: GROUPS }, (_, g) => c.leaderOf(g)).every(Boolean);

describe("multi-Raft on one worker", () => {
  it("every group elects a leader, and writes through leaders apply identically on every member", async () => {
    const c = new Cluster(1);
    await c.until("a leader in every group", allLeaders(c));
    for (let i = 0; i < 40; i++) {
      const g = i % GROUPS;
      const res = await c.settle(c.leaderOf(g)!.mr.propose(g, enc.encode(`k${i}=v${i}`)));
      assert.ok(Number(dec.decode(res)) > 0, "the answer is the applied index");
    }
    const leaderCommits = () => Array.from({ length: GROUPS }, (_, g) => c.leaderOf(g)!.mr.status(g).commit);
    await c.until("every member applied everything the leaders committed", () => {
      const commits = leaderCommits();
      return [...c.nodes.values()].every((n) => commits.every((commit, g) => n.mr.status(g).applied >= commit));
    });
    const maps = [...c.nodes.values()].map((n) =>
      JSON.stringify([...n.sm.maps].sort(([a], [b]) => a - b).map(([g, m]) => [g, [...m]])),
    );
    assert.equal(new Set(maps).size, 1, "identical state machines");
    assert.equal(c.nodes.get(1)!.sm.maps.get(3)!.get("k3"), "v3");
  });

  it("a read whose leader loses leadership before its round completes is refused at once, not left hanging", async () => {
    const c = new Cluster(7);
    await c.until("leaders", allLeaders(c));
    const g = 0;
    const old = c.leaderOf(g)!;
    const to = MEMBERS.find((id) => id !== old.id)!;
    // The read's heartbeat round never reaches anyone: the old leader's messages are lost from here on.
    const read = old.mr.readIndex(g);
    let outcome: unknown = "pending";
    read.then(
      () => (outcome = "served"),
      (e: unknown) => (outcome = e),
    );
    assert.ok(old.mr.transferLeadership(g, to));
    await old.mr.process(); // the round that would send the heartbeat and TimeoutNow: dropped
    // The transferee campaigns on its own (election timeout) and wins; the old leader hears of it.
    old.up = false;
    await c.until("a new leader", () => c.leaderOf(g) !== undefined && c.leaderOf(g) !== old);
    old.up = true;
    await c.until("the old leader steps down", () => !old.mr.status(g).isLeader);
    await c.until("the read settles", () => outcome !== "pending", 20);
    assert.ok(outcome instanceof NotLeaderError, `refused with NotLeaderError, got ${String(outcome)}`);
  });

  it("reads arriving before a round share one ReadIndex round; a write answered in between is seen by later reads", async () => {
    const c = new Cluster(9);
    await c.until("leaders", allLeaders(c));
    const g = 2;
    const leader = c.leaderOf(g)!;
    await c.settle(leader.mr.propose(g, enc.encode("early=1"))); // an entry of its term committed: reads may start
    // Three reads before the leader's next round: one heartbeat per follower, not three.
    const reads = [leader.mr.readIndex(g), leader.mr.readIndex(g), leader.mr.readIndex(g)];
    const out = await leader.mr.process();
    for (const [to, batch] of out) {
      const heartbeats = batch.filter((m) => m.group === g && m.message.type === MessageType.Heartbeat);
      assert.equal(heartbeats.length, 1, `one heartbeat to member ${to} for three reads`);
      c.inflight.push(batch);
    }
    await c.settle(Promise.all(reads));
    // A write answered after that round; a read arriving after the answer must see it (a new round).
    await c.settle(leader.mr.propose(g, enc.encode("late=1")));
    await c.settle(leader.mr.readIndex(g));
    assert.equal(leader.sm.maps.get(g)!.get("late"), "1");
  });

  it("one storage call and at most one batch per peer per round, however many groups", async () => {
    const c = new Cluster(2);
    await c.until("leaders", allLeaders(c));
    const n = c.nodes.get(1)!;
    const before = n.storage.rounds;
    let processed = 0;
    c.batchesPerRound = [];
    for (let r = 0; r < 50; r++) {
      await c.round();
      processed++;
    }
    assert.ok(n.storage.rounds - before <= processed, "at most one persist per process() round");
    assert.ok(Math.max(...c.batchesPerRound) <= MEMBERS.length - 1, "one batch per peer");
  });

  it("a follower refuses with the leader's id as a hint; reads go through ReadIndex", async () => {
    const c = new Cluster(3);
    await c.until("leaders", allLeaders(c));
    const leader = c.leaderOf(5)!;
    const follower = [...c.nodes.values()].find((n) => n !== leader)!;
    await c.until("the follower hears from the leader", () => follower.mr.status(5).leader === leader.id);
    await assert.rejects(follower.mr.propose(5, enc.encode("x=1")), (e: unknown) => {
      assert.ok(e instanceof NotLeaderError);
      assert.equal(e.leader, leader.id);
      return true;
    });
    await c.settle(leader.mr.propose(5, enc.encode("x=1")));
    await c.settle(leader.mr.readIndex(5));
    assert.equal(leader.sm.maps.get(5)!.get("x"), "1", "after ReadIndex the leader's state has the write");
    await assert.rejects(follower.mr.readIndex(5), NotLeaderError);
  });

  it("a member restarted from its storage catches up; no acknowledged write is lost", async () => {
    const c = new Cluster(4);
    await c.until("leaders", allLeaders(c));
    const acked: [number, string][] = [];
    for (let i = 0; i < 24; i++) {
      const g = i % GROUPS;
      await c.settle(c.leaderOf(g)!.mr.propose(g, enc.encode(`a${i}=${i}`)));
      acked.push([g, `a${i}`]);
    }
    // Member 2 crashes (its messages are lost) and the others go on.
    const two = c.nodes.get(2)!;
    two.up = false;
    await c.until("leaders without member 2", allLeaders(c));
    for (let i = 24; i < 48; i++) {
      const g = i % GROUPS;
      await c.settle(c.leaderOf(g)!.mr.propose(g, enc.encode(`a${i}=${i}`)));
      acked.push([g, `a${i}`]);
    }
    // It restarts from what it had persisted, with an empty state machine.
    const back = c.start(2, two.storage);
    await c.until("member 2 has every acknowledged write", () =>
      acked.every(([g, k]) => back.sm.maps.get(g)?.has(k) ?? false),
    );
    for (const n of c.nodes.values())
      for (const [g, k] of acked) assert.ok(n.sm.maps.get(g)?.has(k), `${n.id} has ${k}`);
  });

  it("messages for groups it does not host are counted, not thrown", () => {
    const c = new Cluster(5);
    const n = c.nodes.get(1)!;
    n.mr.step([
      {
        group: 99,
        message: {
          type: 7,
          from: 2,
          to: 1,
          term: 1,
          logTerm: 0,
          index: 0,
          entries: [],
          commit: 0,
          reject: false,
          rejectHint: 0,
          context: 0,
          snapshot: null,
          transfer: false,
          quiesce: false,
          handoff: false,
        },
      },
    ]);
    assert.equal(n.mr.unknownGroupMessages, 1);
  });
});

describe("multi-Raft on the shared WAL", () => {
  it("three members persist to real WALs; a member restarted from its WAL catches up", async () => {
    const { mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { Wal } = await import("../../src/wal/wal.js");
    const root = await mkdtemp(join(tmpdir(), "piccolo-mr-wal-"));
    try {
      const wals = new Map<number, Awaited<ReturnType<typeof Wal.open>>["wal"]>();
      const machines = new Map<number, MapMachine>();
      const hosts = new Map<number, MultiRaft>();
      const rand = mulberry32(9);
      const open = async (id: number) => {
        const { wal, groups } = await Wal.open(join(root, `m${id}`));
        wals.set(id, wal);
        const sm = new MapMachine();
        machines.set(id, sm);
        hosts.set(
          id,
          new MultiRaft({
            member: id,
            groups: Array.from({ length: 4 }, (_, g) => {
              const r = groups.get(g);
              return { group: g, voters: MEMBERS, ...(r === undefined ? {} : { restore: r }) };
            }),
            storage: wal,
            stateMachine: sm,
            rand,
          }),
        );
      };
      for (const id of MEMBERS) await open(id);
      let inflight: GroupMessage[][] = [];
      const round = async () => {
        const deliver = inflight;
        inflight = [];
        for (const b of deliver) hosts.get(b[0]!.message.to)?.step(b);
        for (const h of hosts.values()) {
          h.tick();
          for (const b of (await h.process()).values()) inflight.push(b);
        }
      };
      const leader = (g: number) => [...hosts.values()].find((h) => h.status(g).isLeader);
      for (let i = 0; i < 300 && [0, 1, 2, 3].some((g) => !leader(g)); i++) await round();
      for (let i = 0; i < 8; i++) {
        const g = i % 4;
        let done = false;
        leader(g)!
          .propose(g, enc.encode(`w${i}=${i}`))
          .then(() => (done = true));
        for (let r = 0; r < 300 && !done; r++) await round();
        assert.ok(done, `write ${i} committed`);
      }
      // Member 3 stops; its WAL is closed as a crash would leave it (everything acknowledged was fsynced).
      hosts.delete(3);
      await wals.get(3)!.close();
      await open(3);
      for (let r = 0; r < 300; r++) {
        await round();
        if ([0, 1, 2, 3].every((g) => machines.get(3)!.maps.get(g)?.size === 2)) break;
      }
      for (let i = 0; i < 8; i++)
        assert.equal(
          machines
            .get(3)!
            .maps.get(i % 4)
            ?.get(`w${i}`),
          String(i),
        );
      for (const w of wals.values()) await w.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
