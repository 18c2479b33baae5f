/**
 * Many Raft groups on one shard worker: the host side of the persistence
 * contract, for every partition whose replica lives on this worker.
 *
 * The core (src/raft) is one group, pure. A worker hosts dozens. Driving
 * each group's Ready on its own would cost one fsync and one network write
 * per group per round; this host gathers them:
 *
 *   process():
 *     1. collect the Ready of every group that has one;
 *     2. apply committed entries to the state machine, in order, resolving
 *        the proposals waiting for them, and answer ReadIndex reads once
 *        applied up to their index: committed entries are durable on a
 *        majority, and the maps are memory rebuilt from the log on restart,
 *        so this need not wait for step 3 (a group installing a snapshot
 *        does: the snapshot replaces its map first, after step 3);
 *     3. persist them all in ONE storage call (one WAL write and fsync for
 *        the whole round: group commit across partitions);
 *     4. only then queue their messages, grouped by destination member, so
 *        the caller sends one frame per peer per round (src/cluster/peer-codec.ts);
 *        except a leader's appends and heartbeats, which go out through
 *        sendEarly before step 3 completes (thesis §10.2.1: the leader's
 *        fsync and its followers' overlap; canSendBeforePersist);
 *     5. advance every group.
 *
 * The host is single-threaded and does no IO of its own: storage and the
 * state machine are passed in, and the caller moves the messages. That keeps
 * it testable in one process with a simulated network (test/cluster).
 */
import { assert } from "../assert.js";
import { FIRST_ELECTION_TICKS } from "./deadlines.js";
import type { GroupMessage } from "./peer-codec.js";
import { canSendBeforePersist, type Message, type Ready } from "../raft/messages.js";
import type { ConfChange } from "../raft/config.js";
import { type FollowerStatus, Raft } from "../raft/raft.js";
import { type Entry, EntryType, type HardState, type Snapshot } from "../raft/types.js";

/** What one group persists in one round. */
export interface GroupPersist {
  group: number;
  snapshot: Snapshot | null;
  hardState: HardState | null;
  entries: Entry[];
}

/** Durable storage for all groups of a worker (a WAL shared by them, or memory in tests). */
export interface RaftStorage {
  /**
   * Writes every part of one round, together, before resolving; durably
   * (fsync) when `mustSync`. A round that only moves commit indexes need not
   * be synced: a commit index is never promised to anyone, and a restarted
   * replica learns it again from its leader (etcd's MustSync rule).
   */
  persist(round: GroupPersist[], mustSync: boolean): Promise<void>;
  /** Saves a group's own compaction snapshot, then drops what it covers. */
  saveCompaction(group: number, snapshot: Snapshot): Promise<void>;
}

/** What a group restarts from. */
export interface GroupState {
  hardState: HardState;
  entries: Entry[];
  snapshot: Snapshot | null;
}

/** The state machine the groups apply to (the worker's map, partitioned). */
export interface StateMachine {
  /** Applies a committed command; returns the answer for whoever proposed it. */
  apply(group: number, entry: Entry): Uint8Array;
  /** Replaces a group's state with a snapshot's. */
  restore(group: number, snapshot: Snapshot): void;
  /** The group's state as bytes, as of everything applied so far. */
  snapshot(group: number): Uint8Array;
}

export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  readonly code = "NOT_LEADER";
  constructor(
    readonly group: number,
    /** The leader as far as this replica knows (a member id; 0: unknown). */
    readonly leader: number,
    readonly reason: string,
  ) {
    super(`not the leader of partition ${group} (${reason}); leader hint: ${leader || "unknown"}`);
  }
}

/** A proposal whose log entry was overwritten by another leader's: it was definitely not applied. */
export class ProposalDroppedError extends Error {
  override name = "ProposalDroppedError";
  readonly code = "PROPOSAL_DROPPED";
}

/**
 * A proposal whose fate this replica cannot tell: its index was covered by a
 * snapshot from the leader before the entry was applied here. The entry may
 * be in that snapshot (applied) or may have been replaced (not applied); the
 * answer is unknown, like a timeout. It must never be retried as if it had
 * not been applied.
 */
