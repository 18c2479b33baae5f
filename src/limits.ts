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
 * A transaction's compares and ops together (etcd's default is 128; MULTI
 * in Redis is bounded only by memory). Over it: TXN_TOO_LARGE, nothing sent.
 */
export const TXN_MAX_OPS = 4096;

/**
 * A transaction's keys and values together. A shard writes a transaction's
 * effects as one journal record (that is what makes it atomic on disk), so
 * this bounds that record too (JOURNAL_MAX_RECORD_BYTES leaves room for it).
 * Over it: TXN_TOO_LARGE, nothing sent.
 */
export const TXN_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Multi-shard transactions in flight at once on a single node: the barrier
 * slots in shared memory their participants meet on (src/shard/txn-barrier.ts).
 * At the limit the next transaction waits, in order, on the IO thread for a
 * slot (src/io/txn.ts); nothing is refused.
 */
export const TXN_BARRIER_SLOTS = 1024;

/**
 * Requests one connection may have in flight (read but not yet answered).
 * At the limit the IO loop pauses reading that socket until answers drain:
 * backpressure on a pipelining client, never a drop.
 */
export const MAX_INFLIGHT_PER_CONNECTION = 4096;

/**
 * Request tracing (docs/tracing.md): at most this many spans in one trace.
 * An mget of 10,000 keys would make four spans per key; the spans past the
 * limit are counted in the trace's `dropped`, not kept, so a traced request
 * costs at most about TRACE_MAX_SPANS * 100 bytes more than an untraced one.
 */
export const TRACE_MAX_SPANS = 128;

/**
 * Traced requests one connection may have in flight. One more is refused
 * with INVALID_ARGUMENT ("too many traced requests in flight"), not served
 * untraced: a caller asking for a timeline would otherwise wait for one that
 * never comes. Untraced requests are not limited by it.
 */
export const TRACE_MAX_IN_FLIGHT_PER_CONNECTION = 64;

/**
 * The slow log (docs/tracing.md, "Slow requests"): requests that took at
 * least SLOWLOG_DEFAULT_SLOWER_THAN_US (10 ms, Redis's default) from receipt
 * to answer are kept, the newest SLOWLOG_DEFAULT_MAX_LEN of them; `piccolo
 * server --slowlog-slower-than US --slowlog-max-len N` and RESP `CONFIG SET
 * slowlog-log-slower-than` / `slowlog-max-len` change them, the length at
 * most SLOWLOG_MAX_LEN (an entry with its timeline is at most a few KiB, so
 * the log stays under a few MiB).
 */
export const SLOWLOG_DEFAULT_SLOWER_THAN_US = 10_000;
export const SLOWLOG_DEFAULT_MAX_LEN = 128;
export const SLOWLOG_MAX_LEN = 1024;

/**
 * The dispatch window: how many of one connection's requests may be with
 * the shards at once is DISPATCH_WINDOW_BYTES divided by the size of its
 * recent answers, between DISPATCH_WINDOW_MIN and MAX_INFLIGHT_PER_CONNECTION.
 * Requests read beyond it wait in the connection (its socket paused) until
 * answers come back. A shard's ring is first come, first served: without the
 * window, one socket read of 2,000 pipelined GETs of a 1 MiB value put 2 GiB
 * of answers' work ahead of every other client's next command. With it, a
 * connection of small answers still pipelines thousands, and one of 1 MiB
 * answers has 16 at a time in the rings. A new connection starts as if its
 * answers were DISPATCH_WINDOW_BYTES / 64 bytes (a window of 64) and opens up
 * as small answers come back, as TCP's slow start does.
 */
export const DISPATCH_WINDOW_BYTES = 8 * 1024 * 1024;
export const DISPATCH_WINDOW_MIN = 16;
export const DISPATCH_WINDOW_START = 64;

/**
 * The output soft limit: bytes of answers one connection holds in user space
 * (answers complete in its queue, parts of answers gathered so far, and what
 * the socket has taken but the kernel has not) before we pause reading it.
 * Pausing stops new requests; those already in flight still answer, which is
 * what the hard limit below bounds.
 */
