/**
 * The network IO loop: the main thread's event loop owns every socket.
 *
 * Life of one request (docs/architecture.md has the picture):
 *   socket 'data' (Connection) -> NativeConnection.onBytes -> FrameReader (cut frames)
 *   -> decodeRequest (capnp-es, validate) -> Dispatcher.dispatch
 *   -> shard = xxhash32(key, or its {hash tag}) mod N -> command into that shard's request ring
 *   ... at the end of the turn: flush() publishes each ring, one wakeup each
 *   shard worker: execute, result into its notify ring, one wakeup
 *   -> ThreadedShards.drain (waitAsync fired) -> Dispatcher.onResult
 *   -> response encoded -> Connection.flush writes answers in request order.
 *
 * Nothing on this thread ever blocks: full rings queue (bounded, with
 * backpressure on the sockets), and results arrive through Atomics.waitAsync
 * promises that settle on this same event loop.
 */
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { type LimitLevel, LimitLog } from "../limit-log.js";
import {
  CLIENT_OUTPUT_CHECK_INTERVAL_MS,
  CLOSE_LINGER_MS,
  CLIENT_OUTPUT_STALL_MS,
  DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES,
  LEADERSHIP_HANDOFF_MS,
  MAX_CONNECTIONS,
  maxFrameBytes,
  SHUTDOWN_CLOSE_MAX_MS,
  SHUTDOWN_GRACE_MS,
  SHUTDOWN_QUIET_MAX_MS,
  SHUTDOWN_RESP_ANSWER_MAX_MS,
  SHUTDOWN_RESP_IDLE_MAX_MS,
} from "../limits.js";
import { listenFailure } from "../start-failure.js";
import type { Users } from "../security/users.js";
import { clientPortOptions, type TlsFiles } from "../security/tls-files.js";
import { Authenticator } from "./auth.js";
import { type Connection, type ConnectionHost, taken, type Unsent, unsent } from "./connection.js";
import { Dispatcher } from "./dispatch.js";
import { NativeConnection } from "./native.js";
import { initRouting } from "./route.js";
import {
  type Durability,
  InlineShards,
  type Recovered,
  type ShardBackend,
  type ShardEvents,
  ThreadedShards,
} from "./shards.js";

export interface NodeOptions {
  host: string;
  port: number;
  /** 0: maps inline on the IO thread; N >= 1: N worker threads. */
  shards: number;
  maxValueBytes: number;
  /** Open client connections on all ports together (`--max-connections`; MAX_CONNECTIONS when not given). */
  maxConnections?: number;
  /** Bytes of answers one connection may hold before it is closed (`--client-output-limit-bytes`). */
  clientOutputLimitBytes?: number;
  /** Over the output soft limit with nothing read for this long, a connection is closed (`--client-output-stall-ms`). */
  clientOutputStallMs?: number;
  /** The slow log's threshold, µs (-1: off), and length (`--slowlog-slower-than`, `--slowlog-max-len`). */
  slowlogSlowerThanUs?: number;
  slowlogMaxLen?: number;
  /** Pin workers to cores (Linux). */
  pin: boolean;
  /** The node's users (src/security/users.ts): who may connect and what each may do, on every port. */
  users: Users;
  /** Refuse clients from other machines while the default user has no password (`--protected-mode`). */
  protectedMode: boolean;
  /** TLS on every client port (null: plaintext); a TLS port takes no plaintext. */
  tls: TlsFiles | null;
  logger: Logger;
  /**
   * Builds another backend instead of the local shards (cluster mode:
   * src/cluster/backend.ts). The IO loop never knows which it talks to.
   */
  backend?: (events: ShardEvents) => Promise<ShardBackend>;
  /** A single node's persistence: each shard's journal directory and policy (null: in memory only). */
  durability?: Durability | null;
  /** Bytes of change history each shard keeps for watchers (`--watch-history-bytes`). */
  watchHistoryBytes?: number;
}

export class PiccoloNode implements ConnectionHost {
  readonly maxValueBytes: number;
  readonly maxFrameBytes: number;
  readonly maxOutputBytes: number;
  readonly outputStallMs: number;
  private readonly maxConnections: number;
  readonly auth: Authenticator;
  readonly dispatcher = new Dispatcher();
  /** Cluster mode: where a Redis PUBLISH relayed by another member goes (the Redis port's pub/sub hub). */
  onPeerPublish: ((channel: Uint8Array, message: Uint8Array) => void) | null = null;
  private backend!: ShardBackend;
  private readonly servers: Server[] = [];
  /** The TLS listeners, whose certificate reloadTls() replaces. */
  private readonly tlsServers: ReturnType<typeof createTlsServer>[] = [];
  private readonly connections = new Set<Connection>();
  private dirty: Connection[] = [];
  private blocked = false;
  private _stopping = false;
  private turnScheduled = false;
  private readonly logger: Logger;
  private readonly limits: LimitLog;
  private stallTimer: NodeJS.Timeout | null = null;
  /** What the shards recovered at start-up (null: nothing to recover, e.g. cluster mode). */
  recovered: Recovered | null = null;

