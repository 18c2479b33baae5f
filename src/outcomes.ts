/**
 * The one table of outcomes: for every error code (src/errors.ts), what it
 * means for the operation it answers, and how each port says it. The native
 * protocol sends the code itself (with `text` as the message); the Redis port
 * answers `-<resp> <text>`; the Cerializer answers the problem `type` with
 * its HTTP status (src/cerializer/problems.ts). docs/protocol.md prints this
 * table, and a test holds the two equal.
 *
 * The rule every port follows: an answer never looks like success, or like
 * "absent", unless the operation succeeded, or read absence. So every code
 * below becomes an error on every port, except where a command's own
 * semantics give a data outcome another shape (SET NX answering nil for
 * ALREADY_EXISTS, a conditional DELETE answering 0): see isDataOutcome in
 * src/shard/command.ts, which says which codes each shard operation may
 * answer as data. Anything else a shard or the cluster answers is a failure,
 * and goes through this table.
 *
 * `applied` is what the caller may assume about a write that got this
 * answer: "no" (nothing was applied: safe to retry), or "maybe" (it may have
 * been applied, and may still be: the caller must read to find out, or
 * retry only if the write is idempotent). A read never changed anything.
 */
import { ErrorCode } from "./errors.js";

export interface Outcome {
  /** What happened, for the caller (the native message, the Redis reply's text, the problem's detail). */
  text: string;
  /** For a write: whether it may have been applied ("maybe") or certainly was not ("no"). */
  applied: "no" | "maybe";
  /** The Redis error reply's first word (Redis's own where Redis has the case). */
  resp: string;
  /** The Cerializer's problem type (its HTTP status is in src/cerializer/problems.ts). */
  problem: string;
}

/**
 * The word a Redis reply starts with when a write's outcome is unknown: a
 * write answered `-UNCERTAIN` may or may not have been applied. Every Redis
 * client surfaces a `-` reply as an error, whatever its first word.
 */
export const RESP_UNCERTAIN = "UNCERTAIN";

type Name = Exclude<keyof typeof ErrorCode, "OK">;

