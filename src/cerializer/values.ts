/**
 * Values, envelopes and conditions: the small translations between HTTP's
 * vocabulary and the store's.
 *
 *   bytes    <-> {value, encoding: "utf8" | "base64"}   (text when valid UTF-8)
 *   version  <-> ETag "<version>"                       (a strong entity tag)
 *   If-None-Match: *       -> insert (only if absent)
 *   If-Match: *            -> update (only if present)
 *   If-Match: "<version>"  -> compare-and-swap on the version
 */
import { MAX_TTL_MS } from "../limits.js";
import { Problem } from "./problems.js";

export type Encoding = "utf8" | "base64";

const utf8 = new TextDecoder("utf-8", { fatal: true });
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Bytes as text when they are valid UTF-8, else base64; `encoding` says which. */
export function encodeBytes(b: Uint8Array): { text: string; encoding: Encoding } {
  try {
    return { text: utf8.decode(b), encoding: "utf8" };
  } catch {
    return { text: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64"), encoding: "base64" };
  }
}

/** The bytes of a string in the given encoding; strict about base64. */
export function decodeBytes(text: string, encoding: Encoding | undefined, what: string): Buffer {
  if (encoding === undefined || encoding === "utf8") return Buffer.from(text, "utf8");
  if (!BASE64.test(text))
    throw new Problem("invalid-base64", `${what} is marked base64 but is not valid base64 (standard alphabet, padded)`);
  return Buffer.from(text, "base64");
}

export function etag(version: number): string {
  return `"${version}"`;
}

export type Condition = { kind: "any" } | { kind: "version"; version: number };

/**
 * Parses If-Match / If-None-Match: "*" or one strong entity tag holding a
 * version. A weak tag (W/"..") never matches under the strong comparison
 * RFC 9110 requires for If-Match, so it is answered as a failed condition
 * by the caller; a list of several tags is not supported (400).
 */
export function parseCondition(header: string | string[] | undefined, name: string): Condition | "weak" | null {
  if (header === undefined) return null;
  const h = (Array.isArray(header) ? header.join(",") : header).trim();
  if (h === "*") return { kind: "any" };
  if (h.includes(","))
    throw new Problem("invalid-condition", `${name}: only "*" or a single entity tag is supported, got ${h}`);
  if (h.startsWith("W/")) return "weak";
  const m = /^"(\d{1,16})"$/.exec(h);
  if (m === null || !Number.isSafeInteger(Number(m[1])))
    throw new Problem("invalid-condition", `${name}: expected "*" or an entity tag like "42", got ${h}`);
  return { kind: "version", version: Number(m[1]) };
}

/** A TTL in milliseconds from a query parameter or envelope field. */
export function parseTtl(raw: unknown, what: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = typeof raw === "string" && /^\d{1,16}$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_TTL_MS)
    throw new Problem("invalid-argument", `${what} must be an integer number of milliseconds in [1, ${MAX_TTL_MS}]`);
  return n;
}
