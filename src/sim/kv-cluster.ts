/**
 * A deterministic simulation of the replicated key-value store: three
 * members, each hosting every partition's Raft group (src/cluster/multi-raft.ts)
 * over the partitions' state machine (src/cluster/partition-machine.ts), a
 * simulated network that loses, delays and reorders batches and partitions
 * members, crashes and restarts from storage, and clients doing writes,
 * reads and compare-and-swaps on a few keys. Every client operation is
 * recorded as a history and judged by the linearizability checker
 * (src/check/linearizability.ts).
 *
 * It is the fault test of issue #7 without processes or sockets: the same
 * logic, every interleaving reproducible from a seed. The real-process
 * chaos harness will run the same clients and checker against real nodes.
 *
 * Storage is slow on purpose, as the real WAL is awaited: a member's write
 * may complete rounds later, while the member keeps receiving messages and
 * clients keep proposing (no new round starts until it completes, as in the
 * node), a leader's appends leave before its own write, and a crash keeps a
 * random prefix of a write in flight.
 *
 * Client semantics, as a real client would see them:
 *   resolved               ok, with the result
 *   NotLeaderError         failed, definitely not applied (the op is dropped from the history)
 *   ProposalDroppedError   failed, definitely not applied (dropped too)
 *   ProposalOutcomeUnknownError  unknown, as a timeout
 *   no answer in time      unknown: recorded with no output, "possibly applied"
 */
import { checkHistory, type Operation, type Value, type Verdict } from "../check/linearizability.js";
import {
  type GroupPersist,
  type GroupState,
  MemoryStorage,
  MultiRaft,
  NotLeaderError,
  ProposalOutcomeUnknownError,
  type RaftStorage,
} from "../cluster/multi-raft.js";
import { PartitionMachine } from "../cluster/partition-machine.js";
import type { GroupMessage } from "../cluster/peer-codec.js";
import { ErrorCode } from "../errors.js";
import type { Snapshot } from "../raft/types.js";
import { commandBytes, encodeCommand, Op, Result } from "../shard/command.js";
import { Prng } from "./prng.js";

export interface KvSimOptions {
  seed: number;
  rounds?: number;
  groups?: number;
  keys?: number;
  clients?: number;
  /** Rounds a client waits for an answer before calling the outcome unknown. */
  clientTimeoutRounds?: number;
  /** TEST ONLY: serve reads from whichever replica the client asks, without ReadIndex. */
  plantedStaleReads?: boolean;
  /** Idle ticks before a group goes quiet (0: never). Default: odd seeds quiesce after 3-8 ticks. */
  quiesceAfterTicks?: number;
}

export interface KvSimResult {
  verdict: Verdict;
  operations: number;
  ok: number;
  unknown: number;
  crashes: number;
  partitions: number;
  compactions: number;
  /** By the members' current incarnations (a restart starts counting again). */
  snapshotsInstalled: number;
}

const MEMBERS = [1, 2, 3];
const enc = new TextEncoder();
const dec = new TextDecoder();

interface Member {
  id: number;
  storage: SlowStorage;
  sm: PartitionMachine;
  mr: MultiRaft;
  up: boolean;
  /** A process() round is under way (its write may be in flight). */
  busy: boolean;
}

/** How often a write stays in flight for a few rounds. */
const SLOW_WRITE_CHANCE = 0.3;

/** Memory storage whose writes may complete rounds later; a crash keeps a prefix of those in flight. */
class SlowStorage implements RaftStorage {
  readonly mem = new MemoryStorage();
  private pending: { round: GroupPersist[]; at: number; resolve: () => void }[] = [];
  constructor(private readonly sim: { round(): number; r: Prng }) {}

  async persist(round: GroupPersist[], mustSync = true): Promise<void> {
    if (this.sim.r.chance(SLOW_WRITE_CHANCE))
      return new Promise((resolve) =>
        this.pending.push({ round, at: this.sim.round() + 1 + this.sim.r.int(4), resolve }),
      );
    await this.mem.persist(round, mustSync);
  }

  saveCompaction(group: number, snapshot: Snapshot): Promise<void> {
    return this.mem.saveCompaction(group, snapshot);
  }

