/**
 * The Raft consensus core: a pure, deterministic state machine in the manner
 * of etcd's raft package. Inputs: tick(), step(message), propose(data),
 * readIndex(context). Output: ready(), a batch of state to persist, messages
 * to send, entries to apply and reads to serve, acknowledged with advance().
 * No clock, no IO and no randomness of its own: time is ticks, and the
 * randomised election timeout comes from the `rand` the host passes in, so a
 * seed replays any run exactly (src/sim).
 *
 * Implemented: leader election with randomised timeouts; pre-vote (a
 * partitioned replica that comes back cannot depose a healthy leader by
 * bumping terms); check-quorum (a leader that stops hearing from a majority
 * steps down, which is what makes pre-vote safe to rely on); log replication
 * with fast back-off on conflicts; flow control (in-flight appends per
 * follower, bytes per append); the commit rule of §5.4.2 (a leader commits
 * only entries of its own term by counting replicas, after appending an empty
 * entry on election); ReadIndex for linearizable reads; log compaction
 * behind a host's snapshot and InstallSnapshot for followers that fell behind
 * it; leadership transfer (TimeoutNow); membership change one replica at a
 * time, with learners (src/raft/config.ts).
 */
import { assert } from "../assert.js";
import {
  type ConfChange,
  type Config,
  changeConfig,
  encodeConfig,
  isVoter,
  members,
  quorum,
  sameConfig,
} from "./config.js";
import { RaftLog } from "./log.js";
import { type Message, MessageType, message, type ReadState, type Ready, Role } from "./messages.js";
import { Progress, ProgressState } from "./progress.js";
import { type Entry, EntryType, type HardState, type ReplicaId, type Snapshot, type SnapshotMeta } from "./types.js";

export const DEFAULT_ELECTION_TICKS = 10;
export const DEFAULT_HEARTBEAT_TICKS = 1;
/**
 * After leaderUnreachable(), a follower campaigns within 1 to this many ticks (random, so that the
 * group's other followers, told the same, rarely split the vote).
 */
export const UNREACHABLE_CAMPAIGN_SPREAD_TICKS = 5;
/** Appends in flight to one follower before the leader waits for acknowledgements. */
export const DEFAULT_MAX_INFLIGHT = 64;
/** Bytes of entry data per append message (at least one entry is always sent). */
export const DEFAULT_MAX_APPEND_BYTES = 1024 * 1024;
/** Bytes of committed entries handed to the host per Ready. */
export const DEFAULT_MAX_APPLY_BYTES = 4 * 1024 * 1024;

export interface RaftConfig {
  id: ReplicaId;
  /**
   * The bootstrap voters, this replica included. Ignored when restoring from
   * a snapshot (it carries the configuration) and overridden by any
   * ConfChange entry in the log. A replica joining an existing group passes
   * [] and learns the members from the leader.
   */
  peers: ReplicaId[];
  /** A uniform random number in [0, 1): the only source of randomness. */
  rand: () => number;
  electionTicks?: number;
  /**
   * The election timeout (randomised up to twice it) until this replica has
   * heard from a leader since it started: no leader's lease to wait out yet,
   * so a new group, or a whole cluster started at once, elects its first
   * leaders as fast as this allows (decision 0110). Default: electionTicks.
   */
  initialElectionTicks?: number;
  heartbeatTicks?: number;
  maxInflight?: number;
  maxAppendBytes?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /**
   * Quiescence: a leader whose group has been idle this many ticks, with
   * every replica holding the whole log, goes quiet (0: never). See
   * "Quiescence" at wake().
   */
  quiesceAfterTicks?: number;
  /** Durable state to restart from: the newest snapshot (if any), the hard state and the entries after it. */
  restore?: { hardState: HardState; entries: Entry[]; snapshot?: Snapshot | null };
  /**
   * TEST ONLY. Plants the bug of Figure 8 in the Raft paper: a leader
   * commits entries of earlier terms by counting replicas. It also skips the
   * empty entry a new leader appends, since that entry would commit the old
   * ones legitimately at once and hide the bug. Exists so the simulator can
   * show it catches it (test/sim). Never set it anywhere else.
   */
  unsafeCommitPreviousTermByCount?: boolean;
  /**
   * TEST ONLY. Plants a second known bug: votes are granted without the
   * "candidate's log is at least as up to date" check of §5.4.1, so a
   * replica missing committed entries can become leader.
   */
  unsafeVoteIgnoringLog?: boolean;
  /**
   * TEST ONLY. Plants a third: membership changes are accepted at any time,
   * without waiting for the previous one to commit or for an entry of the
   * leader's term to commit, so two changes can be in flight at once and the
   * old and new majorities need not overlap.
   */
  unsafeConfChangeUnguarded?: boolean;
}

