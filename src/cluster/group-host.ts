/**
 * A group host: the Raft groups of some partitions, their WAL and the maps
 * they apply to, on one thread (decision 0189).
 *
 * In the design each partition's replica lives on a shard worker, so its Raft
 * core, log and map share a thread; a node with K shard workers runs K hosts,
 * host h holding the partitions p with p % K === h, each with its own WAL (one
 * fsync covers every group of that host). With `--shards 0` one host runs on
 * the IO thread itself (the inline baseline, as in single-node mode).
 *
 * The host owns no socket and knows no other member: Raft messages come in by
 * step() and leave through HostOut.send(); requests come in by serve() and are
 * answered with a result or "not the leader" (the IO thread forwards those).
 * Everything it does is driven from here:
 *   - process() rounds: persist, send, apply (runs until no group has work);
 *   - the tick (elections, heartbeats), log compaction and the expiry sweep;
 *   - leadership handovers for rebalancing, membership steps for replacement.
 * The same class runs inline and inside src/cluster/group-worker.ts; only the
 * link between it and the IO thread differs (src/cluster/host-link.ts). Its
 * clock, timers, randomness and storage are passed in (HostDeps): the node
 * passes the real clock and the WAL, the simulator (src/sim/kv-cluster.ts)
 * virtual time and a simulated disk, and runs this same code.
 */
import hdr from "hdr-histogram-js";
import { ConfChangeType } from "../raft/config.js";
import { MessageType } from "../raft/messages.js";
import { commandBytes, encodeCommand, Op, Result } from "../shard/command.js";
import { Wal, WalError, type WalOptions } from "../wal/wal.js";
import { InvariantError } from "../assert.js";
import { type Clock, sleep, withDeadline } from "./clock.js";
import { HOST_REQUEST_DEADLINE_MS } from "./deadlines.js";
import {
  type GroupState,
  MultiRaft,
  NotLeaderError,
  ProposalDroppedError,
  ProposalOutcomeUnknownError,
  type RaftStorage,
} from "./multi-raft.js";
import { PartitionMachine } from "./partition-machine.js";
import type { GroupMessage } from "./peer-codec.js";
import { type PartitionPlacement, place } from "./placement.js";
import type { Member } from "./placement.js";
import { ErrorCode } from "../errors.js";
import type { ClusterStats, FollowerInfo } from "../protocol/cluster-info.js";
import { traceClock } from "../io/trace.js";
import { isTracedCommand, type Stamp, withStamps } from "./trace-stamps.js";

/** A traced write in flight on its leader: when each step that covers its entry was first seen. */
interface TracedEntry {
  group: number;
  index: number;
  term: number;
  /** The leader's own WAL write of the entry (its stable index reached it); 0: not yet. */
  appendedAt: number;
  /** Followers whose acknowledgement covered the entry, and when. */
  acks: Map<number, number>;
  committedAt: number;
}

/** How often (in ticks) a leader proposes an expiry sweep for each partition it leads. */
export const SWEEP_EVERY_TICKS = 250;
/** Keys one sweep command examines at most. */
export const SWEEP_SAMPLE = 2_000;
/** How often (in ticks) a host looks for logs to compact. */
export const COMPACT_CHECK_EVERY_TICKS = 25;

/** How a request is served: a replicated write, a linearizable read, a read of local numbers (STATS). */
export const ServeMode = { Write: 0, Read: 1, Local: 2 } as const;
export type ServeMode = (typeof ServeMode)[keyof typeof ServeMode];

/** A request's answer from a host: the encoded Result, or who leads instead (0: unknown). */
export type HostOutcome = { kind: "result"; result: Uint8Array } | { kind: "notLeader"; leader: number };

/** A hosted group's routing facts, as the IO thread keeps them. */
export interface Route {
  group: number;
  /** This member is in the group's configuration (voter or learner). */
  replica: boolean;
  leader: number;
}

