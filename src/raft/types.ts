/**
 * The storage-facing shapes of Raft: what the core hands the host to persist,
 * and what the write-ahead log (src/wal) stores. They live here, in the pure
 * core, so the WAL depends on Raft's vocabulary and never the reverse.
 * These three shapes are a contract between src/raft and src/wal: extend them
 * only by agreement of both.
 */

/** A replica's id inside a Raft group: a positive integer; 0 means "none". */
export type ReplicaId = number;

export const EntryType = {
  /** An application command (for Piccolo: an encoded shard command). */
  Normal: 0,
  /** A membership change; data is the encoded configuration change. */
  ConfChange: 1,
  /** The empty entry a new leader appends to commit entries of past terms. */
  Noop: 2,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be on disk before a replica answers any message. */
export interface HardState {
  readonly term: number;
  /** Whom we voted for in `term`; 0 for nobody. */
  readonly vote: ReplicaId;
  readonly commit: number;
}

export interface SnapshotMeta {
  /** Index and term of the last entry the snapshot covers. */
  readonly index: number;
  readonly term: number;
  /** Voters (and learners, if any) as of `index`. */
  readonly voters: readonly ReplicaId[];
  readonly learners: readonly ReplicaId[];
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The application's state machine image as of meta.index. */
  readonly data: Uint8Array;
}
