/**
 * Every limit in Piccolo, in one place, with what happens when it is hit.
 *
 * TigerBeetle's rule: everything has an upper bound, fixed at start-up, and
 * the bound is a named constant rather than a number buried in code. When a
 * limit is hit the behaviour is one of two things, never a silent drop:
 *   - the request is refused with a stable error code (see errors.ts), or
 *   - the producer is slowed down (backpressure) until there is room.
 *
 * Units are in the names: *_BYTES, *_MS, *_COUNT.
 */

/** Largest key. Over it: KEY_TOO_LARGE error for that request only. */
export const MAX_KEY_BYTES = 64 * 1024;

/** Default largest value (`--max-value-bytes`). Over it: VALUE_TOO_LARGE. */
export const DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024;

/** Hard ceiling for `--max-value-bytes`; a frame must still fit in MAX_FRAME_BYTES. */
export const MAX_VALUE_BYTES_CEILING = 256 * 1024 * 1024;

/**
 * Largest Cap'n Proto frame (segment table + segments) accepted on a socket.
 * Derived from the value limit plus headroom for the key and the envelope.
 * Over it: FRAME_TOO_LARGE is sent and that connection is closed, because the
 * stream cannot be resynchronised without reading the whole frame.
 */
export function maxFrameBytes(maxValueBytes: number): number {
  return maxValueBytes + MAX_KEY_BYTES + 64 * 1024;
}

/** Segments allowed in one frame. Over it: MALFORMED_FRAME, connection closed. */
export const MAX_FRAME_SEGMENTS = 64;

/** Keys in one multi-key request (mget/mput/mdel). Over it: TOO_MANY_KEYS. */
export const MAX_BATCH_KEYS = 10_000;

/**
 * Requests one connection may have in flight (read but not yet answered).
 * At the limit the IO loop pauses reading that socket until answers drain:
 * backpressure on a pipelining client, never a drop.
 */
export const MAX_INFLIGHT_PER_CONNECTION = 4096;

/**
 * Bytes of answers queued in user space for one socket before we pause reading
 * it (the kernel's send buffer is full and the client is not reading).
 */
export const MAX_PENDING_WRITE_BYTES = 8 * 1024 * 1024;

/** Open client connections per node. Over it: new sockets are closed at once. */
export const MAX_CONNECTIONS = 10_000;

/** Bytes of one SPSC ring's data area (power of two). Full ring: backpressure. */
export const RING_BYTES = 1 << 20;

/**
 * Largest single record written into a ring. A message bigger than this is
 * split into fragments that the consumer reassembles (decision 0004), so a
 * 16 MiB value streams through a 1 MiB ring.
 */
export const RING_RECORD_MAX_BYTES = 64 * 1024;

/**
 * Messages the IO loop may hold for one shard while its request ring is full.
 * Hitting it pauses every socket (they all may feed that shard) until the
 * ring drains: backpressure, never a drop.
 */
export const MAX_SHARD_BACKLOG_COUNT = 16_384;

/**
 * The active expiry sweep (src/shard/sweep.ts). Every EXPIRE_SWEEP_INTERVAL_MS
 * (a "tick") each shard examines the next EXPIRE_SWEEP_SAMPLE_COUNT keys of
 * its expiry list, which holds the keys with a TTL and only those, and
 * removes the expired ones; it goes on while a sample was more than a
 * quarter expired, for at most EXPIRE_SWEEP_BUDGET_MS of that tick.
 *
 * The guarantee: with E keys with a TTL on a shard, a key is removed at most
 * expiryLagMs(E) after it expires, reads or no reads: at the first tick when
 * E <= EXPIRE_SWEEP_SAMPLE_COUNT, else within ceil(2E / SAMPLE) ticks (the
 * list walk may have just passed it, and keys given a TTL meanwhile can
 * lengthen the next pass). So a shard reclaims at least SAMPLE expired keys
 * per tick, 2,000 a second, whenever that many are waiting, however many
 * keys without a TTL it holds. Ticks are timed by the OS: a thread the
 * machine does not run is late by that much. Expired keys are never
 * returned in the meantime (every command checks expiry).
 */
export const EXPIRE_SWEEP_SAMPLE_COUNT = 200;

/** How often each shard runs a sweep tick. */
export const EXPIRE_SWEEP_INTERVAL_MS = 100;

/** Most time one tick spends beyond its first sample (Redis: 25% of its 100 ms cycle). */
export const EXPIRE_SWEEP_BUDGET_MS = 25;

/** The longest an expired key stays in memory on a shard with `ttlKeys` keys with a TTL (see above). */
export function expiryLagMs(ttlKeys: number): number {
  const ticks = ttlKeys <= EXPIRE_SWEEP_SAMPLE_COUNT ? 1 : Math.ceil((2 * ttlKeys) / EXPIRE_SWEEP_SAMPLE_COUNT);
  return ticks * EXPIRE_SWEEP_INTERVAL_MS;
}