  restore(group: number): GroupState | undefined {
    return this.mem.restore(group);
  }

  /** Completes the writes due by `now`, in order. */
  complete(now: number): void {
    while (this.pending.length > 0 && this.pending[0]!.at <= now) {
      const w = this.pending.shift()!;
      void this.mem.persist(w.round); // applies synchronously
      w.resolve();
    }
  }

  /** The process died: of each write in flight, some prefix of its groups reached the disk. */
  crash(): void {
    for (const w of this.pending) void this.mem.persist(w.round.slice(0, this.sim.r.int(w.round.length + 1)));
    this.pending = [];
  }
}

interface InFlight {
  at: number;
  batch: GroupMessage[];
}

export class KvSimulation {
  private readonly r: Prng;
  private readonly o: Required<Omit<KvSimOptions, "plantedStaleReads">> & { plantedStaleReads: boolean };
  private readonly members: Member[] = [];
  private net: InFlight[] = [];
  private round = 0;
  /** Pairs that cannot talk: "1-2" blocks both ways. */
  private readonly cut = new Set<string>();
  private readonly history: Operation[] = [];
  private crashes = 0;
  private partitions = 0;
  private compactions = 0;
  private nextValue = 1;
  /** The member-liveness detector fires at this round (null: nothing pending); see livenessChanged. */
  private wakeAt: number | null = null;

  constructor(o: KvSimOptions) {
    this.o = {
      rounds: 1500,
      groups: 2,
      keys: 3,
      clients: 4,
      clientTimeoutRounds: 60,
      plantedStaleReads: false,
      // Derived from the seed, not drawn: seeds without quiescence replay as before.
      quiesceAfterTicks: o.seed % 2 === 1 ? 3 + ((o.seed >>> 1) % 6) : 0,
      ...o,
    };
    this.r = new Prng(o.seed);
    const clock = { round: () => this.round, r: this.r };
    for (const id of MEMBERS) this.members.push(this.boot(id, new SlowStorage(clock)));
  }

  private boot(id: number, storage: SlowStorage): Member {
    const sm = new PartitionMachine();
    const mr = new MultiRaft({
      member: id,
      groups: Array.from({ length: this.o.groups }, (_, g) => {
        const restore = storage.restore(g);
        return { group: g, voters: MEMBERS, ...(restore === undefined ? {} : { restore }) };
      }),
      storage,
      stateMachine: sm,
      rand: () => this.r.next(),
      quiesceAfterTicks: this.o.quiesceAfterTicks,
    });
    const m: Member = { id, storage, sm, mr, up: true, busy: false };
    mr.sendEarly = (out) => this.send(m, out);
    return m;
  }

  /** Puts a member's batches on the network (lossy, duplicating, delaying). */
  private send(from: Member, out: Map<number, GroupMessage[]>): void {
    if (!from.up || this.members[from.id - 1] !== from) return; // a crashed incarnation says nothing
    for (const batch of out.values()) {
      if (this.r.chance(0.05)) continue; // lost
      const copies = this.r.chance(0.02) ? 2 : 1; // duplicated
      for (let i = 0; i < copies; i++) this.net.push({ at: this.round + 1 + this.r.int(3), batch });
    }
  }

  private failure: unknown = null;

  private command(op: number, key: string, value: string | null, arg0 = 0): Uint8Array {
    const k = enc.encode(key);
    const v = value === null ? null : enc.encode(value);
    const out = new Uint8Array(commandBytes(k.length, v?.length ?? 0));
    encodeCommand(out, 0, {
      op: op as never,
      flags: 0,
      tag: 0,
      nowMs: this.round * 10,
      expireAtMs: 0,
      arg0,
      arg1: 0,
      key: k,
      value: v,
    });
    return out;
  }

  private groupOf(key: string): number {
    return Number(key.slice(1)) % this.o.groups;
  }

  /** One step of the world: deliver due batches, tick and process every live member, maybe a fault. */
  /**
   * A crash, restart or partition change: as the node's member liveness does
   * (src/cluster/backend.ts), wake the quiet groups some rounds later. All
   * groups here hold every member, so all of them wake.
   */
  private livenessChanged(): void {
    if (this.o.quiesceAfterTicks === 0) return;
    const at = this.round + 1 + (this.round % 13);
    if (this.wakeAt === null || at < this.wakeAt) this.wakeAt = at;
  }

