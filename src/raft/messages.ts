/**
 * What Raft replicas say to each other, and what the core hands its host.
 * Plain data only (numbers, arrays, bytes), so a host can encode them for
 * the wire however it likes; the core never touches a socket.
 */
import type { Entry, HardState, ReplicaId, Snapshot } from "./types.js";

export const MessageType = {
  /** Local: start an election now (the host or a timeout). */
  Hup: 0,
  /** Leader -> follower: entries after (index, logTerm), and the leader's commit. */
  App: 1,
  AppResp: 2,
  /** Candidate -> all: vote for me in `term`; my last entry is (index, logTerm). */
  Vote: 3,
  VoteResp: 4,
  /** As Vote, but for term + 1 without changing anyone's term (the pre-vote phase). */
  PreVote: 5,
  PreVoteResp: 6,
  /** Leader -> follower: I am alive; commit up to `commit`; `context` for ReadIndex. */
  Heartbeat: 7,
  HeartbeatResp: 8,
  /** Leader -> follower: the log you need is compacted; here is a snapshot instead (answered with AppResp). */
  Snap: 9,
  /** Leader -> transferee: campaign now, without pre-vote (leadership transfer). */
  TimeoutNow: 10,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface Message {
  type: MessageType;
  from: ReplicaId;
  to: ReplicaId;
  term: number;
  /** App: term of the entry at `index`; Vote/PreVote: term of the candidate's last entry. */
  logTerm: number;
  /** App: index before `entries`; AppResp: last matching index (or the rejected one); Vote: last index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** AppResp on reject: where the follower's log might match (fast back-off). */
  rejectHint: number;
  /** Heartbeat(Resp): the ReadIndex round this heartbeat belongs to (0: none). */
  context: number;
  /** Snap: the snapshot. */
  snapshot: Snapshot | null;
  /** Vote/PreVote: the campaign is a leadership transfer, so it may interrupt a live leader. */
  transfer: boolean;
  /**
   * TimeoutNow: the transfer is a hand-off by a leader that is stopping, not
   * a placement to keep. The new leader's leadership then counts as won by
   * an election (Raft.byTransfer false), so a host moves it back to the
   * preferred leader once that one returns (src/cluster/group-host.ts, rebalance).
   */
  handoff: boolean;
  /**
   * Heartbeat: the leader goes quiet (quiescence): the group is idle and every
   * replica holds the whole log, so the follower may stop its election timer
   * until something wakes the group (src/raft/raft.ts, "Quiescence").
   */
  quiesce: boolean;
}

export function message(fields: Partial<Message> & Pick<Message, "type" | "to" | "from" | "term">): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
    snapshot: null,
    transfer: false,
    handoff: false,
    quiesce: false,
    ...fields,
  };
}

/** A linearizable read point: once applied up to `index`, the read `context` may be served. */
export interface ReadState {
  index: number;
  context: number;
}

export const Role = { Follower: 0, PreCandidate: 1, Candidate: 2, Leader: 3 } as const;
export type Role = (typeof Role)[keyof typeof Role];

/**
 * What the host must do after an input, in this order (the persistence
 * contract, as etcd's raft):
 *   1. persist `snapshot` (if set: it replaces the whole log), then
 *      `hardState` (if set) and `entries` (replacing any stored entries from
 *      entries[0].index on), and fsync;
 *   2. only then send `messages`: a vote or an append acknowledgement must
 *      never leave before the state it vouches for is durable;
 *   3. install `snapshot` in the state machine (if set), then apply
 *      `committedEntries`, in order;
 *   4. answer the reads in `readStates` once applied up to their index;
 *   5. call advance().
 */
export interface Ready {
  snapshot: Snapshot | null;
  hardState: HardState | null;
  entries: Entry[];
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
  /** For the host's information (not to persist): who leads, and our role. */
  leader: ReplicaId;
  role: Role;
}

/**
 * May the host send `rd.messages` *before* persisting `rd` (Raft thesis
 * §10.2.1)? Only a leader's replication traffic: appends, heartbeats,
 * snapshots and TimeoutNow promise nothing about the sender's own disk, and
 * the leader counts its own log toward a commit only once the host has
 * persisted it (advance() moves the leader's own match). Everything else
 * (votes, acknowledgements) is a promise that must be durable first, and a
 * Ready that changes the term or vote is persisted before anything leaves.
 * `persisted` is the hard state the host last wrote.
 */
export function canSendBeforePersist(rd: Ready, persisted: HardState | undefined): boolean {
  if (rd.role !== Role.Leader || rd.messages.length === 0) return false;
  if (
    rd.hardState !== null &&
    (persisted === undefined || rd.hardState.term !== persisted.term || rd.hardState.vote !== persisted.vote)
  )
    return false;
  for (const m of rd.messages)
    if (
      m.type !== MessageType.App &&
      m.type !== MessageType.Heartbeat &&
      m.type !== MessageType.Snap &&
      m.type !== MessageType.TimeoutNow
    )
      return false;
  return true;
}
