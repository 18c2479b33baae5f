/**
 * A deterministic simulation of one Raft group, in one process, that tries
 * to break it (TigerBeetle's VOPR, in miniature). Everything random comes
 * from one seed: the network (loss, duplication, delay and so reordering,
 * symmetric and one-way partitions), crashes and restarts from the durable
 * state (a crash between write and fsync keeps only a prefix of the last
 * batch: src/sim/disk.ts), clocks that tick at different rates, hosts that
 * snapshot and compact their logs, membership changes (learners added,
 * promoted, voters removed), leadership transfers, and a client that
 * proposes commands and asks for linearizable reads throughout.
 *
 * After every step it checks safety:
 *   - at most one leader per term;
 *   - state machine safety / log matching: every committed index holds the
 *     same entry on every replica, and every replica applies the same
 *     sequence; an installed snapshot equals the state its index stands for;
 *   - leader completeness: a new leader's log holds every committed entry,
 *     crashes included;
 *   - linearizable reads: a read point covers every write acknowledged
 *     before the read began.
 * At the end it heals everything and checks liveness: a leader emerges
 * within a bounded number of ticks, every accepted proposal is resolved
 * (committed, or provably overwritten, which a host reports as dropped), and
 * every member has caught up.
 */
import { assert } from "../assert.js";
import { ConfChangeType, decodeConfig, members } from "../raft/config.js";
import { canSendBeforePersist, type Message, type Ready, Role } from "../raft/messages.js";
import { Raft } from "../raft/raft.js";
import { type Entry, EntryType } from "../raft/types.js";
import { SimDisk } from "./disk.js";
import { Prng } from "./prng.js";

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Steps of simulated time with faults. */
  steps: number;
  /** Ticks allowed after healing for the group to settle. */
  settleTicks: number;
  /** Scales crash and partition rates (1: the default mix). */
  faultRate?: number;
  /** Chance per step that the client proposes a command (default 0.3). */
  proposeRate?: number;
  /** TEST ONLY: run the core with a planted bug. */
  plantedBug?: PlantedBug;
  /** Membership changes and leadership transfers (default on). */
  reconfigure?: boolean;
  /** Chance per step that the client proposes a membership change (default 0.004). */
  confChangeRate?: number;
  /**
   * Quiescence (src/raft/raft.ts, wake()): idle ticks before a leader lets
   * the group go quiet; 0 never. Default: odd seeds quiesce after 2-9 ticks.
   */
  quiesceAfterTicks?: number;
}

export type PlantedBug = "commit-previous-term" | "vote-ignoring-log" | "conf-change-unguarded";

/**
 * The fault and load mix for a seed, when none is given: two seeds in three
 * run a busy client under the default fault rate; one in three runs a quiet
 * client under a storm of crashes. The quiet storm is where the bug of
 * Figure 8 lives (a leader must crash before it has appended anything of its
 * own term), which a busy client almost never leaves room for.
 */
export function profileFor(seed: number): { proposeRate: number; faultRate: number } {
  return seed % 3 === 0 ? { proposeRate: 0.05, faultRate: 8 } : { proposeRate: 0.3, faultRate: 1 };
}

/** Spare replicas, outside the group at the start, that membership changes may add. */
const SPARES = 2;

export class SimViolation extends Error {
  override name = "SimViolation";
  constructor(
    message: string,
    readonly kind: "safety" | "liveness",
  ) {
    super(message);
  }
}

interface SimNode {
  id: number;
  raft: Raft | null;
  disk: SimDisk;
  /** Ticks once every `tickEvery` steps: clocks run at different rates. */
  tickEvery: number;
  /** The state machine: how far it has applied, and a digest of what. */
  appliedIndex: number;
  digest: number;
  wasLeaderInTerm: number;
  /** A bootstrap voter (the others join later, if a change adds them). */
  founder: boolean;
  /** A Ready whose write is still in flight (completes at step `doneAt`). */
  pending: { rd: Ready; early: boolean; doneAt: number } | null;
}

/** How often a write stays in flight for a few steps instead of completing at once. */
const ASYNC_WRITE_CHANCE = 0.2;

interface InFlight {
  at: number;
  m: Message;
}

interface Proposal {
  index: number;
  term: number;
  node: number;
  data: string;
  ackedAt: number;
}

interface Read {
  node: number;
  /** Highest index of a write acknowledged before the read began. */
  mustCover: number;
}

const dec = new TextDecoder();
const enc = new TextEncoder();

