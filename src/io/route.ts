/**
 * Which shard owns a key: xxHash32(key) mod N (decision 0002).
 *
 * Routing is by key, not by connection: every shard owns a private map, so a
 * key must always land on the same shard whichever socket it arrives on. The
 * first sketch of Piccolo hashed connections to queues, which quietly gave
 * every connection its own keyspace.
 *
 * xxHash32 (the xxhash-wasm package) is fast on short keys and passes
 * SMHasher's distribution tests, so shards fill evenly. The shard's own hash
 * table uses a different function, so the low bits it indexes by are not
 * correlated with the shard choice.
 */
import { initHash, placementHash } from "../hash.js";

/** Must be awaited once before shardOf(); the hash is WebAssembly, compiled async. */
export async function initRouting(): Promise<void> {
  await initHash();
}

/** Keys with one hash tag ({user:1}:a, {user:1}:b) share a shard (src/hash.ts). */
export function keyHash(key: Uint8Array): number {
  return placementHash(key);
}

export function shardOf(key: Uint8Array, shards: number): number {
  return shards <= 1 ? 0 : keyHash(key) % shards;
}