/** Every code but OK. Typed by name, so a code added to errors.ts without a row here does not compile. */
export const OUTCOMES: Record<Name, Outcome> = {
  NOT_FOUND: { text: "no such key", applied: "no", resp: "ERR", problem: "not-found" },
  ALREADY_EXISTS: { text: "the key already exists", applied: "no", resp: "ERR", problem: "precondition-failed" },
  VERSION_MISMATCH: {
    text: "the key's version is not the one expected",
    applied: "no",
    resp: "ERR",
    problem: "precondition-failed",
  },
  KEY_TOO_LARGE: { text: "the key is empty or too large", applied: "no", resp: "ERR", problem: "invalid-key" },
  VALUE_TOO_LARGE: {
    text: "string exceeds maximum allowed size (proto-max-bulk-len)",
    applied: "no",
    resp: "ERR",
    problem: "value-too-large",
  },
  FRAME_TOO_LARGE: { text: "the frame is too large", applied: "no", resp: "ERR", problem: "node-error" },
  MALFORMED_FRAME: { text: "the frame could not be decoded", applied: "no", resp: "ERR", problem: "node-error" },
  UNKNOWN_OPERATION: { text: "unknown operation", applied: "no", resp: "ERR", problem: "invalid-argument" },
  INVALID_ARGUMENT: { text: "an argument is out of range", applied: "no", resp: "ERR", problem: "invalid-argument" },
  TOO_MANY_KEYS: { text: "too many keys in one request", applied: "no", resp: "ERR", problem: "invalid-argument" },
  SHUTTING_DOWN: {
    text: "this member is shutting down; the request was not carried out: retry on another member",
    applied: "no",
    resp: "SHUTDOWN",
    problem: "node-unavailable",
  },
  TIMEOUT: {
    text: "no answer in time: the outcome is unknown, and a write may or may not have been applied",
    applied: "maybe",
    resp: "TIMEOUT",
    problem: "node-timeout",
  },
  CONNECTION_CLOSED: {
    text: "the connection closed before an answer: a write may or may not have been applied",
    applied: "maybe",
    resp: "ERR",
    problem: "node-unavailable",
  },
  NOAUTH: { text: "Authentication required.", applied: "no", resp: "NOAUTH", problem: "unauthorized" },
  NOT_LEADER: {
    text: "this member does not lead the key's partition; nothing was applied: retry",
    applied: "no",
    resp: "TRYAGAIN",
    problem: "unavailable",
  },
  INTERNAL: {
    text: "internal error (see the node's log): a write may or may not have been applied",
    applied: "maybe",
    resp: "ERR",
    problem: "node-error",
  },
  NOT_AN_INTEGER: {
    text: "value is not an integer or out of range",
    applied: "no",
    resp: "ERR",
    problem: "invalid-argument",
  },
  NOT_A_FLOAT: { text: "value is not a valid float", applied: "no", resp: "ERR", problem: "invalid-argument" },
  OVERFLOW: {
    text: "increment or decrement would overflow",
    applied: "no",
    resp: "ERR",
    problem: "invalid-argument",
  },
  UNAVAILABLE: {
    text: "no leader for the key's partition could be reached in time; nothing was applied: retry later",
    applied: "no",
    resp: "CLUSTERDOWN",
    problem: "unavailable",
  },
  STORAGE_FAILED: {
    text: "the node cannot write its log (disk full or failing); the write was not applied; reads still work",
    applied: "no",
    resp: "MISCONF",
    problem: "storage-failed",
  },
  CROSS_PARTITION: {
    text: "Keys in request don't hash to the same slot (the transaction's keys are in different partitions; give them one hash tag, as {user:1}:a and {user:1}:b); nothing was applied",
    applied: "no",
    resp: "CROSSSLOT",
    problem: "cross-partition",
  },
  TXN_TOO_LARGE: {
    text: "the transaction is over its limit of ops or bytes; nothing was applied",
    applied: "no",
    resp: "ERR",
    problem: "transaction-too-large",
  },
  COMPACTED: {
    text: "the watch position is older than the change history kept; read the keys again and watch from the current position",
    applied: "no",
    resp: "ERR",
    problem: "compacted",
  },
  NOPERM: {
    text: "this user has no permissions to run this command or to access one of its keys",
    applied: "no",
    resp: "NOPERM",
    problem: "forbidden",
  },
  DENIED: {
    text: "Piccolo is running in protected mode: no password is set for the default user, so only clients on this machine are served. Set one (--requirepass-file, or ACL SETUSER default on >password), or bind to 127.0.0.1, or start with --protected-mode no if every client that can reach this port is trusted",
    applied: "no",
    resp: "DENIED",
    problem: "forbidden",
  },
  BUSY: {
    text: "the node is already running one operation of this kind (a backup) and runs one at a time; nothing was done: try again when it ends",
    applied: "no",
    resp: "BUSY",
    problem: "busy",
  },
};

const byCode: (Outcome | undefined)[] = [];
for (const [name, o] of Object.entries(OUTCOMES)) byCode[ErrorCode[name as Name]] = o;

const UNKNOWN_CODE: Outcome = {
  text: "an error code this build does not know",
  applied: "maybe",
  resp: "ERR",
  problem: "node-error",
};

/** The row for `code` (a code from a newer peer falls back to "unknown": an error, never success). */
export function outcomeOf(code: number): Outcome {
  return byCode[code] ?? UNKNOWN_CODE;
}

/**
 * The Redis error reply's text (without the leading "-") for `code`. A
 * write whose outcome is unknown answers -UNCERTAIN; so does a command that
 * failed after some of its writes were applied (`partly`: MSET, RENAME...),
 * whatever the failure, since the store is then neither before nor after it.
 */
export function respErrorText(code: number, write: boolean, partly = false): string {
  const o = outcomeOf(code);
  if (partly) return `${RESP_UNCERTAIN} the command was partly applied before it failed (${o.resp}: ${o.text})`;
  if (write && o.applied === "maybe") return `${RESP_UNCERTAIN} ${o.text}`;
  if (code === ErrorCode.TIMEOUT) return "TIMEOUT no answer in time; the read changed nothing: retry";
  return `${o.resp} ${o.text}`;
}
