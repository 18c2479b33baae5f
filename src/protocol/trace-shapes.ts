/**
 * What a request's timeline and a slow log entry are, as the node sends them
 * (the native protocol's Trace and SlowLog answers: codec.ts) and the client
 * reads them (src/client/client.ts). The node builds them in src/io/trace.ts
 * and src/io/slowlog.ts. docs/tracing.md explains each field.
 */

/** One stage of a traced request. */
export interface TraceSpan {
  /** received, routed, ring, executed, journal, notify, encoded; in a cluster also forwarded, proposed, ... */
  stage: string;
  /** Where it ran: "io", "worker N", "inline", "member N", ... */
  where: string;
  /** Microseconds from the node's receipt of the request. */
  startUs: number;
  durationUs: number;
  /** What the stage did: "shard 2", "fsync always", "partition 7 index 41 term 3". */
  detail: string;
}

/** A traced request's timeline as the answering node sends it. */
export interface TraceOut {
  spans: TraceSpan[];
  /** Spans the node left out over its limit (TRACE_MAX_SPANS). */
  dropped: number;
  /** Who answered: "node", or "member N" in a cluster. */
  node: string;
}

/** One entry of a node's slow log. */
export interface SlowEntry {
  /** Unique, growing: entries after a SLOWLOG RESET continue the numbering (as Redis). */
  id: number;
  /** When the request was received, Unix ms. */
  timeMs: number;
  /** From its receipt to its answer made, microseconds. */
  durationUs: number;
  /**
   * What the request was, as text: a RESP command's arguments as Redis 7 keeps them (at most
   * SLOWLOG_MAX_ARGS, each cut at SLOWLOG_KEY_BYTES, secrets redacted); a native request's kind and first key.
   */
  args: string[];
  /** The client's address, host:port. */
  client: string;
  /** The client's name (RESP CLIENT SETNAME), or "". */
  clientName: string;
  /** "native" or "resp". */
  port: string;
  /** The request's timeline when it was traced; else null. */
  spans: TraceSpan[] | null;
}
