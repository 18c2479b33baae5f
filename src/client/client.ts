/**
 * PiccoloClient: the TypeScript client for the native (Cap'n Proto) protocol.
 *
 * One TCP connection, pipelined: every call writes its request at once and
 * returns a promise; answers are matched to calls by request id. Writes made
 * in the same event-loop turn are corked into one syscall.
 *
 * Failures are typed PiccoloErrors with stable codes (src/errors.ts):
 * TIMEOUT when no answer comes within `timeoutMs`, CONNECTION_CLOSED when the
 * socket drops (every call in flight fails with it: the client cannot know
 * whether the node applied a write it sent, so it never retries one behind
 * your back). The next call reconnects by itself.
 *
 * Keys and values are bytes; strings are taken as UTF-8.
 */
import { connect, type Socket } from "node:net";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import * as capnp from "capnp-es";
import { ErrorCode, PiccoloError } from "../errors.js";
import { DEFAULT_CLIENT_TIMEOUT_MS, DEFAULT_MAX_VALUE_BYTES, maxFrameBytes } from "../limits.js";
import { type ClusterInfo, decodeClusterInfo } from "../protocol/cluster-info.js";
import type { ShardStatsRow } from "../protocol/codec.js";
import { FrameReader } from "../protocol/framing.js";
import {
  ChangeKind,
  CompareRelation,
  CompareTarget,
  Request,
  Request_Which,
  Response,
  Response_Which,
  type Trace,
  TxnOpResult_Which,
} from "../protocol/gen/piccolo.js";
import {
  encodeGetRequest,
  encodeWriteRequest,
  readValue,
  readWritten,
  responseId,
  type WriteKind,
} from "./hot-wire.js";
import type { SlowEntry, TraceSpan } from "../protocol/trace-shapes.js";

export type { SlowEntry, TraceSpan } from "../protocol/trace-shapes.js";

export type Bytes = string | Uint8Array;

export interface ClientOptions {
  host?: string;
  port?: number;
  /** Per-call deadline. */
  timeoutMs?: number;
  /** How long to wait for a connection to be made. */
  connectTimeoutMs?: number;
  /** Sent (AUTH) first on every connection, when the node requires a password. */
  password?: string;
  /** The user `password` belongs to (ACL users: docs/security.md); default "default". */
  user?: string;
  /**
   * Speak TLS (the node runs with --tls-cert-file): node:tls's connection
   * options, e.g. `{ ca: readFileSync("ca.crt") }` to trust the node's CA,
   * plus `cert` and `key` when it asks for client certificates.
   * The node's certificate must name the host dialed.
   */
  tls?: ConnectionOptions;
  /**
   * Trace every request this client sends (docs/tracing.md): each answer
   * comes with its timeline, kept in `lastTrace` and given to `onTrace`.
   * `piccolo <command> --trace` uses it. One request can ask alone: the
   * `trace` option of the calls.
   */
  trace?: boolean;
  /** Called with each traced request's timeline as it arrives (before the call resolves). */
  onTrace?: (t: RequestTrace) => void;
}

/** A traced request's timeline, as the answering node measured it. */
export interface RequestTrace {
  /** The request's id on its connection. */
  id: number;
  /** Who answered: "node", or "member N" in a cluster. */
  node: string;
  spans: TraceSpan[];
  /** Spans the node left out over its limit (TRACE_MAX_SPANS). */
  dropped: number;
  /** What this client measured from sending the request to its timeline's arrival (just before the answer), µs. */
  roundTripUs: number;
}

export interface SlowLogPage {
  entries: SlowEntry[];
  /** Entries the node holds. */
  length: number;
  /** The threshold, µs (negative: off), and the most the log keeps. */
  slowerThanUs: number;
  maxLen: number;
}

/** The per-call option to trace one request. */
export interface TraceOption {
  /**
   * Ask for this request's timeline: `client.lastTrace` holds it when the
   * call resolves (and `onTrace` gets it); a function is called with it too,
   * before the call resolves (safe with many calls in flight).
   */
  trace?: boolean | ((t: RequestTrace) => void);
}

/** whoami's answer: a connection's user and its permissions (read, write, admin; every key or only its patterns). */
export interface WhoAmI {
  user: string;
  read: boolean;
  write: boolean;
  admin: boolean;
  allKeys: boolean;
}

export interface Entry {
  value: Buffer;
  version: number;
  /** Absolute expiry (Unix ms); 0 when the key has no TTL. */
  expireAtMs: number;
}

export interface WriteOptions extends TraceOption {
  ttlMs?: number;
  expireAtMs?: number;
  /** put/update: keep the key's current TTL. */
  keepTtl?: boolean;
}

/** Options of the reads: get, exists, ttl, mget, scan, keys. */
export interface ReadOptions extends TraceOption {
  /**
   * Accept an out-of-date answer. In a cluster, the member this client is
   * connected to then answers from its own replica of the key's partition,
   * without asking the leader: no round trip to it, and an answer even while
   * no leader is reachable, but possibly missing writes already acknowledged,
   * by any amount (docs/cluster.md, "Stale reads"). Default false: the read is
   * linearizable. Ignored on a single node, where every read is local anyway.
   */
  stale?: boolean;
}

export interface ScanPage {
  cursor: number;
  keys: Buffer[];
}

export type { ClusterInfo, ClusterStats, FollowerInfo, PartitionInfo } from "../protocol/cluster-info.js";

/** One shard's numbers, as the node reports them. */
export type ShardStats = ShardStatsRow;

export interface NodeStats {
  shards: ShardStats[];
  uptimeMs: number;
  connections: number;
}

/** Thrown for VERSION_MISMATCH: carries the key's current version (0 if absent). */
export class VersionMismatchError extends PiccoloError {
  constructor(
    message: string,
    readonly currentVersion: number,
  ) {
    super(ErrorCode.VERSION_MISMATCH, message);
  }
}

