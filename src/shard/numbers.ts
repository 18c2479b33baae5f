/**
 * Numbers stored as text, the Redis way: INCR and friends read the value as
 * a decimal integer (or float), add, and store the result as text again.
 *
 * Integers are signed 64-bit, exactly as Redis's `long long`: we compute in
 * BigInt, so 9223372036854775807 is exact (a double would not be), and an
 * overflow is an error, never a wrap.
 */
import { ErrorCode } from "../errors.js";

const MIN = -(2n ** 63n);
const MAX = 2n ** 63n - 1n;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Parses Redis's strict integer syntax (string2ll): [-]digits, no '+', no spaces, no leading zeros. */
export function parseInteger(b: Uint8Array): bigint | null {
  if (b.length === 0 || b.length > 20) return null;
  const s = decoder.decode(b);
  if (!/^-?(0|[1-9][0-9]*)$/.test(s) || s === "-0") return null;
  const n = BigInt(s);
  return n < MIN || n > MAX ? null : n;
}

/** Parses a float as Redis does for INCRBYFLOAT (strtold, no spaces, finite). */
export function parseFloat64(b: Uint8Array): number | null {
  if (b.length === 0 || b.length > 5000) return null;
  const s = decoder.decode(b);
  if (s.trim() !== s || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}

/** The new value text, or an ErrorCode. A missing key counts as 0. */
export function addInteger(current: Uint8Array | null, delta: Uint8Array): Uint8Array | number {
  // The common case (a counter, INCR's "1") in doubles: both at most 15 digits, so the sum is exact.
  const small = smallInteger(delta);
  const base = current === null ? 0 : smallInteger(current);
  if (small !== undefined && base !== undefined) return integerBytes(base + small);
  const d = parseInteger(delta);
  if (d === null) return ErrorCode.NOT_AN_INTEGER;
  const v = current === null ? 0n : parseInteger(current);
  if (v === null) return ErrorCode.NOT_AN_INTEGER;
  const sum = v + d;
  if (sum < MIN || sum > MAX) return ErrorCode.OVERFLOW;
  return encoder.encode(sum.toString());
}

/**
 * A strict decimal integer of at most 15 digits (exact in a double), read
 * byte by byte; undefined for anything else, which parseInteger then
 * decides (longer numbers, and every malformed one: its error is there).
 */
function smallInteger(b: Uint8Array): number | undefined {
  const n = b.length;
  let i = 0;
  let negative = false;
  if (n > 0 && b[0] === 45 /* - */) {
    negative = true;
    i = 1;
  }
  const digits = n - i;
  if (digits === 0 || digits > 15) return undefined;
  if (b[i] === 48 /* 0 */ && (digits > 1 || negative)) return undefined; // leading zeros, "-0": rejected there
  let v = 0;
  for (; i < n; i++) {
    const c = b[i]! - 48;
    if (c < 0 || c > 9) return undefined;
    v = v * 10 + c;
  }
  return negative ? -v : v;
}

/** A safe integer's decimal text, written digit by digit. */
function integerBytes(v: number): Uint8Array {
  const negative = v < 0;
  let m = negative ? -v : v;
  let digits = 1;
  for (let t = m; t >= 10; t = Math.floor(t / 10)) digits++;
  const out = new Uint8Array(digits + (negative ? 1 : 0));
  if (negative) out[0] = 45;
  for (let at = out.length - 1; at >= (negative ? 1 : 0); at--) {
    out[at] = 48 + (m % 10);
    m = Math.floor(m / 10);
  }
  return out;
}

/** Formats like Redis's human float output: no exponent, no trailing zeros. */
export function formatFloat(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return n.toFixed(0);
  const s = String(n);
  if (!/e/i.test(s)) return s;
  // Very small or large: write the digits out, then trim trailing zeros.
  return n.toFixed(17).replace(/\.?0+$/, "");
}

export function addFloat(current: Uint8Array | null, delta: Uint8Array): Uint8Array | number {
  const d = parseFloat64(delta);
  if (d === null) return ErrorCode.NOT_A_FLOAT;
  const v = current === null ? 0 : parseFloat64(current);
  if (v === null) return ErrorCode.NOT_A_FLOAT;
  const sum = v + d;
  if (!Number.isFinite(sum)) return ErrorCode.OVERFLOW;
  return encoder.encode(formatFloat(sum));
}