export const MAX_PENDING_WRITE_BYTES = 8 * 1024 * 1024;

/**
 * The output hard limit (default of `--client-output-limit-bytes`), Redis's
 * `client-output-buffer-limit`: once the answers one connection holds (as
 * above) exceed it, the client is not reading what it asked for, and the
 * connection is closed at once (logged). A client pipelining requests whose
 * answers add up to more than this before it reads any of them is closed
 * too: no single answer may exceed it, so it must stay above the largest
 * answer a client may ask for. 256 MiB is Redis's own hard limit for
 * replicas, and the largest answer frame the native client accepts
 * (maxFrameBytes of 256 MiB values).
 */
export const DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES = 256 * 1024 * 1024;

/**
 * The output soft limit over time (default of `--client-output-stall-ms`):
 * a connection over MAX_PENDING_WRITE_BYTES
 * whose client has read nothing of its answers for this long is closed
 * (logged). Redis closes a client that stays over its soft limit for N
 * seconds whether it reads or not; we close only one that makes no progress,
 * so a slow reader of a big answer is never cut while it reads.
 */
export const CLIENT_OUTPUT_STALL_MS = 60_000;

/**
 * A connection the node closes after a final answer (a protocol error, QUIT,
 * a stop) is half-closed once that answer is written; if the client has not
 * closed its side this long after, and has taken none of the answers still
 * buffered meanwhile, the node drops the connection (src/io/connection.ts,
 * endSocket). Without it a client that keeps sending (endless bulk data)
 * holds it open forever.
 */
export const CLOSE_LINGER_MS = 2_000;

/** How often the node looks for connections stalled as above. */
export const CLIENT_OUTPUT_CHECK_INTERVAL_MS = 1_000;

/**
 * Open client connections per node, on all its ports together (default of
 * `--max-connections`). Over it: a new socket is closed at once, logged.
 */
export const MAX_CONNECTIONS = 10_000;

/**
 * Bytes of one partly received RESP command (Redis's
 * `client-query-buffer-limit`, 1 GiB there), at least 64 MiB: an MSET of
 * four values at the default 16 MiB value limit, and never less than one
 * value at the configured limit with its key. Over it: "ERR Protocol error:
 * command too large", the connection is closed, logged. The parser keeps one
 * partial command at most (complete ones leave at once), so this bounds its
 * buffer: one chunk more, at most.
 */
export function respMaxQueryBytes(maxValueBytes: number): number {
  return Math.max(RESP_QUERY_BUFFER_BYTES, maxFrameBytes(maxValueBytes));
}

/** The floor of respMaxQueryBytes. */
export const RESP_QUERY_BUFFER_BYTES = 64 * 1024 * 1024;

/**
 * Arguments in one RESP command (Redis: 1,048,576). The largest command
 * Piccolo accepts is an MSET of MAX_BATCH_KEYS pairs (20,001 arguments); the
 * cap leaves room so that a batch somewhat over the key limit gets that
 * command's own "too many keys" error and keeps its connection, while an
 * absurd count is refused from its header alone (each argument costs the
 * parser 8 bytes of offsets and, once the command is complete, a view of
 * about 100 bytes: 6.5 MiB at the cap). Over it: "ERR Protocol error:
 * invalid multibulk length" (Redis's text), the connection is closed.
 */
export const RESP_MAX_ARGS = 65_536;

/**
 * A run (src/io/run.ts): hot Redis commands (src/resp/hot.ts, decision 0318)
 * or hot native requests (src/io/native-run.ts, decision 0319) answered as
 * one queued request; at most this many, and the next one starts a new run.
 * Each request of a run counts against the dispatch window as one of its own.
 */
export const HOT_RUN_MAX_COMMANDS = 64;
/** A run takes no more commands once its answers hold this many bytes (the next one starts a new run). */
export const HOT_RUN_MAX_BYTES = 64 * 1024;

/** Longest inline command line (Redis's PROTO_INLINE_MAX_SIZE). Over it: protocol error, closed. */
export const RESP_MAX_INLINE_BYTES = 64 * 1024;