/** How a compare relates the key's version or value to the one given. */
export type TxnRelation = "equal" | "notEqual" | "less" | "greater";

/**
 * One compare of a transaction: the key's version (0 when the key is
 * absent, so `{ version: 0 }` means "does not exist"), or its value, byte
 * for byte (an absent key matches no value compare). The target is the
 * field given, or `target` when both are.
 */
export interface TxnCompare {
  key: Bytes;
  target?: "version" | "value";
  /** Default "equal". */
  relation?: TxnRelation;
  version?: number;
  value?: Bytes;
}

/** One op of a transaction's branch. */
export type TxnOp =
  | ({ op: "put"; key: Bytes; value: Bytes } & WriteOptions)
  | { op: "delete"; key: Bytes }
  | { op: "get"; key: Bytes };

export interface TxnRequest {
  /** All must hold for the success branch to run (none: it runs). */
  compare?: TxnCompare[];
  success?: TxnOp[];
  failure?: TxnOp[];
  /**
   * Answer only which branch ran: `results` comes back empty. For a bulk
   * write that needs no op's version (Redis's MSET makes this promise), it
   * saves the node packing, and the wire carrying, a result per op.
   */
  verdictOnly?: boolean;
}

/** One op's result, in its branch's order. */
export type TxnOpResult =
  | { op: "put"; version: number; created: boolean }
  | { op: "delete"; existed: boolean }
  | { op: "get"; found: boolean; value: Buffer | null; version: number; expireAtMs: number };

export interface TxnResult {
  /** Every compare held, and the success branch ran (else the failure branch did). */
  succeeded: boolean;
  results: TxnOpResult[];
}

const RELATIONS: Record<TxnRelation, CompareRelation> = {
  equal: CompareRelation.EQUAL,
  notEqual: CompareRelation.NOT_EQUAL,
  less: CompareRelation.LESS,
  greater: CompareRelation.GREATER,
};

/** Every key a transaction names (compares and both branches). */
export function txnKeys(t: TxnRequest): Bytes[] {
  return [
    ...(t.compare ?? []).map((c) => c.key),
    ...(t.success ?? []).map((o) => o.key),
    ...(t.failure ?? []).map((o) => o.key),
  ];
}

/** A change a watch delivers (docs/watch.md). */
export interface WatchEvent {
  kind: "put" | "delete" | "expire" | "expired" | "flush";
  key: Buffer;
  /** put: the new value; null for other kinds, or a value over 64 KiB (see valueBytes). */
  value: Buffer | null;
  valueBytes: number;
  /** put: the key's new version. */
  version: number;
  /** put, expire: the key's expiry (0: none). */
  expireAtMs: number;
  /** The watch's position after this event: resume from it to get what follows, nothing twice. */
  position: string;
}

export interface WatchOptions {
  /** Watch every key that starts with `key` (else the one key). */
  prefix?: boolean;
  /** Resume after this position (a WatchEvent's, or Watcher.position); default: from now. */
  from?: string;
  /**
   * Events held for a reader that has not taken them, before the client
   * stops reading its connection (the node then holds back too: a watcher
   * that does not read is never buffered for without bound). Default 10,000.
   */
  maxBuffered?: number;
}

const CHANGE_KIND_NAMES: Record<number, WatchEvent["kind"]> = {
  [ChangeKind.PUT]: "put",
  [ChangeKind.DELETE]: "delete",
  [ChangeKind.EXPIRE]: "expire",
  [ChangeKind.EXPIRED]: "expired",
  [ChangeKind.FLUSH]: "flush",
};

/**
 * An open watch: iterate it (`for await (const e of watcher)`) for its
 * events. The iteration ends after cancel(); it throws PiccoloError when
 * the watch ends otherwise: COMPACTED (it fell behind the history the node
 * keeps: read the keys again and watch from `position`), or
 * CONNECTION_CLOSED (resume from `position` on a new connection).
 */
export class Watcher implements AsyncIterable<WatchEvent> {
  /** Where the watch is: after the last event delivered to the iterator (or the start). */
  position: string;
  private readonly queue: WatchEvent[] = [];
  private ended: PiccoloError | null = null;
  private cancelled = false;
  private wake: (() => void) | null = null;

  constructor(
    position: string,
    private readonly stopFn: () => Promise<void>,
    private readonly flow: (buffered: number) => void,
  ) {
    this.position = position;
  }

  /** @internal */
  push(events: WatchEvent[]): void {
    this.queue.push(...events);
    this.flow(this.queue.length);
    this.wake?.();
  }

  /** @internal The watch ended (the node's end frame, or the connection). */
  end(err: PiccoloError | null, position: string): void {
    if (this.ended !== null || this.cancelled) return;
    this.ended = err ?? new PiccoloError(ErrorCode.CONNECTION_CLOSED, "the watch ended");
    if (position !== "" && this.queue.length === 0) this.position = position;
    this.endPosition = position;
    this.wake?.();
  }

  private endPosition = "";