  constructor(private readonly options: NodeOptions) {
    this.maxValueBytes = options.maxValueBytes;
    this.maxFrameBytes = maxFrameBytes(options.maxValueBytes);
    this.maxOutputBytes = options.clientOutputLimitBytes ?? DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES;
    this.maxConnections = options.maxConnections ?? MAX_CONNECTIONS;
    this.outputStallMs = options.clientOutputStallMs ?? CLIENT_OUTPUT_STALL_MS;
    if (options.slowlogSlowerThanUs !== undefined) this.dispatcher.slowlog.slowerThanUs = options.slowlogSlowerThanUs;
    if (options.slowlogMaxLen !== undefined) this.dispatcher.slowlog.maxLen = options.slowlogMaxLen;
    this.logger = options.logger;
    this.limits = new LimitLog((level, message, detail) => this.logger[level](detail, message));
    this.auth = new Authenticator(options.users, options.host, options.protectedMode, this);
  }

  /**
   * Starts the shards and the listener; resolves with the bound port. On
   * failure (a port taken: a StartError) nothing it started is left running:
   * the process can exit at once instead of idling half-started.
   */
  async start(): Promise<number> {
    await initRouting();
    const events: ShardEvents = {
      onResult: (r) => this.dispatcher.onResult(r),
      onBatchEnd: () => this.flushDirty(),
      onDrain: () => {
        this.blocked = false;
        for (const c of this.connections) c.updateReading();
      },
      onLog: (level, message, detail) => this.logger[level](detail ?? {}, message),
      onPeerPublish: (channel, message) => this.onPeerPublish?.(channel, message),
    };
    this.backend =
      this.options.backend !== undefined
        ? await this.options.backend(events)
        : this.options.shards === 0
          ? new InlineShards(events, this.options.durability ?? null, this.options.watchHistoryBytes)
          : new ThreadedShards(
              this.options.shards,
              events,
              this.options.pin,
              this.options.durability ?? null,
              this.options.watchHistoryBytes,
            );
    this.dispatcher.backend = this.backend;
    this.dispatcher.onSentLater = () => this.scheduleTurn();
    try {
      // A durable node serves nothing before every shard has its map back.
      this.recovered = (await this.backend.ready?.()) ?? null;
      const port = await this.listen(
        this.options.port,
        (socket) => new NativeConnection(socket, this),
        "the native port, --port",
      );
      // The output soft limit over time (connection.ts): a cheap walk, once a second, of a few fields each.
      this.stallTimer = setInterval(() => {
        const now = Date.now();
        for (const c of this.connections) c.checkStalled(now);
      }, CLIENT_OUTPUT_CHECK_INTERVAL_MS);
      this.stallTimer.unref();
      await this.backend.listening?.(`${this.options.host}:${port}`);
      // The start line people read is the one on stdout (src/node/main.ts); this is for a debug log's timeline.
      this.logger.debug({ host: this.options.host, port, shards: this.options.shards }, "piccolo node listening");
      return port;
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /**
   * Opens another listener on the node's host, sharing the shards: the
   * Redis port (src/resp) uses this. Resolves with the bound port; a port
   * that cannot be listened on rejects with a StartError naming `what`.
   */
  async listen(port: number, open: (socket: Socket) => Connection, what: string): Promise<number> {
    const accept = (socket: Socket): void => {
      if (this._stopping) {
        socket.destroy();
        return;
      }
      if (this.connections.size >= this.maxConnections) {
        socket.destroy();
        this.limitHit("max-connections", "refusing a client connection: the node is at --max-connections", {
          maxConnections: this.maxConnections,
        });
        return;
      }
      this.connections.add(open(socket));
      this.dispatcher.connections = this.connections.size;
    };
    // With TLS, a connection is handed over once its handshake is done; one that never finishes it
    // is dropped after TLS_HANDSHAKE_TIMEOUT_MS. A plaintext client gets no answer: its bytes are not a handshake.
    const server =
      this.options.tls === null
        ? createServer({ allowHalfOpen: true, noDelay: true }, accept)
        : createTlsServer(
            { ...clientPortOptions(this.options.tls), allowHalfOpen: true, noDelay: true },
            (socket: TLSSocket) => accept(socket),
          ).on("tlsClientError", (err, socket) =>
            this.limitHit("tls-handshake", "a client's TLS handshake failed (plaintext, a wrong CA, no certificate?)", {
              port: what,
              remote: socket.remoteAddress,
              err: err.message,
            }),
          );
    if (this.options.tls !== null) this.tlsServers.push(server as ReturnType<typeof createTlsServer>);
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error): void => reject(listenFailure(err, `${this.options.host}:${port}`, what));
      server.once("error", failed);
      server.listen(port, this.options.host, () => {
        server.off("error", failed);
        resolve();
      });
    });
    this.servers.push(server);
    const address = server.address();
    return typeof address === "object" && address !== null ? address.port : port;
  }

  /**
   * Re-reads the certificate, key and CA files (SIGHUP): new connections get
   * the new certificate, open ones keep theirs. A file that cannot be read
   * leaves the old certificate in place and throws.
   */
  reloadTls(): void {
    if (this.options.tls === null) return;
    const options = clientPortOptions(this.options.tls);
    for (const s of this.tlsServers) s.setSecureContext(options);
  }

  // ConnectionHost

  /**
   * Paused by shard congestion. Not by a stop: a stopping node goes on
   * reading native connections, and answers what it reads SHUTTING_DOWN
   * (nothing carried out, retry on another member) rather than leaving it
   * unread, which the client could only take as an unknown outcome once the
   * socket closes; Redis connections it serves until they are idle (stop()).
   */
  readingBlocked(): boolean {
    return this.blocked;
  }

  /** The node is stopping: new native requests are answered SHUTTING_DOWN (stop()). */
  get stopping(): boolean {
    return this._stopping;
  }

  afterDispatch(): void {
    this.scheduleTurn();
    if (!this.blocked && this.backend.congested()) {
      this.blocked = true;
      // Backpressure, not a refusal: "info" (rate-limited, as every limit).
      this.limitHit(
        "backlog",
        "commands waiting for the shards are at their limit (count or bytes): pausing every client socket",
        {},
        "info",
      );
    }
  }

  markDirty(conn: Connection): void {
    this.dirty.push(conn);
    this.scheduleTurn();
  }

  /**
   * setImmediate runs after the poll phase has handed us every socket read
   * that was ready, so one end-of-turn covers them all.
   */
  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.endOfTurn);
  }

  /**
   * After a burst of socket reads: publish every ring written this turn (one
   * wakeup per shard for the whole batch) and write what is ready.
   */
  private readonly endOfTurn = (): void => {
    this.turnScheduled = false;
    this.backend.flush();
    this.flushDirty();
  };

  private flushDirty(): void {
    const list = this.dirty;
    if (list.length === 0) return;
    this.dirty = [];
    for (const c of list) c.flush();
  }

  closed(conn: Connection): void {
    this.connections.delete(conn);
    this.dispatcher.connections = this.connections.size;
  }

  log(level: "debug" | "info" | "warn", message: string, detail?: object): void {
    this.logger[level](detail ?? {}, message);
  }

  limitHit(limit: string, message: string, detail?: object, level?: LimitLevel): void {
    this.limits.hit(limit, message, detail, level);
  }

  /**
   * Cluster mode, first step of a graceful stop: the partitions this member
   * leads are handed to caught-up peers while it keeps serving (requests to
   * them are forwarded), so clients see a pause of a few milliseconds per
   * partition instead of an election timeout after the stop. Logged with
   * how many were handed over and how long it took.
   */
  async handOffLeadership(): Promise<void> {
    if (this.backend?.handOffLeadership === undefined || this._stopping) return;
    const t0 = Date.now();
    const r = await this.backend.handOffLeadership(LEADERSHIP_HANDOFF_MS);
    const detail = { led: r.led, handedOver: r.led - r.left, left: r.left, ms: Date.now() - t0 };
    if (r.left === 0) this.logger.info(detail, "leadership handed over before stopping");
    else
      this.logger.warn(detail, "some partitions could not be handed over (no caught-up follower): an election follows");
  }

  /**
   * Graceful stop (docs/cluster.md, "Stopping, restarting and upgrading a
   * member"; decisions 0272 and 0274):
   *
   * 1. Refuse new connections. Native connections get a "go away" and what
   *    they read from now on is answered SHUTTING_DOWN (not carried out:
   *    their clients retry elsewhere). Redis connections, whose clients have
   *    no "go away" but send again what got no answer, are served as usual
   *    until each is idle and half-closed there; after SHUTDOWN_RESP_IDLE_MAX_MS
   *    they read nothing more (stopServing).
   * 2. Wait for the answers: native requests in flight for up to
   *    SHUTDOWN_GRACE_MS from the start; every command read from a Redis
   *    client, for up to SHUTDOWN_RESP_ANSWER_MAX_MS (above any command's
   *    deadlines: closing before its answer could make its client apply it
   *    twice).
   * 3. Wait until every native client told to go away has ended its side
   *    (at most SHUTDOWN_QUIET_MAX_MS): it sends nothing after that, so no
   *    request of its is in the air when the socket closes (one the member
   *    never read would be an unknown outcome to its client). What arrives
   *    meanwhile is answered SHUTTING_DOWN. A quiet moment is no such proof:
   *    a client whose event loop stalls sends its requests late. A Redis
   *    connection answering SHUTDOWN (a transaction open past the bound)
   *    has no such FIN to wait for: it is closed once its client has been
   *    quiet SHUTDOWN_QUIET_MS (src/resp/connection.ts, mayStillSend).
   * 4. Half-close every socket after its last answer, and wait for the
   *    clients to close their side (at most SHUTDOWN_CLOSE_MAX_MS), reading
   *    and dropping what they send meanwhile, so that no reset loses an
   *    answer; then stop the shard workers.
   */
  async stop(): Promise<void> {
    if (this._stopping) return;
    this._stopping = true;
    const t0 = Date.now();
    if (this.stallTimer !== null) clearInterval(this.stallTimer);
    for (const server of this.servers) server.close();
    for (const c of this.connections) {
      c.goAway();
      c.updateReading();
    }
    await waitUntil(() => !this.any((c) => c.servingWhileStopping), SHUTDOWN_RESP_IDLE_MAX_MS, 5);
    for (const c of this.connections) c.stopServing();
    const graceBy = t0 + SHUTDOWN_GRACE_MS;
    await waitUntil(
      () => (!this.dispatcher.awaitingAnswers || Date.now() >= graceBy) && !this.any((c) => c.owedAnswers > 0),
      SHUTDOWN_RESP_ANSWER_MAX_MS,
      5,
    );
    let owed = 0;
    for (const c of this.connections) owed += c.owedAnswers;
    if (owed > 0)
      this.logger.error(
        { owed, waitedMs: SHUTDOWN_RESP_ANSWER_MAX_MS },
        "closing Redis connections with commands still unanswered: their clients may send them again",
      );
    await waitUntil(() => !this.any((c) => c.mayStillSend), SHUTDOWN_QUIET_MAX_MS, 5);
    for (const c of this.connections) c.endForStop();
    await this.waitForClients();
    this.logger.debug({ ms: Date.now() - t0, open: this.connections.size }, "client connections closed");
    // (No backend when start() failed before it existed.)
    await (this.backend as ShardBackend | undefined)?.close();
    this.logger.info("piccolo node stopped");
  }

  /**
   * The last wait of a stop, once every socket is half-closed: until each
   * client has closed its side, which it does once it has read every
   * answer and the FIN after them. Answers still in the process's buffers
   * would die with it, and those in the kernel's would be dropped too if
   * the client's next bytes met a closed socket (a reset): a pipelining
   * client can have megabytes of them, for commands carried out. So the
   * wait goes on as long as the clients move (take answers, or still send,
   * not having read up to the FIN yet): it ends when they are all closed,
   * when nothing has moved for SHUTDOWN_CLOSE_MAX_MS (CLOSE_LINGER_MS
   * while answers are in the process's buffers: a client that reads
   * nothing), or at SHUTDOWN_RESP_ANSWER_MAX_MS.
   */
  private async waitForClients(): Promise<void> {
    const by = Date.now() + SHUTDOWN_RESP_ANSWER_MAX_MS;
    let before: Unsent = { buffered: 0, queued: 0 };
    let open = -1;
    let dropped = -1;
    let movedMs = Date.now();
    for (;;) {
      const now: Unsent = { buffered: 0, queued: 0 };
      let droppedNow = 0;
      for (const c of this.connections) {
        const u = unsent(c.socket);
        now.buffered += u.buffered;
        now.queued += u.queued;
        droppedNow += c.droppedBytes;
      }
      const t = Date.now();
      if (taken(before, now) || this.connections.size !== open || droppedNow !== dropped) movedMs = t;
      before = now;
      open = this.connections.size;
      dropped = droppedNow;
      if (open === 0 || t >= by || t - movedMs >= (now.buffered > 0 ? CLOSE_LINGER_MS : SHUTDOWN_CLOSE_MAX_MS)) {
        if (now.buffered > 0)
          this.logger.warn(
            { connections: open, unsentBytes: now.buffered },
            "stopping with answers a client has not read: its commands were carried out, but it will not get their answers",
          );
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private any(f: (c: Connection) => boolean): boolean {
    for (const c of this.connections) if (f(c)) return true;
    return false;
  }
}

/** Resolves once `done()` holds, checking every `everyMs`, or after `maxMs` whatever it says. */
async function waitUntil(done: () => boolean, maxMs: number, everyMs: number): Promise<void> {
  const by = Date.now() + maxMs;
  while (!done() && Date.now() < by) await new Promise((r) => setTimeout(r, everyMs));
}