export class ProposalOutcomeUnknownError extends Error {
  override name = "ProposalOutcomeUnknownError";
  readonly code = "OUTCOME_UNKNOWN";
}

export interface MultiRaftOptions {
  /** This member's id (the Raft replica id in every group). */
  member: number;
  groups: { group: number; voters: number[]; restore?: GroupState }[];
  storage: RaftStorage;
  stateMachine: StateMachine;
  rand: () => number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Idle ticks before a group's leader lets it go quiet (0 or absent: never; src/raft/raft.ts, wake()). */
  quiesceAfterTicks?: number;
}

/** A group as one replica sees it. */
export interface GroupStatus {
  leader: number;
  term: number;
  commit: number;
  applied: number;
  lastIndex: number;
  isLeader: boolean;
  voters: readonly number[];
  learners: readonly number[];
}

interface Waiter {
  term: number;
  resolve: (result: Uint8Array) => void;
  reject: (err: Error) => void;
}

interface ReadWaiter {
  index: number;
  resolve: () => void;
}

/** The reads sharing one ReadIndex round. */
class ReadBatch {
  private readonly waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  join(): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  readonly resolve = (): void => {
    for (const w of this.waiters) w.resolve();
  };
  reject(err: Error): void {
    for (const w of this.waiters) w.reject(err);
  }
}

interface Group {
  raft: Raft;
  applied: number;
  proposals: Map<number, Waiter>;
  /** ReadIndex contexts sent to the core, waiting for their read state. */
  reads: Map<number, ReadBatch>;
  /**
   * The context whose ReadIndex round has not left yet (0: none): reads
   * arriving before the next round join it instead of starting their own
   * (etcd batches its reads the same way). Closed by process().
   */
  gathering: number;
  /** Read states granted but not yet applied up to. */
  readyReads: ReadWaiter[];
}

export class MultiRaft {
  readonly member: number;
  private readonly groups = new Map<number, Group>();
  private readonly storage: RaftStorage;
  private readonly sm: StateMachine;
  private nextReadContext = 1;
  /** The hard state last handed to storage, per group (for the must-sync rule). */
  private readonly persistedHardState = new Map<number, HardState>();
  private processing = false;
  private readonly rand: () => number;
  private readonly electionTicks: number | undefined;
  private readonly heartbeatTicks: number | undefined;
  private readonly quiesceAfterTicks: number;
  /**
   * Asked about a message for a group not hosted here: true creates an
   * empty replica for it (a leader adding this member), false drops it.
   */
  adopt: ((group: number, message: GroupMessage["message"]) => boolean) | null = null;
  /** Messages for groups this member does not host (stale peers, misconfiguration), counted not thrown. */
  unknownGroupMessages = 0;
  /** Snapshots installed from a leader (all groups). */
  snapshotsInstalled = 0;
  /** Times a group's leader changed, as seen here, per group. */
  readonly leaderChanges = new Map<number, number>();
  private readonly lastLeader = new Map<number, number>();
  /**
   * Sends messages at once, before the round's storage write completes (the
   * caller's transport). Only a leader's replication traffic goes this way
   * (canSendBeforePersist); null keeps everything until after the write.
   */
  sendEarly: ((messages: Map<number, GroupMessage[]>) => void) | null = null;
  /** Called with how long each storage round took (ms), for metrics. */
  onPersist: ((ms: number) => void) | null = null;

  constructor(o: MultiRaftOptions) {
    this.member = o.member;
    this.storage = o.storage;
    this.sm = o.stateMachine;
    this.rand = o.rand;
    this.electionTicks = o.electionTicks;
    this.heartbeatTicks = o.heartbeatTicks;
    this.quiesceAfterTicks = o.quiesceAfterTicks ?? 0;
    for (const g of o.groups) this.addGroup(g.group, g.voters, g.restore);
  }