export interface HostOptions {
  /** This member's id. */
  self: number;
  /** This host's index and how many hosts the member runs. */
  host: number;
  hosts: number;
  /** The bootstrap member list: placement is computed from it alone. */
  bootstrap: Member[];
  partitions: number;
  replicas: number;
  tickMs: number;
  compactEntries: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Idle ticks before a group goes quiet (0: never; src/raft/raft.ts, wake()). */
  quiesceAfterTicks: number;
}

/** A host's options in the node: its WAL is in `walDir`. */
export interface HostConfig extends HostOptions {
  walDir: string;
}

/** The host's durable storage: its WAL in the node, a simulated disk in the simulator. */
export interface HostStorage extends RaftStorage {
  close(): Promise<void>;
}

/** What a host is given rather than reaching for itself (see the file comment). */
export interface HostDeps {
  clock: Clock;
  /** Randomness for Raft's election timeouts. */
  rand: () => number;
  /** Opens this host's storage and recovers what it holds for each group. */
  openStorage(): Promise<{ storage: HostStorage; groups: Map<number, GroupState> }>;
}

/** The node's storage for a host: its WAL, opened (and recovered) in `dir`. */
export function walStorage(dir: string, o: WalOptions = {}): HostDeps["openStorage"] {
  return async () => {
    const { wal, groups } = await Wal.open(dir, o);
    return { storage: wal, groups };
  };
}

/** What a host says to its IO thread. */
export interface HostOut {
  /** Raft messages for member `to`, batched per round. */
  send(to: number, messages: GroupMessage[]): void;
  /**
   * Hands over now what was sent so far (messages, answers), before this
   * thread blocks on its disk; otherwise it leaves at the end of the turn.
   */
  flush(): void;
  /**
   * Takes in now what the IO thread has sent (peer messages, requests)
   * rather than at the event loop's next turn: a round then sees everything
   * that arrived while this thread was blocked on its disk, instead of the
   * round after (an acknowledgement would otherwise wait one more round to
   * commit, and a proposal one more round to be written).
   */
  takeInput(): void;
  /** A hosted group's leader or membership of this member changed. */
  route(r: Route): void;
  log(level: "debug" | "info" | "warn" | "error", message: string, detail?: object): void;
  /** Storage failed or an invariant broke: this member cannot go on safely. */
  fatal(message: string, detail?: object): void;
}

/** One hosted group's state for `piccolo cluster status`. */
export interface HostedGroupStatus {
  group: number;
  replica: boolean;
  leader: number;
  term: number;
  commit: number;
  applied: number;
  lastIndex: number;
  voters: number[];
  learners: number[];
  leaderChanges: number;
  followers: FollowerInfo[];
}

/** A host's counters: the member's ClusterStats, less what only the IO thread knows, plus its own. */
export interface HostStatus extends Omit<ClusterStats, "forwarded" | "leaderChanges"> {
  groups: HostedGroupStatus[];
  compactions: number;
  transfers: number;
  swept: number;
}

export class GroupHost {
  private readonly placement: PartitionPlacement[];
  private readonly hosted = new Set<number>();
  private readonly sm = new PartitionMachine();
  private mr!: MultiRaft;
  private storage!: HostStorage;
  private readonly clock: Clock;
  private ticker: unknown = null;
  private ticks = 0;
  private running = false;
  private again = false;
  private closed = false;
  /** Route last reported per group (leader, or -1 when not a replica). */
  private readonly reported = new Map<number, number>();
  private readonly proposalUs = newHistogram();
  /** Traced writes this host leads, waiting to be applied (see observeTraces). */
  private readonly traced = new Set<TracedEntry>();
  private readonly walUs = newHistogram();
  private compactions = 0;
  private transfers = 0;
  private swept = 0;