  private async step(faults: boolean): Promise<void> {
    this.round++;
    if (this.wakeAt !== null && this.round >= this.wakeAt) {
      this.wakeAt = null;
      for (const m of this.members) if (m.up) for (const id of MEMBERS) m.mr.wakeWith(id);
    }
    const due = this.net.filter((f) => f.at <= this.round);
    this.net = this.net.filter((f) => f.at > this.round);
    for (const f of due) {
      const m = f.batch[0]!.message;
      const to = this.members[m.to - 1]!;
      if (to.up && !this.cut.has(pair(m.from, m.to))) to.mr.step(f.batch);
    }
    for (const m of this.members) {
      if (!m.up) continue;
      m.storage.complete(this.round);
      m.mr.tick();
      if (m.busy) continue; // its round's write is still in flight
      m.busy = true;
      if (this.r.chance(0.01)) {
        // Now and then, between rounds as the node does, compact a group's log into a snapshot:
        // members behind it then catch up by InstallSnapshot.
        m.mr.compact(this.r.int(this.o.groups)).then(
          () => {
            m.busy = false;
            this.compactions++;
          },
          (err: unknown) => (this.failure ??= err),
        );
        continue;
      }
      m.mr.process().then(
        (out) => {
          m.busy = false;
          this.send(m, out);
        },
        (err: unknown) => (this.failure ??= err),
      );
    }
    // Let rounds whose writes completed run to their end.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    if (this.failure !== null) throw this.failure;
    if (!faults) return;
    if (this.r.chance(0.01)) {
      // Partition one member from the others, or heal.
      if (this.cut.size > 0) this.cut.clear();
      else {
        const m = this.r.pick(MEMBERS);
        for (const o of MEMBERS) if (o !== m) this.cut.add(pair(m, o));
        this.partitions++;
      }
      this.livenessChanged();
    }
    if (this.r.chance(0.006)) {
      const down = this.members.find((m) => !m.up);
      if (down !== undefined) this.members[down.id - 1] = this.boot(down.id, down.storage);
      else {
        const m = this.r.pick(this.members);
        m.up = false;
        m.storage.crash();
        this.crashes++;
      }
      this.livenessChanged();
    }
  }

