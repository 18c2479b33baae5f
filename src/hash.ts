/**
 * xxHash32, the one non-cryptographic hash Piccolo routes by: keys to shards
 * (src/io/route.ts), keys to partitions and partitions to members
 * (src/cluster/placement.ts). In its own module so both can use it without
 * one importing the other. xxhash-wasm is WebAssembly, compiled once,
 * asynchronously: initHash() must have resolved before hash32() is called.
 */
import xxhash from "xxhash-wasm";

let h32: ((input: Uint8Array, seed?: number) => number) | null = null;

export async function initHash(): Promise<void> {
  if (h32 === null) h32 = (await xxhash()).h32Raw;
}

/** xxHash32 of `input` with `seed`, as an unsigned 32-bit number. */
export function hash32(input: Uint8Array, seed = 0): number {
  return h32!(input, seed) >>> 0;
}
