/**
 * Cluster mode's ShardBackend: the IO loop's dispatcher sends shard commands
 * here exactly as it does to local shards (src/io/shards.ts), with one
 * "shard" per partition. Each command is
 *   - proposed through its partition's Raft group when this member leads it
 *     (writes), or served after ReadIndex from the local map (reads);
 *   - forwarded over the peer connection to the leader otherwise (any member
 *     serves any key, on every protocol, because forwarding happens below the
 *     protocols, at the shard-command level);
 *   - held while a partition has no known leader (an election), and answered
 *     with NOT_LEADER if none appears before CLUSTER_REQUEST_DEADLINE_MS.
 * A write whose outcome cannot be known (its leader was deposed before it
 * committed) is answered with TIMEOUT: the client must treat it as
 * "possibly applied", as the native client documents.
 *
 * This first host runs the Raft groups on the IO thread, like the inline
 * single-node mode (--shards 0): MultiRaft, the partition machine, the WAL
 * and the transport are the parts that move onto the shard workers next
 * (docs/cluster.md, "Still to build"), behind this same interface.
 */
import { readFile } from "node:fs/promises";
import hdr from "hdr-histogram-js";
import type { Logger } from "pino";
import { ErrorCode } from "../errors.js";
import type { ClusterInfo, ShardBackend, ShardEvents } from "../io/shards.js";
import {
  type CommandFields,
  commandBytes,
  encodeCommand,
  FLAG_STALE_READ,
  isWrite,
  Op,
  Result,
} from "../shard/command.js";
import { Wal } from "../wal/wal.js";
import { MultiRaft, NotLeaderError, ProposalDroppedError, ProposalOutcomeUnknownError } from "./multi-raft.js";
import { PartitionMachine } from "./partition-machine.js";
import { ConfChangeType } from "../raft/config.js";
import { MessageType } from "../raft/messages.js";
import { encodeForward, encodeForwardReply, encodeReplace, encodeTransfer, type ForwardOutcome } from "./peer-codec.js";
import { loadJoined, mergeMembers, saveJoined } from "./joined.js";
import { MAX_CLUSTER_MEMBERS, type Member, type PartitionPlacement, place } from "./placement.js";
import { clusterIdOf, PeerTransport } from "./transport.js";
import { hash32 } from "../hash.js";

/** How long a request may wait for a leader, a commit, or a forwarded answer. */
export const CLUSTER_REQUEST_DEADLINE_MS = 5_000;
/** How often (in ticks) a leader proposes an expiry sweep for each partition it leads. */
export const SWEEP_EVERY_TICKS = 250;
/** Keys one sweep command examines at most. */
export const SWEEP_SAMPLE = 2_000;
/** How often (in ticks) a member looks for logs to compact. */
export const COMPACT_CHECK_EVERY_TICKS = 25;
/** How often (in ticks) a member hands partitions back to their preferred leaders. */
export const REBALANCE_EVERY_TICKS = 50;
/** How long a preferred leader must have been connected before it gets its partitions back. */
export const REBALANCE_SETTLE_MS = 2_000;
/** Requests in flight on this member before the IO loop stops reading sockets. */
export const CLUSTER_MAX_IN_FLIGHT = 16_384;

export interface ClusterOptions {
  self: Member;
  /** Every member: the bootstrap list, then those joined since (`--joined`). */
  members: Member[];
  /** The bootstrap list (`--cluster`): placement and the cluster id are computed from it alone. */
  bootstrap: Member[];
  partitions: number;
  replicas: number;
  dataDir: string;
  /** Raft's tick (election timeout = electionTicks ticks, randomised up to twice that). */
  tickMs: number;
  /** A group's log is compacted into a snapshot once this many entries are applied past the last one. */
  compactEntries: number;
  electionTicks: number;
  heartbeatTicks: number;
  logger: Logger;
}

