/**
 * Cluster mode's ShardBackend, the IO thread's half: the IO loop's dispatcher
 * sends shard commands here exactly as it does to local shards
 * (src/io/shards.ts), with one "shard" per partition. Each command is
 *   - served by the group host that owns its partition when this member
 *     leads it: proposed through the partition's Raft group (writes), or
 *     read after ReadIndex from the local map (reads);
 *   - forwarded over the peer connection to the leader otherwise (any member
 *     serves any key, on every protocol, because forwarding happens below the
 *     protocols, at the shard-command level);
 *   - held while a partition has no known leader (an election), and answered
 *     with UNAVAILABLE if none is reached before CLUSTER_REQUEST_DEADLINE_MS
 *     (nothing was applied: safe to retry), or SHUTTING_DOWN if this member
 *     stops first.
 * A write whose outcome cannot be known (it was sent to a leader that did
 * not answer, or its leader was deposed before it committed) is answered
 * with TIMEOUT: "possibly applied" (src/outcomes.ts). A read never answers
 * TIMEOUT from here: one that got no answer is retried until the deadline.
 *
 * The Raft groups themselves live on group hosts (src/cluster/group-host.ts),
 * one per shard worker thread (decision 0189), or one on this thread with
 * `--shards 0`. This half owns what needs sockets or the whole member's view:
 * the peer transport, the member list, forwarding, leader hints for
 * partitions not hosted here, rebalancing's "who is back", and the answers
 * to cluster-info, transfer and replace requests.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import { ErrorCode } from "../errors.js";
import { hash32 } from "../hash.js";
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
import { realClock } from "./clock.js";
import { CLUSTER_REQUEST_DEADLINE_MS } from "./deadlines.js";
import { errorResult, type HostConfig, type HostStatus, type Route, ServeMode, walStorage } from "./group-host.js";
import { type HostLink, InlineHostLink, type LinkEvents, WorkerHostLink } from "./host-link.js";
import { loadJoined, mergeMembers, saveJoined } from "./joined.js";
import { walDirs } from "./layout.js";
import { encodeForward, encodeForwardReply, encodeReplace, encodeTransfer, type ForwardOutcome } from "./peer-codec.js";
import type { GroupMessage } from "./peer-codec.js";
import { MAX_CLUSTER_MEMBERS, type Member, type PartitionPlacement, place } from "./placement.js";
import { clusterIdOf, PeerTransport } from "./transport.js";

/** A forwarded command that was sent and got no answer (see forward()). */
const LOST = "lost" as const;

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
  /** Group worker threads (one group host each); 0 runs one host on the IO thread. */
  shards: number;
  /** Raft's tick (election timeout = electionTicks ticks, randomised up to twice that). */
  tickMs: number;
  /** A group's log is compacted into a snapshot once this many entries are applied past the last one. */
  compactEntries: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Idle ticks before a group goes quiet (0: never; src/raft/raft.ts, wake()). */
  quiesceAfterTicks: number;
  logger: Logger;
}

export class ClusterShards implements ShardBackend {
  readonly count: number;
  private readonly placement: PartitionPlacement[];
  private hosts: HostLink[] = [];
  /** Per partition: whether this member holds a replica, and who leads (as its host last said). */
  private readonly routes: Route[];
  /** Every member known: the flags' lists, members learned since (joined.json), in id order. */
  private members: Member[] = [];
  /** TEST ONLY: the chaos harness's fault file (see watchFaults). */
  private readonly faultFile = process.env.PICCOLO_TEST_FAULT_FILE;
  /** host:port of this member's client listener (set by listening()). */
  private clientAddress = "";
  /** Created once the hosts are open (see open()). */
  private transport!: PeerTransport;
  private rebalancer: NodeJS.Timeout | null = null;
  private liveness: NodeJS.Timeout | null = null;
  /** Peers this member last judged alive (member liveness, see checkLiveness). */
  private readonly alive = new Set<number>();
  private faultTimer: NodeJS.Timeout | null = null;
  /** When each peer's connection came up (for rebalancing only to members that are settled). */
  private readonly connectedSince = new Map<number, number>();
  private forwardedCount = 0;
  /** TEST ONLY (watchFaults): members whose forwarded commands are served here but never answered. */
  private readonly mutedReplies = new Set<number>();
  private batchEndQueued = false;
  private inFlight = 0;
  private closed = false;
  private nextForwardId = 1;
  private readonly forwards = new Map<number, { to: number; done: (o: ForwardOutcome | null) => void }>();
  /** Leader hints for partitions not hosted here, learned from forwarded replies. */
  private readonly hints = new Map<number, number>();