/**
 * Why a proposal was refused: not the leader (`leader` is a hint, 0 when
 * unknown); a leadership transfer is under way (proposals would be lost with
 * the old leader's term); a membership change is still uncommitted, or the
 * leader has not yet committed an entry of its term (both required for
 * one-at-a-time changes to be safe); or the change itself is invalid.
 */
export type RefusalReason = "not-leader" | "transferring" | "conf-change-pending" | "not-ready" | "invalid";

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; leader: ReplicaId; reason: RefusalReason; detail?: string };

/** A leader's view of one follower (see Raft.followers()). */
export interface FollowerStatus {
  id: ReplicaId;
  /** Highest index known to be in its log. */
  match: number;
  /** probe: finding where logs match; replicate: pipelining appends; snapshot: a snapshot is on its way. */
  state: "probe" | "replicate" | "snapshot";
  /** Heard from since the leader's last check-quorum round (about one election timeout). */
  recentActive: boolean;
  learner: boolean;
}

interface PendingRead {
  context: number;
  index: number;
  acks: Set<ReplicaId>;
}

export class Raft {
  readonly id: ReplicaId;
  term = 0;
  vote: ReplicaId = 0;
  leader: ReplicaId = 0;
  role: Role = Role.Follower;
  readonly log: RaftLog;

  private readonly rand: () => number;
  private readonly electionTicks: number;
  private readonly initialElectionTicks: number;
  /** Heard from a leader (or led) since this replica started: the long election timeout applies. */
  private leaderSeen = false;
  private readonly heartbeatTicks: number;
  private readonly maxInflight: number;
  private readonly maxAppendBytes: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly unsafeCommit: boolean;
  private readonly unsafeVote: boolean;
  private readonly unsafeConf: boolean;

  /** The configuration in force: always log.config() (see config.ts), cached. */
  config: Config;
  /** The newest snapshot of this replica's state machine, which a leader sends to followers it compacted past. */
  private snapshot: Snapshot | null;
  /** A snapshot received from the leader and not yet installed by the host. */
  private pendingSnapshot: Snapshot | null = null;
  /** A leadership transfer in progress: the replica that should take over (0: none). */
  leadTransferee: ReplicaId = 0;
  /** The transfer in progress is a stopping leader's hand-off (Message.handoff), not a placement. */
  private transferIsHandoff = false;

  /** Elections this replica started (became a candidate; pre-votes that went nowhere do not count). */
  campaigns = 0;
  /**
   * Whether this replica's leadership (or current candidacy) came from a
   * leadership transfer (TimeoutNow) rather than an election timeout. A host
   * uses it to tell deliberate placements, which it keeps, from the drift
   * failures cause, which it may undo (src/cluster/group-host.ts, rebalance).
   */
  byTransfer = false;

  /** Ticks since start: a leader's yardstick for a follower that stopped making progress. */
  private ticks = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private readonly quiesceAfterTicks: number;
  /** Quiet (quiescent): the clock is stopped until wake() or a message other than a quiet heartbeat. */
  private quiet = false;
  /** Leader ticks in a row on which the group could have gone quiet. */
  private idleTicks = 0;
  private randomizedElectionTicks = 0;
  private votes = new Map<ReplicaId, boolean>();
  private progress = new Map<ReplicaId, Progress>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private pendingReads: PendingRead[] = [];
  private prevHardState: HardState;

  constructor(c: RaftConfig) {
    assert(c.id > 0, "replica ids are positive");
    this.id = c.id;
    this.rand = c.rand;
    this.electionTicks = c.electionTicks ?? DEFAULT_ELECTION_TICKS;
    this.initialElectionTicks = c.initialElectionTicks ?? this.electionTicks;
    this.heartbeatTicks = c.heartbeatTicks ?? DEFAULT_HEARTBEAT_TICKS;
    this.maxInflight = c.maxInflight ?? DEFAULT_MAX_INFLIGHT;
    this.maxAppendBytes = c.maxAppendBytes ?? DEFAULT_MAX_APPEND_BYTES;
    this.preVote = c.preVote ?? true;
    this.checkQuorum = c.checkQuorum ?? true;
    this.quiesceAfterTicks = c.quiesceAfterTicks ?? 0;
    this.unsafeCommit = c.unsafeCommitPreviousTermByCount ?? false;
    this.unsafeVote = c.unsafeVoteIgnoringLog ?? false;
    this.unsafeConf = c.unsafeConfChangeUnguarded ?? false;
    assert(this.heartbeatTicks < this.electionTicks, "heartbeats come more often than elections");
    assert(
      this.heartbeatTicks < this.initialElectionTicks && this.initialElectionTicks <= this.electionTicks,
      "the first election timeout is between the heartbeat and the election timeout",
    );
    const hs = c.restore?.hardState ?? { term: 0, vote: 0, commit: 0 };
    this.snapshot = c.restore?.snapshot ?? null;
    const base: SnapshotMeta = this.snapshot?.meta ?? {
      index: 0,
      term: 0,
      voters: [...c.peers].sort((a, b) => a - b),
      learners: [],
    };
    this.log = new RaftLog(base, c.restore?.entries ?? [], hs.commit);
    this.config = this.log.config();
    this.term = hs.term;
    this.vote = hs.vote;
    this.prevHardState = hs;
    this.becomeFollower(this.term, 0);
  }