/**
 * How much of a frame the native frame reader allocates from the size its
 * header claims. A frame larger than this gets a buffer that grows (doubling)
 * as its bytes arrive, so a header that lies costs what was sent, not what
 * it claims; a frame up to this size is read into a buffer of its exact size
 * at once (the common case: no copy while it grows).
 */
export const FRAME_INITIAL_BYTES = 64 * 1024;

/** A limit that is hit is logged at once, then at most once per this interval (src/limit-log.ts). */
export const LIMIT_LOG_INTERVAL_MS = 10_000;

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
 * Bytes the IO loop may hold for one shard in that backlog (commands carry
 * values: 16,384 puts of 16 MiB would be 256 GiB). Same behaviour as the
 * count: every socket pauses until the shard catches up. The commands of the
 * socket reads already under way still join it, so a backlog may pass this
 * by what one read of each connection completes (see docs/architecture.md).
 */
export const MAX_SHARD_BACKLOG_BYTES = 64 * 1024 * 1024;

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

/**
 * Old index slots each sweep tick copies into a shard's index being rebuilt
 * (src/shard/store.ts, decision 0053), on top of the STEP_SLOTS each insert
 * copies: so a build a load left unfinished ends while the shard is idle,
 * and its second index is not held for good (20 MiB at 2^20 slots). About
 * 0.3 ms of a tick here; a 2^21-slot build ends in 3.2 s of ticks.
 */
export const REBUILD_TICK_SLOTS = 64 * 1024;

/**
 * Giving memory back when idle (src/idle-trim.ts, decision 0299): every
 * IDLE_TRIM_CHECK_MS the IO thread looks at how busy its event loop was, and
 * a shard worker whether any command came in; when idle (the IO thread: under
 * IDLE_TRIM_MAX_UTILIZATION, the fraction of the interval spent working) it
 * asks V8 for a young-generation collection, at most IDLE_TRIM_COLLECTIONS
 * times until it is busy again. A load grows V8's young generation to 32 MiB
 * and V8 shrinks it only at a collection that finds little being allocated,
 * which an idle process never runs by itself.
 * A cluster member's group workers check as the IO thread does (they run an
 * event loop). 5%: an idle cluster member's IO thread runs at about 3% (its
 * peers' liveness and the quiet groups' ticks), and under 2% it never
 * trimmed; a thread under 5% busy is not what grew the young generation.
 */
export const IDLE_TRIM_CHECK_MS = 2_000;
export const IDLE_TRIM_MAX_UTILIZATION = 0.05;
export const IDLE_TRIM_COLLECTIONS = 5;

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

/**
 * A stopping node closes a native client's socket once the client has
 * ended its side in answer to the "go away" (it sends nothing more); a
 * Redis connection answering SHUTDOWN past the stop's bound (a transaction
 * open), once its client has sent nothing for SHUTDOWN_QUIET_MS; either
 * after SHUTDOWN_QUIET_MAX_MS whatever it does (src/io/server.ts, stop).
 */
export const SHUTDOWN_QUIET_MS = 100;
export const SHUTDOWN_QUIET_MAX_MS = 2_000;

/**
 * A Redis client has no "go away" and its library resends, on a new
 * connection, every command that got no answer (decision 0274). So a
 * stopping node goes on serving each Redis connection until it finds it
 * idle (every command read answered, none half-received, no MULTI or WATCH
 * open), then half-closes it there; it waits for that at most this long,
 * then stops reading them whatever they do (src/resp/connection.ts).
 */
export const SHUTDOWN_RESP_IDLE_MAX_MS = 2_000;

/**
 * How long a stopping node waits for the answers to the commands it read
 * from Redis clients before it closes their connections anyway (logged as
 * an error: their libraries may send those commands again). A cluster
 * command answers within CLUSTER_REQUEST_DEADLINE_MS per step, and takes at
 * most two steps (RENAME, COPY: a read, then a transaction): this bound is
 * above that (asserted in src/cluster/deadlines.ts), so only a bug reaches it.
 */
