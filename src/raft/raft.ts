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
 * entry on election); ReadIndex for linearizable reads.
 * Not yet: snapshots and InstallSnapshot, leadership transfer, membership
 * change (docs/raft.md lists them as the next steps).
 */
import { assert } from "../assert.js";
import { RaftLog } from "./log.js";
import { type Message, MessageType, message, type ReadState, type Ready, Role } from "./messages.js";
import { type Entry, EntryType, type HardState, type ReplicaId } from "./types.js";

export const DEFAULT_ELECTION_TICKS = 10;
export const DEFAULT_HEARTBEAT_TICKS = 1;
/** Appends in flight to one follower before the leader waits for acknowledgements. */
export const DEFAULT_MAX_INFLIGHT = 64;
/** Bytes of entry data per append message (at least one entry is always sent). */
export const DEFAULT_MAX_APPEND_BYTES = 1024 * 1024;
/** Bytes of committed entries handed to the host per Ready. */
export const DEFAULT_MAX_APPLY_BYTES = 4 * 1024 * 1024;

export interface RaftConfig {
  id: ReplicaId;
  /** Every voter, this replica included. */
  peers: ReplicaId[];
  /** A uniform random number in [0, 1): the only source of randomness. */
  rand: () => number;
  electionTicks?: number;
  heartbeatTicks?: number;
  maxInflight?: number;
  maxAppendBytes?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** Durable state to restart from. */
  restore?: { hardState: HardState; entries: Entry[] };
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
}

export type ProposeResult = { ok: true; index: number; term: number } | { ok: false; leader: ReplicaId };

interface Progress {
  match: number;
  next: number;
  /** Probe: one append at a time until one is accepted. Replicate: pipeline up to maxInflight. */
  replicating: boolean;
  inflight: number;
  /** Heard from since the last check-quorum round. */
  recentActive: boolean;
}

interface PendingRead {
  context: number;
  index: number;
  acks: Set<ReplicaId>;
}

export class Raft {
  readonly id: ReplicaId;
  readonly peers: readonly ReplicaId[];
  term = 0;
  vote: ReplicaId = 0;
  leader: ReplicaId = 0;
  role: Role = Role.Follower;
  readonly log: RaftLog;

  private readonly rand: () => number;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly maxInflight: number;
  private readonly maxAppendBytes: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly unsafeCommit: boolean;
  private readonly unsafeVote: boolean;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;
  private votes = new Map<ReplicaId, boolean>();
  private progress = new Map<ReplicaId, Progress>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private pendingReads: PendingRead[] = [];
  private prevHardState: HardState;

  constructor(c: RaftConfig) {
    assert(c.peers.includes(c.id), "a replica is one of its group's voters");
    assert(c.id > 0, "replica ids are positive");
    this.id = c.id;
    this.peers = [...c.peers].sort((a, b) => a - b);
    this.rand = c.rand;
    this.electionTicks = c.electionTicks ?? DEFAULT_ELECTION_TICKS;
    this.heartbeatTicks = c.heartbeatTicks ?? DEFAULT_HEARTBEAT_TICKS;
    this.maxInflight = c.maxInflight ?? DEFAULT_MAX_INFLIGHT;
    this.maxAppendBytes = c.maxAppendBytes ?? DEFAULT_MAX_APPEND_BYTES;
    this.preVote = c.preVote ?? true;
    this.checkQuorum = c.checkQuorum ?? true;
    this.unsafeCommit = c.unsafeCommitPreviousTermByCount ?? false;
    this.unsafeVote = c.unsafeVoteIgnoringLog ?? false;
    assert(this.heartbeatTicks < this.electionTicks, "heartbeats come more often than elections");
    const hs = c.restore?.hardState ?? { term: 0, vote: 0, commit: 0 };
    this.log = new RaftLog(0, 0, c.restore?.entries ?? [], hs.commit);
    this.term = hs.term;
    this.vote = hs.vote;
    this.prevHardState = hs;
    this.becomeFollower(this.term, 0);
  }

  private get quorum(): number {
    return Math.floor(this.peers.length / 2) + 1;
  }

  // ---- inputs --------------------------------------------------------