  private get quorum(): number {
    return quorum(this.config.voters.length);
  }

  // ---- inputs --------------------------------------------------------

  /** One unit of logical time. A quiet group's clock is stopped. */
  tick(): void {
    if (this.quiet) return;
    this.ticks++;
    if (this.role === Role.Leader) {
      this.heartbeatElapsed++;
      this.electionElapsed++;
      if (!isVoter(this.config, this.id) && this.log.committed >= this.log.lastConfIndex()) {
        // The configuration that removed us is committed (and was broadcast
        // last tick): hand over by stepping down; the others elect a leader.
        this.becomeFollower(this.term, 0);
        return;
      }
      if (this.electionElapsed >= this.electionTicks) {
        this.electionElapsed = 0;
        this.leadTransferee = 0; // a transfer that did not finish within an election timeout is abandoned
        if (this.checkQuorum && !this.quorumActive()) {
          this.becomeFollower(this.term, 0);
          return;
        }
      }
      if (this.quiesceAfterTicks > 0 && this.maybeQuiesce()) return;
      if (this.heartbeatElapsed >= this.heartbeatTicks) {
        this.heartbeatElapsed = 0;
        this.broadcastHeartbeat(0);
      }
      return;
    }
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      this.campaign();
    }
  }

  /**
   * Quiescence (CockroachDB's name; TiKV calls it hibernation). An idle group
   * still costs its leader a heartbeat per follower every heartbeatTicks, and
   * every replica a tick: with many groups per member that is most of an
   * idle cluster's work. So once a leader has seen quiesceAfterTicks ticks in
   * a row with nothing to do (everything committed and durable, every
   * replica's log complete and recently answered, no read, transfer or
   * membership change pending), it sends each follower a last heartbeat
   * marked `quiesce` and stops its clock; a follower that holds everything
   * that heartbeat commits stops its clock too. No heartbeats, no election
   * timers, no work.
   *
   * Safety does not depend on clocks (they only decide when to campaign), so
   * a quiet group is as safe as any. Liveness does: a quiet follower would
   * never notice its leader's death. The group wakes on any message but a
   * quiet heartbeat and its answer (a proposal, a read, a vote request from a
   * replica that was not told to be quiet), and the host must wake it when a
   * member it shares the group with may be gone: the node tracks member
   * liveness with one cheap ping per peer (src/cluster/liveness.ts), so the
   * cost of failure detection is per member, not per group. Woken, a
   * follower waits a whole election timeout for its leader before it
   * campaigns, as after any heartbeat.
   */
  wake(): void {
    this.quiet = false;
    this.idleTicks = 0;
  }

  /**
   * The host lost its connection to replica `id`: its process ended (the
   * kernel closed its sockets), or the network between us failed. If `id`
   * leads the group as far as this follower knows, it stops counting on it
   * (decision 0110): it forgets the leader, so the leader's lease no longer
   * makes it refuse votes, and campaigns within a few ticks instead of
   * waiting out an election timeout. The timeout stays long enough to ride
   * out a slow but living leader (a stalled event loop keeps its connections
   * open); a dead one is noticed at once. Nothing here is a safety matter:
   * the campaign is an ordinary (pre-)vote, and a leader that is in fact
   * alive is heard again with its next heartbeat.
   */
  leaderUnreachable(id: ReplicaId): void {
    if (this.role !== Role.Follower || this.leader !== id) return;
    this.wake();
    this.leader = 0;
    const wait = 1 + Math.floor(this.rand() * UNREACHABLE_CAMPAIGN_SPREAD_TICKS);
    this.electionElapsed = Math.max(this.electionElapsed, this.randomizedElectionTicks - wait);
  }

  /** Whether the group is quiet (see wake()). */
  get quiesced(): boolean {
    return this.quiet;
  }

  /** As leader, each tick: counts idle ticks and goes quiet after quiesceAfterTicks of them. */
  private maybeQuiesce(): boolean {
    if (!this.canQuiesce()) {
      this.idleTicks = 0;
      return false;
    }
    if (++this.idleTicks < this.quiesceAfterTicks) return false;
    // Every follower holds the whole log, so each heartbeat carries the full commit index.
    this.broadcastHeartbeat(0, true);
    this.quiet = true;
    this.idleTicks = 0;
    return true;
  }

  private canQuiesce(): boolean {
    const last = this.log.lastIndex();
    if (this.leadTransferee !== 0 || this.pendingReads.length > 0) return false;
    if (this.log.committed !== last || this.log.stable < last) return false;
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      if (pr.match !== last || this.ticks - pr.heardTick > this.heartbeatTicks + 1) return false;
    }
    return true;
  }

  /** Proposes a command. Only a leader accepts; others say who leads (0: unknown). */
  propose(data: Uint8Array): ProposeResult {
    this.wake();
    const refused = this.refuseProposal();
    if (refused !== null) return refused;
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ index, term: this.term, type: EntryType.Normal, data }]);
    this.broadcastAppend();
    return { ok: true, index, term: this.term };
  }

  private refuseProposal(): ProposeResult | null {
    if (this.role !== Role.Leader) return { ok: false, leader: this.leader, reason: "not-leader" };
    if (this.leadTransferee !== 0) return { ok: false, leader: this.id, reason: "transferring" };
    return null;
  }

  /**
   * Proposes a membership change (one replica at a time). Refused while
   * another change is uncommitted, and until the leader has committed an
   * entry of its own term: without that rule, one-at-a-time changes are
   * unsafe across leader changes (Ongaro, raft-dev, 2015: a new leader may
   * not yet know about a change a previous leader half-made).
   */
  proposeConfChange(cc: ConfChange): ProposeResult {
    this.wake();
    const refused = this.refuseProposal();
    if (refused !== null) return refused;
    if (this.log.lastConfIndex() > this.log.committed && !this.unsafeConf)
      return { ok: false, leader: this.id, reason: "conf-change-pending" };
    if (this.log.term(this.log.committed) !== this.term && !this.unsafeConf)
      return { ok: false, leader: this.id, reason: "not-ready" };
    const next = changeConfig(this.config, cc);
    if (typeof next === "string") return { ok: false, leader: this.id, reason: "invalid", detail: next };
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ index, term: this.term, type: EntryType.ConfChange, data: encodeConfig(next) }]);
    this.broadcastAppend();
    return { ok: true, index, term: this.term };
  }

  /**
   * Hands leadership to `to` (a voter): the leader stops accepting
   * proposals, brings `to` up to date, then tells it to campaign at once
   * (TimeoutNow). The transferee's votes carry a flag that lets them through
   * the other replicas' leader lease. Abandoned after an election timeout.
   */
  transferLeadership(to: ReplicaId, handoff = false): ProposeResult {
    this.wake();
    if (this.role !== Role.Leader) return { ok: false, leader: this.leader, reason: "not-leader" };
    if (to === this.id) return { ok: true, index: this.log.lastIndex(), term: this.term };
    if (!isVoter(this.config, to))
      return { ok: false, leader: this.id, reason: "invalid", detail: `replica ${to} is not a voter` };
    this.leadTransferee = to;
    this.transferIsHandoff = handoff;
    this.electionElapsed = 0;
    const pr = this.progress.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
    return { ok: true, index: this.log.lastIndex(), term: this.term };
  }

  /**
   * The host has a snapshot of its state machine as of `index` (applied):
   * the log before it can go. The host persists the returned snapshot
   * (before deleting log segments it covers) and keeps a few entries past
   * what it compacts if slow followers should catch up from the log.
   */
  compact(index: number, data: Uint8Array): Snapshot {
    assert(index <= this.log.applied, "a snapshot covers applied entries only");
    if (index <= this.log.snapshotIndex() && this.snapshot !== null) return this.snapshot;
    const c = this.log.configAt(index);
    const meta: SnapshotMeta = { index, term: this.log.term(index), voters: c.voters, learners: c.learners };
    this.snapshot = { meta, data };
    this.log.compact(index);
    return this.snapshot;
  }

  /**
   * Asks for a linearizable read point. On a leader: once a heartbeat round
   * shows it still leads, a ReadState {index: commit at the time, context}
   * comes out of ready(). Returns false when this replica cannot serve it
   * (not the leader, or no entry of its term committed yet); the host retries
   * or forwards.
   */
  readIndex(context: number): boolean {
    assert(context !== 0, "read contexts are non-zero");
    this.wake();
    if (this.role !== Role.Leader) return false;
    // Until an entry of its own term commits, a new leader's commit index may lag the true one.
    if (this.log.term(this.log.committed) !== this.term) return false;
    if (this.config.voters.length === 1 && isVoter(this.config, this.id)) {
      this.readStates.push({ index: this.log.committed, context });
      return true;
    }
    this.pendingReads.push({ context, index: this.log.committed, acks: new Set([this.id]) });
    this.broadcastHeartbeat(context);
    return true;
  }

  /** Starts an election now (a host's manual trigger). Learners and removed replicas never campaign. */
  campaign(): void {
    this.wake();
    if (this.role === Role.Leader || !isVoter(this.config, this.id)) return;
    if (this.preVote) this.becomePreCandidate();
    else this.becomeCandidate();
  }

  step(m: Message): void {
    assert(m.to === this.id, "messages are delivered to their addressee");
    // Anything but a quiet heartbeat (and its answer) wakes a quiet group.
    if (this.quiet && m.type !== MessageType.HeartbeatResp && !(m.type === MessageType.Heartbeat && m.quiesce))
      this.wake();
    if (m.type === MessageType.Hup) return this.campaign();
    if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        // A replica that has heard from a live leader within an election
        // timeout ignores candidates: a partitioned replica rejoining with
        // a higher term cannot disrupt a healthy leader.
        // A leadership transfer's campaign is the one exception: the
        // leader itself asked for it.
        const inLease = this.checkQuorum && this.leader !== 0 && this.electionElapsed < this.electionTicks;
        if (inLease && !m.transfer) return;
      }
      if (m.type === MessageType.PreVote) {
        // Pre-votes never change terms.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the future term; ours changes when we campaign.
      } else {
        const fromLeader =
          m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap;
        this.becomeFollower(m.term, fromLeader ? m.from : 0);
      }
    } else if (m.term < this.term) {
      const fromLeader = m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap;
      if ((this.checkQuorum || this.preVote) && fromLeader) {
        // A deposed leader still sending: tell it the new term so it steps down.
        this.send(message({ type: MessageType.AppResp, to: m.from, from: this.id, term: this.term }));
      } else if (m.type === MessageType.PreVote) {
        this.send(message({ type: MessageType.PreVoteResp, to: m.from, from: this.id, term: this.term, reject: true }));
      }
      return;
    }

    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote: {
        const canVote =
          this.vote === m.from ||
          (this.vote === 0 && this.leader === 0) ||
          (m.type === MessageType.PreVote && m.term > this.term);
        const grant = canVote && (this.unsafeVote || this.log.isUpToDate(m.index, m.logTerm));
        const respType = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
        // A granted pre-vote answers at the candidate's proposed term; a refusal at ours.
        this.send(
          message({ type: respType, to: m.from, from: this.id, term: grant ? m.term : this.term, reject: !grant }),
        );
        if (grant && m.type === MessageType.Vote) {
          assert(this.vote === 0 || this.vote === m.from, "a replica votes at most once per term");
          this.electionElapsed = 0;
          this.vote = m.from;
        }
        return;
      }
      default:
        if (this.role === Role.Leader) return this.stepLeader(m);
        if (this.role === Role.Follower) return this.stepFollower(m);
        return this.stepCandidate(m);
    }
  }

  // ---- output --------------------------------------------------------

  /**
   * What this replica, as leader, knows of every other replica's log: for
   * status and metrics only (a follower's lag is lastIndex - match). Empty
   * when not the leader.
   */
  followers(): FollowerStatus[] {
    if (this.role !== Role.Leader) return [];
    const out: FollowerStatus[] = [];
    for (const pr of this.progress.values()) {
      if (pr.id === this.id) continue;
      out.push({
        id: pr.id,
        match: pr.match,
        state:
          pr.state === ProgressState.Replicate ? "replicate" : pr.state === ProgressState.Probe ? "probe" : "snapshot",
        recentActive: pr.recentActive,
        learner: !isVoter(this.config, pr.id),
      });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    const hs = this.hardState();
    const p = this.prevHardState;
    return (
      this.pendingSnapshot !== null ||
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.hasUnstable() ||
      this.log.hasNextCommitted() ||
      hs.term !== p.term ||
      hs.vote !== p.vote ||
      hs.commit !== p.commit
    );
  }

  /**
   * What the host must do now. The Ready owns its messages and read states:
   * the core starts new lists, so whatever a step() adds while the host is
   * still persisting this Ready (a host that awaits its disk keeps receiving)
   * waits for the next one. Without that, an acknowledgement of entries
   * appended during the write would ride out with this Ready, before those
   * entries are durable.
   */
  ready(): Ready {
    const hs = this.hardState();
    const p = this.prevHardState;
    const changed = hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit;
    const rd: Ready = {
      snapshot: this.pendingSnapshot,
      hardState: changed ? hs : null,
      entries: this.log.unstableEntries(),
      committedEntries: this.log.nextCommitted(DEFAULT_MAX_APPLY_BYTES),
      messages: this.msgs,
      readStates: this.readStates,
      leader: this.leader,
      role: this.role,
    };
    this.msgs = [];
    this.readStates = [];
    return rd;
  }

  /** The host handled `rd` (persisted, sent, applied, in that order). */
  advance(rd: Ready): void {
    if (rd.snapshot !== null) {
      this.log.snapshotApplied(rd.snapshot.meta.index);
      if (this.pendingSnapshot === rd.snapshot) this.pendingSnapshot = null;
    }
    if (rd.hardState !== null) this.prevHardState = rd.hardState;
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      // Only if that entry is still ours (not replaced since ready()).
      if (this.log.term(last.index) === last.term) this.log.stableTo(last.index);
    }
    if (rd.committedEntries.length > 0) this.log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1]!.index);
    // A leader's own entries, now durable, count toward a commit (a group of
    // one commits here). After the message queue is reset: what this sends
    // belongs to the next Ready.
    const self = this.role === Role.Leader ? this.progress.get(this.id) : undefined;
    if (self !== undefined && this.log.stable > self.match) {
      self.match = this.log.stable;
      if (this.maybeCommit()) this.broadcastAppend();
    }
  }

  // ---- roles ---------------------------------------------------------

  private resetTimers(): void {
    this.wake(); // a new role starts awake
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizeElectionTimeout();
  }

  /** Randomised in [timeout, 2 * timeout): split votes become unlikely. */
  private randomizeElectionTimeout(): void {
    const timeout = this.leaderSeen ? this.electionTicks : this.initialElectionTicks;
    this.randomizedElectionTicks = timeout + Math.floor(this.rand() * timeout);
  }

  /**
   * A message from the leader: its silence so far is over, and it is known.
   * The first leader heard since this replica started makes the long
   * election timeout apply from now on.
   */
  private heardLeader(from: ReplicaId): void {
    this.electionElapsed = 0;
    this.leader = from;
    if (this.leaderSeen) return;
    this.leaderSeen = true;
    if (this.initialElectionTicks !== this.electionTicks) this.randomizeElectionTimeout();
  }

  private setTerm(term: number): void {
    assert(term >= this.term, "the term never goes backwards");
    if (term > this.term) {
      this.term = term;
      this.vote = 0;
    }
  }

  private becomeFollower(term: number, leader: ReplicaId): void {
    this.setTerm(term);
    this.role = Role.Follower;
    this.leader = leader;
    this.pendingReads = [];
    this.leadTransferee = 0;
    this.resetTimers();
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, "a leader does not pre-campaign");
    this.role = Role.PreCandidate;
    this.leader = 0;
    this.votes = new Map();
    this.resetTimers();
    this.votes.set(this.id, true);
    if (this.tally() >= this.quorum) return this.becomeCandidate();
    this.requestVotes(MessageType.PreVote, this.term + 1);
  }

  /** Asks every other voter for a (pre-)vote in `term`, presenting our last entry. */
  private requestVotes(type: MessageType, term: number, transfer = false): void {
    for (const p of this.config.voters) {
      if (p === this.id) continue;
      const last = this.log.lastIndex();
      this.send(message({ type, to: p, from: this.id, term, index: last, logTerm: this.log.lastTerm(), transfer }));
    }
  }

  private becomeCandidate(transfer = false, deliberate = transfer): void {
    this.setTerm(this.term + 1);
    this.campaigns++;
    this.byTransfer = deliberate;
    this.vote = this.id;
    this.role = Role.Candidate;
    this.leader = 0;
    this.votes = new Map([[this.id, true]]);
    this.resetTimers();
    if (this.tally() >= this.quorum) return this.becomeLeader();
    this.requestVotes(MessageType.Vote, this.term, transfer);
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, "only a candidate becomes leader");
    this.role = Role.Leader;
    this.leader = this.id;
    this.leaderSeen = true;
    this.resetTimers();
    this.leadTransferee = 0;
    this.progress = new Map();
    for (const p of members(this.config)) this.progress.set(p, new Progress(p, this.log.lastIndex() + 1, this.ticks));
    // Our own log counts toward a commit only as far as it is durable (see advance()).
    this.progress.get(this.id)!.match = this.log.stable;
    // An empty entry of the new term: committing it commits everything before (§5.4.2).
    if (!this.unsafeCommit)
      this.appendEntries([{ index: this.log.lastIndex() + 1, term: this.term, type: EntryType.Noop, data: EMPTY }]);
    this.broadcastAppend();
  }

  /** Granted votes, counting voters of the current configuration only. */
  private tally(): number {
    let granted = 0;
    for (const [id, v] of this.votes) if (v && isVoter(this.config, id)) granted++;
    return granted;
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
      // Someone won this term.
      this.becomeFollower(m.term, m.from);
      return this.stepFollower(m);
    }
    if (m.type !== myResp || !isVoter(this.config, m.from)) return;
    this.votes.set(m.from, !m.reject);
    const granted = this.tally();
    const rejected = this.votes.size - granted;
    if (granted >= this.quorum) {
      if (this.role === Role.PreCandidate) this.becomeCandidate();
      else this.becomeLeader();
    } else if (rejected >= this.quorum) {
      this.becomeFollower(this.term, 0);
    }
  }

  private stepFollower(m: Message): void {
    if (m.type === MessageType.App) {
      this.heardLeader(m.from);
      return this.handleAppend(m);
    }
    if (m.type === MessageType.Heartbeat) {
      this.heardLeader(m.from);
      this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
      this.send(
        message({ type: MessageType.HeartbeatResp, to: m.from, from: this.id, term: this.term, context: m.context }),
      );
      // The leader goes quiet: so do we, if we hold everything it has committed.
      if (m.quiesce && this.log.committed === m.commit) this.quiet = true;
      return;
    }
    if (m.type === MessageType.Snap) {
      this.heardLeader(m.from);
      return this.handleSnapshot(m);
    }
    if (m.type === MessageType.TimeoutNow && m.from === this.leader && isVoter(this.config, this.id)) {
      // Leadership transfer: campaign now, skipping pre-vote (the leader is
      // not partitioned away; it asked) with votes that pass leases. A stopping
      // leader's hand-off is not a placement: the leadership it gives counts as
      // drift, which the host may undo when the old leader returns.
      this.becomeCandidate(true, !m.handoff);
    }
  }

  /** InstallSnapshot: the leader compacted past our log. */
  private handleSnapshot(m: Message): void {
    const snap = m.snapshot!;
    const meta = snap.meta;
    let index = meta.index;
    if (meta.index <= this.log.committed) {
      index = this.log.committed; // old news
    } else if (this.log.matchTerm(meta.index, meta.term)) {
      // We hold the snapshot's last entry, so (log matching) everything
      // before it: no need to replace anything, just commit.
      this.log.commitTo(meta.index);
    } else {
      this.log.restore(meta);
      this.snapshot = snap;
      this.pendingSnapshot = snap;
      this.syncConfig();
    }
    this.send(message({ type: MessageType.AppResp, to: m.from, from: this.id, term: this.term, index }));
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      // Old news: tell the leader how far we are committed.
      this.send(
        message({ type: MessageType.AppResp, to: m.from, from: this.id, term: this.term, index: this.log.committed }),
      );
      return;
    }
    const last = this.log.maybeAppend(m.index, m.logTerm, m.entries);
    this.syncConfig(); // a ConfChange may have arrived, or been truncated away
    if (last >= 0) {
      this.log.commitTo(Math.min(m.commit, last));
      this.send(message({ type: MessageType.AppResp, to: m.from, from: this.id, term: this.term, index: last }));
      return;
    }
    // Fast back-off: point the leader at the last index whose term could match.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send(
      message({
        type: MessageType.AppResp,
        to: m.from,
        from: this.id,
        term: this.term,
        index: m.index,
        reject: true,
        rejectHint: hint,
        logTerm: this.log.term(hint),
      }),
    );
  }

  private stepLeader(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.heardTick = this.ticks;
    if (m.type === MessageType.AppResp) {
      if (m.reject) {
        // A rejection while a snapshot is in flight is a stale answer to an older append.
        if (pr.state === ProgressState.Snapshot) return;
        // So is one that answers anything but the append we now wait on (etcd's MaybeDecrTo): in
        // Replicate, one at or below what the follower already acknowledged; in Probe, one of an
        // append other than the last probe. Once an append of a pipelined window is rejected, the
        // window's later appends are rejected too; acting on each would probe and resend again
        // for every one of them (decision 0109).
        if (pr.state === ProgressState.Replicate ? m.index <= pr.match : m.index !== pr.next - 1) return;
        let probe = m.rejectHint;
        if (m.logTerm > 0) probe = this.log.findConflictByTerm(m.rejectHint, m.logTerm);
        pr.becomeProbe(this.ticks);
        pr.next = Math.max(Math.min(m.index, probe + 1), pr.match + 1);
        this.sendAppend(m.from);
        return;
      }
      pr.inflight = Math.max(0, pr.inflight - 1);
      const moved = pr.acknowledge(m.index, this.ticks);
      if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) pr.becomeProbe(this.ticks);
      if (moved && pr.state === ProgressState.Probe) pr.becomeReplicate(this.ticks);
      if (moved && this.maybeCommit()) this.broadcastAppend();
      if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
      if (pr.next <= this.log.lastIndex()) this.sendAppend(m.from);
      return;
    }
    if (m.type === MessageType.HeartbeatResp) {
      if (pr.match < this.log.lastIndex()) {
        // The follower is alive but behind. An append may have been lost:
        if (pr.state === ProgressState.Probe) {
          // one probe per heartbeat round, the last one may be gone;
          pr.inflight = 0;
        } else if (this.ticks - pr.sinceTick >= this.electionTicks) {
          // stuck for an election timeout (the snapshot, or a full window
          // of appends, lost): find the match point again;
          pr.becomeProbe(this.ticks);
        }
        // in Replicate state this sends the next append, even empty: a
        // follower missing what came before rejects it, which sends us back
        // to probing (etcd does the same).
        this.sendAppend(m.from);
      }
      if (m.context !== 0) this.ackRead(m.context, m.from);
    }
  }

  private ackRead(context: number, from: ReplicaId): void {
    const i = this.pendingReads.findIndex((r) => r.context === context);
    if (i < 0) return;
    const acks = this.pendingReads[i]!.acks;
    acks.add(from);
    let voters = 0;
    for (const a of acks) if (isVoter(this.config, a)) voters++;
    if (voters < this.quorum) return;
    // Reads are released in order: an acknowledged round confirms the ones before it too.
    for (const r of this.pendingReads.splice(0, i + 1)) this.readStates.push({ index: r.index, context: r.context });
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const [id, pr] of this.progress) {
      if (isVoter(this.config, id) && (id === this.id || pr.recentActive)) active++;
      pr.recentActive = false;
    }
    return active >= this.quorum;
  }

  // ---- replication ---------------------------------------------------

  /**
   * A leader appends to its own log. Its own progress does not move yet:
   * the entries count toward a commit once the host has persisted them
   * (advance()), so the host may send them to followers while its own write
   * is in flight (Raft thesis §10.2.1; see canSendBeforePersist).
   */
  private appendEntries(entries: Entry[]): void {
    this.log.append(entries);
    const self = this.progress.get(this.id);
    if (self !== undefined) self.next = this.log.lastIndex() + 1;
    this.syncConfig();
  }

  /**
   * Keeps `config` equal to the log's configuration, after anything that
   * changed the log; a leader starts or stops tracking replicas.
   */
  private syncConfig(): void {
    const c = this.log.config();
    if (sameConfig(c, this.config)) return;
    this.config = c;
    if (this.role !== Role.Leader) return;
    const all = members(c);
    for (const id of all)
      if (!this.progress.has(id)) this.progress.set(id, new Progress(id, this.log.lastIndex() + 1, this.ticks));
    for (const id of [...this.progress.keys()]) if (id !== this.id && !all.includes(id)) this.progress.delete(id);
    if (this.leadTransferee !== 0 && !isVoter(c, this.leadTransferee)) this.leadTransferee = 0;
  }

  /** Advances the commit index to what a majority of voters holds (entries of this term only, §5.4.2). */
  private maybeCommit(): boolean {
    if (this.role !== Role.Leader) return false;
    const matches = this.config.voters.map((v) => this.progress.get(v)?.match ?? 0).sort((a, b) => b - a);
    const n = matches[this.quorum - 1]!;
    if (n <= this.log.committed) return false;
    if (!this.unsafeCommit && this.log.term(n) !== this.term) return false;
    this.log.commitTo(n);
    return true;
  }

  private sendAppend(to: ReplicaId): void {
    const pr = this.progress.get(to)!;
    if (pr.paused(this.maxInflight)) return;
    const prev = pr.next - 1;
    if (prev < this.log.snapshotIndex()) return this.sendSnapshot(to, pr);
    // A probe carries one entry at most: it may be rejected, and while unanswered it goes again with
    // every heartbeat answer; once one is accepted, Replicate streams the rest (decision 0109).
    const hi = pr.state === ProgressState.Probe ? pr.next : this.log.lastIndex();
    const entries = this.log.slice(pr.next, hi, this.maxAppendBytes);
    this.send(
      message({
        type: MessageType.App,
        to,
        from: this.id,
        term: this.term,
        index: prev,
        logTerm: this.log.term(prev),
        entries,
        commit: this.log.committed,
      }),
    );
    if (entries.length > 0 && pr.state === ProgressState.Replicate) pr.next = entries[entries.length - 1]!.index + 1;
    pr.inflight++;
  }

  private sendSnapshot(to: ReplicaId, pr: Progress): void {
    const snap = this.snapshot;
    assert(snap !== null && snap.meta.index === this.log.snapshotIndex(), "a compacted log has its snapshot");
    this.send(message({ type: MessageType.Snap, to, from: this.id, term: this.term, snapshot: snap }));
    pr.becomeSnapshot(snap.meta.index, this.ticks);
  }

  private sendTimeoutNow(to: ReplicaId): void {
    this.send(
      message({ type: MessageType.TimeoutNow, to, from: this.id, term: this.term, handoff: this.transferIsHandoff }),
    );
  }

  private broadcastAppend(): void {
    for (const p of this.progress.keys()) if (p !== this.id) this.sendAppend(p);
  }

  private broadcastHeartbeat(context: number, quiesce = false): void {
    for (const [p, pr] of this.progress) {
      if (p === this.id) continue;
      this.send(
        message({
          type: MessageType.Heartbeat,
          to: p,
          from: this.id,
          term: this.term,
          commit: Math.min(pr.match, this.log.committed),
          context,
          quiesce,
        }),
      );
    }
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }
}

const EMPTY = new Uint8Array(0);