  /**
   * Hosts one more group. `voters` is its bootstrap configuration; a replica
   * created to join an existing group passes [] and learns the real one from
   * the leader (the configuration entry or snapshot that added it), so it
   * never campaigns before it is told it may vote.
   */
  addGroup(group: number, voters: number[], restore?: GroupState): void {
    assert(!this.groups.has(group), `group ${group} listed once`);
    const raft = new Raft({
      id: this.member,
      peers: voters,
      rand: this.rand,
      ...(this.electionTicks === undefined
        ? {}
        : {
            electionTicks: this.electionTicks,
            initialElectionTicks: Math.min(this.electionTicks, FIRST_ELECTION_TICKS),
          }),
      ...(this.heartbeatTicks === undefined ? {} : { heartbeatTicks: this.heartbeatTicks }),
      quiesceAfterTicks: this.quiesceAfterTicks,
      ...(restore === undefined ? {} : { restore }),
    });
    const applied = restore?.snapshot?.meta.index ?? 0;
    if (restore?.snapshot) this.sm.restore(group, restore.snapshot);
    this.groups.set(group, { raft, applied, proposals: new Map(), reads: new Map(), gathering: 0, readyReads: [] });
  }

  /** Advances every group's clock by one tick (a quiet group's clock stands still). */
  tick(): void {
    for (const [group, g] of this.groups) {
      g.raft.tick();
      this.abandonReads(group, g);
    }
  }

  /**
   * A replica that stopped leading drops the ReadIndex rounds it had started
   * (the core forgets them): the reads waiting on them are refused with
   * NotLeaderError, so the caller retries at the new leader at once instead
   * of waiting out its deadline. A read is safe to retry. Reads whose round
   * completed (granted, waiting for apply) stay: they are linearizable.
   */
  private abandonReads(group: number, g: Group): void {
    if (g.reads.size === 0 || g.raft.leader === this.member) return;
    const err = new NotLeaderError(group, g.raft.leader, "leadership lost during a read");
    const waiting = [...g.reads.values()];
    g.reads.clear();
    g.gathering = 0;
    for (const w of waiting) w.reject(err);
  }

  /**
   * Wakes every quiet group `member` belongs to or leads: the host calls it
   * when that member may have failed or has come back (src/raft/raft.ts,
   * wake()). Returns how many groups woke.
   */
  wakeWith(member: number): number {
    let n = 0;
    for (const g of this.groups.values()) {
      const r = g.raft;
      if (!r.quiesced) continue;
      if (r.leader === member || r.config.voters.includes(member) || r.config.learners.includes(member)) {
        r.wake();
        n++;
      }
    }
    return n;
  }

  /**
   * The connection to `member` was lost: each group it leads, as this
   * replica knows it, campaigns within a few ticks (src/raft/raft.ts,
   * leaderUnreachable()). Returns how many groups that concerns.
   */
  leaderUnreachable(member: number): number {
    let n = 0;
    for (const g of this.groups.values()) {
      if (g.raft.leader !== member || member === this.member) continue;
      g.raft.leaderUnreachable(member);
      n++;
    }
    return n;
  }