  /** Stops the watch; the iteration ends once the events already received are taken. */
  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    this.wake?.();
    if (this.ended === null) await this.stopFn();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    for (;;) {
      const e = this.queue.shift();
      if (e !== undefined) {
        this.flow(this.queue.length);
        this.position = e.position;
        yield e;
        continue;
      }
      if (this.cancelled) return;
      if (this.ended !== null) {
        if (this.endPosition !== "") this.position = this.endPosition;
        throw this.ended;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }
}

interface Pending {
  /** With the response frame, its own buffer. */
  resolve: (frame: ArrayBuffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  /** The connection it was sent on: when that one closes, it can get no answer. */
  socket: Socket;
}

function bytes(b: Bytes): Uint8Array {
  return typeof b === "string" ? Buffer.from(b, "utf8") : b;
}

function setData(init: (n: number) => capnp.Data, b: Bytes): void {
  const u = bytes(b);
  if (u.length > 0) init(u.length).copyBuffer(u);
}

export class PiccoloClient {
  readonly host: string;
  readonly port: number;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly password: string | undefined;
  private readonly user: string | undefined;
  private readonly tls: ConnectionOptions | undefined;
  private socket: Socket | null = null;
  private connecting: Promise<Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  /** Open watches' frame handlers, by the watch request's id (every frame of the stream has it). */
  private readonly streams = new Map<number, (frame: ArrayBuffer | null) => void>();
  /** The connection each open watch streams on. */
  private readonly streamSockets = new Map<number, Socket>();
  /** Watches holding more events than their reader took: the socket is paused while any does. */
  private readonly backedUp = new Set<number>();
  private nextId = 1;
  /** Ids of traced requests in flight: their trace frame comes before their answer. */
  private readonly tracedIds = new Map<number, ((t: RequestTrace) => void) | null>();
  /** A call's own trace callback, between its build and its send (see traceFlag). */
  private nextTraceCallback: ((t: RequestTrace) => void) | null = null;
  /** When each traced request in flight was sent (performance.now()). */
  private readonly tracedSentAt = new Map<number, number>();
  private readonly traceAll: boolean;
  private readonly onTrace: ((t: RequestTrace) => void) | undefined;
  /** The timeline of the last traced request answered on this client (docs/tracing.md). */
  lastTrace: RequestTrace | null = null;
  private corked = false;
  private closedByUser = false;

  constructor(options: ClientOptions = {}) {
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 7700;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    this.password = options.password;
    this.user = options.user;
    this.tls = options.tls;
    this.traceAll = options.trace === true;
    this.onTrace = options.onTrace;
  }