export const SHUTDOWN_RESP_ANSWER_MAX_MS = 12_000;

/**
 * A stopping node half-closes its clients' sockets (FIN after the last
 * answer), then waits for each client to close its side before it exits,
 * reading and dropping whatever arrives meanwhile: a socket closed with
 * unread bytes sends a reset, which can make the client lose answers
 * already sent to it. It waits this long at most once every answer has
 * left the process; while some have not, as long as the clients take them
 * (src/io/server.ts, waitForClients).
 */
export const SHUTDOWN_CLOSE_MAX_MS = 1_000;

/**
 * A cluster member stopping gracefully (SIGTERM) first hands the partitions
 * it leads to caught-up peers, for at most this long (src/cluster/admin.ts,
 * handOffLeadership); one whose followers are all down or behind is left
 * to an election after the stop. When no partition it still leads has a
 * follower up and connected (the last members of a cluster being stopped),
 * it stops trying at once instead of waiting out this bound.
 */
export const LEADERSHIP_HANDOFF_MS = 10_000;

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

// ---- a single node's journal (src/journal, docs/durability.md) ------------

/**
 * Largest journal record. Effects are written out once a batch holds
 * JOURNAL_WRITE_CHUNK_BYTES, so a record is at most that plus one effect,
 * and one effect carries at most a key and a value at the value ceiling. On
 * replay a length above it marks the record as bad (never a 4 GiB allocation).
 */
export const JOURNAL_MAX_RECORD_BYTES = MAX_VALUE_BYTES_CEILING + MAX_KEY_BYTES + 2 * 1024 * 1024;

/** A batch's effects are written (not yet fsynced) once they hold this many bytes: bounds the buffer. */
export const JOURNAL_WRITE_CHUNK_BYTES = 1024 * 1024;

/**
 * Default `--snapshot-log-bytes`: a shard starts a snapshot once its log
 * (the segments after its last snapshot) holds this many bytes AND at least
 * as many as that snapshot did (Redis's auto-aof-rewrite-min-size 64mb and
 * auto-aof-rewrite-percentage 100, the same rule).
 */
export const DEFAULT_SNAPSHOT_LOG_BYTES = 64 * 1024 * 1024;

/** Keys a snapshot walks between two batches of commands (the pause it adds to a batch). */
export const SNAPSHOT_STEP_KEYS = 4096;

/** A snapshot whose walk the index rebuilds restarted this often is given up (tried again later). */
export const SNAPSHOT_MAX_RESTARTS = 8;

/** Under `--fsync everysec`, the longest written data waits for its fsync. */
export const EVERYSEC_INTERVAL_MS = 1000;

/** A shard whose log failed tries a fresh segment this often; writes resume when it works. */
export const JOURNAL_RETRY_MS = 5000;

// ---- backups (src/journal/backup.ts, src/io/backup.ts, src/backup/) -------

/**
 * Backups a node streams at once. A second `piccolo backup` while one runs
 * is refused with BUSY ("a backup is already running"): each holds a part
 * file per shard on disk and walks every map, and two would only slow each
 * other down.
 */
export const BACKUP_MAX_RUNNING = 1;

/**
 * Bytes of backup data per response frame of the stream. Small enough that
 * the IO thread serves other clients between frames every fraction of a
 * millisecond (each frame is one copy and a hash update), large enough that
 * 1M keys are a few hundred frames.
 */
export const BACKUP_FRAME_BYTES = 256 * 1024;

/** How often the IO thread asks the shards whether their walks have ended. */
export const BACKUP_POLL_MS = 20;

/** With --shards 0 a backup walks on the IO thread for at most this long per turn, then serves clients. */
export const BACKUP_INLINE_SLICE_MS = 5;

/**
 * With --shards 0 a snapshot walks on the IO thread in steps of
 * SNAPSHOT_STEP_KEYS for at most this long per turn, then serves clients,
 * and goes on at the next turn: a 1M-key map is saved in about a second of
 * turns, not in 250 sweep ticks (25 s, while the log kept growing).
 */
