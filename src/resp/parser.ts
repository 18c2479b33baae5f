/**
 * The RESP request parser: bytes from a socket in, commands (arrays of
 * byte-string arguments) out.
 *
 * Clients send either a multibulk array (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
 * or an inline command (`PING\r\n`, what telnet and redis-benchmark's
 * PING_INLINE send). Hand-written because it is the hottest code of the
 * Redis port: arguments are views into the parser's buffer (zero-copy).
 *
 * A partial multibulk is resumed where it stopped, as Redis's
 * processMultibulkBuffer does: the arguments read so far are kept as offsets
 * (not re-read when the next bytes come), and `need` says how many bytes must
 * be buffered before trying again, so a 16 MiB value arriving in 64 KiB
 * pieces is scanned once, not 256 times, and a command of 60,000 small
 * arguments arriving in pieces is not re-parsed from its start at each piece.
 *
 * Views stay valid until the next push(): the connection hands each command
 * to its handler synchronously, and handlers copy what they keep. A chunk
 * can be lent (src/io/read-buffer.ts: the read buffer every connection
 * shares, overwritten by the next read): then the views of a command that
 * is not taken hot are made in a copy of the chunk's rest (detach), since
 * a command may go on after the read (a shard worker answers later; the
 * slow log reads its arguments again when it is answered).
 *
 * Memory is bounded (docs/architecture.md, "Memory per connection"): the
 * buffer holds at most one partial command (complete ones leave at once),
 * which may not pass `maxQueryBytes` (Redis's client-query-buffer-limit), nor
 * hold more than RESP_MAX_ARGS arguments, nor one argument over
 * `maxBulkBytes` (Redis's proto-max-bulk-len). Each is refused as soon as it
 * is known: a bulk length or an argument count from its header, before the
 * bytes it announces arrive.
 *
 * A chunk is parsed where it lies: only the part of a command it ends inside
 * is copied into a buffer of our own, and the next chunk's bytes only up to
 * that command's end (stitch), which grows by doubling as the rest of a large
 * command arrives; the commands after it are parsed in the chunk again. So
 * the common case (whole commands in a chunk) copies nothing, a long
 * pipeline copies one command per read, not the read (decision 0083), and an idle connection
 * keeps no buffer.
 *
 * Protocol errors use Redis's own texts. After one, the stream cannot be
 * resynchronised (we no longer know where a command starts), so the
 * connection answers the error and closes, as Redis does. `limit` tells the
 * connection when the error is a memory limit (it logs those as limits).
 */
import { RESP_MAX_ARGS, RESP_MAX_INLINE_BYTES, RESP_QUERY_BUFFER_BYTES } from "../limits.js";
import { smallCopy } from "../small-bytes.js";

const CR = 13;
const LF = 10;

/**
 * The smallest buffer of our own, and the least a stitch (RespParser.stitch)
 * copies of a read at a time: a typical command's tail in one step.
 */
const STITCH_BYTES = 4 * 1024;
/** Socket reads are at most this big (libuv's read size); the buffer's cap allows one on top of a partial command. */
const CHUNK_BYTES = 64 * 1024;

const EMPTY = new Uint8Array(0);
/** The argument offsets' table is kept between commands up to this many entries (two per argument). */
const OFFSETS_KEPT = 2 * 1024;

export type RespLimit = "query-buffer" | "args" | "bulk";

export class RespParser {
  /** The bytes being parsed: the chunk being pushed, for the push's duration, or our own buffer. */
  private buf: Uint8Array = EMPTY;
  /** `buf` is a lent chunk (see the file comment): views are made only after detach(). */
  private lent = false;
  /** Our own buffer, kept for the next partial command while a connection is busy (keepRest). */
  private own: Uint8Array = EMPTY;
  /** Where the command being parsed starts, and where the buffered bytes end. */
  private start = 0;
  private end = 0;
  /** Bytes (from `start`) that must be buffered before a parse can make progress. */
  private need = 0;
  /** Set once the stream is broken: the Redis error text to send before closing. */
  error: string | null = null;
  /** Set with `error` when the error is a memory limit rather than malformed input. */
  limit: RespLimit | null = null;
  private readonly maxBulkBytes: number;
  private readonly maxQueryBytes: number;
  private readonly args: Uint8Array[] = [];
  /** A multibulk being read: arguments still expected (-1: none under way). */
  private remaining = -1;
  /** Where the next argument's header starts, as an offset from `start`. */
  private scan = 0;
  /** The arguments read so far: offset from `start` and length, in pairs. */
  private offsets = new Int32Array(64);
  private argc = 0;
  /**
   * Offered every complete multibulk of at most 3 arguments before its views
   * are made: the buffer, where the command starts, its arguments' offsets
   * from there and lengths (in pairs), and their count. True when it took
   * the command (src/resp/hot.ts); false leaves it to onCommand. The bytes
   * are valid only during the call, as the views are (and, when not
   * `lending`, while keepsBytes says so).
   */
  hot: ((buf: Uint8Array, start: number, offsets: Int32Array, argc: number) => boolean) | null = null;
  /**
   * Asked before the buffer of our own is used again for the next partial
   * command (over the one it held, already handed out): true keeps those
   * bytes where they are, and a new buffer is made instead. The connection
   * answers true while a request it read is unanswered: the slow log reads a
   * request's arguments again from these bytes when its answer turns out slow
   * (argsAfter, argsAt), so they must not change under it. A socket's chunk,
   * parsed in place, is either never written or lent, and then detached
   * before any view of it is handed out, so only reuse needs asking.
   */
  keepsBytes: (() => boolean) | null = null;