/** Largest TTL accepted (about 100 years). Over it: INVALID_ARGUMENT. */
export const MAX_TTL_MS = 100 * 365 * 24 * 3600 * 1000;

/** Keys returned by one scan call. Over it: clamped to this. */
export const MAX_SCAN_COUNT = 10_000;

/** Default request timeout in the client. */
export const DEFAULT_CLIENT_TIMEOUT_MS = 5_000;

/** Graceful shutdown: how long in-flight requests may take before we exit anyway. */
export const SHUTDOWN_GRACE_MS = 5_000;

// ---- write-ahead log (src/wal) --------------------------------------------

/**
 * Largest WAL record (one batch of entries, after encoding). Leaves room for
 * one command carrying a value at DEFAULT_MAX_VALUE_BYTES. A larger batch is
 * split into several records; a single entry larger than this is refused
 * with WAL_RECORD_TOO_LARGE before anything is written. On replay a length
 * field above it marks the record as bad (never a 4 GiB allocation).
 */
export const WAL_MAX_RECORD_BYTES = 32 * 1024 * 1024;

/**
 * Ceiling for `--max-value-bytes` in cluster mode: a replicated write is one
 * Raft entry, and one entry must fit in one WAL record (WAL_MAX_RECORD_BYTES)
 * with its key and command header. A larger setting is refused at start-up;
 * otherwise a legitimate large write would make the WAL refuse its round and
 * stop the member.
 */
export const REPLICATED_MAX_VALUE_BYTES = WAL_MAX_RECORD_BYTES - MAX_KEY_BYTES - 64 * 1024;

/** A segment file is closed and a new one started once it reaches this size. */
export const WAL_SEGMENT_BYTES = 64 * 1024 * 1024;

/** Under the "batch" sync policy, appends wait at most this long to share an fsync. */
export const WAL_BATCH_INTERVAL_MS = 2;

/** Bytes waiting to be written before append() callers wait (backpressure, not growth). */
export const WAL_MAX_QUEUED_BYTES = 64 * 1024 * 1024;

// ---- the Cerializer, the JSON/REST gateway (src/cerializer) ---------------

/**
 * Default largest HTTP request body (`--max-body-bytes`): a value at
 * DEFAULT_MAX_VALUE_BYTES sent as base64 inside a JSON envelope is 4/3 its
 * size. Over it: 413 body-too-large, before the body is read to the end.
 */
export const CERIALIZER_DEFAULT_BODY_BYTES = 24 * 1024 * 1024;

/** Operations in one POST /v1/batch. Over it: 413 batch-too-large, nothing applied. */
export const CERIALIZER_MAX_BATCH_OPS = 1_000;

/** Keys in one page of GET /v1/kv (`limit`). Over it: 400. Default page: 100. */
export const CERIALIZER_MAX_LIST_LIMIT = 1_000;

/** Pipelined connections the gateway keeps to each node. */
export const CERIALIZER_CONNECTIONS_PER_NODE = 4;

/**
 * Requests the gateway may have in flight to one node. Over it: 503
 * overloaded with Retry-After, so a slow node sheds load at the edge instead
 * of growing the gateway's memory without bound.
 */
export const CERIALIZER_MAX_IN_FLIGHT_PER_NODE = 8_192;

/** How often a node marked down is probed (ping) to bring it back. */
export const CERIALIZER_PROBE_INTERVAL_MS = 250;

// ---- node-to-node traffic (src/cluster) ------------------------------------

/**
 * Largest peer frame accepted on receipt. Senders keep Raft batches near
 * PEER_FRAME_TARGET_BYTES, so only a single message bigger than that, a
 * snapshot of a large partition, comes near it. Over it on receipt: the
 * connection is closed and re-established (the sender's Raft retries the
 * snapshot, which fails again: a partition whose snapshot exceeds this cannot
 * bring a new replica up to date until snapshots travel in chunks; see
 * docs/cluster.md, "Limits").
 */
export const PEER_MAX_FRAME_BYTES = 256 * 1024 * 1024;

/**
 * Raft messages in one peer frame. A sender splits a larger batch into
 * several frames (peer-codec.ts, encodeRaftFrames); a receiver refuses a
 * frame over it as malformed (the connection is dropped).
 */
export const PEER_MAX_MESSAGES_PER_FRAME = 4_096;

/**
 * Bytes a sender puts in one peer frame before it starts the next: a round
 * of catch-up (64 appends in flight per follower per group, up to 1 MiB
 * each, for every group of a worker) is sent as many frames of about this
 * size, not one frame of gigabytes. A single larger message travels alone.
 */
export const PEER_FRAME_TARGET_BYTES = 4 * 1024 * 1024;