export const SNAPSHOT_INLINE_SLICE_MS = 2;

/**
 * A backup that makes no progress this long is given up (its client stopped
 * reading, or the shards stopped answering): its parts are deleted. While a
 * client is slow but reading, the stream simply waits for it.
 */
export const BACKUP_STALL_MS = 60_000;

/**
 * A cluster backup reads each partition whole, in one answer, as Raft's
 * snapshots are sent whole (docs/cluster.md, "Chunked InstallSnapshot"): a
 * partition larger than this is refused with TOO_LARGE rather than held in
 * memory. 64 partitions of this size are 16 GiB of data.
 */
export const BACKUP_MAX_PARTITION_BYTES = 256 * 1024 * 1024;

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

/**
 * Open HTTP connections to the gateway (default of `--max-connections`).
 * Over it: a new connection is closed at once, before a byte is read
 * (Node's server.maxConnections), logged.
 */
export const CERIALIZER_MAX_CONNECTIONS = 10_000;

/**
 * The time a client has to send one whole request, headers and body
 * (default of `--request-timeout-ms`; Node's requestTimeout). Over it: 408
 * and the connection is closed. Without it (Fastify's default is none) a
 * client sending one byte a minute holds its connection, and its buffers,
 * forever: slowloris.
 */
export const CERIALIZER_REQUEST_TIMEOUT_MS = 60_000;

/**
 * The time a client has to send a request's headers (Node's headersTimeout),
 * counted from the connection's start or the end of its previous request: a
 * connection that sends nothing is closed after it too. Over it: 408, closed.
 */
export const CERIALIZER_HEADERS_TIMEOUT_MS = 20_000;

/** How often Node checks the two timeouts above (its default, 30 s, would let them run 30 s late). */
export const CERIALIZER_TIMEOUT_CHECK_INTERVAL_MS = 1_000;

/**
 * An idle keep-alive connection (no request in progress) is closed after
 * this long (Node's keepAliveTimeout, at Node's default).
 */
export const CERIALIZER_KEEP_ALIVE_TIMEOUT_MS = 5_000;

/**
 * Open watch streams (GET /v1/watch, Server-Sent Events) per gateway
 * (default of `--max-watches`). Each holds a node connection of its own.
 * Over it: 503 too-many-watches with Retry-After.
 */
export const CERIALIZER_MAX_WATCHES = 1_000;

/**
 * A watch stream with nothing to send writes a comment line this often
 * (default of `--watch-keepalive-ms`), so proxies and load balancers that
 * close idle connections keep it open.
 */
export const CERIALIZER_WATCH_KEEPALIVE_MS = 15_000;

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

/**
 * Largest frame accepted on a peer connection before that connection's
 * hello is verified (a hello is under 1 KiB). Anyone can open a connection
 * to the peer port: until it has proven it belongs to the cluster, it may
 * not make us buffer a PEER_MAX_FRAME_BYTES frame. Over it: the connection
 * is closed from the frame's header alone, logged.
 */
export const PEER_MAX_HELLO_FRAME_BYTES = 64 * 1024;

/**
 * Largest frame read before the authentication step is passed (decision
 * 0262): a hello fits (well under 1 KiB), so a member of an older version,
 * which sends its hello first, is named as such in the log rather than as
 * an oversized frame. A stranger costs at most this much buffer.
 */
export const PEER_MAX_AUTH_STEP_FRAME_BYTES = 1024;

/**
 * Accepted peer connections that have not yet said who they are (the
 * authentication step and the hello, each within PEER_HELLO_TIMEOUT_MS).
 * Members need a handful (one per peer, a few while reconnecting); over
 * this many, a new one is closed at once, logged: a stranger opening
 * connections in a loop holds at most this many sockets and small buffers.
 */
export const PEER_MAX_UNAUTHENTICATED_CONNECTIONS = 256;

/**
 * A stopping member's goodbye (src/cluster/member.ts, close; decision
 * 0298): how long it waits for each peer's answer to "I am leaving" (after
 * which the peer forwards nothing more to it), and then how long for its
 * peer connections to close after the last frames are written (a FIN each,
 * not a reset that could drop them). Past either bound it goes on: a peer
 * that is slow to answer is no reason to hang a stop.
 */