  constructor(maxBulkBytes: number, maxQueryBytes = Math.max(RESP_QUERY_BUFFER_BYTES, maxBulkBytes + CHUNK_BYTES)) {
    this.maxBulkBytes = maxBulkBytes;
    this.maxQueryBytes = maxQueryBytes;
  }

  /**
   * True while the bytes being parsed are a lent chunk (see the file comment):
   * a hot command's taker copies what it keeps of them past the read.
   */
  get lending(): boolean {
    return this.lent;
  }

  /** True while part of a command is buffered. */
  get partial(): boolean {
    return this.end > this.start;
  }

  /** Bytes of the buffer of our own (what this connection's parser holds between pushes). */
  get bufferedBytes(): number {
    return this.buf.length;
  }

  /**
   * Feeds bytes; calls onCommand(args) for every complete command, in order.
   * `lent`: the chunk's bytes are overwritten once this returns (see the
   * file comment).
   */
  push(chunk: Uint8Array, onCommand: (args: Uint8Array[]) => void, lent = false): void {
    if (this.error !== null) return;
    let from = 0;
    if (this.start !== this.end) {
      // A command began in an earlier read: finish it in our own buffer, then parse the rest in place.
      from = this.stitch(chunk, onCommand);
      if (from < 0) return;
    }
    // Parse the chunk where it lies, no copy. A socket's Buffer is seen as a plain Uint8Array: each
    // argument is a subarray of it, and a Buffer's subarray goes through its species constructor (a JS
    // call and a FastBuffer per argument).
    this.buf = chunk.constructor === Uint8Array ? chunk : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    this.lent = lent;
    this.start = from;
    this.end = chunk.length;
    while (this.start < this.end && this.error === null) {
      const next = this.next();
      if (next < 0) break; // incomplete: wait for more bytes
      this.start = next;
      this.deliver(onCommand);
    }
    if (this.args.length > 0) this.args.length = 0;
    this.lent = false;
    if (this.start === this.end) {
      // Every command is out: an idle connection keeps no buffer.
      this.start = 0;
      this.end = 0;
      this.buf = EMPTY;
      this.own = EMPTY;
      return;
    }
    if (this.error === null) this.keepRest();
  }

  /**
   * The command at `start` is about to be handed out as views, and `buf` is
   * a lent chunk: copies the chunk from here to its end into bytes of their
   * own and goes on parsing there. So a read costs at most one copy, and a
   * read of hot commands only (whose views live just while they are sent)
   * none. Returns how far `start` moved (the caller's absolute offsets into
   * the chunk move back by as much).
   */
  private detach(): number {
    const from = this.start;
    this.buf = smallCopy(this.buf, from, this.end);
    this.end -= from;
    this.start = 0;
    this.lent = false;
    return from;
  }

  /** Parses (or resumes) the command at `start`: the offset after it, or -1 when incomplete. */
  private next(): number {
    return this.remaining >= 0 || this.buf[this.start] === 42 /* '*' */ ? this.multibulk() : this.inline();
  }

  /** Hands a complete command's arguments to onCommand. */
  private deliver(onCommand: (args: Uint8Array[]) => void): void {
    // Emptied only when it holds something: a hot command (hot.ts) fills no array, and setting an
    // array's length is a call into V8's runtime, which per pipelined command showed in a profile.
    if (this.args.length > 0) {
      onCommand(this.args);
      this.args.length = 0;
    }
  }