  /** A client: one operation at a time against whichever member it guesses leads. */
  private async client(id: number, until: () => boolean): Promise<void> {
    // Per key, value -> version, learned from reads and writes. Versions come
    // from each partition's own counter, so they identify a write only
    // together with its key.
    const seen = new Map<string, Map<string, number>>();
    const versionsOf = (key: string) => {
      let m = seen.get(key);
      if (m === undefined) seen.set(key, (m = new Map()));
      return m;
    };
    let guess = this.r.pick(MEMBERS);
    while (!until()) {
      const key = `k${this.r.int(this.o.keys)}`;
      const g = this.groupOf(key);
      const member = this.members[guess - 1]!;
      const call = this.round;
      const kind = this.r.chance(0.4) ? "read" : this.r.chance(0.7) ? "write" : "cas";
      const versions = versionsOf(key);
      let settle: Promise<Uint8Array>;
      let input: Operation["input"];
      if (!member.up) {
        guess = this.r.pick(MEMBERS);
        await this.wait(1);
        continue;
      }
      if (kind === "read") {
        input = { kind: "read" };
        const cmd = this.command(Op.GET, key, null);
        settle = this.o.plantedStaleReads
          ? Promise.resolve(member.sm.read(g, cmd, this.round * 10))
          : member.mr.readIndex(g).then(() => member.sm.read(g, cmd, this.round * 10));
      } else if (kind === "write") {
        const value = `v${this.nextValue++}`;
        input = { kind: "write", value };
        settle = member.mr.propose(g, this.command(Op.PUT, key, value));
      } else {
        const known = [...versions.entries()];
        if (known.length === 0) {
          await this.wait(1);
          continue;
        }
        const [expected, version] = this.r.pick(known);
        const value = `v${this.nextValue++}`;
        input = { kind: "cas", expected, value };
        settle = member.mr.propose(g, this.command(Op.CAS, key, value, version));
      }
      const outcome = await this.await(settle);
      if (
        outcome.kind === "timeout" ||
        (outcome.kind === "failed" && outcome.err instanceof ProposalOutcomeUnknownError)
      ) {
        this.history.push({ client: id, key, input, output: null, call, ret: Number.POSITIVE_INFINITY });
        guess = this.r.pick(MEMBERS);
        continue;
      }
      if (outcome.kind === "failed") {
        if (outcome.err instanceof NotLeaderError && outcome.err.leader !== 0) guess = outcome.err.leader;
        else guess = this.r.pick(MEMBERS);
        await this.wait(1);
        continue;
      }
      const res = new Result();
      res.decode(outcome.value);
      const ret = this.round;
      if (kind === "read") {
        const value: Value = res.flag === 1 && res.value !== null ? dec.decode(res.value) : null;
        if (value !== null) versions.set(value, res.version);
        this.history.push({ client: id, key, input, output: { kind: "read", value }, call, ret });
      } else if (kind === "write") {
        if (res.status !== ErrorCode.OK) throw new Error(`a put failed with ${res.status}`);
        versions.set((input as { value: string }).value, res.version);
        this.history.push({ client: id, key, input, output: { kind: "write" }, call, ret });
      } else {
        const ok = res.status === ErrorCode.OK;
        if (!ok && res.status !== ErrorCode.VERSION_MISMATCH) throw new Error(`a cas failed with ${res.status}`);
        if (ok) versions.set((input as { value: string }).value, res.version);
        this.history.push({ client: id, key, input, output: { kind: "cas", ok }, call, ret });
      }
    }
  }

  private waiters: { at: number; resolve: () => void }[] = [];

  private wait(rounds: number): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ at: this.round + rounds, resolve }));
  }

  private async await(
    p: Promise<Uint8Array>,
  ): Promise<{ kind: "ok"; value: Uint8Array } | { kind: "failed"; err: unknown } | { kind: "timeout" }> {
    let outcome: { kind: "ok"; value: Uint8Array } | { kind: "failed"; err: unknown } | null = null;
    p.then(
      (value) => (outcome = { kind: "ok", value }),
      (err: unknown) => (outcome = { kind: "failed", err }),
    );
    const deadline = this.round + this.o.clientTimeoutRounds;
    while (outcome === null && this.round < deadline) await this.wait(1);
    return outcome ?? { kind: "timeout" };
  }

  async run(): Promise<KvSimResult> {
    let clientsStop = false;
    const clients = Array.from({ length: this.o.clients }, (_, i) => this.client(i, () => clientsStop));
    // The world advances; clients wake on their rounds.
    const advance = async (faults: boolean) => {
      await this.step(faults);
      const due = this.waiters.filter((w) => w.at <= this.round);
      this.waiters = this.waiters.filter((w) => w.at > this.round);
      for (const w of due) w.resolve();
      // Let clients run until they wait again (they only await world events).
      for (let i = 0; i < 20; i++) await Promise.resolve();
    };
    for (let i = 0; i < this.o.rounds; i++) await advance(true);
    // Heal: everyone up and connected, then let the clients finish.
    this.cut.clear();
    for (const m of this.members) if (!m.up) this.members[m.id - 1] = this.boot(m.id, m.storage);
    this.livenessChanged();
    clientsStop = true;
    for (let i = 0; i < this.o.clientTimeoutRounds * 3 + 200; i++) await advance(false);
    await Promise.all(clients);
    const verdict = checkHistory(this.history);
    return {
      verdict,
      operations: this.history.length,
      ok: this.history.filter((h) => h.output !== null).length,
      unknown: this.history.filter((h) => h.output === null).length,
      crashes: this.crashes,
      partitions: this.partitions,
      compactions: this.compactions,
      snapshotsInstalled: this.members.reduce((n, m) => n + m.mr.snapshotsInstalled, 0),
    };
  }
}

function pair(a: number, b: number): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}
