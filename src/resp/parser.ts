/**
 * The RESP request parser: bytes from a socket in, commands (arrays of
 * byte-string arguments) out.
 *
 * Clients send either a multibulk array (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
 * or an inline command (`PING\r\n`, what telnet and redis-benchmark's
 * PING_INLINE send). Hand-written because it is the hottest code of the
 * Redis port: arguments are views into the parser's buffer (zero-copy), and
 * a partial command is resumed without re-reading bulk data it already has
 * (`need` says how many bytes must be buffered before trying again, so a
 * 16 MiB value arriving in 64 KiB pieces is scanned once, not 256 times).
 *
 * Views stay valid until the next push(): the connection hands each command
 * to its handler synchronously, and handlers copy what they keep.
 *
 * Protocol errors use Redis's own texts. After one, the stream cannot be
 * resynchronised (we no longer know where a command starts), so the
 * connection answers the error and closes, as Redis does.
 */

const CR = 13;
const LF = 10;

/** Longest inline command line, as Redis's PROTO_INLINE_MAX_SIZE. */
export const MAX_INLINE_BYTES = 64 * 1024;
/** Most arguments in one command, as Redis's multibulk limit. */
export const MAX_RESP_ARGS = 1024 * 1024;

export class RespParser {
  private buf: Uint8Array = new Uint8Array(16 * 1024);
  private start = 0;
  private end = 0;
  /** Bytes that must be buffered before a parse can make progress. */
  private need = 0;
  /** Set once the stream is broken: the Redis error text to send before closing. */
  error: string | null = null;
  private readonly maxBulkBytes: number;
  private readonly args: Uint8Array[] = [];

  constructor(maxBulkBytes: number) {
    this.maxBulkBytes = maxBulkBytes;
  }

  /** True while part of a command is buffered. */
  get partial(): boolean {
    return this.end > this.start;
  }

  /** Feeds bytes; calls onCommand(args) for every complete command, in order. */
  push(chunk: Uint8Array, onCommand: (args: Uint8Array[]) => void): void {
    if (this.error !== null) return;
    this.append(chunk);
    if (this.end - this.start < this.need) return;
    this.need = 0;
    while (this.start < this.end && this.error === null) {
      const next = this.buf[this.start] === 42 /* '*' */ ? this.multibulk() : this.inline();
      if (next < 0) break; // incomplete: wait for more bytes
      this.start = next;
      if (this.args.length > 0) onCommand(this.args);
      this.args.length = 0;
    }
    this.args.length = 0;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
  }