  /**
   * Finishes the command our own buffer holds the start of, with as few of
   * the chunk's bytes as it needs: the bytes its header announced when that
   * is known, else a step that doubles with what is buffered (so a long
   * inline line or header is scanned a bounded number of times). Returns
   * where in the chunk the next command starts, or -1 when the chunk ended
   * first (all of it is buffered) or the stream broke. Copying only the
   * command, not the whole read after it, keeps the buffer one command's
   * size, and the commands after it are parsed in place like any others.
   */
  private stitch(chunk: Uint8Array, onCommand: (args: Uint8Array[]) => void): number {
    let used = 0;
    while (used < chunk.length) {
      const buffered = this.end - this.start;
      const take = Math.min(chunk.length - used, Math.max(this.need - buffered, buffered, STITCH_BYTES));
      this.append(chunk.subarray(used, used + take));
      used += take;
      if (this.end - this.start > this.maxQueryBytes) {
        this.tooLarge(this.end - this.start);
        return -1;
      }
      if (this.end - this.start < this.need) continue;
      this.need = 0;
      const next = this.next();
      if (this.error !== null) return -1;
      if (next < 0) continue;
      // Complete: the bytes buffered after it are the chunk's, so the chunk is parsed from there.
      const after = this.end - next;
      this.start = next;
      this.deliver(onCommand);
      this.start = 0;
      this.end = 0;
      return used - after;
    }
    return -1;
  }

  /**
   * The chunk parsed in place ends inside a command: copy that part into a
   * buffer of our own, the last one again unless a request read from it is
   * still unanswered (keepsBytes), else a new one of about its size.
   */
  private keepRest(): void {
    const rest = this.end - this.start;
    let own = this.own;
    if (own.length < rest || this.keepsBytes?.()) {
      // Sized by the bytes that came, not by what a header claims (a claim costs what was sent).
      own = new Uint8Array(Math.min(Math.max(2 * rest, STITCH_BYTES), Math.max(rest, this.maxQueryBytes)));
      this.own = own;
    }
    own.set(this.buf.subarray(this.start, this.end), 0);
    this.buf = own;
    this.start = 0;
    this.end = rest;
    if (this.end - this.start > this.maxQueryBytes) this.tooLarge(this.end - this.start);
  }

  private tooLarge(bytes: number): void {
    this.error = `ERR Protocol error: command too large (${bytes} bytes; the limit is ${this.maxQueryBytes})`;
    this.limit = "query-buffer";
  }