  private constructor(
    private readonly o: HostOptions,
    private readonly out: HostOut,
    private readonly deps: HostDeps,
  ) {
    this.clock = deps.clock;
    this.placement = place(o.bootstrap, o.partitions, o.replicas);
    for (const p of this.placement)
      if (this.owns(p.partition) && p.replicas.includes(o.self)) this.hosted.add(p.partition);
  }

  static async open(o: HostOptions, out: HostOut, deps: HostDeps): Promise<GroupHost> {
    const h = new GroupHost(o, out, deps);
    await h.openStorage();
    return h;
  }

  /** Partitions this host is responsible for (hosted or not). */
  owns(group: number): boolean {
    return group >= 0 && group < this.o.partitions && group % this.o.hosts === this.o.host;
  }

  private async openStorage(): Promise<void> {
    const { storage, groups } = await this.deps.openStorage();
    this.storage = storage;
    // Replicas placed here at bootstrap, and any others this host's WAL holds (replicas a
    // membership change added later; their configuration is in their log or snapshot).
    for (const g of groups.keys()) if (this.owns(g)) this.hosted.add(g);
    this.mr = new MultiRaft({
      member: this.o.self,
      groups: [...this.hosted]
        .sort((a, b) => a - b)
        .map((g) => {
          const restore = groups.get(g);
          const p = this.placement[g]!;
          const voters = p.replicas.includes(this.o.self) ? p.replicas : [];
          return { group: g, voters, ...(restore === undefined ? {} : { restore }) };
        }),
      storage,
      stateMachine: this.sm,
      rand: this.deps.rand,
      electionTicks: this.o.electionTicks,
      heartbeatTicks: this.o.heartbeatTicks,
      quiesceAfterTicks: this.o.quiesceAfterTicks,
    });
    // A leader that added this member to a group it does not host yet: create an empty replica,
    // which learns the group's configuration and state from that leader (log or snapshot).
    this.mr.adopt = (group, m) => {
      if (!this.owns(group) || this.closed) return false;
      if (m.type !== MessageType.App && m.type !== MessageType.Snap && m.type !== MessageType.Heartbeat) return false;
      this.hosted.add(group);
      this.out.log("info", "joining a partition's group", { partition: group, leader: m.from });
      return true;
    };
    this.mr.sendEarly = (out) => {
      for (const [to, batch] of out) this.out.send(to, batch);
    };
    this.mr.onPersist = (ms) => this.walUs.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  /** Starts ticking; every hosted group's route is reported now. */
  start(): void {
    this.reportRoutes();
    this.ticker = this.clock.setInterval(() => {
      this.mr.tick();
      this.ticks++;
      if (this.ticks % COMPACT_CHECK_EVERY_TICKS === 0) void this.compactLogs();
      if (this.ticks % SWEEP_EVERY_TICKS === 0) this.sweepExpired();
      this.reportRoutes();
      this.kick();
    }, this.o.tickMs);
  }

  /**
   * `member` may have failed, or has come back (the IO thread's member
   * liveness): wake the quiet groups it belongs to, so their clocks run and
   * Raft's own timeouts take over (an election, or a leader's heartbeats).
   * `lost`: the connection to it closed, so the groups it leads do not wait
   * out an election timeout (decision 0110).
   */
  wake(member: number, lost = false): void {
    let n = this.mr.wakeWith(member);
    if (lost) n += this.mr.leaderUnreachable(member);
    if (n > 0) this.kick();
  }

  /** Raft messages from a peer. */
  step(messages: readonly GroupMessage[]): void {
    this.mr.step(messages);
    // A follower's acknowledgement moves its match (and maybe the commit) right here.
    if (this.traced.size > 0) this.observeTraces();
    this.kick();
  }

  /**
   * Traced writes in flight: what covers each entry now that did not
   * before. A follower's match index reaching the entry's means it has the
   * entry in its log, fsynced: a follower acknowledges only what it has
   * made durable (src/raft/messages.ts, canSendBeforePersist is for
   * leaders only). So the leader learns each follower's fsync from its
   * acknowledgement, with no trace sent to the followers (decision 0322).
   */
  private observeTraces(): void {
    const now = traceClock();
    for (const t of this.traced) {
      if (!this.isReplica(t.group)) continue;
      if (t.appendedAt === 0 && this.mr.stableIndex(t.group) >= t.index) t.appendedAt = now;
      for (const f of this.mr.followers(t.group)) if (f.match >= t.index && !t.acks.has(f.id)) t.acks.set(f.id, now);
      if (t.committedAt === 0 && this.mr.status(t.group).commit >= t.index) t.committedAt = now;
    }
  }

  /** Serves one request (an encoded Command) for a partition this host owns. */
  async serve(group: number, mode: number, command: Uint8Array): Promise<HostOutcome> {
    if (isTracedCommand(command)) return this.serveTraced(group, mode, command);
    return this.serveUntraced(group, mode, command);
  }

  /**
   * serve(), stamped (docs/tracing.md, "In a cluster"): the answer carries
   * what this leader did, stage by stage, on its clock.
   */
  private async serveTraced(group: number, mode: number, command: Uint8Array): Promise<HostOutcome> {
    const from = traceClock();
    const me = `member ${this.o.self}`;
    const stamps: Stamp[] = [];
    let entry: TracedEntry | null = null;
    let confirmed = 0;
    let o: HostOutcome;
    if (mode === ServeMode.Write) {
      o = await this.serveUntraced(group, mode, command, (index, term) => {
        entry = { group, index, term, appendedAt: 0, acks: new Map(), committedAt: 0 };
        this.traced.add(entry);
      });
    } else if (mode === ServeMode.Read) {
      o = await this.serveUntraced(group, mode, command, undefined, () => {
        confirmed = traceClock();
      });
    } else o = await this.serveUntraced(group, mode, command);
    const to = traceClock();
    if (o.kind !== "result") return o;
    const e = entry as TracedEntry | null;
    if (e !== null) {
      this.traced.delete(e);
      const at = `partition ${group}, index ${e.index}, term ${e.term}`;
      stamps.push({ stage: "proposed", where: me, from, to: from, detail: `leader of ${at}` });
      if (e.appendedAt > 0)
        stamps.push({
          stage: "appended",
          where: me,
          from,
          to: e.appendedAt,
          detail: `in the leader's log, written and fsynced (its WAL, one write for the round)`,
        });
      for (const [f, ackAt] of [...e.acks].sort((a, b) => a[1] - b[1]))
        stamps.push({
          stage: "fsynced",
          where: `member ${f}`,
          from,
          to: ackAt,
          detail: `follower acknowledged index >= ${e.index}: in its log, fsynced`,
        });
      const committed = e.committedAt > 0 ? e.committedAt : to;
      stamps.push({
        stage: "committed",
        where: me,
        from,
        to: committed,
        detail: `a majority holds index ${e.index} (the commit index passed it)`,
      });
      stamps.push({
        stage: "applied",
        where: me,
        from: committed,
        to,
        detail: "applied to the partition's map; answered",
      });
    } else if (mode === ServeMode.Read) {
      const c = confirmed > 0 ? confirmed : to;
      stamps.push({
        stage: "read index",
        where: me,
        from,
        to: c,
        detail: `leader of partition ${group}: a quorum confirmed its leadership (ReadIndex)`,
      });
      stamps.push({ stage: "executed", where: me, from: c, to, detail: "read from the partition's map" });
    } else
      stamps.push({ stage: "executed", where: me, from, to, detail: `partition ${group}, this member's own replica` });
    return { kind: "result", result: withStamps(o.result, { stamps, servedFrom: from, servedTo: to }) };
  }

  private async serveUntraced(
    group: number,
    mode: number,
    command: Uint8Array,
    onIndex?: (index: number, term: number) => void,
    onConfirmed?: () => void,
  ): Promise<HostOutcome> {
    if (mode === ServeMode.Local) return { kind: "result", result: this.sm.read(group, command, this.clock.now()) };
    if (!this.isReplica(group)) return { kind: "notLeader", leader: 0 };
    if (!this.mr.status(group).isLeader) return { kind: "notLeader", leader: this.mr.leader(group) };
    const deadline = this.clock.now() + HOST_REQUEST_DEADLINE_MS;
    try {
      if (mode === ServeMode.Write) {
        const t0 = this.clock.preciseMs();
        const proposed = this.mr.propose(group, command, onIndex);
        // Start a round now: the entry must be written and sent (waiting for the
        // next tick or peer message to do it cost every write up to a tick).
        this.kick();
        const answer = await withDeadline(this.clock, proposed, deadline);
        if (answer === null) return { kind: "result", result: errorResult(ErrorCode.TIMEOUT) };
        this.proposalUs.recordValue(Math.max(1, Math.round((this.clock.preciseMs() - t0) * 1000)));
        return { kind: "result", result: answer };
      }
      const p = this.mr.readIndex(group);
      this.kick();
      const ok = await withDeadline(this.clock, p, deadline);
      // No quorum confirmed the leadership in time: nothing was read, and nothing changed.
      if (ok === null) return { kind: "result", result: errorResult(ErrorCode.UNAVAILABLE) };
      onConfirmed?.();
      return { kind: "result", result: this.sm.read(group, command, this.clock.now()) };
    } catch (err) {
      // Not the leader after all, or a leadership transfer is under way: the caller retries.
      if (err instanceof NotLeaderError || err instanceof ProposalDroppedError)
        return { kind: "notLeader", leader: this.isReplica(group) ? this.mr.leader(group) : 0 };
      // Possibly applied: answered like a timeout, never retried.
      if (err instanceof ProposalOutcomeUnknownError) return { kind: "result", result: errorResult(ErrorCode.TIMEOUT) };
      throw err;
    }
  }

  /**
   * As the group's leader, hands leadership to `to`; an error message, or
   * null. `handoff`: this member is stopping, so the new leadership is not a
   * placement to keep (rebalance moves it back once this member returns).
   */
  transfer(group: number, to: number, handoff = false): string | null {
    if (!this.isReplica(group)) return `partition ${group} is not hosted here`;
    if (!this.mr.status(group).isLeader) return `not the leader of partition ${group}`;
    if (!this.mr.transferLeadership(group, to, handoff)) return "the transfer could not start";
    this.kick();
    return null;
  }

  /**
   * Rebalancing: hands each partition this member leads but should not (the
   * placement's preferred leader) to the preferred member, if it is among
   * `settled` (connected for a while; see src/cluster/liveness.ts). Raft's
   * leadership transfer, so the handover costs one short pause of that
   * partition's writes, not an election timeout. Only leadership won by an
   * election timeout is moved: that is the drift failures cause. Leadership
   * that was handed over (`piccolo cluster transfer-leader`, or an earlier
   * rebalance) was put there on purpose and stays.
   */
  rebalance(settled: readonly number[]): void {
    for (const g of this.hosted) {
      const p = this.placement[g]!;
      if (p.preferredLeader === this.o.self || !settled.includes(p.preferredLeader)) continue;
      if (this.mr.ledByTransfer(g)) continue;
      const st = this.mr.status(g);
      if (!st.isLeader || !st.voters.includes(p.preferredLeader)) continue;
      if (this.mr.transferLeadership(g, p.preferredLeader)) this.transfers++;
    }
    this.kick();
  }

  /**
   * As the partition's leader, the next membership step of moving its replica
   * on `remove` to `add` (`piccolo cluster replace`), one Raft configuration
   * change at a time (src/raft/config.ts):
   *
   *   1. `add` joins as a learner: it receives the log (or a snapshot) but
   *      does not vote, so the group's majority does not wait for it;
   *   2. once its log holds everything committed, it is promoted to voter;
   *   3. `remove` leaves (if it leads, it first hands leadership over).
   *
   * Each step is a log entry; the next is refused until it commits. So the
   * caller repeats the request until the configuration shows the result.
   * Null when a step was taken or none is needed, else why not.
   */
  stepReplace(group: number, remove: number, add: number): string | null {
    if (!this.isReplica(group)) return `partition ${group} is not hosted here`;
    const s = this.mr.status(group);
    if (!s.isLeader) return `not the leader of partition ${group}`;
    const has = (id: number) => s.voters.includes(id) || s.learners.includes(id);
    let why: string | null = null;
    if (!has(add)) {
      if (!has(remove)) return `member ${remove} holds no replica of partition ${group}`;
      why = this.mr.proposeConfChange(group, { type: ConfChangeType.AddLearner, replica: add });
    } else if (s.learners.includes(add)) {
      const f = this.mr.followers(group).find((x) => x.id === add);
      if (f === undefined || f.match < s.commit) return null; // still catching up
      why = this.mr.proposeConfChange(group, { type: ConfChangeType.AddVoter, replica: add });
    } else if (!has(remove)) {
      return null; // done
    } else if (remove === this.o.self) {
      why = this.mr.transferLeadership(group, add) ? null : "could not hand leadership over before leaving";
    } else {
      why = this.mr.proposeConfChange(group, { type: ConfChangeType.Remove, replica: remove });
    }
    this.kick();
    return why;
  }

  status(): HostStatus {
    const groups: HostedGroupStatus[] = [];
    for (const g of [...this.hosted].sort((a, b) => a - b)) {
      const s = this.mr.status(g);
      groups.push({
        group: g,
        replica: this.isReplica(g),
        leader: s.leader,
        term: s.term,
        commit: s.commit,
        applied: s.applied,
        lastIndex: s.lastIndex,
        voters: [...s.voters],
        learners: [...s.learners],
        leaderChanges: this.mr.leaderChanges.get(g) ?? 0,
        followers: !s.isLeader
          ? []
          : this.mr.followers(g).map((f) => ({
              member: f.id,
              match: f.match,
              lag: Math.max(0, s.lastIndex - f.match),
              state: f.state,
              active: f.recentActive,
              learner: f.learner,
            })),
      });
    }
    return {
      groups,
      proposals: this.proposalUs.totalCount,
      proposalP50Us: this.proposalUs.getValueAtPercentile(50),
      proposalP99Us: this.proposalUs.getValueAtPercentile(99),
      walWrites: this.walUs.totalCount,
      walP50Us: this.walUs.getValueAtPercentile(50),
      walP99Us: this.walUs.getValueAtPercentile(99),
      elections: this.mr.campaigns(),
      snapshotsInstalled: this.mr.snapshotsInstalled,
      quiescedGroups: this.mr.quiescedCount(),
      compactions: this.compactions,
      transfers: this.transfers,
      swept: this.swept,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.ticker !== null) this.clock.clearInterval(this.ticker);
    while (this.running) await sleep(this.clock, 5);
    await this.storage.close();
  }

  /** This member holds a replica of the group that is in its configuration (voter or learner). */
  private isReplica(group: number): boolean {
    return this.mr.inConfig(group, this.o.self);
  }

  /** Tells the IO thread about every hosted group whose leader or membership changed since last said. */
  private reportRoutes(): void {
    for (const g of this.hosted) {
      const replica = this.isReplica(g);
      const leader = replica ? this.mr.leader(g) : -1;
      if (this.reported.get(g) === leader) continue;
      this.reported.set(g, leader);
      this.out.route({ group: g, replica, leader: replica ? leader : 0 });
    }
  }

  /**
   * Log compaction: a group whose log holds more than `compactEntries`
   * applied entries past its last snapshot gets a new snapshot of its
   * partition's map, and the WAL drops what it covers. Runs between rounds
   * (it holds the round lock, so no Ready is in flight meanwhile). Without
   * it a member's WAL would grow for ever.
   */
  private async compactLogs(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    try {
      for (const g of this.hosted) {
        const s = this.mr.status(g);
        if (s.applied - this.mr.snapshotIndex(g) >= this.o.compactEntries) {
          await this.mr.compact(g);
          this.compactions++;
        }
      }
    } catch (err) {
      const why = whyFatal(err);
      this.out.fatal(`${why.message} while compacting a log; stopping this member`, why.detail);
      return;
    } finally {
      this.running = false;
    }
    if (this.again) this.kick();
  }

  /**
   * The expiry sweep, through the log: for each partition it leads, the
   * leader proposes a SWEEP command stamped with its clock, and every replica
   * removes the same expired keys when it applies it. (A sweep run locally
   * on each replica would make their maps differ.) Keys that expired are
   * invisible before the sweep too: this reclaims memory, it does not decide
   * what reads see. Only partitions that ever had a key with an expiry are
   * swept, so an idle cluster without TTLs writes nothing.
   */
  private sweepExpired(): void {
    if (this.closed) return;
    for (const g of this.hosted) {
      if (!this.isReplica(g) || !this.mr.status(g).isLeader || !this.sm.ttlSeen(g)) continue;
      const cmd = new Uint8Array(commandBytes(0, 0));
      encodeCommand(cmd, 0, {
        op: Op.SWEEP,
        flags: 0,
        tag: 0,
        nowMs: this.clock.now(),
        expireAtMs: 0,
        arg0: SWEEP_SAMPLE,
        arg1: 0,
        key: new Uint8Array(0),
        value: null,
      });
      // Best effort: a sweep lost to a leadership change is simply the next one's work.
      this.mr.propose(g, cmd).then(
        (r) => {
          const res = new Result();
          if (res.decode(r)) this.swept += res.num;
        },
        () => {},
      );
    }
    this.kick();
  }

  /** Runs process() rounds until no group has work; never two at once. */
  private kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.closed) return;
    this.running = true;
    void (async () => {
      try {
        do {
          this.again = false;
          this.out.takeInput();
          const out = await this.mr.process();
          if (this.traced.size > 0) this.observeTraces();
          for (const [to, batch] of out) this.out.send(to, batch);
          if (out.size > 0) this.again = true;
          this.reportRoutes();
        } while (this.again && !this.closed);
      } catch (err) {
        const why = whyFatal(err);
        this.out.fatal(`${why.message} in a Raft round; stopping this member`, why.detail);
      } finally {
        this.running = false;
      }
    })();
  }
}

/**
 * What stops a member, said plainly for its last log line. A member stops
 * itself only when it cannot go on safely: its disk failed (the WAL refuses
 * every write after a failed fsync, decision 0153), or an invariant broke
 * (state it can no longer trust). Anything else thrown from a round is a bug
 * of the same weight as a broken invariant, and is named as such; load never
 * throws here (limits that traffic can reach split, slow down or retry).
 */
export function whyFatal(err: unknown): { message: string; detail: object } {
  const e = err instanceof Error ? err : new Error(String(err));
  const detail = { err: e.message, stack: e.stack };
  if (e instanceof WalError && e.code === "WAL_FAILED")
    return {
      message: "the write-ahead log failed (WAL_FAILED: the disk or file system refused a write or fsync)",
      detail,
    };
  if (e instanceof InvariantError) return { message: "an invariant broke", detail };
  return { message: `an unexpected ${e.name} (a bug: treated as a broken invariant)`, detail };
}

export function errorResult(code: number): Uint8Array {
  const r = new Result();
  r.status = code;
  const out = new Uint8Array(r.byteLength());
  r.encode(out, 0);
  return out;
}

function newHistogram() {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 2,
  });
}