  /** Groups whose clock is stopped (quiescence), for stats. */
  quiescedCount(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.raft.quiesced) n++;
    return n;
  }

  /** Hands messages received from peers to their groups. */
  step(messages: readonly GroupMessage[]): void {
    for (const { group, message } of messages) {
      let g = this.groups.get(group);
      if (g === undefined && message.to === this.member && this.adopt?.(group, message) === true) {
        this.addGroup(group, []);
        g = this.groups.get(group);
      }
      if (g === undefined || message.to !== this.member) {
        this.unknownGroupMessages++;
        continue;
      }
      g.raft.step(message);
    }
  }

  /**
   * Proposes a command to a group. Resolves with the state machine's answer
   * once the command is committed and applied here; rejects with
   * NotLeaderError (at once), ProposalOutcomeUnknownError (a snapshot from
   * the leader covered it before it was applied here) or ProposalDroppedError (its entry lost to
   * another leader's). A proposal may also never resolve when its leader is
   * deposed before replicating it: callers put a deadline on it, and treat a
   * timeout as an unknown outcome.
   */
  propose(
    group: number,
    command: Uint8Array,
    /** Told the entry's index and term (a traced command's timeline names them). */
    onIndex?: (index: number, term: number) => void,
  ): Promise<Uint8Array> {
    const g = this.groups.get(group);
    if (g === undefined) return Promise.reject(new NotLeaderError(group, 0, "partition not hosted here"));
    const r = g.raft.propose(command);
    if (!r.ok) return Promise.reject(new NotLeaderError(group, r.leader, r.reason));
    onIndex?.(r.index, r.term);
    return new Promise((resolve, reject) => g.proposals.set(r.index, { term: r.term, resolve, reject }));
  }

  /**
   * A linearizable read point: resolves once this replica, as leader, has
   * confirmed its leadership with a quorum and applied everything committed
   * before the read began. Then the caller reads its local state.
   */
  readIndex(group: number): Promise<void> {
    const g = this.groups.get(group);
    if (g === undefined) return Promise.reject(new NotLeaderError(group, 0, "partition not hosted here"));
    // A read may share a round only if the round's heartbeats leave after it arrived, and its read
    // point (the commit index when the round began) covers every write answered before it arrived.
    // Both hold until the next process(): heartbeats leave, and writes are answered, only there.
    const open = g.gathering === 0 ? undefined : g.reads.get(g.gathering);
    if (open !== undefined && g.raft.leader === this.member) return open.join();
    const ctx = this.nextReadContext++;
    if (!g.raft.readIndex(ctx)) return Promise.reject(new NotLeaderError(group, g.raft.leader, "not-leader"));
    const batch = new ReadBatch();
    g.reads.set(ctx, batch);
    g.gathering = ctx;
    return batch.join();
  }

  /**
   * Hands a group's leadership to another replica (Raft's leadership
   * transfer: the target is brought up to date, then told to campaign at
   * once). Proposals are refused while it is under way. Returns false when
   * this replica does not lead the group or the transfer cannot start.
   */
  transferLeadership(group: number, to: number, handoff = false): boolean {
    const g = this.groups.get(group);
    if (g === undefined || g.raft.leader !== this.member) return false;
    return g.raft.transferLeadership(to, handoff).ok;
  }

  /**
   * Proposes a membership change (one replica at a time, see
   * src/raft/config.ts). Returns null when proposed, else why not
   * (not the leader, another change pending, ...).
   */
  proposeConfChange(group: number, cc: ConfChange): string | null {
    const g = this.groups.get(group);
    if (g === undefined) return "partition not hosted here";
    const r = g.raft.proposeConfChange(cc);
    return r.ok ? null : `${r.reason}${r.ok === false && r.detail ? `: ${r.detail}` : ""}`;
  }

  /** Who leads a group as far as this replica knows (0: nobody known); no allocation, unlike status(). */
  leader(group: number): number {
    return this.groups.get(group)?.raft.leader ?? 0;
  }

  /** Whether this replica leads the group because leadership was handed to it (not by an election timeout). */
  ledByTransfer(group: number): boolean {
    const r = this.groups.get(group)?.raft;
    return r !== undefined && r.leader === this.member && r.byTransfer;
  }

  /** Who leads a group as far as this replica knows, its term and indexes. */
  status(group: number): GroupStatus {
    const g = this.groups.get(group);
    assert(g !== undefined, `group ${group} is hosted here`);
    return {
      leader: g.raft.leader,
      term: g.raft.term,
      commit: g.raft.log.committed,
      applied: g.applied,
      lastIndex: g.raft.log.lastIndex(),
      isLeader: g.raft.leader === this.member,
      voters: g.raft.config.voters,
      learners: g.raft.config.learners,
    };
  }

  /** The last index in this replica's own log that is on its disk (written and fsynced). */
  stableIndex(group: number): number {
    return this.groups.get(group)?.raft.log.stable ?? 0;
  }

  /** As leader, each follower's progress (empty otherwise): for status and metrics. */
  followers(group: number): FollowerStatus[] {
    const g = this.groups.get(group);
    assert(g !== undefined, `group ${group} is hosted here`);
    return g.raft.followers();
  }

  /** Elections started by this member's replicas, all groups together. */
  campaigns(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.raft.campaigns;
    return n;
  }

  /**
   * Compacts a group's log up to what it has applied: the state machine's
   * snapshot replaces those entries, on disk too. Followers that later need
   * the dropped entries get the snapshot instead (InstallSnapshot). Call it
   * between process() rounds, when a group's log has grown enough.
   */
  async compact(group: number): Promise<number> {
    assert(!this.processing, "compaction runs between rounds");
    const g = this.groups.get(group);
    assert(g !== undefined, `group ${group} is hosted here`);
    const index = g.applied;
    if (index <= g.raft.log.snapshotIndex()) return 0;
    const snap = g.raft.compact(index, this.sm.snapshot(group));
    await this.storage.saveCompaction(group, snap);
    return index;
  }

  /** The index a group's log was last compacted to (0: never). */
  snapshotIndex(group: number): number {
    const g = this.groups.get(group);
    assert(g !== undefined, `group ${group} is hosted here`);
    return g.raft.log.snapshotIndex();
  }

  /** Whether `member` is in the group's configuration (voter or learner), as this replica knows it. */
  inConfig(group: number, member: number): boolean {
    const c = this.groups.get(group)?.raft.config;
    return c !== undefined && (c.voters.includes(member) || c.learners.includes(member));
  }

  hosted(): number[] {
    return [...this.groups.keys()];
  }

  /**
   * Handles every group's pending Ready (see the file comment) and returns
   * the messages to send, by destination member. Rounds never overlap: the
   * caller awaits one before starting the next.
   */
  async process(): Promise<Map<number, GroupMessage[]>> {
    assert(!this.processing, "process() rounds do not overlap");
    this.processing = true;
    try {
      const round: { group: number; g: Group; rd: Ready }[] = [];
      for (const [group, g] of this.groups) {
        g.gathering = 0; // this round sends the gathered reads' heartbeats and answers writes
        if (g.raft.hasReady()) round.push({ group, g, rd: g.raft.ready() });
      }
      const out = new Map<number, GroupMessage[]>();
      if (round.length === 0) return out;
      // A leader's appends and heartbeats leave now, while its own write is in
      // flight (thesis §10.2.1): the commit still waits for a durable majority,
      // since the core counts the leader's own entries only after advance().
      const early = new Set<Group>();
      if (this.sendEarly !== null) {
        const now = new Map<number, GroupMessage[]>();
        for (const { group, g, rd } of round)
          if (canSendBeforePersist(rd, this.persistedHardState.get(group))) {
            early.add(g);
            byPeer(now, group, rd.messages);
          }
        if (now.size > 0) this.sendEarly(now);
      }
      // Committed entries apply now, while this round's write is in flight, not after it: they are
      // durable on a majority already, and the partition maps are memory a restart rebuilds from
      // the log, so nothing here depends on this member's write. Otherwise, under load, every
      // answer would wait for the fsync of the newer entries that share its round (a round has
      // both). A snapshot to install keeps the old order: it replaces the map, then entries apply.
      const appliedEarly = new Set<Group>();
      for (const { group, g, rd } of round) {
        if (rd.snapshot !== null) continue;
        this.applyReady(group, g, rd);
        appliedEarly.add(g);
      }
      const durable = round
        .filter(({ rd }) => rd.snapshot !== null || rd.hardState !== null || rd.entries.length > 0)
        .map(({ group, rd }) => ({ group, snapshot: rd.snapshot, hardState: rd.hardState, entries: rd.entries }));
      if (durable.length > 0) {
        let mustSync = false;
        for (const d of durable) {
          const prev = this.persistedHardState.get(d.group);
          if (d.entries.length > 0 || d.snapshot !== null) mustSync = true;
          else if (
            d.hardState !== null &&
            (prev === undefined || prev.term !== d.hardState.term || prev.vote !== d.hardState.vote)
          )
            mustSync = true;
          if (d.hardState !== null) this.persistedHardState.set(d.group, d.hardState);
        }
        const t0 = performance.now();
        await this.storage.persist(durable, mustSync);
        this.onPersist?.(performance.now() - t0);
      }
      for (const { group, g, rd } of round) {
        if (rd.leader !== 0 && rd.leader !== (this.lastLeader.get(group) ?? 0)) {
          if (this.lastLeader.has(group)) this.leaderChanges.set(group, (this.leaderChanges.get(group) ?? 0) + 1);
          this.lastLeader.set(group, rd.leader);
        }
        if (!early.has(g)) byPeer(out, group, rd.messages);
        if (rd.snapshot !== null) {
          this.snapshotsInstalled++;
          this.sm.restore(group, rd.snapshot);
          g.applied = rd.snapshot.meta.index;
          // Proposals at or below the snapshot are not ours to answer any more.
          for (const [index, w] of g.proposals)
            if (index <= g.applied) {
              g.proposals.delete(index);
              w.reject(new ProposalOutcomeUnknownError(`entry ${index} was covered by a snapshot from the leader`));
            }
        }
        if (!appliedEarly.has(g)) this.applyReady(group, g, rd);
        g.raft.advance(rd);
        this.abandonReads(group, g);
      }
      return out;
    } finally {
      this.processing = false;
    }
  }

  /** Applies a Ready's committed entries, answering their proposals, and releases the reads they allow. */
  private applyReady(group: number, g: Group, rd: Ready): void {
    for (const e of rd.committedEntries) this.applyEntry(group, g, e);
    for (const rs of rd.readStates) {
      const w = g.reads.get(rs.context);
      if (w === undefined) continue;
      g.reads.delete(rs.context);
      g.readyReads.push({ index: rs.index, resolve: w.resolve });
    }
    this.releaseReads(g);
  }

  private applyEntry(group: number, g: Group, e: Entry): void {
    assert(e.index === g.applied + 1, `group ${group} applies ${e.index} right after ${g.applied}`);
    const result = e.type === EntryType.Normal ? this.sm.apply(group, e) : null;
    g.applied = e.index;
    const w = g.proposals.get(e.index);
    if (w === undefined) return;
    g.proposals.delete(e.index);
    if (w.term === e.term && result !== null) w.resolve(result);
    else w.reject(new ProposalDroppedError(`entry ${e.index} was overwritten by term ${e.term}'s leader`));
  }

  private releaseReads(g: Group): void {
    if (g.readyReads.length === 0) return;
    const still: ReadWaiter[] = [];
    for (const r of g.readyReads) r.index <= g.applied ? r.resolve() : still.push(r);
    g.readyReads = still;
  }
}