export interface SimResult {
  seed: number;
  committed: number;
  proposals: number;
  reads: number;
  crashes: number;
  /** Node-steps spent quiet (quiescence), summed over nodes. */
  quietSteps: number;
  tornCrashes: number;
  /** Writes that stayed in flight for a few steps while the node kept receiving. */
  slowWrites: number;
  leaders: number;
  snapshotsSent: number;
  confChanges: number;
  transfers: number;
}

/** FNV-1a over a string, chained: the state machine's digest after one more command. */
function chain(h: number, s: string): number {
  let x = (h ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return x;
}

export class Simulation {
  private readonly rng: Prng;
  private time = 0;
  private readonly nodes: SimNode[] = [];
  private network: InFlight[] = [];
  private readonly blocked = new Set<string>();
  /** The committed log as first observed: index -> "term:data". */
  private readonly committed: string[] = [""];
  /** digests[i]: the state machine digest after applying committed[1..i]. */
  private readonly digests: number[] = [0];
  private readonly leaderOfTerm = new Map<number, number>();
  private readonly proposals: Proposal[] = [];
  private readonly reads = new Map<number, Read>();
  private nextCommand = 1;
  private nextRead = 1;
  private crashes = 0;
  private quietSteps = 0;
  private tornCrashes = 0;
  private slowWrites = 0;
  private snapshotsSent = 0;
  private confChanges = 0;
  private transfers = 0;
  private readsChecked = 0;
  private faults = true;
  private readonly ids: number[];
  private readonly quiesceAfterTicks: number;
  /**
   * Member liveness, as the node's transport provides it: some steps after a
   * crash, restart or partition change, every replica's quiet group is woken
   * (null: nothing pending). The real detector wakes only the groups of the
   * member that changed; waking all is the same for a one-group simulation.
   */
  private wakeAt: number | null = null;
  /** Every replica ever added to the group (founders included). */
  private readonly everMembers: number[] = [];

  constructor(private readonly o: SimOptions) {
    this.rng = new Prng(o.seed);
    this.ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
    // Derived from the seed, not drawn from the generator: seeds without quiescence replay as before.
    this.quiesceAfterTicks = o.quiesceAfterTicks ?? (o.seed % 2 === 1 ? 2 + ((o.seed >>> 1) % 8) : 0);
    this.everMembers.push(...this.ids);
    const spares = (o.reconfigure ?? true) ? SPARES : 0;
    for (let id = 1; id <= o.nodes + spares; id++) {
      const node: SimNode = {
        id,
        raft: null,
        disk: new SimDisk(),
        tickEvery: 1 + this.rng.int(3),
        appliedIndex: 0,
        digest: 0,
        wasLeaderInTerm: 0,
        founder: id <= o.nodes,
        pending: null,
      };
      this.nodes.push(node);
      this.boot(node);
    }
  }

  private fail(what: string): never {
    const kind = what.startsWith("liveness") ? "liveness" : "safety";
    throw new SimViolation(`seed ${this.o.seed}, step ${this.time}: ${what}`, kind);
  }

  private boot(n: SimNode): void {
    const restore = n.disk.restore();
    n.raft = new Raft({
      id: n.id,
      peers: n.founder ? this.ids : [],
      rand: this.rng.fork(),
      restore,
      quiesceAfterTicks: this.quiesceAfterTicks,
      unsafeCommitPreviousTermByCount: this.o.plantedBug === "commit-previous-term",
      unsafeVoteIgnoringLog: this.o.plantedBug === "vote-ignoring-log",
      unsafeConfChangeUnguarded: this.o.plantedBug === "conf-change-unguarded",
    });
    // The state machine is in memory: rebuilt from the snapshot, then the log.
    n.appliedIndex = 0;
    n.digest = 0;
    if (restore.snapshot !== null) this.install(n, restore.snapshot.data);
  }

  /** Installs a state machine image: {index, digest}, checked against the committed history. */
  private install(n: SimNode, data: Uint8Array): void {
    const image = JSON.parse(dec.decode(data)) as { index: number; digest: number };
    if (image.index >= this.digests.length || this.digests[image.index] !== image.digest)
      this.fail(`snapshot at ${image.index} installed on node ${n.id} does not match the committed history`);
    n.appliedIndex = image.index;
    n.digest = image.digest;
  }

  run(): SimResult {
    for (; this.time < this.o.steps; this.time++) this.step();
    // Heal: no more faults, everyone up, no more proposals.
    this.faults = false;
    this.blocked.clear();
    for (const n of this.nodes) if (n.raft === null) this.boot(n);
    this.livenessChanged();
    const settleEnd = this.time + this.o.settleTicks;
    for (; this.time < settleEnd; this.time++) this.step();
    this.checkLiveness();
    return {
      seed: this.o.seed,
      committed: this.committed.length - 1,
      proposals: this.proposals.length,
      reads: this.readsChecked,
      crashes: this.crashes,
      quietSteps: this.quietSteps,
      tornCrashes: this.tornCrashes,
      slowWrites: this.slowWrites,
      leaders: this.leaderOfTerm.size,
      snapshotsSent: this.snapshotsSent,
      confChanges: this.confChanges,
      transfers: this.transfers,
    };
  }

  /** A member's liveness changed: the detector fires a few steps later (deterministic, no draw). */
  private livenessChanged(): void {
    if (this.quiesceAfterTicks === 0) return;
    const at = this.time + 1 + (this.time % 17);
    if (this.wakeAt === null || at < this.wakeAt) this.wakeAt = at;
  }

  private step(): void {
    if (this.wakeAt !== null && this.time >= this.wakeAt) {
      this.wakeAt = null;
      for (const n of this.nodes) n.raft?.wake();
    }
    if (this.faults) this.injectFaults();
    this.deliver();
    for (const n of this.nodes) if (n.raft !== null && this.time % n.tickEvery === 0) n.raft.tick();
    if (this.faults) this.client();
    for (const n of this.nodes) this.handleReady(n);
    for (const n of this.nodes) if (n.raft?.quiesced) this.quietSteps++;
    this.checkLeaders();
  }

  private injectFaults(): void {
    const r = this.rng;
    const k = this.o.faultRate ?? 1;
    const live = this.nodes.filter((n) => n.raft !== null);
    if (r.chance(0.004 * k) && live.length > 1) {
      const victim = r.pick(live);
      this.crash(victim);
    }
    // Crashes in the middle of a write are where the persistence contract is tested.
    const writing = live.filter((n) => n.pending !== null);
    if (writing.length > 0 && live.length > 1 && r.chance(0.01 * k)) this.crash(r.pick(writing));
    for (const n of this.nodes)
      if (n.raft === null && r.chance(0.02)) {
        this.boot(n);
        this.livenessChanged();
      }
    if (r.chance(0.005 * k)) {
      // A partition: one side cut from the other, maybe only one way.
      const side = new Set(this.nodes.filter(() => r.chance(0.5)).map((n) => n.id));
      const oneWay = r.chance(0.3);
      for (const a of this.nodes)
        for (const b of this.nodes)
          if (side.has(a.id) && !side.has(b.id)) {
            this.blocked.add(`${a.id}>${b.id}`);
            if (!oneWay) this.blocked.add(`${b.id}>${a.id}`);
          }
      this.livenessChanged();
    }
    if (r.chance(0.01)) {
      if (this.blocked.size > 0) this.livenessChanged();
      this.blocked.clear();
    }
  }

  private crash(n: SimNode): void {
    if (n.pending !== null) {
      // The write in flight: some prefix of it reached the disk.
      n.disk.persist(n.pending.rd, this.rng.int(SimDisk.records(n.pending.rd) + 1));
      n.pending = null;
    }
    n.raft = null; // only its disk survives
    this.crashes++;
    this.livenessChanged();
    this.network = this.network.filter((f) => f.m.to !== n.id);
  }

  private send(m: Message): void {
    if (this.faults) {
      if (this.blocked.has(`${m.from}>${m.to}`)) return;
      if (this.rng.chance(0.05)) return; // lost
      if (this.rng.chance(0.03)) this.network.push({ at: this.time + 1 + this.rng.int(8), m }); // duplicated
    }
    this.network.push({ at: this.time + 1 + this.rng.int(this.faults ? 5 : 2), m });
  }

  private deliver(): void {
    const due = this.network.filter((f) => f.at <= this.time);
    this.network = this.network.filter((f) => f.at > this.time);
    this.rng.shuffle(due);
    for (const f of due) {
      const to = this.nodes[f.m.to - 1]!;
      if (to.raft === null) continue;
      if (f.m.snapshot !== null) this.snapshotsSent++;
      if (this.faults && this.blocked.has(`${f.m.from}>${f.m.to}`)) continue;
      to.raft.step(f.m);
    }
  }

  private client(): void {
    const r = this.rng;
    const leaders = this.nodes.filter((n) => n.raft?.role === Role.Leader);
    if (leaders.length === 0) return;
    if (r.chance(this.o.proposeRate ?? 0.3)) {
      const n = r.pick(leaders);
      const data = `c${this.nextCommand++}`;
      const res = n.raft!.propose(enc.encode(data));
      if (res.ok) this.proposals.push({ index: res.index, term: res.term, node: n.id, data, ackedAt: -1 });
    }
    if ((this.o.reconfigure ?? true) && r.chance(this.o.confChangeRate ?? 0.004))
      this.reconfigure(r.pick(leaders).raft!);
    if ((this.o.reconfigure ?? true) && r.chance(0.002)) {
      const raft = r.pick(leaders).raft!;
      if (raft.transferLeadership(r.pick(raft.config.voters)).ok) this.transfers++;
    }
    if (r.chance(0.1)) {
      const n = r.pick(leaders);
      const ctx = this.nextRead++;
      let mustCover = 0;
      for (const p of this.proposals) if (p.ackedAt >= 0 && p.index > mustCover) mustCover = p.index;
      if (n.raft!.readIndex(ctx)) this.reads.set(ctx, { node: n.id, mustCover });
    }
  }

  /**
   * A membership change: add a spare as learner, promote a learner, or
   * remove a member (keeping at least three voters). A removed replica never
   * comes back (its id would carry a stale log).
   */
  private reconfigure(raft: Raft): void {
    const r = this.rng;
    const c = raft.config;
    const everMember = new Set(this.everMembers);
    const spare = this.nodes.find((n) => !everMember.has(n.id) && !members(c).includes(n.id));
    const choice = r.int(3);
    let res: ReturnType<Raft["proposeConfChange"]> | null = null;
    if (choice === 0 && spare !== undefined) {
      res = raft.proposeConfChange({ type: ConfChangeType.AddLearner, replica: spare.id });
      if (res.ok) this.everMembers.push(spare.id);
    } else if (choice === 1 && c.learners.length > 0) {
      res = raft.proposeConfChange({ type: ConfChangeType.AddVoter, replica: r.pick(c.learners) });
    } else if (choice === 2 && c.voters.length > 3) {
      res = raft.proposeConfChange({ type: ConfChangeType.Remove, replica: r.pick(c.voters) });
    } else if (choice === 2 && c.learners.length > 0) {
      res = raft.proposeConfChange({ type: ConfChangeType.Remove, replica: r.pick(c.learners) });
    }
    if (res?.ok) this.confChanges++;
  }

  /**
   * Drives a node's Readys as a host does. A write may stay in flight for a
   * few steps (the real host awaits its disk): meanwhile the node keeps
   * receiving and ticking, takes no new Ready, and a crash keeps only a
   * prefix of that write. A leader's replication traffic leaves before its
   * write (thesis §10.2.1), so followers may hold entries the leader loses.
   */
  private handleReady(n: SimNode): void {
    if (n.pending !== null) {
      if (this.time < n.pending.doneAt) return;
      const { rd, early } = n.pending;
      n.pending = null;
      n.disk.persist(rd);
      this.afterPersist(n, rd, early);
    }
    for (let guard = 0; n.raft?.hasReady(); guard++) {
      assert(guard < 1000, "ready batches settle");
      const rd = n.raft.ready();
      if (rd.hardState !== null && rd.hardState.term < n.disk.hardState.term)
        this.fail(`node ${n.id}: term went backwards on disk`);
      // 0. a leader's replication traffic may leave before its own write.
      const early = canSendBeforePersist(rd, n.disk.hardState);
      if (early) for (const m of rd.messages) this.send(m);
      // 1. persist, and fsync: now, or a few steps later. A crash in between keeps a prefix.
      const records = SimDisk.records(rd);
      if (records > 0 && this.rng.chance(ASYNC_WRITE_CHANCE)) {
        n.pending = { rd, early, doneAt: this.time + 1 + this.rng.int(8) };
        this.slowWrites++;
        return;
      }
      if (this.faults && records > 0 && this.rng.chance(0.001 * (this.o.faultRate ?? 1))) {
        n.disk.persist(rd, this.rng.int(records));
        this.tornCrashes++;
        this.crash(n);
        return;
      }
      n.disk.persist(rd);
      this.afterPersist(n, rd, early);
    }
  }

  /** Steps 2 to 5 of handling a Ready, once its write is durable. */
  private afterPersist(n: SimNode, rd: Ready, early: boolean): void {
    const raft = n.raft!;
    // 2. send
    if (!early) for (const m of rd.messages) this.send(m);
    // 3. install a received snapshot, then apply
    if (rd.snapshot !== null) this.install(n, rd.snapshot.data);
    for (const e of rd.committedEntries) this.apply(n, e);
    // 4. reads
    for (const rs of rd.readStates) {
      const read = this.reads.get(rs.context);
      if (read === undefined) continue;
      this.reads.delete(rs.context);
      if (rs.index < read.mustCover)
        this.fail(
          `linearizability: read ${rs.context} at index ${rs.index} misses the acknowledged write at ${read.mustCover}`,
        );
      this.readsChecked++;
    }
    raft.advance(rd);
    // Now and then the host snapshots its state machine and compacts the
    // log behind it, keeping a few entries for followers just behind.
    if (this.faults && this.rng.chance(0.01) && n.appliedIndex > 0) {
      const index = Math.max(raft.log.snapshotIndex(), n.appliedIndex - this.rng.int(4));
      if (index > raft.log.snapshotIndex()) {
        const data = enc.encode(JSON.stringify({ index, digest: this.digests[index] }));
        n.disk.compact(raft.compact(index, data));
      }
    }
    // A leader, checked once per term it leads (as it is now: with a write in
    // flight, `rd` may be older than the node's current term and role).
    if (raft.role === Role.Leader && n.wasLeaderInTerm !== raft.term) {
      n.wasLeaderInTerm = raft.term;
      this.checkLeaderCompleteness(n);
    }
  }

  private apply(n: SimNode, e: Entry): void {
    if (e.index !== n.appliedIndex + 1) this.fail(`node ${n.id} applied ${e.index} after ${n.appliedIndex}`);
    n.appliedIndex = e.index;
    const body = e.type === EntryType.ConfChange ? `conf${JSON.stringify(decodeConfig(e.data))}` : dec.decode(e.data);
    const what = `${e.term}:${body}`;
    n.digest = chain(n.digest, what);
    const known = this.committed[e.index];
    if (known === undefined) {
      if (e.index !== this.committed.length) this.fail(`committed log has a gap before ${e.index}`);
      this.committed.push(what);
      this.digests.push(n.digest);
    } else if (known !== what) {
      this.fail(`state machine safety: node ${n.id} applied ${what} at ${e.index}, another replica applied ${known}`);
    }
    for (const p of this.proposals) {
      if (p.ackedAt < 0 && p.node === n.id && p.index === e.index && what === `${p.term}:${p.data}`)
        p.ackedAt = this.time;
    }
  }

  private checkLeaders(): void {
    for (const n of this.nodes) {
      if (n.raft?.role !== Role.Leader) continue;
      const prev = this.leaderOfTerm.get(n.raft.term);
      if (prev !== undefined && prev !== n.id) this.fail(`two leaders in term ${n.raft.term}: ${prev} and ${n.id}`);
      this.leaderOfTerm.set(n.raft.term, n.id);
    }
  }

  private checkLeaderCompleteness(n: SimNode): void {
    const log = n.raft!.log;
    // Entries compacted into its snapshot are covered by the snapshot check (install()).
    for (let i = log.snapshotIndex() + 1; i < this.committed.length; i++) {
      const term = Number(this.committed[i]!.split(":")[0]);
      if (log.term(i) !== term)
        this.fail(
          `leader completeness: new leader ${n.id} (term ${n.raft!.term}) lacks committed entry ${i} (${this.committed[i]})`,
        );
    }
  }

  private checkLiveness(): void {
    const leaders = this.nodes.filter((n) => n.raft?.role === Role.Leader);
    if (leaders.length === 0) this.fail(`liveness: no leader ${this.o.settleTicks} ticks after healing`);
    const top = Math.max(...leaders.map((l) => l.raft!.term));
    const leader = leaders.find((l) => l.raft!.term === top)!;
    // Replicas removed from the group are not expected to catch up.
    const group = members(leader.raft!.config);
    const inGroup = this.nodes.filter((n) => group.includes(n.id));
    // Every accepted proposal is resolved: committed, or gone from every
    // member's log (the host can then report it dropped; the client retries).
    for (const p of this.proposals) {
      if (p.index < this.committed.length) continue;
      const holders = inGroup.filter((n) => n.raft!.log.term(p.index) === p.term);
      if (holders.length > 0)
        this.fail(
          `liveness: proposal ${p.data} at index ${p.index} neither committed nor dropped after healing (held by ${holders.map((n) => n.id)})`,
        );
    }
    for (const n of inGroup)
      if (n.appliedIndex < leader.raft!.log.committed)
        this.fail(
          `liveness: node ${n.id} did not catch up (applied ${n.appliedIndex} < commit ${leader.raft!.log.committed})`,
        );
  }
}