export class ClusterShards implements ShardBackend {
  readonly count: number;
  private readonly placement: PartitionPlacement[];
  private readonly hosted: Set<number>;
  private readonly sm = new PartitionMachine();
  private mr!: MultiRaft;
  /** Every member known: the flags' lists, members learned since (joined.json), in id order. */
  private members: Member[] = [];
  /** TEST ONLY: the chaos harness's fault file (see watchFaults). */
  private readonly faultFile = process.env.PICCOLO_TEST_FAULT_FILE;
  /** host:port of this member's client listener (set by listening()). */
  private clientAddress = "";
  private wal!: Wal;
  private transport!: PeerTransport;
  private ticker: NodeJS.Timeout | null = null;
  private faultTimer: NodeJS.Timeout | null = null;
  /** When each peer's connection came up (for rebalancing only to members that are settled). */
  private readonly connectedSince = new Map<number, number>();
  /** Leadership transfers started by rebalancing. */
  transfers = 0;
  /** Snapshots taken to compact logs. */
  compactions = 0;
  /** Expired keys removed by sweeps this member led. */
  swept = 0;
  // Counters for cluster info and metrics (latencies in microseconds).
  private readonly proposalUs = newHistogram();
  private readonly walUs = newHistogram();
  private forwardedCount = 0;
  private running = false;
  private again = false;
  private inFlight = 0;
  private closed = false;
  private nextForwardId = 1;
  private readonly forwards = new Map<number, { to: number; done: (o: ForwardOutcome | null) => void }>();
  /** Leader hints for partitions not hosted here, learned from forwarded replies. */
  private readonly hints = new Map<number, number>();
  /** Callers waiting for the next tick (a leader to appear). */
  private tickWaiters: (() => void)[] = [];

  private constructor(
    private readonly o: ClusterOptions,
    private readonly events: ShardEvents,
  ) {
    this.count = o.partitions;
    this.placement = place(o.bootstrap, o.partitions, o.replicas);
    this.hosted = new Set(this.placement.filter((p) => p.replicas.includes(o.self.id)).map((p) => p.partition));
  }

  static async start(o: ClusterOptions, events: ShardEvents): Promise<ClusterShards> {
    const c = new ClusterShards(o, events);
    await c.open();
    return c;
  }

  private async open(): Promise<void> {
    const { wal, groups } = await Wal.open(this.o.dataDir);
    this.wal = wal;
    this.members = mergeMembers(this.o.members, await loadJoined(this.o.dataDir));
    // Replicas placed here at bootstrap, and any others this member's WAL holds (replicas a
    // membership change added later; their configuration is in their log or snapshot).
    for (const g of groups.keys()) if (g < this.o.partitions) this.hosted.add(g);
    this.mr = new MultiRaft({
      member: this.o.self.id,
      groups: [...this.hosted]
        .sort((a, b) => a - b)
        .map((g) => {
          const restore = groups.get(g);
          const p = this.placement[g]!;
          const voters = p.replicas.includes(this.o.self.id) ? p.replicas : [];
          return { group: g, voters, ...(restore === undefined ? {} : { restore }) };
        }),
      storage: wal,
      stateMachine: this.sm,
      rand: Math.random,
      electionTicks: this.o.electionTicks,
      heartbeatTicks: this.o.heartbeatTicks,
    });
    // A leader that added this member to a group it does not host yet: create an empty replica,
    // which learns the group's configuration and state from that leader (log or snapshot).
    this.mr.adopt = (group, m) => {
      if (group >= this.o.partitions || this.closed) return false;
      if (m.type !== MessageType.App && m.type !== MessageType.Snap && m.type !== MessageType.Heartbeat) return false;
      this.hosted.add(group);
      this.o.logger.info({ partition: group, leader: m.from }, "joining a partition's group");
      return true;
    };
    this.mr.sendEarly = (out) => {
      for (const [to, batch] of out) this.transport.send(to, batch);
    };
    this.mr.onPersist = (ms) => this.walUs.recordValue(Math.max(1, Math.round(ms * 1000)));
    this.transport = new PeerTransport({
      faults: this.faultFile !== undefined,
      self: this.o.self,
      members: this.members,
      announce: this.o.self.id > this.o.bootstrap.length,
      onJoin: (m) => this.learnMember(m),
      clusterId: clusterIdOf(this.o.bootstrap, this.o.partitions, hash32),
      clientAddress: () => this.clientAddress,
      logger: this.o.logger,
      onMessages: (_from, messages) => {
        this.mr.step(messages);
        this.kick();
      },
      onFrame: (from, f) => {
        if (f.kind === "forward") void this.serveForward(from, f.id, f.group, f.write, f.command);
        else if (f.kind === "transfer") {
          if (this.hosted.has(f.group) && this.mr.transferLeadership(f.group, f.to)) this.kick();
        } else if (f.kind === "replace") {
          if (this.isReplica(f.group) && this.mr.status(f.group).isLeader) {
            const why = this.stepReplace(f.group, f.remove, f.add);
            if (why !== null) this.o.logger.debug({ partition: f.group, why }, "replace step not taken");
          }
        } else {
          const w = this.forwards.get(f.id);
          this.forwards.delete(f.id);
          w?.done(f.outcome);
        }
      },
      // A peer gone: what we forwarded to it will not be answered; retry elsewhere now.
      onPeerDown: (peer) => {
        for (const [id, w] of this.forwards)
          if (w.to === peer) {
            this.forwards.delete(id);
            w.done(null);
          }
      },
    });
  }

