/**
 * Cap'n Proto stream framing: cutting a TCP byte stream into messages.
 *
 * A framed message starts with its segment table (the standard framing from
 * the Cap'n Proto encoding spec):
 *
 *   u32           segment count - 1
 *   u32 x count   size of each segment, in 8-byte words
 *   u32           padding, when count is even, to an 8-byte boundary
 *   segments      the words
 *
 * From the table alone we know the frame's full length, so we can refuse an
 * oversized frame before buffering it (the limit is checked on the header,
 * not after reading 4 GiB) and we always know where the next frame starts. A
 * frame whose *content* is garbage is therefore recoverable: we answer it
 * with an error and go on. A frame whose *table* is garbage (too many
 * segments, too large) is not: we cannot know where the next frame starts,
 * so the connection gets a final error and is closed.
 *
 * The reader copies each complete frame into an ArrayBuffer of its own,
 * which capnp-es then reads in place; or, for a reader given an allocator
 * (the node's client connections: src/small-bytes.ts), small frames into
 * bytes carved from a shared block, delivered as views (pushViews). Socket chunks are not kept: a partial
 * frame is accumulated into its buffer as bytes arrive.
 *
 * Memory follows the bytes that arrived, not the size the header claims: a
 * header is only a claim, and a peer that sends a header saying 200 MiB and
 * then nothing must not cost 200 MiB. A frame of up to FRAME_INITIAL_BYTES
 * gets its exact buffer at once (every small request: no copy); a larger one
 * starts at FRAME_INITIAL_BYTES and doubles as bytes arrive, the last step
 * landing on the frame's exact size. Growing copies what arrived so far, at
 * most once more in all (1/2 + 1/4 + ...), and only for frames over 64 KiB.
 */
import { assert } from "../assert.js";
import { FRAME_INITIAL_BYTES, MAX_FRAME_SEGMENTS } from "../limits.js";

const u32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

export type FrameError = { code: "FRAME_TOO_LARGE" | "MALFORMED_FRAME"; message: string };

export class FrameReader {
  /**
   * Largest frame accepted; may be raised while reading (the peer transport
   * accepts only small frames until a peer's hello is verified).
   */
  maxFrameBytes: number;
  /** The frame being assembled, once its size is known: its buffer holds `filled` bytes so far. */
  private frame: Uint8Array | null = null;
  /** The frame's full size, from its segment table. */
  private frameBytes = 0;
  private filled = 0;
  /** Bytes of an incomplete segment table. */
  private head = new Uint8Array(4 + 4 * MAX_FRAME_SEGMENTS + 4);
  private headFilled = 0;
  /** Set once the stream is unrecoverable; nothing more is read. */
  error: FrameError | null = null;
  /**
   * Offered every whole one-segment frame that lies in one chunk, as a view
   * of the chunk valid only during the call, before it is copied out: true
   * when it took the frame (then onFrame does not see it). Frames after it
   * are offered or delivered in order.
   */
  hot: ((frame: Uint8Array) => boolean) | null = null;

  constructor(
    maxFrameBytes: number,
    /** Where a frame's bytes come from; without one, each frame is an ArrayBuffer of its own. */
    private readonly alloc: ((bytes: number) => Uint8Array) | null = null,
  ) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Feeds bytes in; calls onFrame for each complete frame, in order, each its own ArrayBuffer. */
  push(chunk: Uint8Array, onFrame: (frame: ArrayBuffer) => void): void {
    assert(this.alloc === null, "a reader with an allocator delivers views: pushViews");
    this.pushViews(chunk, (frame) => onFrame(frame.buffer as ArrayBuffer));
  }