  private constructor(
    private readonly o: ClusterOptions,
    private readonly events: ShardEvents,
  ) {
    this.count = o.partitions;
    this.placement = place(o.bootstrap, o.partitions, o.replicas);
    this.routes = this.placement.map((p) => ({ group: p.partition, replica: false, leader: 0 }));
  }

  static async start(o: ClusterOptions, events: ShardEvents): Promise<ClusterShards> {
    const c = new ClusterShards(o, events);
    try {
      await c.open();
    } catch (err) {
      await Promise.allSettled(c.hosts.map((h) => h.close()));
      throw err;
    }
    return c;
  }

  private async open(): Promise<void> {
    this.members = mergeMembers(this.o.members, await loadJoined(this.o.dataDir));
    const count = Math.max(1, this.o.shards);
    const dirs = walDirs(this.o.dataDir, count);
    const linkEvents: LinkEvents = {
      // Hosts start ticking as soon as they are open, before the transport exists: what they
      // send meanwhile is lost, as on any unreliable link (Raft resends).
      sendFrame: (to, frame) => (this.transport as PeerTransport | undefined)?.sendFrame(to, frame),
      route: (r) => {
        this.routes[r.group] = r;
      },
      log: (level, message, detail) => this.o.logger[level](detail ?? {}, message),
      badFrame: (from, why) => this.transport.reject(from, why),
      fatal: (message, detail) => {
        // A failed WAL (WAL_FAILED) or a broken invariant: this member cannot go on safely.
        this.events.onLog("error", message, detail);
        process.exit(70);
      },
    };
    const hostOptions = (h: number): HostConfig => ({
      self: this.o.self.id,
      host: h,
      hosts: count,
      bootstrap: this.o.bootstrap,
      partitions: this.o.partitions,
      replicas: this.o.replicas,
      walDir: dirs[h]!,
      tickMs: this.o.tickMs,
      compactEntries: this.o.compactEntries,
      electionTicks: this.o.electionTicks,
      heartbeatTicks: this.o.heartbeatTicks,
      quiesceAfterTicks: this.o.quiesceAfterTicks,
    });
    const opened = await Promise.allSettled(
      Array.from({ length: count }, (_, h) =>
        this.o.shards === 0
          ? InlineHostLink.open(hostOptions(h), linkEvents, {
              clock: realClock,
              rand: Math.random,
              openStorage: walStorage(dirs[h]!),
            })
          : WorkerHostLink.open(hostOptions(h), linkEvents),
      ),
    );
    for (const r of opened) if (r.status === "fulfilled") this.hosts.push(r.value);
    const failed = opened.find((r) => r.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    this.transport = new PeerTransport({
      faults: this.faultFile !== undefined,
      self: this.o.self,
      members: this.members,
      announce: this.o.self.id > this.o.bootstrap.length,
      onJoin: (m) => this.learnMember(m),
      clusterId: clusterIdOf(this.o.bootstrap, this.o.partitions, hash32),
      clientAddress: () => this.clientAddress,
      logger: this.o.logger,
      onMessages: (_from, messages) => this.stepMessages(messages),
      // One group worker: its Raft frames cross the ring as they arrived, decoded once, there.
      ...(this.hosts.length === 1 && this.hosts[0] instanceof WorkerHostLink
        ? { onRaftFrame: (from: number, frame: Uint8Array) => (this.hosts[0] as WorkerHostLink).stepFrame(from, frame) }
        : {}),
      onFrame: (from, f) => {
        if (f.kind === "forward") void this.serveForward(from, f.id, f.group, f.write, f.command);
        else if (f.kind === "transfer") {
          if (this.isPartition(f.group)) void this.hostOf(f.group).transfer(f.group, f.to);
        } else if (f.kind === "replace") {
          if (this.isPartition(f.group))
            void this.hostOf(f.group)
              .stepReplace(f.group, f.remove, f.add)
              .then((why) => {
                if (why !== null) this.o.logger.debug({ partition: f.group, why }, "replace step not taken");
              });
        } else {
          const w = this.forwards.get(f.id);
          this.forwards.delete(f.id);
          w?.done(f.outcome);
        }
      },
      // A peer gone: what we forwarded to it will not be answered; reads are retried elsewhere now.
      onPeerDown: (peer) => {
        for (const [id, w] of this.forwards)
          if (w.to === peer) {
            this.forwards.delete(id);
            w.done(null);
          }
      },
    });
  }

  /** Splits a peer's Raft messages among the hosts that own their partitions (one call per host). */
  private stepMessages(messages: GroupMessage[]): void {
    if (messages.length === 0) return; // a keep-alive ping: its arrival is all it says
    if (this.hosts.length === 1) return this.hosts[0]!.step(messages);
    const per: GroupMessage[][] = this.hosts.map(() => []);
    for (const m of messages)
      if (m.group >= 0 && m.group < this.o.partitions) per[m.group % this.hosts.length]!.push(m);
    for (let h = 0; h < per.length; h++) if (per[h]!.length > 0) this.hosts[h]!.step(per[h]!);
  }

  private hostOf(group: number): HostLink {
    return this.hosts[group % this.hosts.length]!;
  }

  /** A partition number of this cluster (input from peers and clients is checked with it). */
  private isPartition(group: number): boolean {
    return Number.isInteger(group) && group >= 0 && group < this.o.partitions;
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
    this.rebalancer = setInterval(() => this.rebalance(), REBALANCE_EVERY_TICKS * this.o.tickMs);
    this.liveness = setInterval(() => this.checkLiveness(), this.o.tickMs);
  }

  /**
   * TEST ONLY (PICCOLO_TEST_FAULT_FILE): the chaos harness partitions members
   * by writing lines like "block 2 out" (or in, both) to this file; the
   * member applies the whole file every 50 ms. "mute-replies 2" drops only
   * the answers to what member 2 forwarded here (the write is served, its
   * answer lost: test/cluster/forward-once.test.ts). Without the variable
   * the transport's fault hook does not exist, and nothing is muted.
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
          this.mutedReplies.clear();
          for (const line of text.split("\n")) {
            const [verb, peer, dir] = line.trim().split(/\s+/);
            if (verb === "block" && peer !== undefined)
              this.transport.block(Number(peer), (dir ?? "both") as "out" | "in" | "both");
            if (verb === "mute-replies" && peer !== undefined) this.mutedReplies.add(Number(peer));
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
   * it leads nothing. Every REBALANCE_EVERY_TICKS ticks this member tells its
   * hosts which members have been connected for REBALANCE_SETTLE_MS (settled);
   * each host hands the partitions it leads by election but should not
   * (placement's preferred leader) to a settled preferred member
   * (src/cluster/group-host.ts, rebalance).
   */
  private rebalance(): void {
    const now = Date.now();
    const settled: number[] = [];
    for (const m of this.members) {
      if (m.id === this.o.self.id) continue;
      if (!this.transport.isConnected(m.id)) this.connectedSince.delete(m.id);
      else if (!this.connectedSince.has(m.id)) this.connectedSince.set(m.id, now);
      const since = this.connectedSince.get(m.id);
      if (since !== undefined && now - since >= REBALANCE_SETTLE_MS) settled.push(m.id);
    }
    if (settled.length > 0) for (const h of this.hosts) h.rebalance(settled);
  }

  /**
   * Member liveness, for quiescence (src/raft/raft.ts, wake()). Quiet groups
   * send nothing, so a member pings each peer it has sent nothing to for a
   * heartbeat interval (an empty Raft frame, on the IO thread only), and
   * judges a peer alive while something arrived from it within an election
   * timeout. A peer that stops being alive (killed, paused, cut off, one way
   * or both), or becomes alive again, wakes every quiet group it is in: its
   * followers' election clocks run again, and its leaders' heartbeats (and
   * check-quorum) resume. One ping per peer stands in for a heartbeat per
   * group: what an idle cluster costs no longer grows with its partitions.
   */
  private checkLiveness(): void {
    this.transport.keepAlive(this.o.heartbeatTicks * this.o.tickMs);
    const within = this.o.electionTicks * this.o.tickMs;
    for (const m of this.members) {
      if (m.id === this.o.self.id) continue;
      const now = this.transport.heardWithin(m.id, within);
      if (now === this.alive.has(m.id)) continue;
      if (now) this.alive.add(m.id);
      else this.alive.delete(m.id);
      for (const h of this.hosts) h.wake(m.id);
    }
  }

  // ShardBackend

  send(partition: number, c: CommandFields): void {
    const bytes = new Uint8Array(commandBytes(c.key.length, c.value === null ? 0 : c.value.length));
    encodeCommand(bytes, 0, c);
    const tag = c.tag;
    this.inFlight++;
    const write = isWrite(c.op);
    // A stale read (FLAG_STALE_READ, asked for per request) on a member holding a replica of the
    // partition is served from this replica's map as it is now: no leader, no ReadIndex, so it
    // works when no leader is reachable and spreads reads over replicas, but it may miss writes
    // this replica has not applied yet, by any amount (docs/cluster.md, "Stale reads"; decision
    // 0188). A member without a replica forwards it to the leader like any read.
    const stale = (c.flags & FLAG_STALE_READ) !== 0 && !write && this.routes[partition]!.replica;
    // STATS: node-local numbers, no leader needed.
    const p =
      c.op === Op.STATS || stale
        ? this.hostOf(partition)
            .serve(partition, ServeMode.Local, bytes)
            .then((o) => (o.kind === "result" ? o.result : errorResult(ErrorCode.UNAVAILABLE)))
        : this.execute(partition, bytes, write);
    void p.then((result) => {
      this.inFlight--;
      const r = new Result();
      r.decode(result);
      r.tag = tag;
      this.events.onResult(r);
      this.batchEnd();
      if (this.inFlight === CLUSTER_MAX_IN_FLIGHT - 1) this.events.onDrain();
    });
  }

  flush(): void {}

  /**
   * Results arrive one promise at a time; the IO loop writes each client's
   * answers at onBatchEnd. Calling it once per event-loop turn, after every
   * result of that turn, gives each connection one socket write per turn
   * instead of one per answer (the profile under load showed a third of the
   * IO thread in socket writes).
   */
  private batchEnd(): void {
    if (this.batchEndQueued) return;
    this.batchEndQueued = true;
    queueMicrotask(() => {
      this.batchEndQueued = false;
      this.events.onBatchEnd();
    });
  }

  congested(): boolean {
    return this.inFlight >= CLUSTER_MAX_IN_FLIGHT;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.rebalancer !== null) clearInterval(this.rebalancer);
    if (this.liveness !== null) clearInterval(this.liveness);
    if (this.faultTimer !== null) clearInterval(this.faultTimer);
    await this.transport.stop();
    await Promise.all(this.hosts.map((h) => h.close()));
  }