  private append(chunk: Uint8Array): void {
    const free = this.buf.length - this.end;
    if (chunk.length > free) {
      const used = this.end - this.start;
      if (used + chunk.length <= this.buf.length && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let size = this.buf.length;
        while (size < used + chunk.length) size *= 2;
        const grown = new Uint8Array(size);
        grown.set(this.buf.subarray(this.start, this.end), 0);
        this.buf = grown;
      }
      this.start = 0;
      this.end = used;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** Reads a decimal number ending in \r\n at `at`; returns [value, next] or null when incomplete. -2: malformed. */
  private number(at: number): number {
    const b = this.buf;
    let n = 0;
    let neg = false;
    let i = at;
    if (i < this.end && b[i] === 45 /* '-' */) {
      neg = true;
      i++;
    }
    const digitsStart = i;
    while (i < this.end && b[i]! >= 48 && b[i]! <= 57) {
      n = n * 10 + (b[i]! - 48);
      i++;
      if (i - digitsStart > 15) return NaN; // beyond any limit we accept
    }
    if (i + 1 >= this.end) {
      this.lineEnd = -1;
      return 0;
    }
    if (i === digitsStart || b[i] !== CR || b[i + 1] !== LF) return NaN;
    this.lineEnd = i + 2;
    return neg ? -n : n;
  }
  private lineEnd = 0;

  /** Parses a multibulk at `start`; returns the offset after it, or -1 when incomplete. */
  private multibulk(): number {
    const count = this.number(this.start + 1);
    if (this.lineEnd < 0) return this.incompleteLine(this.start);
    if (Number.isNaN(count) || count > MAX_RESP_ARGS) {
      this.error = "ERR Protocol error: invalid multibulk length";
      return -1;
    }
    let at = this.lineEnd;
    if (count <= 0) return at; // "*0" and "*-1" are empty: skipped, as Redis does
    const b = this.buf;
    for (let i = 0; i < count; i++) {
      if (at >= this.end) return -1;
      if (b[at] !== 36 /* '$' */) {
        this.error = `ERR Protocol error: expected '$', got '${String.fromCharCode(b[at]!)}'`;
        return -1;
      }
      const len = this.number(at + 1);
      if (this.lineEnd < 0) return this.incompleteLine(at);
      if (Number.isNaN(len) || len < 0 || len > this.maxBulkBytes) {
        this.error = "ERR Protocol error: invalid bulk length";
        return -1;
      }
      const dataAt = this.lineEnd;
      if (dataAt + len + 2 > this.end) {
        this.need = dataAt + len + 2 - this.start;
        this.args.length = 0;
        return -1;
      }
      if (b[dataAt + len] !== CR || b[dataAt + len + 1] !== LF) {
        this.error = "ERR Protocol error: expected '\\r\\n' after bulk data";
        return -1;
      }
      this.args.push(b.subarray(dataAt, dataAt + len));
      at = dataAt + len + 2;
    }
    return at;
  }

  private incompleteLine(lineStart: number): number {
    if (this.end - lineStart > 64) {
      this.error = "ERR Protocol error: invalid multibulk length";
    }
    this.args.length = 0;
    return -1;
  }

  /** Parses an inline command line; -1 when the line is not complete. */
  private inline(): number {
    const b = this.buf;
    let nl = -1;
    for (let i = this.start; i < this.end; i++) {
      if (b[i] === LF) {
        nl = i;
        break;
      }
    }
    if (nl < 0) {
      if (this.end - this.start > MAX_INLINE_BYTES) this.error = "ERR Protocol error: too big inline request";
      return -1;
    }
    const lineEnd = nl > this.start && b[nl - 1] === CR ? nl - 1 : nl;
    const err = splitInline(b, this.start, lineEnd, this.args);
    if (err !== null) {
      this.error = err;
      return -1;
    }
    return nl + 1;
  }
}

/**
 * Splits an inline line into arguments the way redis-cli and Redis do
 * (sdssplitargs): spaces separate, "double quotes" allow spaces and \n \r
 * \t \xHH escapes, 'single quotes' are literal.
 */
function splitInline(b: Uint8Array, from: number, to: number, out: Uint8Array[]): string | null {
  let i = from;
  while (i < to) {
    while (i < to && (b[i] === 32 || b[i] === 9)) i++;
    if (i >= to) break;
    const q = b[i];
    if (q === 34 /* " */ || q === 39 /* ' */) {
      const bytes: number[] = [];
      i++;
      let closed = false;
      while (i < to) {
        const ch = b[i]!;
        if (ch === q) {
          closed = true;
          i++;
          break;
        }
        if (q === 34 && ch === 92 /* \ */ && i + 1 < to) {
          const e = b[i + 1]!;
          const hex = String.fromCharCode(b[i + 2] ?? 0, b[i + 3] ?? 0);
          if (e === 120 /* x */ && i + 3 < to && /^[0-9a-fA-F]{2}$/.test(hex)) {
            bytes.push(Number.parseInt(hex, 16));
            i += 4;
            continue;
          }
          bytes.push(e === 110 ? 10 : e === 114 ? 13 : e === 116 ? 9 : e === 98 ? 8 : e === 97 ? 7 : e);
          i += 2;
          continue;
        }
        bytes.push(ch);
        i++;
      }
      if (!closed || (i < to && b[i] !== 32 && b[i] !== 9)) return "ERR Protocol error: unbalanced quotes in request";
      out.push(Uint8Array.from(bytes));
      continue;
    }
    const s = i;
    while (i < to && b[i] !== 32 && b[i] !== 9) i++;
    out.push(b.subarray(s, i));
  }
  return null;
}