  /** Appends to our own buffer (which holds one partial command, from its start), doubling it when full. */
  private append(chunk: Uint8Array): void {
    if (chunk.length > this.buf.length - this.end) {
      const used = this.end - this.start;
      // Doubling, but never past one partial command at the limit and one read on top of it.
      let size = Math.max(this.buf.length, STITCH_BYTES);
      while (size < used + chunk.length) size *= 2;
      size = Math.max(used + chunk.length, Math.min(size, this.maxQueryBytes + CHUNK_BYTES));
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(this.start, this.end), 0);
      this.buf = grown;
      this.own = grown;
      this.start = 0;
      this.end = used;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** Reads a decimal number ending in \r\n at `at`; sets lineEnd (-1: incomplete). NaN: malformed. */
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

  /**
   * Parses (or resumes) a multibulk at `start`; returns the offset after it,
   * or -1 when incomplete (the state to resume from is kept).
   */
  private multibulk(): number {
    if (this.remaining < 0) {
      const count = this.number(this.start + 1);
      if (this.lineEnd < 0) return this.incompleteLine(this.start);
      if (Number.isNaN(count) || count > RESP_MAX_ARGS) {
        this.error = "ERR Protocol error: invalid multibulk length";
        if (count > RESP_MAX_ARGS) this.limit = "args";
        return -1;
      }
      if (count <= 0) return this.lineEnd; // "*0" and "*-1" are empty: skipped, as Redis does
      this.remaining = count;
      this.argc = 0;
      this.scan = this.lineEnd - this.start;
    }
    let b = this.buf;
    let at = this.start + this.scan;
    while (this.remaining > 0) {
      this.scan = at - this.start;
      if (at >= this.end) return -1;
      if (b[at] !== 36 /* '$' */) {
        this.error = `ERR Protocol error: expected '$', got '${String.fromCharCode(b[at]!)}'`;
        return -1;
      }
      const len = this.number(at + 1);
      if (this.lineEnd < 0) return this.incompleteLine(at);
      if (Number.isNaN(len) || len < 0 || len > this.maxBulkBytes) {
        this.error = "ERR Protocol error: invalid bulk length";
        if (len > this.maxBulkBytes) this.limit = "bulk";
        return -1;
      }
      const dataAt = this.lineEnd;
      if (dataAt + len + 2 > this.end) {
        // Known from the header alone: wait for that many bytes, if the command may be that large.
        this.need = dataAt + len + 2 - this.start;
        if (this.need > this.maxQueryBytes) this.tooLarge(this.need);
        return -1;
      }
      if (b[dataAt + len] !== CR || b[dataAt + len + 1] !== LF) {
        this.error = "ERR Protocol error: expected '\\r\\n' after bulk data";
        return -1;
      }
      this.keep(dataAt - this.start, len);
      this.remaining--;
      at = dataAt + len + 2;
    }
    // Complete. A hot command is taken from its offsets (src/resp/hot.ts): no views, no argument array.
    if (this.hot !== null && this.argc <= 3 && this.hot(b, this.start, this.offsets, this.argc)) {
      this.remaining = -1;
      this.argc = 0;
      return at;
    }
    // The views, now that the buffer will not move before the handler has run (in bytes of their own if
    // the chunk is lent).
    if (this.lent) {
      at -= this.detach();
      b = this.buf;
    }
    for (let i = 0; i < this.argc; i++) {
      const from = this.start + this.offsets[2 * i]!;
      this.args.push(b.subarray(from, from + this.offsets[2 * i + 1]!));
    }
    this.remaining = -1;
    this.argc = 0;
    if (this.offsets.length > OFFSETS_KEPT) this.offsets = new Int32Array(OFFSETS_KEPT);
    return at;
  }

  /** Records one argument (offset from `start`, length). */
  private keep(offset: number, length: number): void {
    if (2 * this.argc + 2 > this.offsets.length) {
      const grown = new Int32Array(Math.min(this.offsets.length * 2, 2 * RESP_MAX_ARGS));
      grown.set(this.offsets);
      this.offsets = grown;
    }
    this.offsets[2 * this.argc] = offset;
    this.offsets[2 * this.argc + 1] = length;
    this.argc++;
  }

  private incompleteLine(lineStart: number): number {
    if (this.end - lineStart > 64) {
      this.error = "ERR Protocol error: invalid multibulk length";
    }
    return -1;
  }

  /** Parses an inline command line; -1 when the line is not complete. */
  private inline(): number {
    let b = this.buf;
    let nl = -1;
    for (let i = this.start; i < this.end; i++) {
      if (b[i] === LF) {
        nl = i;
        break;
      }
    }
    if (nl < 0) {
      if (this.end - this.start > RESP_MAX_INLINE_BYTES) this.error = "ERR Protocol error: too big inline request";
      return -1;
    }
    let lineEnd = nl > this.start && b[nl - 1] === CR ? nl - 1 : nl;
    if (this.lent) {
      const moved = this.detach();
      nl -= moved;
      lineEnd -= moved;
      b = this.buf;
    }
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

/**
 * The slow log's reading of a command again, once its answer turned out
 * slow (decision 0336): its views are long gone, but the bytes they were
 * views into are not (RespParser.keepsBytes). `first` is the command's first
 * argument as the parser handed it out (a view into those bytes) and `argc`
 * its count. Returns the first `max` arguments, or null when the bytes do
 * not read as that command (a quoted inline name, which was copied).
 */
export function argsAfter(first: Uint8Array, argc: number, max: number): Uint8Array[] | null {
  if (argc <= 1) return [first];
  const b = new Uint8Array(first.buffer, first.byteOffset);
  const out = [first];
  if (b[first.length] === CR && b[first.length + 1] === LF)
    return readBulks(b, first.length + 2, Math.min(argc, max) - 1, out) ? out : null;
  // An inline command: its line split again, as it was.
  let nl = first.length;
  while (nl < b.length && b[nl] !== LF) nl++;
  const all: Uint8Array[] = [];
  if (splitInline(b, 0, nl > 0 && b[nl - 1] === CR ? nl - 1 : nl, all) !== null || all.length !== argc) return null;
  return all.slice(0, max);
}

/** As argsAfter, for a multibulk read from where it starts (`at`, its '*'): a hot command (src/resp/hot.ts). */
export function argsAt(b: Uint8Array, at: number, max: number): Uint8Array[] | null {
  let i = at + 1;
  let argc = 0;
  while (i < b.length && b[i]! >= 48 && b[i]! <= 57) argc = argc * 10 + (b[i++]! - 48);
  if (b[at] !== 42 || b[i] !== CR || b[i + 1] !== LF) return null;
  const out: Uint8Array[] = [];
  return readBulks(b, i + 2, Math.min(argc, max), out) ? out : null;
}

/** Reads `n` bulk strings ($len CRLF bytes CRLF) from `at` into `out`; false if the bytes are not that. */
function readBulks(b: Uint8Array, at: number, n: number, out: Uint8Array[]): boolean {
  let i = at;
  for (let k = 0; k < n; k++) {
    if (b[i] !== 36 /* '$' */) return false;
    let len = 0;
    i++;
    const digits = i;
    while (i < b.length && b[i]! >= 48 && b[i]! <= 57) len = len * 10 + (b[i++]! - 48);
    if (i === digits || b[i] !== CR || b[i + 1] !== LF || i + 2 + len + 2 > b.length) return false;
    out.push(b.subarray(i + 2, i + 2 + len));
    i += 2 + len + 2;
  }
  return true;
}