  /**
   * The node's client listener is up at `clientAddress`: join the cluster.
   * The peer transport starts only now so that every hello can carry the
   * address clients reach this member at (with --port 0 it is not known
   * before), which is how `piccolo cluster status` and the cluster client
   * find every member from one. A wildcard listener (0.0.0.0, ::) is
   * announced with the host of this member's peer address, which the other
   * members reach it at by definition.
   */
  async listening(clientAddress: string): Promise<void> {
    const m = /^(.*):(\d+)$/.exec(clientAddress);
    const wildcard = m !== null && (m[1] === "0.0.0.0" || m[1] === "::" || m[1] === "[::]");
    this.clientAddress = wildcard ? `${this.o.self.host}:${m[2]}` : clientAddress;
    await this.transport.start();
    if (this.faultFile !== undefined) this.watchFaults(this.faultFile);
    let ticks = 0;
    this.ticker = setInterval(() => {
      this.mr.tick();
      if (++ticks % REBALANCE_EVERY_TICKS === 0) this.rebalance();
      if (ticks % COMPACT_CHECK_EVERY_TICKS === 0) void this.compactLogs();
      if (ticks % SWEEP_EVERY_TICKS === 0) this.sweepExpired();
      const waiters = this.tickWaiters;
      this.tickWaiters = [];
      for (const w of waiters) w();
      this.kick();
    }, this.o.tickMs);
  }

  /**
   * TEST ONLY (PICCOLO_TEST_FAULT_FILE): the chaos harness partitions members
   * by writing lines like "block 2 out" (or in, both) to this file; the
   * member applies the whole file every 50 ms. Without the variable the
   * transport's fault hook does not exist.
   */
  private watchFaults(path: string): void {
    this.o.logger.warn({ path }, "TEST FAULT INJECTION ENABLED: peer traffic follows this file");
    let last = "";
    const timer = setInterval(() => {
      readFile(path, "utf8").then(
        (text) => {
          if (text === last) return;
          last = text;
          for (const m of this.members) if (m.id !== this.o.self.id) this.transport.unblock(m.id);
          for (const line of text.split("\n")) {
            const [verb, peer, dir] = line.trim().split(/\s+/);
            if (verb === "block" && peer !== undefined)
              this.transport.block(Number(peer), (dir ?? "both") as "out" | "in" | "both");
          }
        },
        () => {},
      );
    }, 50);
    timer.unref();
    this.faultTimer = timer;
  }

