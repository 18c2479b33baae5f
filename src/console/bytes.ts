/**
 * Keys and values are bytes. The console shows them without ever treating
 * them as markup (Preact puts them in text nodes) and without hiding what
 * they are: bytes that are not printable UTF-8 are shown as \xNN escapes, so
 * a key with a NUL, an escape sequence or a right-to-left override reads as
 * what it is, not as what it pretends to be.
 */

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The bytes as text, when they are valid UTF-8; else null. */
export function asText(b: Uint8Array): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}

/** Bytes from the API's {key|value, encoding} form ("utf8" text, or "base64"). */
export function fromWire(s: string, encoding: string): Uint8Array {
  if (encoding === "base64") {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return new TextEncoder().encode(s);
}

export function toBase64(b: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < b.length; i++) bin += String.fromCharCode(b[i]!);
  return btoa(bin);
}

// Control characters, and the invisible ones that change how text around them reads (bidi overrides,
// zero-width characters): shown escaped. A backslash is doubled, so an escape shown is never one typed.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is what it is for
const HIDDEN = /[\\\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** A key for display: its text with hidden characters escaped, or \xNN for every byte when not UTF-8. */
export function displayBytes(b: Uint8Array): string {
  const t = asText(b);
  if (t === null)
    return Array.from(b, (x) => (x >= 0x20 && x < 0x7f && x !== 0x5c ? String.fromCharCode(x) : `\\x${hex2(x)}`)).join(
      "",
    );
  return t.replace(HIDDEN, (c) => {
    if (c === "\\") return "\\\\";
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${hex2(n)}` : `\\u${n.toString(16).padStart(4, "0")}`;
  });
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

const UNRESERVED = /[A-Za-z0-9\-._~:@!$'()*+,;=]/;

/** The key's bytes percent-encoded for /v1/kv/<key> (every byte but the plainest ASCII escaped). */
export function keyPath(b: Uint8Array): string {
  let out = "";
  for (const x of b) {
    const c = String.fromCharCode(x);
    out += x < 0x80 && UNRESERVED.test(c) && c !== "+" ? c : `%${hex2(x).toUpperCase()}`;
  }
  return out;
}

/** A classic hex dump: offset, 16 bytes in hex, the printable ASCII beside them. */
export function hexDump(b: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = Array.from(row, hex2).join(" ").padEnd(47, " ");
    const ascii = Array.from(row, (x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex}  ${ascii}`);
  }
  return lines.join("\n");
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatTtl(ms: number | null): string {
  if (ms === null) return "none";
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
