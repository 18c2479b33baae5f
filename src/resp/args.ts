/**
 * Argument parsing shared by the Redis commands, with Redis's error texts.
 */
import { CompareRelation, CompareTarget, type TxnCompare, type TxnOp } from "../io/txn.js";
import { respErrorText } from "../outcomes.js";
import type { Op } from "../shard/command.js";
import { parseInteger } from "../shard/numbers.js";

const dec = new TextDecoder();

export const E = {
  syntax: "ERR syntax error",
  notInteger: "ERR value is not an integer or out of range",
  notFloat: "ERR value is not a valid float",
  overflow: "ERR increment or decrement would overflow",
  nanOrInf: "ERR increment would produce NaN or Infinity",
  noSuchKey: "ERR no such key",
  tooBig: "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
  offset: "ERR offset is out of range",
  invalidCursor: "ERR invalid cursor",
} as const;

export function text(b: Uint8Array): string {
  return dec.decode(b);
}

export function lower(b: Uint8Array): string {
  return dec.decode(b).toLowerCase();
}

/** A 64-bit integer argument as a JS number when it is exact, else null (Redis: "not an integer"). */
export function int(b: Uint8Array): number | null {
  const n = parseInteger(b);
  if (n === null) return null;
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) return null;
  return Number(n);
}

/** Redis's reply text for a data outcome a handler answers as an error (NOT_AN_INTEGER...; src/outcomes.ts). */
export function errorText(code: number): string {
  return respErrorText(code, false);
}

/**
 * Parses the expiry options shared by SET and GETEX: EX s, PX ms, EXAT s,
 * PXAT ms, and (SET) KEEPTTL, (GETEX) PERSIST. Returns the absolute expiry
 * (0 for none) or an error text.
 */
export function expiryOption(
  opt: string,
  value: Uint8Array | undefined,
  nowMs: number,
  command: string,
): { atMs: number } | { error: string } {
  if (value === undefined) return { error: E.syntax };
  const n = int(value);
  if (n === null) return { error: E.notInteger };
  const invalid = { error: `ERR invalid expire time in '${command}' command` };
  if (n <= 0) return invalid;
  let atMs: number;
  if (opt === "ex") atMs = nowMs + n * 1000;
  else if (opt === "px") atMs = nowMs + n;
  else if (opt === "exat") atMs = n * 1000;
  else atMs = n; // pxat
  if (!Number.isSafeInteger(atMs)) return invalid;
  return { atMs };
}

/** A transaction's op: command `code` on `key` (copies nothing: pass copies). */
export function op(code: Op, key: Uint8Array, value: Uint8Array | null, expireAtMs: number): TxnOp {
  return { op: code, flags: 0, expireAtMs, arg0: 0, arg1: 0, key, value };
}

/** A transaction's compare: `key`'s version is `version` (0: the key is absent). */
export function versionIs(key: Uint8Array, version: number): TxnCompare {
  return { key, target: CompareTarget.VERSION, relation: CompareRelation.EQUAL, number: version, value: null };
}

export function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
