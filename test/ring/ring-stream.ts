// A deterministic stream of test messages for the ring tests: message `seq`
// of stream `seed` has a size and content that both threads can compute.
import { mulberry32 } from "../support/random.js";

export function messageSize(seed: number, seq: number, maxSize: number): number {
  const r = mulberry32(seed * 1_000_003 + seq)();
  // Mostly small messages, some near the record limit, a few huge ones that
  // must be fragmented: the mix a store sees (keys, values, 16 MiB blobs).
  const r2 = mulberry32(seed + seq * 7919)();
  if (r2 < 0.05) return Math.floor(r * maxSize);
  if (r2 < 0.2) return Math.floor(r * Math.min(maxSize, 4096));
  return Math.floor(r * 64);
}

function byteAt(seed: number, seq: number, i: number): number {
  return (seq * 31 + i * 7 + seed + (i >>> 8)) & 0xff;
}

export function fillMessage(seed: number, seq: number, out: Uint8Array): void {
  for (let i = 0; i < out.length; i++) out[i] = byteAt(seed, seq, i);
}

/** null when message is exactly message `seq` of the stream, else what is wrong. */
export function verifyMessage(seed: number, seq: number, maxSize: number, message: Uint8Array): string | null {
  const size = messageSize(seed, seq, maxSize);
  if (message.length !== size) return `message ${seq}: length ${message.length}, expected ${size}`;
  for (let i = 0; i < size; i++) {
    if (message[i] !== byteAt(seed, seq, i))
      return `message ${seq}: byte ${i} is ${message[i]}, expected ${byteAt(seed, seq, i)}`;
  }
  return null;
}