/** Adds a group's messages to per-destination batches. */
function byPeer(out: Map<number, GroupMessage[]>, group: number, messages: readonly Message[]): void {
  for (const message of messages) {
    let l = out.get(message.to);
    if (l === undefined) out.set(message.to, (l = []));
    l.push({ group, message });
  }
}

/** Storage in memory, with the same overwrite semantics as the WAL: for tests and simulations. */
export class MemoryStorage implements RaftStorage {
  readonly state = new Map<number, GroupState>();
  /** persist() calls: one per round, however many groups took part. */
  rounds = 0;

  async persist(round: GroupPersist[], _mustSync = true): Promise<void> {
    this.rounds++;
    for (const p of round) {
      const s = this.state.get(p.group) ?? { hardState: { term: 0, vote: 0, commit: 0 }, entries: [], snapshot: null };
      if (p.snapshot !== null) {
        // A snapshot received from the leader replaces the whole log, as in the
        // core and the WAL (a SNAPSHOT record with replacesLog): entries kept
        // past it would be the replica's old, possibly conflicting, tail.
        s.snapshot = p.snapshot;
        s.entries = [];
      }
      if (p.entries.length > 0) {
        const first = p.entries[0]!.index;
        s.entries = [...s.entries.filter((e) => e.index < first), ...p.entries];
      }
      if (p.hardState !== null) s.hardState = p.hardState;
      this.state.set(p.group, s);
    }
  }

  async saveCompaction(group: number, snapshot: Snapshot): Promise<void> {
    const s = this.state.get(group);
    assert(s !== undefined, "a group compacts what it persisted");
    s.snapshot = snapshot;
    s.entries = s.entries.filter((e) => e.index > snapshot.meta.index);
  }

  /** What a restarted member would recover for a group. */
  restore(group: number): GroupState | undefined {
    const s = this.state.get(group);
    return s === undefined ? undefined : { hardState: s.hardState, entries: [...s.entries], snapshot: s.snapshot };
  }
}