  /**
   * Leaders drift to whoever won the last election; after a member returns,
   * it leads nothing. Every REBALANCE_EVERY_TICKS ticks, this member hands
   * each partition it leads but should not (placement's preferred leader) to
   * the preferred member, if that member has been connected for a while:
   * Raft's leadership transfer, so the handover costs one short pause of
   * that partition's writes, not an election timeout.
   */
  private rebalance(): void {
    const now = Date.now();
    for (const m of this.members)
      if (m.id !== this.o.self.id && !this.transport.isConnected(m.id)) this.connectedSince.delete(m.id);
      else if (!this.connectedSince.has(m.id)) this.connectedSince.set(m.id, now);
    for (const p of this.placement) {
      if (!this.hosted.has(p.partition) || p.preferredLeader === this.o.self.id) continue;
      const st = this.mr.status(p.partition);
      if (!st.isLeader || !st.voters.includes(p.preferredLeader)) continue;
      const since = this.connectedSince.get(p.preferredLeader);
      if (since === undefined || now - since < REBALANCE_SETTLE_MS) continue;
      if (this.mr.transferLeadership(p.partition, p.preferredLeader)) this.transfers++;
    }
    this.kick();
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
      this.events.onLog("error", "log compaction failed; stopping this member", { err: (err as Error).message });
      process.exit(70);
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
      if (!this.mr.status(g).isLeader || !this.sm.ttlSeen(g)) continue;
      const cmd = new Uint8Array(commandBytes(0, 0));
      encodeCommand(cmd, 0, {
        op: Op.SWEEP,
        flags: 0,
        tag: 0,
        nowMs: Date.now(),
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
    this.running = true;
    void (async () => {
      try {
        do {
          this.again = false;
          const out = await this.mr.process();
          for (const [to, batch] of out) this.transport.send(to, batch);
          if (out.size > 0) this.again = true;
        } while (this.again && !this.closed);
      } catch (err) {
        // A failed WAL (WAL_FAILED) or a broken invariant: this member cannot go on safely.
        this.events.onLog("error", "cluster storage failed; stopping this member", { err: (err as Error).message });
        process.exit(70);
      } finally {
        this.running = false;
      }
    })();
  }

  // ShardBackend

  send(partition: number, c: CommandFields): void {
    const bytes = new Uint8Array(commandBytes(c.key.length, c.value === null ? 0 : c.value.length));
    encodeCommand(bytes, 0, c);
    const tag = c.tag;
    const write = isWrite(c.op) && c.op !== Op.STATS;
    this.inFlight++;
    // A stale read (FLAG_STALE_READ, asked for per request) on a member holding a replica of the
    // partition is served from this replica's map as it is now: no leader, no ReadIndex, so it
    // works when no leader is reachable and spreads reads over replicas, but it may miss writes
    // this replica has not applied yet, by any amount (docs/cluster.md, "Stale reads"; decision
    // 0188). A member without a replica forwards it to the leader like any read.
    const stale = (c.flags & FLAG_STALE_READ) !== 0 && !write && this.isReplica(partition);
    const local = c.op === Op.STATS || stale; // STATS: node-local numbers, no leader needed
    const p = local
      ? Promise.resolve(this.sm.read(partition, bytes, Date.now()))
      : this.execute(partition, bytes, write);
    void p.then((result) => {
      this.inFlight--;
      const r = new Result();
      r.decode(result);
      r.tag = tag;
      this.events.onResult(r);
      this.events.onBatchEnd();
      if (this.inFlight === CLUSTER_MAX_IN_FLIGHT - 1) this.events.onDrain();
    });
  }

  flush(): void {
    this.kick();
  }

  congested(): boolean {
    return this.inFlight >= CLUSTER_MAX_IN_FLIGHT;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    if (this.faultTimer !== null) clearInterval(this.faultTimer);
    await this.transport.stop();
    while (this.running) await new Promise((r) => setTimeout(r, 5));
    await this.wal.close();
  }

  transferLeader(partition: number, member: number): string | null {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.o.partitions)
      return `no partition ${partition} (there are ${this.o.partitions})`;
    const voters = this.isReplica(partition) ? this.mr.status(partition).voters : this.placement[partition]!.replicas;
    if (!voters.includes(member)) return `member ${member} holds no voting replica of partition ${partition}`;
    const leader = this.leaderOf(partition);
    if (leader === member) return null;
    if (leader === this.o.self.id) {
      if (!this.mr.transferLeadership(partition, member)) return "the transfer could not start";
      this.kick();
      return null;
    }
    if (leader === 0) return `partition ${partition} has no known leader right now`;
    if (!this.transport.sendFrame(leader, encodeTransfer(partition, member))) return `leader ${leader} is unreachable`;
    return null;
  }

  clusterInfo(): ClusterInfo {
    const peers = new Map(this.transport.stats().map((s) => [s.member, s]));
    return {
      self: this.o.self.id,
      members: this.members.map((m) => ({
        id: m.id,
        name: m.name,
        peerAddress: `${m.host}:${m.port}`,
        connected: m.id === this.o.self.id || (peers.get(m.id)?.connected ?? false),
        clientAddress: m.id === this.o.self.id ? this.clientAddress : (peers.get(m.id)?.clientAddress ?? ""),
      })),
      partitions: this.placement.map((p) => {
        const hosted = this.isReplica(p.partition);
        const s = hosted ? this.mr.status(p.partition) : null;
        return {
          partition: p.partition,
          replicas: s === null ? p.replicas : [...s.voters],
          learners: s === null ? [] : [...s.learners],
          leader: s?.leader ?? this.hints.get(p.partition) ?? 0,
          term: s?.term ?? 0,
          commit: s?.commit ?? 0,
          applied: s?.applied ?? 0,
          lastIndex: s?.lastIndex ?? 0,
          hosted,
          leaderChanges: this.mr.leaderChanges.get(p.partition) ?? 0,
          followers:
            s === null || !s.isLeader
              ? []
              : this.mr.followers(p.partition).map((f) => ({
                  member: f.id,
                  match: f.match,
                  lag: Math.max(0, s.lastIndex - f.match),
                  state: f.state,
                  active: f.recentActive,
                  learner: f.learner,
                })),
        };
      }),
      stats: {
        proposals: this.proposalUs.totalCount,
        proposalP50Us: this.proposalUs.getValueAtPercentile(50),
        proposalP99Us: this.proposalUs.getValueAtPercentile(99),
        walWrites: this.walUs.totalCount,
        walP50Us: this.walUs.getValueAtPercentile(50),
        walP99Us: this.walUs.getValueAtPercentile(99),
        forwarded: this.forwardedCount,
        leaderChanges: [...this.mr.leaderChanges.values()].reduce((a, b) => a + b, 0),
        elections: this.mr.campaigns(),
        snapshotsInstalled: this.mr.snapshotsInstalled,
      },
    };
  }

  // Serving a command

  private nextTick(): Promise<void> {
    return new Promise((r) => this.tickWaiters.push(r));
  }

  /** Runs a command on the partition's leader, wherever it is; resolves with the encoded Result. */
  private async execute(group: number, command: Uint8Array, write: boolean): Promise<Uint8Array> {
    const deadline = Date.now() + CLUSTER_REQUEST_DEADLINE_MS;
    while (Date.now() < deadline && !this.closed) {
      if (this.isReplica(group) && this.mr.status(group).isLeader) {
        const local = await this.local(group, command, write, deadline);
        if (local !== null) return local;
        // Not the leader after all, or a leadership transfer is under way: wait a tick.
        await this.nextTick();
        continue;
      }
      const leader = this.isReplica(group)
        ? this.mr.status(group).leader
        : (this.hints.get(group) ?? this.preferred(group));
      if (leader === 0 || leader === this.o.self.id) {
        await this.nextTick();
        continue;
      }
      this.forwardedCount++;
      const outcome = await this.forward(leader, group, command, write, deadline);
      if (outcome === null) {
        await this.nextTick();
        continue;
      }
      if (outcome.kind === "result") return outcome.result;
      if (outcome.kind === "failed") return errorResult(ErrorCode.TIMEOUT);
      if (!this.isReplica(group)) this.hints.set(group, outcome.leader);
      if (outcome.leader === 0 || outcome.leader === leader) await this.nextTick();
    }
    return errorResult(write ? ErrorCode.TIMEOUT : ErrorCode.NOT_LEADER);
  }

  /** As leader: propose or read. Null means "not the leader after all": try again. */
  private async local(
    group: number,
    command: Uint8Array,
    write: boolean,
    deadline: number,
  ): Promise<Uint8Array | null> {
    try {
      if (write) {
        const t0 = performance.now();
        const proposed = this.mr.propose(group, command);
        // Start a round now: the entry must be written and sent (waiting for the
        // next tick or peer message to do it cost every write up to a tick).
        this.kick();
        const answer = await withDeadline(proposed, deadline);
        if (answer !== null) this.proposalUs.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        return answer ?? errorResult(ErrorCode.TIMEOUT);
      }
      const p = this.mr.readIndex(group);
      this.kick();
      const ok = await withDeadline(p, deadline);
      if (ok === null) return errorResult(ErrorCode.NOT_LEADER);
      return this.sm.read(group, command, Date.now());
    } catch (err) {
      if (err instanceof NotLeaderError || err instanceof ProposalDroppedError) return null;
      // Possibly applied: answered like a timeout, never retried.
      if (err instanceof ProposalOutcomeUnknownError) return errorResult(ErrorCode.TIMEOUT);
      throw err;
    }
  }

  private forward(
    to: number,
    group: number,
    command: Uint8Array,
    write: boolean,
    deadline: number,
  ): Promise<ForwardOutcome | null> {
    const id = this.nextForwardId++;
    // A peer we are not connected to cannot answer: do not wait for it.
    if (!this.transport.isConnected(to)) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.forwards.delete(id);
          resolve(null);
        },
        Math.max(1, Math.min(deadline - Date.now(), 1_000)),
      );
      this.forwards.set(id, {
        to,
        done: (o) => {
          clearTimeout(timer);
          resolve(o);
        },
      });
      if (!this.transport.sendFrame(to, encodeForward({ id, group, write, command }))) {
        clearTimeout(timer);
        this.forwards.delete(id);
        resolve(null);
      }
    });
  }

  /** A peer forwarded us a command: serve it if we lead, or say who does. */
  private async serveForward(
    from: number,
    id: number,
    group: number,
    write: boolean,
    command: Uint8Array,
  ): Promise<void> {
    let outcome: ForwardOutcome;
    if (!this.isReplica(group)) outcome = { kind: "notLeader", leader: 0 };
    else if (!this.mr.status(group).isLeader) outcome = { kind: "notLeader", leader: this.mr.status(group).leader };
    else {
      const r = await this.local(group, command, write, Date.now() + CLUSTER_REQUEST_DEADLINE_MS - 500);
      outcome =
        r === null ? { kind: "notLeader", leader: this.mr.status(group).leader } : { kind: "result", result: r };
    }
    this.transport.sendFrame(from, encodeForwardReply(id, outcome));
  }

  /**
   * Where to send a command for a partition this member holds no replica of
   * and has no hint for: the placement's preferred leader if connected, else
   * any connected member (whoever it is answers with its own hint).
   */
  private preferred(group: number): number {
    const p = this.placement[group]!.preferredLeader;
    if (p !== this.o.self.id && this.transport.isConnected(p)) return p;
    for (const m of this.members) if (m.id !== this.o.self.id && this.transport.isConnected(m.id)) return m.id;
    return 0;
  }

  /**
   * A member joined after bootstrap introduced itself (src/cluster/transport.ts):
   * keep it if it takes a joined id, and record it in the data directory so
   * that a restart without it in --joined still knows it.
   */
  private learnMember(m: Member): boolean {
    if (m.id <= this.o.bootstrap.length || m.id > MAX_CLUSTER_MEMBERS) return false;
    if (this.members.some((x) => x.id === m.id || x.name === m.name)) return false;
    const members = [...this.members, m].sort((a, b) => a.id - b.id);
    try {
      saveJoined(
        this.o.dataDir,
        members.filter((x) => x.id > this.o.bootstrap.length),
      );
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message, member: m.name }, "could not record a joined member");
      return false;
    }
    this.members = members;
    return true;
  }

  /** This member holds a replica of the group that is in its configuration (voter or learner). */
  private isReplica(group: number): boolean {
    return this.mr.inConfig(group, this.o.self.id);
  }

  /** The partition's leader as far as this member knows (0: unknown). */
  private leaderOf(partition: number): number {
    return this.isReplica(partition) ? this.mr.status(partition).leader : (this.hints.get(partition) ?? 0);
  }

  /**
   * Moving a partition's replica from member `remove` to member `add`
   * (`piccolo cluster replace`): asks the partition's leader for the next step.
   */
  replaceReplica(partition: number, remove: number, add: number): string | null {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.o.partitions)
      return `no partition ${partition} (there are ${this.o.partitions})`;
    const known = (id: number) => this.members.some((m) => m.id === id);
    if (!known(remove)) return `no member ${remove}`;
    if (!known(add)) return `no member ${add} (a new member is started with --joined and introduces itself)`;
    if (remove === add) return "the member to remove and the one to add are the same";
    const leader = this.leaderOf(partition);
    if (leader === this.o.self.id) return this.stepReplace(partition, remove, add);
    if (leader === 0) return `partition ${partition} has no known leader right now`;
    if (!this.transport.sendFrame(leader, encodeReplace(partition, remove, add)))
      return `leader ${leader} is unreachable`;
    return null;
  }

  /**
   * As the partition's leader, the next membership step of a replacement,
   * one Raft configuration change at a time (src/raft/config.ts):
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
  private stepReplace(group: number, remove: number, add: number): string | null {
    const s = this.mr.status(group);
    const has = (id: number) => s.voters.includes(id) || s.learners.includes(id);
    if (!has(add)) {
      if (!has(remove)) return `member ${remove} holds no replica of partition ${group}`;
      return this.mr.proposeConfChange(group, { type: ConfChangeType.AddLearner, replica: add });
    }
    if (s.learners.includes(add)) {
      const f = this.mr.followers(group).find((x) => x.id === add);
      if (f === undefined || f.match < s.commit) return null; // still catching up
      return this.mr.proposeConfChange(group, { type: ConfChangeType.AddVoter, replica: add });
    }
    if (!has(remove)) return null; // done
    if (remove === this.o.self.id) {
      return this.mr.transferLeadership(group, add) ? null : "could not hand leadership over before leaving";
    }
    return this.mr.proposeConfChange(group, { type: ConfChangeType.Remove, replica: remove });
  }
}

function errorResult(code: number): Uint8Array {
  const r = new Result();
  r.status = code;
  const out = new Uint8Array(r.byteLength());
  r.encode(out, 0);
  return out;
}

/** The promise's value, or null once the deadline passes first. */
function withDeadline<T>(p: Promise<T>, deadline: number): Promise<T | null> {
  return new Promise<T | null>((resolve, reject) => {
    const t = setTimeout(() => resolve(null), Math.max(0, deadline - Date.now()));
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

function newHistogram() {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 2,
  });
}
