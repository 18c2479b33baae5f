/**
 * Small byte arrays carved out of shared 8 KiB blocks, as Node's
 * Buffer.allocUnsafe does from its pool, for the hot path's short-lived
 * bytes: a Redis answer, a native answer, a request frame.
 *
 * Why: V8 keeps a Uint8Array of at most 64 bytes inside the heap, but gives
 * a bigger one memory of its own outside it (a malloc, and a finalizer the
 * collector must run). At hundreds of thousands of 71-byte GET answers a
 * second that was a sixth of the IO thread's time in the collector
 * (docs/benchmarks.md, "the Redis port's hot path, step by step").
 *
 * The bound: a block is never reused, only dropped once full; it is freed
 * when no array carved from it is alive. So one array kept alive keeps at
 * most one block, 8 KiB, however small it is: the same bound as Node's own
 * Buffer pool (8 KiB), which the node's output already relied on. A block
 * starts zeroed, and each array is a fresh, never-written part of it.
 */

const BLOCK_BYTES = 8 * 1024;
/**
 * Larger arrays get memory of their own: carving them would waste too much of a block's tail (at most a
 * quarter of it here). 2 KiB: a run of 16 pipelined answers of 64-byte values is 1,136 bytes (src/io/run.ts).
 */
const CARVED_MAX_BYTES = 2048;

let block = new ArrayBuffer(BLOCK_BYTES);
let blockAt = 0;

/** A zeroed Uint8Array of `n` bytes, carved from a shared block when small. */
export function smallBytes(n: number): Uint8Array {
  if (n > CARVED_MAX_BYTES) return new Uint8Array(n);
  if (blockAt + n > BLOCK_BYTES) {
    block = new ArrayBuffer(BLOCK_BYTES);
    blockAt = 0;
  }
  const out = new Uint8Array(block, blockAt, n);
  blockAt += (n + 7) & ~7; // word-aligned: a Cap'n Proto frame's DataView reads words
  return out;
}

/** A copy of `b`'s bytes [from, to), in bytes from smallBytes: what a lent read's reader keeps past the read. */
export function smallCopy(b: Uint8Array, from: number, to: number): Uint8Array {
  const out = smallBytes(to - from);
  out.set(b.subarray(from, to));
  return out;
}