export const PEER_LEAVING_ACK_MAX_MS = 1_000;
export const PEER_CLOSE_MAX_MS = 1_000;

/**
 * Bytes of client commands one cluster member may have in flight (held
 * while they wait for their partition's leader, a commit or a forwarded
 * answer), beside the count CLUSTER_MAX_IN_FLIGHT. Over it the IO loop stops
 * reading client sockets until answers drain, as for the count.
 */
export const CLUSTER_MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024;

/**
 * Bytes of Raft traffic (peer frames to a group worker, frames from it to
 * the peers) one ring's writer may hold waiting for room. Over it, new Raft
 * frames for that ring are dropped and counted, as the peer transport drops
 * what does not fit in PEER_MAX_QUEUED_BYTES: Raft resends what is lost, so
 * a starved thread costs bounded memory, never a stopped member.
 */
export const HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES = 64 * 1024 * 1024;

// ---- the memory bound (docs/architecture.md, "Memory per connection") -----

/**
 * What a connection costs with nothing buffered: its socket's and its
 * parser's objects (measured 5-7 KiB on Node 20, rounded up). Kernel socket
 * buffers are the kernel's, not the process's RSS.
 */
export const CONNECTION_FIXED_BYTES = 16 * 1024;

/**
 * The objects of the requests one connection has in flight, at most
 * MAX_INFLIGHT_PER_CONNECTION plus what one socket read completes (a few
 * thousand small requests): their request objects, tags and argument views,
 * under a kilobyte each.
 */
export const CONNECTION_REQUESTS_BYTES = 8 * 1024 * 1024;

/**
 * Memory the process may hold that is garbage not yet collected, and freed
 * memory the allocator keeps: V8 collects when external memory (our
 * buffers) grew by 64 MiB since the last collection, and its young
 * generation is 16 MiB a semi-space; glibc keeps up to 64 MiB of freed
 * memory before it trims. Node-wide, not per connection.
 */
export const GC_SLACK_BYTES = 128 * 1024 * 1024;

/**
 * The most one client connection costs the node, in bytes: the terms of
 * docs/architecture.md's "Memory per connection", with V the value limit,
 * F = maxFrameBytes(V), Q = respMaxQueryBytes(V), H the output limit.
 *   input, native: a partial frame (F; while its buffer doubles, the old
 *     half with it: 1.5 F), one whole frame past the backlog's budget (F)
 *     and its command copied into the shard's backlog (F): 3.5 F;
 *   input, RESP: the partial command (Q and one read; 1.5x while growing)
 *     and its copy into the backlog (Q): 2.5 (Q + 64 KiB);
 *   answers: H, plus the result that crossed it (V), and while an answer is
 *     encoded its result's reassembled fragments and the encoded copy (2V);
 *     a multi-key answer just under H is encoded into a second buffer: 2H;
 *     so 2H + 3V.
 */
export function connectionMemoryBoundBytes(
  protocol: "native" | "resp",
  maxValueBytes: number,
  clientOutputLimitBytes: number,
): number {
  const input =
    protocol === "native" ? 3.5 * maxFrameBytes(maxValueBytes) : 2.5 * (respMaxQueryBytes(maxValueBytes) + 64 * 1024);
  const answers = 2 * clientOutputLimitBytes + 3 * maxValueBytes;
  return CONNECTION_FIXED_BYTES + CONNECTION_REQUESTS_BYTES + input + answers;
}

/**
 * What one shard (single-node mode) holds beside its map: its backlog and
 * the frames of the requests whose commands wait in it (2B), its two rings,
 * the worker's reassembly of one fragmented command (its fragments and the
 * whole: 2F) and the IO thread's of one fragmented result (2V).
 */
export function shardMemoryBoundBytes(maxValueBytes: number): number {
  return 2 * MAX_SHARD_BACKLOG_BYTES + 2 * RING_BYTES + 2 * maxFrameBytes(maxValueBytes) + 2 * maxValueBytes;
}

