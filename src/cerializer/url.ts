/**
 * Keys in URLs. Keys are bytes, not text: /v1/kv/%FF%00 names the two-byte
 * key FF 00. The HTTP router would decode the path as UTF-8 and refuse such
 * a key, so the gateway takes the key from the raw request line itself,
 * before routing, with a strict decoder: every "%" must be followed by two
 * hex digits, and every other byte is taken as it is (so "/" may appear
 * literally: /v1/kv/users/42 is the key "users/42").
 */
import { Problem } from "./problems.js";

const HEX = /^[0-9A-Fa-f]{2}$/;

/** Percent-decodes `s` to bytes; `plusIsSpace` for query strings (form encoding). */
export function percentDecode(s: string, what: string, plusIsSpace = false): Buffer {
  if (!s.includes("%") && !(plusIsSpace && s.includes("+"))) return Buffer.from(s, "utf8");
  const out: number[] = [];
  const raw = Buffer.from(s, "utf8");
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b === 0x25) {
      const hex = raw.subarray(i + 1, i + 3).toString("latin1");
      if (!HEX.test(hex))
        throw new Problem("bad-percent-encoding", `${what}: "%" at position ${i} is not followed by two hex digits`);
      out.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (b === 0x2b && plusIsSpace) out.push(0x20);
    else out.push(b);
  }
  return Buffer.from(out);
}

export const KV_PREFIX = "/v1/kv/";

/** The raw (still encoded) key of a /v1/kv/<key> URL, without the query. */
export function rawKeyOf(url: string): string {
  const q = url.indexOf("?");
  return url.slice(KV_PREFIX.length, q < 0 ? url.length : q);
}

/** One query parameter as bytes, from the raw URL (null when absent). */
export function queryBytes(url: string, name: string): Buffer | null {
  const q = url.indexOf("?");
  if (q < 0) return null;
  for (const part of url.slice(q + 1).split("&")) {
    const eq = part.indexOf("=");
    const k = eq < 0 ? part : part.slice(0, eq);
    if (k === name) return percentDecode(eq < 0 ? "" : part.slice(eq + 1), `query parameter ${name}`, true);
  }
  return null;
}

/** Checks a key's length against the limit. */
export function checkKey(key: Uint8Array, maxKeyBytes: number): void {
  if (key.length === 0) throw new Problem("invalid-key", "the key is empty");
  if (key.length > maxKeyBytes)
    throw new Problem("invalid-key", `the key is ${key.length} bytes; the limit is ${maxKeyBytes}`, {
      limit: maxKeyBytes,
    });
}
