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

/**
 * The bytes a key is placed by: its hash tag when it has one, else the whole
 * key. Redis Cluster's rule: the tag is what lies between the first "{" and
 * the first "}" after it, if that is not empty. Keys sharing a tag
 * ({user:1}:a, {user:1}:b) land on one shard and one partition, which is
 * what makes a transaction over them possible in a cluster
 * (docs/transactions.md); `{}` and a lone `{` place by the whole key.
 */
export function placementBytes(key: Uint8Array): Uint8Array {
  const open = key.indexOf(0x7b);
  if (open < 0) return key;
  const close = key.indexOf(0x7d, open + 1);
  if (close <= open + 1) return key;
  return key.subarray(open + 1, close);
}

/** The hash a key is placed by (shard, partition): xxHash32 of placementBytes(key). */
export function placementHash(key: Uint8Array): number {
  return hash32(placementBytes(key), 0);
}