/**
 * The bound on a single node's resident memory (RSS) that
 * docs/architecture.md states: the process as started (`baselineBytes`,
 * measured: no client), the maps' content (`dataBytes`), each connection's
 * bound (an idle one: its fixed cost), each shard's, and GC_SLACK_BYTES.
 */
export function nodeMemoryBoundBytes(o: {
  baselineBytes: number;
  dataBytes: number;
  shards: number;
  /** Connections with nothing buffered and nothing in flight: CONNECTION_FIXED_BYTES each. */
  idleConnections: number;
  nativeConnections: number;
  respConnections: number;
  maxValueBytes: number;
  clientOutputLimitBytes: number;
}): number {
  return (
    o.baselineBytes +
    o.dataBytes +
    o.idleConnections * CONNECTION_FIXED_BYTES +
    o.nativeConnections * connectionMemoryBoundBytes("native", o.maxValueBytes, o.clientOutputLimitBytes) +
    o.respConnections * connectionMemoryBoundBytes("resp", o.maxValueBytes, o.clientOutputLimitBytes) +
    Math.max(1, o.shards) * shardMemoryBoundBytes(o.maxValueBytes) +
    GC_SLACK_BYTES
  );
}

/**
 * What an HTTP connection to the Cerializer costs with no request in
 * progress: its socket, Node's HTTP parser and, after a request, the
 * keep-alive state (measured 5-6 KiB idle, about 18 KiB after a request,
 * on Node 20; rounded up).
 */
export const CERIALIZER_CONNECTION_FIXED_BYTES = 32 * 1024;

/**
 * The bound on the Cerializer's RSS that docs/cerializer.md states: the
 * process as started (`baselineBytes`), each connection's fixed cost, and
 * for each request in progress (Node reads one request at a time per
 * connection, so at most one per connection) its body (B, the body limit)
 * with its parsed JSON and the decoded value (up to 3B more: a JSON string
 * in V8 takes up to twice its bytes) and its answer (the value, its base64
 * text and the JSON around it: 3V), and GC_SLACK_BYTES.
 */
export function cerializerMemoryBoundBytes(o: {
  baselineBytes: number;
  connections: number;
  requestsInProgress: number;
  maxBodyBytes: number;
  maxValueBytes: number;
}): number {
  return (
    o.baselineBytes +
    o.connections * CERIALIZER_CONNECTION_FIXED_BYTES +
    o.requestsInProgress * (4 * o.maxBodyBytes + 3 * o.maxValueBytes) +
    GC_SLACK_BYTES
  );
}

/**
 * The change history each shard keeps for watchers (src/shard/history.ts),
 * `--watch-history-bytes`. A watcher that falls further behind than this
 * (or resumes from a position older than it) gets COMPACTED with the oldest
 * position still kept. At 100-byte changes, 16 MiB is about 160,000 changes
 * per shard.
 */
export const DEFAULT_WATCH_HISTORY_BYTES = 16 * 1024 * 1024;

/**
 * The change history each partition of a cluster member keeps for watchers
 * (a member holds a replica of many partitions: 64 of them hold 32 MiB at
 * most). A watcher further behind on a partition gets COMPACTED.
 */
export const CLUSTER_WATCH_HISTORY_BYTES = 512 * 1024;

/** Values up to this size travel with their change; a larger one is left out (the event gives its size). */
export const WATCH_VALUE_MAX_BYTES = 64 * 1024;

/** Bytes of changes one Op.WATCH answer carries at most (at least one change). */
export const WATCH_READ_MAX_BYTES = 1024 * 1024;

/** A parked watch read (nothing new) is answered empty after this long; the watcher asks again if it is still there. */
export const WATCH_PARK_MS = 10_000;

/** Watches open on one native connection at once. Over it: INVALID_ARGUMENT, the watch is not opened. */
export const WATCH_MAX_PER_CONNECTION = 256;

/** Parked watch reads one shard holds; past it the oldest is answered empty at once (its watcher asks again). */
export const WATCH_MAX_PARKED = 16_384;
