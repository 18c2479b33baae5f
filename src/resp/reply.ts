/**
 * RESP replies, in RESP2 or RESP3 (after HELLO 3). Each function returns the
 * encoded bytes of one complete reply; arrays are built from encoded parts.
 * Constant replies are encoded once.
 */

import { smallBytes } from "../small-bytes.js";

const enc = new TextEncoder();

export type Proto = 2 | 3;

export const OK = enc.encode("+OK\r\n");
export const PONG = enc.encode("+PONG\r\n");
export const QUEUED = enc.encode("+QUEUED\r\n");
const NULL2 = enc.encode("$-1\r\n");
const NULL3 = enc.encode("_\r\n");
const NULL_ARRAY2 = enc.encode("*-1\r\n");
const ZERO = enc.encode(":0\r\n");
const ONE = enc.encode(":1\r\n");
const EMPTY_ARRAY = enc.encode("*0\r\n");

export function simple(s: string): Uint8Array {
  return enc.encode(`+${s}\r\n`);
}

/** An error reply. `text` starts with its code word (ERR, WRONGTYPE, NOAUTH...). */
export function error(text: string): Uint8Array {
  return enc.encode(`-${text.replace(/[\r\n]+/g, " ")}\r\n`);
}

export function integer(n: number | bigint): Uint8Array {
  if (n === 0) return ZERO;
  if (n === 1) return ONE;
  return enc.encode(`:${n}\r\n`);
}

/** Small replies are carved from shared blocks (src/small-bytes.ts says why, and what bounds it). */
const replyBytes = smallBytes;

/** An integer whose decimal text we already have (INCR results: exact to 64 bits). */
export function integerText(digits: Uint8Array): Uint8Array {
  const out = replyBytes(digits.length + 3);
  out[0] = 58; // ':'
  out.set(digits, 1);
  out[digits.length + 1] = 13;
  out[digits.length + 2] = 10;
  return out;
}

export function nil(proto: Proto): Uint8Array {
  return proto === 3 ? NULL3 : NULL2;
}

export function nilArray(proto: Proto): Uint8Array {
  return proto === 3 ? NULL3 : NULL_ARRAY2;
}

/** Decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Bytes of `$<len>\r\n<bytes>\r\n` for a value of `len` bytes. */
export function bulkBytes(len: number): number {
  return 1 + digits(len) + 2 + len + 2;
}

/**
 * Writes `$<len>\r\n<bytes>\r\n` at `at` in `out` (which has bulkBytes(v.length) of room), the
 * length digit by digit; returns the offset after it. The hottest reply: every GET (bulk(), and a
 * Redis connection's hot runs, src/resp/hot.ts).
 */
export function writeBulk(out: Uint8Array, at: number, v: Uint8Array): number {
  const len = v.length;
  const d = digits(len);
  out[at] = 36; // '$'
  for (let i = d, n = len; i >= 1; i--) {
    out[at + i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  at += d + 1;
  out[at++] = 13;
  out[at++] = 10;
  out.set(v, at);
  at += len;
  out[at++] = 13;
  out[at++] = 10;
  return at;
}

/** `$<len>\r\n<bytes>\r\n`, built in one allocation. */
export function bulk(value: Uint8Array | string): Uint8Array {
  const v = typeof value === "string" ? enc.encode(value) : value;
  const out = replyBytes(bulkBytes(v.length));
  writeBulk(out, 0, v);
  return out;
}

export function bulkOrNil(value: Uint8Array | null, proto: Proto): Uint8Array {
  return value === null ? nil(proto) : bulk(value);
}

/** RESP3 verbatim string (INFO); a bulk string in RESP2. */
export function verbatim(text: string, proto: Proto): Uint8Array {
  if (proto === 2) return bulk(text);
  const v = enc.encode(`txt:${text}`);
  return concat([enc.encode(`=${v.length}\r\n`), v, enc.encode("\r\n")]);
}

export function double(n: number, proto: Proto): Uint8Array {
  return proto === 3 ? enc.encode(`,${n}\r\n`) : bulk(String(n));
}

export function array(items: Uint8Array[]): Uint8Array {
  if (items.length === 0) return EMPTY_ARRAY;
  return concat([enc.encode(`*${items.length}\r\n`), ...items]);
}

/** A map in RESP3; a flat array of key, value, key, value in RESP2. */
export function map(entries: [Uint8Array, Uint8Array][], proto: Proto): Uint8Array {
  const head = proto === 3 ? `%${entries.length}\r\n` : `*${entries.length * 2}\r\n`;
  const parts: Uint8Array[] = [enc.encode(head)];
  for (const [k, v] of entries) parts.push(k, v);
  return concat(parts);
}

/** A set in RESP3; an array in RESP2. */
export function set(items: Uint8Array[], proto: Proto): Uint8Array {
  if (proto === 2) return array(items);
  return concat([enc.encode(`~${items.length}\r\n`), ...items]);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * An out-of-band message (pub/sub): RESP3's push type (`>`), which a
 * client tells apart from command replies; a plain array in RESP2.
 */
export function push(items: Uint8Array[], proto: Proto): Uint8Array {
  if (proto === 2) return array(items);
  return concat([enc.encode(`>${items.length}\r\n`), ...items]);
}