  /** One unit of logical time. */
  tick(): void {
    if (this.role === Role.Leader) {
      this.heartbeatElapsed++;
      this.electionElapsed++;
      if (this.electionElapsed >= this.electionTicks) {
        this.electionElapsed = 0;
        if (this.checkQuorum && !this.quorumActive()) {
          this.becomeFollower(this.term, 0);
          return;
        }
      }
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

  /** Proposes a command. Only a leader accepts; others say who leads (0: unknown). */
  propose(data: Uint8Array): ProposeResult {
    if (this.role !== Role.Leader) return { ok: false, leader: this.leader };
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ index, term: this.term, type: EntryType.Normal, data }]);
    this.broadcastAppend();
    return { ok: true, index, term: this.term };
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
    if (this.role !== Role.Leader) return false;
    // Until an entry of its own term commits, a new leader's commit index may lag the true one.
    if (this.log.term(this.log.committed) !== this.term) return false;
    if (this.peers.length === 1) {
      this.readStates.push({ index: this.log.committed, context });
      return true;
    }
    this.pendingReads.push({ context, index: this.log.committed, acks: new Set([this.id]) });
    this.broadcastHeartbeat(context);
    return true;
  }

  /** Starts an election now (a host's manual trigger). */
  campaign(): void {
    if (this.role === Role.Leader) return;
    if (this.preVote) this.becomePreCandidate();
    else this.becomeCandidate();
  }

  step(m: Message): void {
    assert(m.to === this.id, "messages are delivered to their addressee");
    if (m.type === MessageType.Hup) return this.campaign();
    if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        // A replica that has heard from a live leader within an election
        // timeout ignores candidates: a partitioned replica rejoining with
        // a higher term cannot disrupt a healthy leader.
        const inLease = this.checkQuorum && this.leader !== 0 && this.electionElapsed < this.electionTicks;
        if (inLease) return;
      }
      if (m.type === MessageType.PreVote) {
        // Pre-votes never change terms.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the future term; ours changes when we campaign.
      } else {
        const fromLeader = m.type === MessageType.App || m.type === MessageType.Heartbeat;
        this.becomeFollower(m.term, fromLeader ? m.from : 0);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.App || m.type === MessageType.Heartbeat)) {
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

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    const hs = this.hardState();
    const p = this.prevHardState;
    return (
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.unstableEntries().length > 0 ||
      this.log.nextCommitted(1).length > 0 ||
      hs.term !== p.term ||
      hs.vote !== p.vote ||
      hs.commit !== p.commit
    );
  }

  ready(): Ready {
    const hs = this.hardState();
    const p = this.prevHardState;
    const changed = hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit;
    return {
      hardState: changed ? hs : null,
      entries: this.log.unstableEntries(),
      committedEntries: this.log.nextCommitted(DEFAULT_MAX_APPLY_BYTES),
      messages: this.msgs,
      readStates: this.readStates,
      leader: this.leader,
      role: this.role,
    };
  }

  /** The host handled `rd` (persisted, sent, applied, in that order). */
  advance(rd: Ready): void {
    if (rd.hardState !== null) this.prevHardState = rd.hardState;
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      // Only if that entry is still ours (not replaced since ready()).
      if (this.log.term(last.index) === last.term) this.log.stableTo(last.index);
    }
    if (rd.committedEntries.length > 0) this.log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1]!.index);
    this.msgs = this.msgs === rd.messages ? [] : this.msgs.slice(rd.messages.length);
    this.readStates = this.readStates === rd.readStates ? [] : this.readStates.slice(rd.readStates.length);
  }

  // ---- roles ---------------------------------------------------------

  private resetTimers(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    // Randomised in [electionTicks, 2 * electionTicks): split votes become unlikely.
    this.randomizedElectionTicks = this.electionTicks + Math.floor(this.rand() * this.electionTicks);
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
  private requestVotes(type: MessageType, term: number): void {
    for (const p of this.peers) {
      if (p === this.id) continue;
      this.send(
        message({ type, to: p, from: this.id, term, index: this.log.lastIndex(), logTerm: this.log.lastTerm() }),
      );
    }
  }

  private becomeCandidate(): void {
    this.setTerm(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.leader = 0;
    this.votes = new Map([[this.id, true]]);
    this.resetTimers();
    if (this.tally() >= this.quorum) return this.becomeLeader();
    this.requestVotes(MessageType.Vote, this.term);
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, "only a candidate becomes leader");
    this.role = Role.Leader;
    this.leader = this.id;
    this.resetTimers();
    this.progress = new Map();
    for (const p of this.peers) {
      this.progress.set(p, {
        match: p === this.id ? this.log.lastIndex() : 0,
        next: this.log.lastIndex() + 1,
        replicating: false,
        inflight: 0,
        recentActive: true,
      });
    }
    // An empty entry of the new term: committing it commits everything before (§5.4.2).
    if (!this.unsafeCommit)
      this.appendEntries([{ index: this.log.lastIndex() + 1, term: this.term, type: EntryType.Noop, data: EMPTY }]);
    this.broadcastAppend();
  }

  private tally(): number {
    let granted = 0;
    for (const v of this.votes.values()) if (v) granted++;
    return granted;
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    if (m.type === MessageType.App || m.type === MessageType.Heartbeat) {
      // Someone won this term.
      this.becomeFollower(m.term, m.from);
      return this.stepFollower(m);
    }
    if (m.type !== myResp) return;
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
      this.electionElapsed = 0;
      this.leader = m.from;
      return this.handleAppend(m);
    }
    if (m.type === MessageType.Heartbeat) {
      this.electionElapsed = 0;
      this.leader = m.from;
      this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
      this.send(
        message({ type: MessageType.HeartbeatResp, to: m.from, from: this.id, term: this.term, context: m.context }),
      );
    }
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
    if (m.type === MessageType.AppResp) {
      pr.inflight = Math.max(0, pr.inflight - 1);
      if (m.reject) {
        let probe = m.rejectHint;
        if (m.logTerm > 0) probe = this.log.findConflictByTerm(m.rejectHint, m.logTerm);
        pr.next = Math.max(Math.min(m.index, probe + 1), pr.match + 1);
        pr.replicating = false;
        pr.inflight = 0;
        this.sendAppend(m.from);
        return;
      }
      if (m.index > pr.match) {
        pr.match = m.index;
        pr.replicating = true;
        if (pr.next <= m.index) pr.next = m.index + 1;
        if (this.maybeCommit()) this.broadcastAppend();
      }
      if (pr.next <= this.log.lastIndex()) this.sendAppend(m.from);
      return;
    }
    if (m.type === MessageType.HeartbeatResp) {
      if (pr.match < this.log.lastIndex()) {
        // The follower is alive but behind: appends may have been lost on
        // the way. Probe again from what it is known to hold.
        pr.replicating = false;
        pr.inflight = 0;
        pr.next = pr.match + 1;
        this.sendAppend(m.from);
      }
      if (m.context !== 0) this.ackRead(m.context, m.from);
    }
  }

  private ackRead(context: number, from: ReplicaId): void {
    const i = this.pendingReads.findIndex((r) => r.context === context);
    if (i < 0) return;
    this.pendingReads[i]!.acks.add(from);
    if (this.pendingReads[i]!.acks.size < this.quorum) return;
    // Reads are released in order: an acknowledged round confirms the ones before it too.
    for (const r of this.pendingReads.splice(0, i + 1)) this.readStates.push({ index: r.index, context: r.context });
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const [id, pr] of this.progress) {
      if (id === this.id || pr.recentActive) active++;
      pr.recentActive = false;
    }
    return active >= this.quorum;
  }

  // ---- replication ---------------------------------------------------

  private appendEntries(entries: Entry[]): void {
    this.log.append(entries);
    const self = this.progress.get(this.id);
    if (self !== undefined) {
      self.match = this.log.lastIndex();
      self.next = self.match + 1;
    }
    if (this.peers.length === 1) this.maybeCommit();
  }

  /** Advances the commit index to what a majority holds (entries of this term only, §5.4.2). */
  private maybeCommit(): boolean {
    const matches = [...this.progress.values()].map((p) => p.match).sort((a, b) => b - a);
    const n = matches[this.quorum - 1]!;
    if (n <= this.log.committed) return false;
    if (!this.unsafeCommit && this.log.term(n) !== this.term) return false;
    this.log.commitTo(n);
    return true;
  }

  private sendAppend(to: ReplicaId): void {
    const pr = this.progress.get(to)!;
    if (pr.replicating ? pr.inflight >= this.maxInflight : pr.inflight > 0) return;
    const prev = pr.next - 1;
    const entries = this.log.slice(pr.next, this.log.lastIndex(), this.maxAppendBytes);
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
    if (entries.length > 0 && pr.replicating) pr.next = entries[entries.length - 1]!.index + 1;
    pr.inflight++;
  }

  private broadcastAppend(): void {
    for (const p of this.peers) if (p !== this.id) this.sendAppend(p);
  }

  private broadcastHeartbeat(context: number): void {
    for (const p of this.peers) {
      if (p === this.id) continue;
      const pr = this.progress.get(p)!;
      this.send(
        message({
          type: MessageType.Heartbeat,
          to: p,
          from: this.id,
          term: this.term,
          commit: Math.min(pr.match, this.log.committed),
          context,
        }),
      );
    }
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }
}

const EMPTY = new Uint8Array(0);
