/**
 * One error vocabulary for all of Piccolo. The same codes travel in the
 * native protocol's Response.error.code, become RESP error replies, become
 * the Cerializer's problem+json `type`, and are the `code` of the client's
 * typed errors. Numbers are stable: never renumber, only append.
 */
export const ErrorCode = {
  OK: 0,
  /** The key does not exist (or has expired). */
  NOT_FOUND: 1,
  /** insert: the key already exists. */
  ALREADY_EXISTS: 2,
  /** cas / conditional delete: the key's version is not the expected one. */
  VERSION_MISMATCH: 3,
  /** Key over MAX_KEY_BYTES, or empty. */
  KEY_TOO_LARGE: 4,
  /** Value over the node's --max-value-bytes. */
  VALUE_TOO_LARGE: 5,
  /** Frame over the size limit; the connection is closed after this. */
  FRAME_TOO_LARGE: 6,
  /** Frame could not be decoded; the connection is closed after this. */
  MALFORMED_FRAME: 7,
  /** The request decoded but names no operation we know. */
  UNKNOWN_OPERATION: 8,
  /** A field has a value outside its range (negative TTL, empty key list...). */
  INVALID_ARGUMENT: 9,
  /** Multi-key request over MAX_BATCH_KEYS. */
  TOO_MANY_KEYS: 10,
  /** The node is shutting down: the request was not carried out (retry on another member). */
  SHUTTING_DOWN: 11,
  /**
   * The outcome is unknown: no answer within the deadline (client or
   * server side), or the leader that took a write lost leadership before
   * it could say whether the write committed. A write may or may not have
   * been applied, and may still be applied later; a read changed nothing.
   */
  TIMEOUT: 12,
  /** Client side: the connection is closed or could not be made. */
  CONNECTION_CLOSED: 13,
  /** Authentication required or failed. */
  NOAUTH: 14,
  /**
   * Cluster: this node does not lead the key's partition (carries a hint).
   * Nothing was applied. Members forward to the leader themselves, so a
   * client sees it only from a request that names a member's own role.
   */
  NOT_LEADER: 15,
  /** An internal error: a bug. The request failed; the node keeps serving. */
  INTERNAL: 16,
  /** The value is not an integer / out of range (INCR and friends). */
  NOT_AN_INTEGER: 17,
  /** The value is not a valid float (INCRBYFLOAT). */
  NOT_A_FLOAT: 18,
  /** An increment would overflow, or produce NaN or Infinity. */
  OVERFLOW: 19,
  /**
   * Cluster: no leader for the key's partition could be reached before the
   * request's deadline (an election that did not finish, a majority that is
   * down or cut off). Nothing was applied: safe to retry.
   */
  UNAVAILABLE: 20,
  /**
   * The node cannot write its log (a full disk, a failing disk): the write
   * was refused and nothing was applied. Reads still work; writes resume by
   * themselves once the disk can be written again.
   */
  STORAGE_FAILED: 21,
  /**
   * A transaction (or an atomic multi-key command) names keys in different
   * partitions of a cluster, where atomicity spans one partition: nothing
   * was applied. Keys sharing a hash tag ({user:1}:a, {user:1}:b) are
   * always in one partition.
   */
  CROSS_PARTITION: 22,
  /** A transaction over TXN_MAX_OPS compares and ops, or TXN_MAX_BYTES of keys and values: nothing was applied. */
  TXN_TOO_LARGE: 23,
  /**
   * A watch asked to resume from a position older than the change history
   * kept (or from another run of the node): changes may have been missed.
   * Read the keys again, then watch from the current position the error
   * carries.
   */
  COMPACTED: 24,
  /**
   * The authenticated user may not run this operation, or not on this key
   * (its ACL: docs/security.md). Nothing was applied.
   */
  NOPERM: 25,
  /**
   * Protected mode: the node has no password for its default user and the
   * client is not on this machine, so nothing is served to it; the message
   * says how to fix it (docs/security.md). The connection is closed.
   */
  DENIED: 26,
  /**
   * The node is already doing this kind of work and does one at a time (a
   * backup: BACKUP_MAX_RUNNING). Nothing was done; try again when it ends.
   */
  BUSY: 27,
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const names: Record<number, string> = {};
for (const [name, code] of Object.entries(ErrorCode)) names[code] = name;

/** The stable name of a code, e.g. 4 -> "KEY_TOO_LARGE". */
export function errorName(code: number): string {
  return names[code] ?? `UNKNOWN_${code}`;
}

/** The error type thrown by the client and used inside the node. */
export class PiccoloError extends Error {
  override name = "PiccoloError";
  readonly code: ErrorCode;
  readonly codeName: string;
  /**
   * The request never left this process (the client could not connect, or
   * was closed): whatever the code, nothing was applied. False when it may
   * have reached the node.
   */
  readonly unsent: boolean;
  constructor(code: ErrorCode, message: string, unsent = false) {
    super(`${errorName(code)}: ${message}`);
    this.code = code;
    this.codeName = errorName(code);
    this.unsent = unsent;
  }
}
