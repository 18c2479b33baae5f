/**
 * CRC32C (Castagnoli) of the log's frames and snapshot files, from the
 * @node-rs/crc32 native addon, loaded on the first checksum instead of when
 * this module is imported.
 *
 * Why lazily: every shard worker and the IO thread import the journal's code,
 * durable or not, and loading the addon (its JS loader and the native
 * module's initialisation in each isolate) costs about 4 MB of RSS on the IO
 * thread and 3 to 4 MB in each worker (measured 2026-12-03: an in-memory
 * node before any key, 64 -> 60 MB with --shards 0, 91 -> 83 MB with two
 * workers). A node started with --in-memory never computes a checksum, so it
 * never pays; a durable node loads it as it opens its log, as before
 * (decision 0292).
 *
 * Why not a pure-JS CRC32C (Node 20's zlib has crc32 only from Node 22, and
 * no crc32c): a slice-by-8 table version measured 0.7-1.2 GB/s against the
 * addon's 2.2-3.5 GB/s on 4 KB-1 MB buffers, which a durable node's write
 * path would pay on every frame it seals (decision 0292).
 */
import { createRequire } from "node:module";

type Crc32c = (input: Uint8Array, initialState?: number) => number;

let impl: Crc32c | null = null;

/** CRC32C of `input` (continuing from `initialState` when given), as @node-rs/crc32 computes it. */
export function crc32c(input: Uint8Array, initialState?: number): number {
  if (impl === null) impl = (createRequire(import.meta.url)("@node-rs/crc32") as { crc32c: Crc32c }).crc32c;
  return initialState === undefined ? impl(input) : impl(input, initialState);
}