  /** Creates a client and makes sure the node answers. */
  static async connect(options: ClientOptions = {}): Promise<PiccoloClient> {
    const c = new PiccoloClient(options);
    await c.ping();
    return c;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  private open(): Promise<Socket> {
    if (this.socket !== null && !this.socket.destroyed) return Promise.resolve(this.socket);
    if (this.connecting !== null) return this.connecting;
    this.connecting = new Promise<Socket>((resolve, reject) => {
      const s =
        this.tls === undefined
          ? connect({ host: this.host, port: this.port, noDelay: true })
          : tlsConnect({ ...this.tls, host: this.host, port: this.port }).setNoDelay(true);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new PiccoloError(ErrorCode.CONNECTION_CLOSED, `connect to ${this.host}:${this.port} timed out`, true));
      }, this.connectTimeoutMs);
      // A TLS socket may carry requests once its handshake is done (and the node's certificate checked).
      s.once(this.tls === undefined ? "connect" : "secureConnect", () => {
        clearTimeout(timer);
        this.attach(s);
        if (this.password === undefined) return resolve(s);
        // AUTH first, and nothing else until it is answered: a failed AUTH
        // leaves a connection as it was (the default user, on a node whose
        // default user needs no password), and calls pipelined behind it would
        // run as that user. So the connection is handed out only once AUTH
        // succeeded; if it fails, it is closed and the waiting calls fail.
        this.send(
          s,
          capnpRequest((r) => {
            const a = r._initAuth();
            a.password = this.password!;
            if (this.user !== undefined) a.user = this.user;
          }),
        ).then(
          (res) => {
            try {
              PiccoloClient.check(decodeResponse(res), Response_Which.OK);
              resolve(s);
            } catch (err) {
              s.destroy();
              reject(err);
            }
          },
          (err: unknown) => {
            s.destroy();
            reject(err);
          },
        );
      });
      s.once("error", (err) => {
        clearTimeout(timer);
        reject(
          new PiccoloError(
            ErrorCode.CONNECTION_CLOSED,
            `cannot connect to ${this.host}:${this.port}: ${err.message}`,
            true,
          ),
        );
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private attach(s: Socket): void {
    this.socket = s;
    // The node never sends a frame larger than one value plus envelope.
    const framer = new FrameReader(maxFrameBytes(256 * 1024 * 1024));
    s.on("data", (chunk: Buffer) => {
      framer.push(chunk, (frame) => this.onFrame(frame, s));
      if (framer.error !== null) s.destroy(new Error(framer.error.message));
    });
    s.on("error", () => {});
    s.on("end", () => {
      // The node closed its side (shutdown or a fatal stream error): no answer can come any more.
      if (this.socket === s) this.socket = null;
      s.destroy();
    });
    s.on("close", () => {
      if (this.socket === s) this.socket = null;
      this.failAll(new PiccoloError(ErrorCode.CONNECTION_CLOSED, "connection closed"), s);
    });
  }

  private onFrame(frame: ArrayBuffer, s: Socket): void {
    let id = responseId(frame); // by hand for the usual shape (src/client/hot-wire.ts)
    if (id === null || id === 0) {
      try {
        id = Number(decodeResponse(frame).id);
      } catch {
        this.socket?.destroy(new Error("undecodable response"));
        return;
      }
    }
    if (this.tracedIds.size > 0 && this.tracedIds.has(id)) {
      const res = decodeResponse(frame);
      if (res.which() === Response_Which.TRACE) return this.tookTrace(id, res.trace);
      this.tracedIds.delete(id); // the answer itself
    }
    const stream = this.streams.get(id);
    if (stream !== undefined) return stream(frame);
    const p = this.pending.get(id);
    if (p === undefined) {
      const res = id === 0 ? decodeResponse(frame) : null;
      if (res !== null && res.which() === Response_Which.ERROR && res.error.code === ErrorCode.SHUTTING_DOWN) {
        // The member is stopping (a "go away", as HTTP/2's): it answers what was sent on this connection
        // and closes it. New calls go on a new connection; this one is only read to its end. Ending our
        // side tells the member that nothing more is coming after what it has read: it closes the
        // connection then, instead of guessing from a quiet moment, so no request of ours is in the air
        // when it does (one it never read would be an unknown outcome here). end() sends what is
        // written first.
        if (this.socket === s) this.socket = null;
        s.end();
        return;
      }
      if (res !== null && res.which() === Response_Which.ERROR) {
        // A connection-level error: the node closes this connection after it.
        // Fail what is in flight with the node's reason and drop the socket
        // now, so the next call opens a fresh connection.
        const e = res.error;
        this.failAll(new PiccoloError(e.code as ErrorCode, e.message));
        const s = this.socket;
        this.socket = null;
        s?.destroy();
      }
      return; // an answer to a call that already timed out
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(frame);
  }

  private tookTrace(id: number, t: Trace): void {
    const sentAt = this.tracedSentAt.get(id);
    this.tracedSentAt.delete(id);
    const trace: RequestTrace = {
      id,
      roundTripUs: sentAt === undefined ? 0 : Math.round((performance.now() - sentAt) * 1000),
      node: t.node,
      dropped: t.dropped,
      spans: Array.from(t.spans, (x) => ({
        stage: x.stage,
        where: x.where,
        startUs: Number(x.startUs),
        durationUs: Number(x.durationUs),
        detail: x.detail,
      })),
    };
    this.lastTrace = trace;
    this.tracedIds.get(id)?.(trace);
    this.onTrace?.(trace);
  }

  /** Fails the calls waiting on `socket` (every call when none is named) and ends the open watches. */
  private failAll(err: Error, socket?: Socket): void {
    for (const [id, stream] of [...this.streams])
      if (socket === undefined || this.streamSockets.get(id) === socket) stream(null);
    for (const [id, p] of this.pending) {
      if (socket !== undefined && p.socket !== socket) continue;
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
  }

  /** Sends one request built by `build` and resolves with its Response. */
  private async call(build: (req: Request) => void): Promise<Response> {
    return decodeResponse(
      await this.callFrame((id) =>
        capnpRequest((r) => {
          build(r);
          if (this.traceAll) r.trace = true;
          if (r.trace) this.tracedIds.set(id, this.nextTraceCallback);
          this.nextTraceCallback = null;
        })(id),
      ),
    );
  }

  /** Whether a call with these options is traced (and, if so, its id is noted as such). */
  private traced(id: number, o: TraceOption): boolean {
    if (o.trace === undefined || o.trace === false) {
      if (!this.traceAll) return false;
      this.tracedIds.set(id, null);
      return true;
    }
    this.tracedIds.set(id, typeof o.trace === "function" ? o.trace : null);
    return true;
  }

  /** A request built with capnp-es: whether it is traced, keeping its callback for call() to note with its id. */
  private traceFlag(o: TraceOption): boolean {
    if (typeof o.trace === "function") {
      this.nextTraceCallback = o.trace;
      return true;
    }
    return o.trace === true;
  }

  /** Sends the request `encode` lays out for an id, and resolves with the response frame. */
  private async callFrame(encode: (id: number) => Uint8Array): Promise<ArrayBuffer> {
    if (this.closedByUser) throw new PiccoloError(ErrorCode.CONNECTION_CLOSED, "client is closed", true);
    return this.send(await this.open(), encode);
  }

  private send(socket: Socket, encode: (id: number) => Uint8Array): Promise<ArrayBuffer> {
    const id = this.nextId++;
    const frame = encode(id);
    const answer = new Promise<ArrayBuffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PiccoloError(ErrorCode.TIMEOUT, `no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer, socket });
    });
    if (this.tracedIds.has(id)) {
      this.tracedSentAt.set(id, performance.now());
      answer.catch(() => {
        this.tracedIds.delete(id);
        this.tracedSentAt.delete(id);
      });
    }
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      // setImmediate, not nextTick: the rest of this event-loop turn is corked too, so a gateway
      // relaying many HTTP requests that arrived together sends them in one write, not one each.
      setImmediate(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    socket.write(frame);
    return answer;
  }

  /**
   * The escape hatch: sends a Request built by `build` (generated capnp-es
   * code; the id is set for you) and resolves with the raw Response. The
   * Cerializer's generic /v1/rpc path uses it.
   */
  raw(build: (req: Request) => void): Promise<Response> {
    return this.call(build);
  }

  private static check(res: Response, expected: Response_Which): Response {
    const which = res.which();
    if (which === Response_Which.ERROR) {
      const e = res.error;
      if (e.code === ErrorCode.VERSION_MISMATCH) throw new VersionMismatchError(e.message, Number(e.version));
      throw new PiccoloError(e.code as ErrorCode, e.message);
    }
    if (which !== expected) throw new PiccoloError(ErrorCode.INTERNAL, `unexpected response kind ${which}`);
    return res;
  }

  /** Authenticates this connection as `user` (default "default"); the `password` option does it on every connection by itself. */
  async auth(password: string, user?: string): Promise<void> {
    PiccoloClient.check(
      await this.call((r) => {
        const a = r._initAuth();
        a.password = password;
        if (user !== undefined) a.user = user;
      }),
      Response_Which.OK,
    );
  }

  async ping(): Promise<void> {
    PiccoloClient.check(
      await this.call((r) => {
        r.ping = true;
      }),
      Response_Which.PONG,
    );
  }

  /** This connection's user and what it may do (docs/security.md); the node still checks every request. */
  async whoami(): Promise<WhoAmI> {
    const w = PiccoloClient.check(
      await this.call((r) => {
        r.whoami = true;
      }),
      Response_Which.WHOAMI,
    ).whoami;
    return { user: w.user, read: w.read, write: w.write, admin: w.admin, allKeys: w.allKeys };
  }

  /**
   * The node's slow log (admin only): its `count` newest entries, newest
   * first, and its figures; with `reset`, emptied after reading (docs/tracing.md).
   */
  async slowlog(options: { count?: number; reset?: boolean } = {}): Promise<SlowLogPage> {
    const res = await this.call((r) => {
      const q = r._initSlowlog();
      q.count = options.count ?? 10;
      q.reset = options.reset ?? false;
    });
    const l = PiccoloClient.check(res, Response_Which.SLOWLOG).slowlog;
    return {
      length: l.length,
      slowerThanUs: Number(l.slowerThanUs),
      maxLen: l.maxLen,
      entries: Array.from(l.entries, (e) => ({
        id: Number(e.id),
        timeMs: Number(e.timeMs),
        durationUs: Number(e.durationUs),
        args: Array.from(e.args),
        client: e.client,
        clientName: e.clientName,
        port: e.port,
        spans: e.traced
          ? Array.from(e.spans, (x) => ({
              stage: x.stage,
              where: x.where,
              startUs: Number(x.startUs),
              durationUs: Number(x.durationUs),
              detail: x.detail,
            }))
          : null,
      })),
    };
  }

  /** The key's value, version and expiry, or null when absent. */
  async get(key: Bytes, options: ReadOptions = {}): Promise<Entry | null> {
    const k = bytes(key);
    const frame = await this.callFrame((id) =>
      encodeGetRequest(id, k, options.stale ?? false, this.traced(id, options)),
    );
    const fast = readValue(frame);
    if (fast !== null) return fast.entry;
    return entryOf(PiccoloClient.check(decodeResponse(frame), Response_Which.VALUE).value);
  }

  /** A write laid out by hand (src/client/hot-wire.ts); its answer read by hand, or by capnp-es (errors). */
  private async write(
    kind: WriteKind,
    key: Bytes,
    value: Bytes,
    o: WriteOptions,
  ): Promise<{ version: number; created: boolean }> {
    const k = bytes(key);
    const v = bytes(value);
    const frame = await this.callFrame((id) =>
      encodeWriteRequest(id, kind, k, v, o.ttlMs ?? 0, o.expireAtMs ?? 0, o.keepTtl ?? false, this.traced(id, o)),
    );
    const fast = readWritten(frame);
    if (fast !== null) return fast;
    const w = PiccoloClient.check(decodeResponse(frame), Response_Which.WRITTEN).written;
    return { version: Number(w.version), created: w.created };
  }

  /** Insert or overwrite. Resolves with the new version. */
  async put(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    return (await this.write(Request_Which.PUT, key, value, options)).version;
  }

  /** Insert or overwrite, saying which: resolves with the new version and whether the key was created. */
  async upsert(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<{ version: number; created: boolean }> {
    return this.write(Request_Which.PUT, key, value, options);
  }

  /** Only if absent; else ALREADY_EXISTS. */
  async insert(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    return (await this.write(Request_Which.INSERT, key, value, options)).version;
  }

  /** Only if present; else NOT_FOUND. */
  async update(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    return (await this.write(Request_Which.UPDATE, key, value, options)).version;
  }

  /** Compare-and-swap: writes only if the key's version is `expectedVersion`; else VersionMismatchError. */
  async cas(key: Bytes, value: Bytes, expectedVersion: number, options: WriteOptions = {}): Promise<number> {
    const res = await this.call((r) => {
      const c = r._initCas();
      setData((n) => c._initKey(n), key);
      setData((n) => c._initValue(n), value);
      c.expectedVersion = BigInt(expectedVersion);
      c.ttlMs = BigInt(options.ttlMs ?? 0);
      c.expireAtMs = BigInt(options.expireAtMs ?? 0);
      r.trace = this.traceFlag(options);
    });
    return Number(PiccoloClient.check(res, Response_Which.WRITTEN).written.version);
  }

  /** Resolves true if a key was removed. With ifVersion, only at that version (else VersionMismatchError). */
  async delete(key: Bytes, options: { ifVersion?: number } & TraceOption = {}): Promise<boolean> {
    const res = await this.call((r) => {
      const d = r._initDelete();
      setData((n) => d._initKey(n), key);
      d.ifVersion = BigInt(options.ifVersion ?? 0);
      r.trace = this.traceFlag(options);
    });
    return PiccoloClient.check(res, Response_Which.DELETED).deleted;
  }

  async exists(key: Bytes, options: ReadOptions = {}): Promise<boolean> {
    const res = await this.call((r) => {
      setData((n) => r._initExists()._initKey(n), key);
      r.stale = options.stale ?? false;
      r.trace = this.traceFlag(options);
    });
    return PiccoloClient.check(res, Response_Which.EXISTS).exists;
  }

  /** Sets a TTL (relative ms). A TTL of 0 deletes the key now. Resolves false if the key is absent. */
  async expire(key: Bytes, ttlMs: number): Promise<boolean> {
    const res = await this.call((r) => {
      const e = r._initExpire();
      setData((n) => e._initKey(n), key);
      e.ttlMs = BigInt(ttlMs);
    });
    return PiccoloClient.check(res, Response_Which.EXPIRE).expire;
  }

  /** Removes the key's TTL. Resolves false if the key is absent or had none. */
  async persist(key: Bytes): Promise<boolean> {
    const res = await this.call((r) => setData((n) => r._initPersist()._initKey(n), key));
    return PiccoloClient.check(res, Response_Which.EXPIRE).expire;
  }

  /** Milliseconds to live; -1: no TTL; -2: no such key (as Redis PTTL). */
  async ttl(key: Bytes, options: ReadOptions = {}): Promise<number> {
    const res = await this.call((r) => {
      setData((n) => r._initTtl()._initKey(n), key);
      r.stale = options.stale ?? false;
      r.trace = this.traceFlag(options);
    });
    return Number(PiccoloClient.check(res, Response_Which.TTL).ttl.ttlMs);
  }

  /** Values of many keys, in order (null for absent ones). Each key is read on its own: not a snapshot. */
  async mget(keys: Bytes[], options: ReadOptions = {}): Promise<(Entry | null)[]> {
    const res = await this.call((r) => {
      const list = r._initMget()._initKeys(keys.length);
      for (let i = 0; i < keys.length; i++) setData((n) => list[i]!._initKey(n), keys[i]!);
      r.stale = options.stale ?? false;
      r.trace = this.traceFlag(options);
    });
    return Array.from(PiccoloClient.check(res, Response_Which.VALUES).values, (v) => entryOf(v));
  }

  /** Writes many keys (each atomically, not all together). Resolves with each key's new version. */
  async mput(entries: [Bytes, Bytes][], options: { ttlMs?: number } & TraceOption = {}): Promise<number[]> {
    const res = await this.call((r) => {
      r.trace = this.traceFlag(options);
      const m = r._initMput();
      m.ttlMs = BigInt(options.ttlMs ?? 0);
      const list = m._initEntries(entries.length);
      entries.forEach(([k, v], i) => {
        setData((n) => list[i]!._initKey(n), k);
        setData((n) => list[i]!._initValue(n), v);
      });
    });
    return Array.from(PiccoloClient.check(res, Response_Which.VERSIONS).versions, (v) => Number(v));
  }

  /**
   * Sets keys whole, with the versions and absolute expiry a backup holds
   * (`piccolo restore --server`, docs/backup.md; admin only). Per key, as
   * mput; resolves with the versions set.
   */
  async restoreKeys(entries: { key: Bytes; value: Bytes; version: number; expireAtMs: number }[]): Promise<number[]> {
    const res = await this.call((r) => {
      const list = r._initRestoreKeys()._initEntries(entries.length);
      entries.forEach((e, i) => {
        const item = list[i]!;
        setData((n) => item._initKey(n), e.key);
        setData((n) => item._initValue(n), e.value);
        item.version = BigInt(e.version);
        item.expireAtMs = BigInt(e.expireAtMs);
      });
    });
    return Array.from(PiccoloClient.check(res, Response_Which.VERSIONS).versions, (v) => Number(v));
  }

  /** Deletes many keys; resolves with how many existed. */
  async mdel(keys: Bytes[], options: TraceOption = {}): Promise<number> {
    const res = await this.call((r) => {
      r.trace = this.traceFlag(options);
      const list = r._initMdel()._initKeys(keys.length);
      for (let i = 0; i < keys.length; i++) setData((n) => list[i]!._initKey(n), keys[i]!);
    });
    return Number(PiccoloClient.check(res, Response_Which.COUNT).count);
  }

  /** One page of a cursor scan; start at cursor 0, stop when the returned cursor is 0. */
  async scan(options: { cursor?: number; count?: number; prefix?: Bytes } & ReadOptions = {}): Promise<ScanPage> {
    const res = await this.call((r) => {
      const s = r._initScan();
      s.cursor = BigInt(options.cursor ?? 0);
      s.count = options.count ?? 100;
      if (options.prefix !== undefined) setData((n) => s._initPrefix(n), options.prefix);
      r.stale = options.stale ?? false;
      r.trace = this.traceFlag(options);
    });
    const page = PiccoloClient.check(res, Response_Which.SCAN).scan;
    return { cursor: Number(page.cursor), keys: Array.from(page.keys, (k) => Buffer.from(k.key.toUint8Array())) };
  }

  /** Every key (or every key with a prefix), by scanning to the end. */
  async keys(prefix?: Bytes, options: ReadOptions = {}): Promise<Buffer[]> {
    const out: Buffer[] = [];
    let cursor = 0;
    do {
      const page = await this.scan(
        prefix === undefined ? { ...options, cursor, count: 1000 } : { ...options, cursor, count: 1000, prefix },
      );
      out.push(...page.keys);
      cursor = page.cursor;
    } while (cursor !== 0);
    return out;
  }

  async stats(): Promise<NodeStats> {
    const res = await this.call((r) => {
      r.stats = true;
    });
    const s = PiccoloClient.check(res, Response_Which.STATS).stats;
    return {
      uptimeMs: Number(s.uptimeMs),
      connections: s.connections,
      shards: Array.from(s.shards, (t) => ({
        shard: t.shard,
        keys: Number(t.keys),
        memoryBytes: Number(t.memoryBytes),
        reads: Number(t.reads),
        writes: Number(t.writes),
        expired: Number(t.expired),
        ...(t.durable
          ? {
              persistence: {
                logBytes: Number(t.logBytes),
                snapshotBytes: Number(t.snapshotBytes),
                lastSaveMs: Number(t.lastSaveMs),
                fsyncs: Number(t.fsyncs),
                fsyncTotalMs: Number(t.fsyncTotalUs) / 1000,
                fsyncMaxMs: Number(t.fsyncMaxUs) / 1000,
                refusingWrites: t.refusingWrites,
              },
            }
          : {}),
      })),
    };
  }

  /**
   * A transaction: if every compare holds, the success ops run, else the
   * failure ops, all as one step, atomic and isolated (docs/protocol.md,
   * "Txn"). Resolves with which branch ran and its ops' results in order
   * (none with `verdictOnly`).
   * In a cluster every key must be in one partition (one hash tag, as
   * `{user:1}:a` and `{user:1}:b`), else CROSS_PARTITION; over 4,096
   * compares and ops or 16 MiB of keys and values, TXN_TOO_LARGE.
   */
  async txn(t: TxnRequest): Promise<TxnResult> {
    const compares = t.compare ?? [];
    const branches = [t.success ?? [], t.failure ?? []] as const;
    for (const [i, c] of compares.entries()) {
      const target = c.target ?? (c.value !== undefined ? "value" : "version");
      if (target === "version" ? c.version === undefined : c.value === undefined)
        throw new PiccoloError(
          ErrorCode.INVALID_ARGUMENT,
          `compare ${i}: a ${target} compare needs its ${target}`,
          true,
        );
      if (c.relation !== undefined && RELATIONS[c.relation] === undefined)
        throw new PiccoloError(ErrorCode.INVALID_ARGUMENT, `compare ${i}: unknown relation ${c.relation}`, true);
    }
    const res = await this.call((r) => {
      const x = r._initTxn();
      if (t.verdictOnly === true) x.verdictOnly = true;
      const list = x._initCompares(compares.length);
      compares.forEach((c, i) => {
        const w = list[i]!;
        setData((n) => w._initKey(n), c.key);
        const byValue = (c.target ?? (c.value !== undefined ? "value" : "version")) === "value";
        w.target = byValue ? CompareTarget.VALUE : CompareTarget.VERSION;
        w.relation = RELATIONS[c.relation ?? "equal"];
        if (byValue) setData((n) => w._initValue(n), c.value!);
        else w.version = BigInt(c.version!);
      });
      for (const [b, ops] of branches.entries()) {
        const out = b === 0 ? x._initSuccess(ops.length) : x._initFailure(ops.length);
        ops.forEach((o, i) => {
          const w = out[i]!;
          if (o.op === "put") {
            const p = w._initPut();
            setData((n) => p._initKey(n), o.key);
            setData((n) => p._initValue(n), o.value);
            p.ttlMs = BigInt(o.ttlMs ?? 0);
            p.expireAtMs = BigInt(o.expireAtMs ?? 0);
            p.keepTtl = o.keepTtl ?? false;
          } else if (o.op === "delete") setData((n) => w._initDelete()._initKey(n), o.key);
          else if (o.op === "get") setData((n) => w._initGet()._initKey(n), o.key);
          else throw new PiccoloError(ErrorCode.INVALID_ARGUMENT, `unknown op ${(o as { op: string }).op}`, true);
        });
      }
    });
    const x = PiccoloClient.check(res, Response_Which.TXN).txn;
    return {
      succeeded: x.succeeded,
      results: Array.from(x.results, (r): TxnOpResult => {
        switch (r.which()) {
          case TxnOpResult_Which.PUT:
            return { op: "put", version: Number(r.put.version), created: r.put.created };
          case TxnOpResult_Which.DELETE:
            return { op: "delete", existed: r.delete };
          default: {
            const v = r.get;
            return {
              op: "get",
              found: v.found,
              value: v.found ? Buffer.from(v.value.toUint8Array()) : null,
              version: Number(v.version),
              expireAtMs: Number(v.expireAtMs),
            };
          }
        }
      }),
    };
  }

  /**
   * Asks the cluster to hand a partition's leadership to `member` (a member
   * id). Resolves once the request has been passed to the leader: the
   * handover itself takes a round trip or two; watch clusterInfo().
   */
  async transferLeader(partition: number, member: number): Promise<void> {
    PiccoloClient.check(
      await this.call((r) => {
        const t = r._initTransferLeader();
        t.partition = partition;
        t.member = member;
      }),
      Response_Which.OK,
    );
  }

  /**
   * Asks the partition's leader to take the next membership step of moving
   * its replica on member `remove` to member `add` (learner, then voter,
   * then removal of the old one). Idempotent: call it again until
   * clusterInfo() shows the partition's replicas changed.
   */
  async replaceReplica(partition: number, remove: number, add: number): Promise<void> {
    PiccoloClient.check(
      await this.call((r) => {
        const t = r._initReplaceReplica();
        t.partition = partition;
        t.remove = remove;
        t.add = add;
      }),
      Response_Which.OK,
    );
  }

  /**
   * Asks the connected member to forget member `member` (an id) for good:
   * it drops it from its address book, records that, refuses its
   * connections and tells its peers (`piccolo cluster forget` asks every
   * member). Refused (INVALID_ARGUMENT) while a partition the member holds
   * lists `member` as a voter or learner. Idempotent.
   */
  async forgetMember(member: number): Promise<void> {
    PiccoloClient.check(
      await this.call((r) => {
        r._initForgetMember().member = member;
      }),
      Response_Which.OK,
    );
  }

  /** The cluster as the connected member sees it (cluster mode; else INVALID_ARGUMENT). */
  async clusterInfo(): Promise<ClusterInfo> {
    const res = await this.call((r) => {
      r.clusterInfo = true;
    });
    return decodeClusterInfo(PiccoloClient.check(res, Response_Which.CLUSTER).cluster);
  }

  /**
   * Watches `key` (with `prefix`, every key starting with it): resolves once
   * the node has set the watch up, with a Watcher to iterate. Events come in
   * each key's order; a watch resumed `from` a position gets exactly what
   * followed it (docs/watch.md).
   */
  async watch(key: Bytes, options: WatchOptions = {}): Promise<Watcher> {
    if (this.closedByUser) throw new PiccoloError(ErrorCode.CONNECTION_CLOSED, "client is closed", true);
    const socket = await this.open();
    const id = this.nextId++;
    const maxBuffered = options.maxBuffered ?? 10_000;
    const frame = capnpRequest((r) => {
      const w = r._initWatch();
      setData((n) => w._initKey(n), key);
      w.prefix = options.prefix === true;
      w.from = options.from ?? "";
    })(id);
    return new Promise<Watcher>((resolve, reject) => {
      let watcher: Watcher | null = null;
      const flow = (buffered: number): void => {
        // Stop reading while this reader is behind; read again once it took half.
        if (buffered >= maxBuffered) this.backedUp.add(id);
        else if (buffered <= maxBuffered / 2) this.backedUp.delete(id);
        if (this.backedUp.size > 0) socket.pause();
        else socket.resume();
      };
      const done = (): void => {
        this.streams.delete(id);
        this.streamSockets.delete(id);
        this.backedUp.delete(id);
        if (this.backedUp.size === 0) socket.resume();
      };
      const timer = setTimeout(() => {
        done();
        reject(new PiccoloError(ErrorCode.TIMEOUT, `the watch was not set up within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.streamSockets.set(id, socket);
      this.streams.set(id, (f) => {
        if (f === null) {
          clearTimeout(timer);
          done();
          const err = new PiccoloError(
            ErrorCode.CONNECTION_CLOSED,
            "connection closed; resume from the watcher's position",
          );
          if (watcher === null) reject(err);
          else watcher.end(err, "");
          return;
        }
        const res = decodeResponse(f);
        if (res.which() === Response_Which.ERROR) {
          clearTimeout(timer);
          done();
          const e = res.error;
          const err = new PiccoloError(e.code as ErrorCode, e.message);
          if (watcher === null) reject(err);
          else watcher.end(err, "");
          return;
        }
        const w = res.watch;
        if (watcher === null) {
          clearTimeout(timer);
          if (w.endCode !== 0) {
            done();
            const err = new PiccoloError(w.endCode as ErrorCode, w.endMessage);
            (err as PiccoloError & { position?: string }).position = w.position;
            return reject(err);
          }
          watcher = new Watcher(
            w.position,
            async () => {
              done();
              const ok = await this.call((r) => {
                r._initCancelWatch().id = BigInt(id);
              });
              if (ok.which() === Response_Which.ERROR && ok.error.code !== ErrorCode.INVALID_ARGUMENT)
                throw new PiccoloError(ok.error.code as ErrorCode, ok.error.message);
            },
            flow,
          );
          resolve(watcher);
        }
        const events: WatchEvent[] = [];
        // The position after each event: the frame's, with its shard's number at the event's own.
        const dot = w.position.indexOf(".");
        const seqs = dot < 0 ? [] : w.position.slice(dot + 1).split(",");
        const positionAfter = (seq: bigint): string => {
          if (w.shard >= seqs.length) return w.position;
          seqs[w.shard] = seq.toString();
          return `${w.position.slice(0, dot)}.${seqs.join(",")}`;
        };
        for (const e of w.events)
          events.push({
            kind: CHANGE_KIND_NAMES[e.kind] ?? "put",
            key: Buffer.from(e.key.toUint8Array()),
            value: e.hasValue ? Buffer.from(e.value.toUint8Array()) : null,
            valueBytes: e.valueBytes,
            version: Number(e.version),
            expireAtMs: Number(e.expireAtMs),
            position: positionAfter(e.seq),
          });
        if (events.length > 0) watcher.push(events);
        if (w.endCode !== 0) {
          done();
          watcher.end(new PiccoloError(w.endCode as ErrorCode, w.endMessage), w.position);
        }
      });
      socket.write(frame);
    });
  }

  /**
   * Streams the node's backup file (docs/backup.md) to `write`, chunk by
   * chunk, in order; resolves once the node sent the file's last byte
   * (admin only). The socket is not read while `write` is busy, so a slow
   * disk slows the node's stream down instead of filling this process's
   * memory. Rejects with the node's error (BUSY while another backup runs),
   * or TIMEOUT when nothing arrives for `idleMs` (the node sends a frame at
   * least every second while it works). A rejected backup's bytes so far
   * are not a backup: discard them.
   */
  async backup(
    write: (chunk: Uint8Array) => Promise<void> | void,
    options: { idleMs?: number } = {},
  ): Promise<{ bytes: number }> {
    if (this.closedByUser) throw new PiccoloError(ErrorCode.CONNECTION_CLOSED, "client is closed", true);
    const socket = await this.open();
    const id = this.nextId++;
    const idleMs = options.idleMs ?? Math.max(this.timeoutMs, 30_000);
    const frame = capnpRequest((r) => {
      r.backup = true;
    })(id);
    return new Promise((resolve, reject) => {
      let bytes = 0;
      let settled = false;
      let chain: Promise<void> = Promise.resolve();
      let timer: NodeJS.Timeout;
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(
          () => end(new PiccoloError(ErrorCode.TIMEOUT, `the backup stream was silent for ${idleMs} ms`)),
          idleMs,
        );
      };
      const end = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.streams.delete(id);
        this.streamSockets.delete(id);
        socket.resume();
        if (err !== null) reject(err);
        else resolve({ bytes });
      };
      arm();
      this.streamSockets.set(id, socket);
      this.streams.set(id, (f) => {
        if (f === null)
          return end(new PiccoloError(ErrorCode.CONNECTION_CLOSED, "connection closed during the backup"));
        const res = decodeResponse(f);
        if (res.which() === Response_Which.ERROR) {
          const e = res.error;
          return void chain.then(() => end(new PiccoloError(e.code as ErrorCode, e.message)));
        }
        const b = res.backup;
        const data = b.data.length > 0 ? new Uint8Array(b.data.toUint8Array()) : new Uint8Array(0);
        const last = b.last;
        arm();
        socket.pause(); // until this chunk is written: the node waits for us through TCP
        chain = chain
          .then(async () => {
            if (settled) return;
            if (data.length > 0) await write(data);
            bytes += data.length;
            if (last) end(null);
            else {
              arm();
              socket.resume();
            }
          })
          .catch((err: unknown) => {
            end(err as Error);
            socket.destroy(); // the node stops when the connection goes
          });
      });
      socket.write(frame);
    });
  }

  /** Closes the connection; calls in flight fail with CONNECTION_CLOSED. */
  async close(): Promise<void> {
    this.closedByUser = true;
    const s = this.socket;
    if (s === null) return;
    await new Promise<void>((resolve) => {
      s.once("close", () => resolve());
      s.end();
      setTimeout(() => s.destroy(), 1000).unref();
    });
  }
}

function decodeResponse(frame: ArrayBuffer): Response {
  return new capnp.Message(frame, false).getRoot(Response);
}

/** An encoder for a request built with the generated code (every operation but the hot ones). */
function capnpRequest(build: (req: Request) => void): (id: number) => Uint8Array {
  return (id) => {
    const message = new capnp.Message();
    const req = message.initRoot(Request);
    req.id = BigInt(id);
    build(req);
    return new Uint8Array(message.toArrayBuffer());
  };
}

function entryOf(v: { found: boolean; value: capnp.Data; version: bigint; expireAtMs: bigint }): Entry | null {
  if (!v.found) return null;
  return { value: Buffer.from(v.value.toUint8Array()), version: Number(v.version), expireAtMs: Number(v.expireAtMs) };
}

export { DEFAULT_MAX_VALUE_BYTES };