  async transferLeader(partition: number, member: number): Promise<string | null> {
    if (!this.isPartition(partition)) return `no partition ${partition} (there are ${this.o.partitions})`;
    const voters = await this.votersOf(partition);
    if (!voters.includes(member)) return `member ${member} holds no voting replica of partition ${partition}`;
    const leader = this.leaderOf(partition);
    if (leader === member) return null;
    if (leader === this.o.self.id) return this.hostOf(partition).transfer(partition, member);
    if (leader === 0) return `partition ${partition} has no known leader right now`;
    if (!this.transport.sendFrame(leader, encodeTransfer(partition, member))) return `leader ${leader} is unreachable`;
    return null;
  }

  /** The partition's voters as its replica here knows them, or its bootstrap placement. */
  private async votersOf(partition: number): Promise<number[]> {
    if (this.routes[partition]!.replica) {
      const s = (await this.hostOf(partition).status()).groups.find((g) => g.group === partition);
      if (s !== undefined) return s.voters;
    }
    return this.placement[partition]!.replicas;
  }

  async clusterInfo(): Promise<ClusterInfo> {
    const statuses = await Promise.all(this.hosts.map((h) => h.status()));
    const byGroup = new Map(statuses.flatMap((s) => s.groups.map((g) => [g.group, g] as const)));
    const peers = new Map(this.transport.stats().map((s) => [s.member, s]));
    const sum = (f: (s: HostStatus) => number) => statuses.reduce((a, s) => a + f(s), 0);
    // Percentiles do not add up across hosts: report the worst host's.
    const worst = (f: (s: HostStatus) => number) => statuses.reduce((a, s) => Math.max(a, f(s)), 0);
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
        const g = byGroup.get(p.partition);
        const s = g !== undefined && g.replica ? g : null;
        return {
          partition: p.partition,
          replicas: s === null ? p.replicas : s.voters,
          learners: s === null ? [] : s.learners,
          leader: s?.leader ?? this.hints.get(p.partition) ?? 0,
          term: s?.term ?? 0,
          commit: s?.commit ?? 0,
          applied: s?.applied ?? 0,
          lastIndex: s?.lastIndex ?? 0,
          hosted: s !== null,
          leaderChanges: g?.leaderChanges ?? 0,
          followers: s?.followers ?? [],
        };
      }),
      stats: {
        proposals: sum((s) => s.proposals),
        proposalP50Us: worst((s) => s.proposalP50Us),
        proposalP99Us: worst((s) => s.proposalP99Us),
        walWrites: sum((s) => s.walWrites),
        walP50Us: worst((s) => s.walP50Us),
        walP99Us: worst((s) => s.walP99Us),
        forwarded: this.forwardedCount,
        leaderChanges: statuses.reduce((a, s) => a + s.groups.reduce((b, g) => b + g.leaderChanges, 0), 0),
        elections: sum((s) => s.elections),
        snapshotsInstalled: sum((s) => s.snapshotsInstalled),
        quiescedGroups: sum((s) => s.quiescedGroups),
      },
    };
  }

  // Serving a command

  private pause(): Promise<void> {
    return new Promise((r) => setTimeout(r, this.o.tickMs));
  }

  /** Runs a command on the partition's leader, wherever it is; resolves with the encoded Result. */
  private async execute(group: number, command: Uint8Array, write: boolean): Promise<Uint8Array> {
    const deadline = Date.now() + CLUSTER_REQUEST_DEADLINE_MS;
    const mode = write ? ServeMode.Write : ServeMode.Read;
    while (Date.now() < deadline && !this.closed) {
      const route = this.routes[group]!;
      let leader: number;
      if (route.replica && route.leader === this.o.self.id) {
        const o = await this.hostOf(group).serve(group, mode, command);
        if (o.kind === "result") return o.result;
        // Not the leader after all, or a leadership transfer is under way.
        leader = o.leader;
      } else {
        leader = route.replica ? route.leader : (this.hints.get(group) ?? this.preferred(group));
      }
      if (leader === 0 || leader === this.o.self.id) {
        await this.pause();
        continue;
      }
      this.forwardedCount++;
      const outcome = await this.forward(leader, group, command, write, deadline);
      if (outcome === null) {
        // Never sent (no connection to that member): safe to send elsewhere.
        await this.pause();
        continue;
      }
      if (outcome === LOST) {
        // Sent, and no answer came (the member went down, or a partition ate the reply). A read is
        // safe to retry; a write may have been proposed there, and may still commit: sending it again
        // could apply it twice (a put's version bumped twice, a compare-and-swap that "fails"
        // because its own first copy succeeded). Its outcome is unknown, and the caller is told so.
        if (write) return errorResult(ErrorCode.TIMEOUT);
        await this.pause();
        continue;
      }
      if (outcome.kind === "result") return outcome.result;
      if (outcome.kind === "failed") return errorResult(ErrorCode.TIMEOUT);
      if (!this.routes[group]!.replica) this.hints.set(group, outcome.leader);
      if (outcome.leader === 0 || outcome.leader === leader) await this.pause();
    }
    // Every path that may have proposed the command returned above: this one certainly did not.
    return errorResult(this.closed ? ErrorCode.SHUTTING_DOWN : ErrorCode.UNAVAILABLE);
  }

  /**
   * Sends a command to member `to` and waits for its answer: null when it
   * could not be sent (safe to send elsewhere), LOST when it was sent and no
   * answer came (the peer went down, or the deadline passed: a write may
   * have been proposed there). A read waits at most a second before it is
   * tried elsewhere; a write, which cannot be, waits for its whole deadline.
   */
  private forward(
    to: number,
    group: number,
    command: Uint8Array,
    write: boolean,
    deadline: number,
  ): Promise<ForwardOutcome | typeof LOST | null> {
    const id = this.nextForwardId++;
    // A peer we are not connected to cannot answer: do not wait for it.
    if (!this.transport.isConnected(to)) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.forwards.delete(id);
          resolve(LOST);
        },
        Math.max(1, write ? deadline - Date.now() : Math.min(deadline - Date.now(), 1_000)),
      );
      this.forwards.set(id, {
        to,
        done: (o) => {
          clearTimeout(timer);
          resolve(o ?? LOST);
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
    const route = this.isPartition(group) ? this.routes[group]! : null;
    if (route === null || !route.replica) outcome = { kind: "notLeader", leader: 0 };
    else if (route.leader !== this.o.self.id) outcome = { kind: "notLeader", leader: route.leader };
    else {
      const o = await this.hostOf(group).serve(group, write ? ServeMode.Write : ServeMode.Read, command);
      outcome = o.kind === "result" ? o : { kind: "notLeader", leader: o.leader };
    }
    if (this.mutedReplies.has(from)) return; // TEST ONLY (watchFaults)
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

  /** The partition's leader as far as this member knows (0: unknown). */
  private leaderOf(partition: number): number {
    const r = this.routes[partition]!;
    return r.replica ? r.leader : (this.hints.get(partition) ?? 0);
  }

  /**
   * Moving a partition's replica from member `remove` to member `add`
   * (`piccolo cluster replace`): asks the partition's leader for the next
   * step (src/cluster/group-host.ts, stepReplace).
   */
  async replaceReplica(partition: number, remove: number, add: number): Promise<string | null> {
    if (!this.isPartition(partition)) return `no partition ${partition} (there are ${this.o.partitions})`;
    const known = (id: number) => this.members.some((m) => m.id === id);
    if (!known(remove)) return `no member ${remove}`;
    if (!known(add)) return `no member ${add} (a new member is started with --joined and introduces itself)`;
    if (remove === add) return "the member to remove and the one to add are the same";
    const leader = this.leaderOf(partition);
    if (leader === this.o.self.id) return this.hostOf(partition).stepReplace(partition, remove, add);
    if (leader === 0) return `partition ${partition} has no known leader right now`;
    if (!this.transport.sendFrame(leader, encodeReplace(partition, remove, add)))
      return `leader ${leader} is unreachable`;
    return null;
  }
}