  /** Feeds bytes in; calls onFrame for each complete frame, in order, as a view (valid as long as it is kept). */
  pushViews(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): void {
    // A socket's Buffer seen as a plain Uint8Array: its subarrays below are then plain too (a Buffer's go
    // through its species constructor, a JS call per frame).
    if (chunk.constructor !== Uint8Array) chunk = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    let at = 0;
    while (at < chunk.length && this.error === null) {
      if (this.frame === null) {
        // The common case: a whole one-segment frame of at most FRAME_INITIAL_BYTES lies in this chunk. It is
        // cut at once, without gathering its table into `head` first (a closure and three copies a frame,
        // which a profile of pipelined native requests showed: docs/benchmarks.md). Anything else, and any
        // limit, is readTable's.
        if (this.headFilled === 0 && chunk.length - at >= 8 && u32(chunk, at) === 0) {
          const total = 8 + u32(chunk, at + 4) * 8;
          if (total <= chunk.length - at && total <= FRAME_INITIAL_BYTES && total <= this.maxFrameBytes) {
            const view = chunk.subarray(at, at + total);
            at += total;
            // Taken as it lies in the chunk (a native run: src/io/native-run.ts), or copied out to be kept.
            if (this.hot?.(view)) continue;
            const frame = this.alloc !== null ? this.alloc(total) : new Uint8Array(total);
            frame.set(view);
            onFrame(frame);
            continue;
          }
        }
        at = this.readTable(chunk, at, onFrame);
        continue;
      }
      const take = Math.min(this.frameBytes - this.filled, chunk.length - at);
      if (this.filled + take > this.frame.length) this.grow(this.filled + take);
      this.frame.set(chunk.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled === this.frameBytes) {
        const done = this.frame;
        this.frame = null;
        this.filled = 0;
        onFrame(done);
      }
    }
  }

  /** True when a frame is partly read (the peer stopped mid-frame at close: a truncated frame). */
  get partial(): boolean {
    return this.frame !== null || this.headFilled > 0;
  }

  /** Bytes allocated for the frame being assembled (0 between frames): what a partial frame costs. */
  get bufferedBytes(): number {
    return this.frame === null ? 0 : this.frame.length;
  }

  /** Doubles the frame's buffer until `need` bytes fit; the last step is the frame's exact size. */
  private grow(need: number): void {
    const old = this.frame!;
    let size = old.length;
    while (size < need) size *= 2;
    const grown = new Uint8Array(Math.min(size, this.frameBytes));
    grown.set(old.subarray(0, this.filled), 0);
    this.frame = grown;
  }

  private readTable(chunk: Uint8Array, at: number, onFrame: (frame: Uint8Array) => void): number {
    // Gather the first word, then the whole table, into `head`.
    const need = (n: number): boolean => {
      const take = Math.min(n - this.headFilled, chunk.length - at);
      if (take > 0) {
        this.head.set(chunk.subarray(at, at + take), this.headFilled);
        this.headFilled += take;
        at += take;
      }
      return this.headFilled >= n;
    };
    if (!need(4)) return at;
    const h = this.head;
    const segments = ((h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0) + 1;
    if (segments > MAX_FRAME_SEGMENTS || segments === 0) {
      this.error = {
        code: "MALFORMED_FRAME",
        message: `segment table claims ${segments} segments (limit ${MAX_FRAME_SEGMENTS})`,
      };
      return chunk.length;
    }
    let tableBytes = 4 + 4 * segments;
    tableBytes += tableBytes % 8; // pad to a word
    if (!need(tableBytes)) return at;
    let words = 0;
    for (let i = 0; i < segments; i++) {
      const o = 4 + 4 * i;
      words += (h[o]! | (h[o + 1]! << 8) | (h[o + 2]! << 16) | (h[o + 3]! << 24)) >>> 0;
    }
    const total = tableBytes + words * 8;
    if (total > this.maxFrameBytes) {
      this.error = {
        code: "FRAME_TOO_LARGE",
        message: `frame of ${total} bytes exceeds the limit of ${this.maxFrameBytes}`,
      };
      return chunk.length;
    }
    // The exact size when small; else a first piece that grows with the bytes (see the file comment).
    const size = Math.min(total, Math.max(FRAME_INITIAL_BYTES, tableBytes));
    const frame = this.alloc !== null && size === total ? this.alloc(size) : new Uint8Array(size);
    frame.set(h.subarray(0, tableBytes), 0);
    this.headFilled = 0;
    if (words === 0) {
      // A well-formed table with no content: we know where the next frame
      // starts, so this is a bad *message*, not a lost stream. Deliver it;
      // the decoder answers MALFORMED_FRAME and the connection goes on.
      onFrame(frame);
      return at;
    }
    this.frame = frame;
    this.frameBytes = total;
    this.filled = tableBytes;
    return at;
  }
}
