/**
 * GET /v1/watch: a watch (docs/watch.md) as Server-Sent Events.
 *
 *   GET /v1/watch?key=K            every change to the key K
 *   GET /v1/watch?prefix=P         every change to the keys starting with P (P may be empty: all keys)
 *       &from=POSITION             resume after a position (an event's id); default: from now
 *   Last-Event-ID: POSITION        the same, and it wins over ?from= (an EventSource reconnecting
 *                                  sends it along with the URL it first opened, ?from= included)
 *
 * The stream (text/event-stream):
 *
 *   id: <position>                 first, the position the watch starts at (no event): the one
 *                                  resumed from, or the node's "now"
 *   data: {"kind":"put","key":..}  one event per change, in each key's order
 *   id: <position>                 after the last change of each batch from the node
 *   : keepalive                    a comment every --watch-keepalive-ms while idle
 *   event: compacted               the watch fell behind the history the node keeps; then closed
 *   event: error                   the node's connection failed (or the gateway stops); then closed
 *
 * Positions. The node hands its changes over in batches, and gives a
 * position after each batch only (the native client's WatchEvent.position
 * is the batch's end for every event of it). So the stream sets the SSE id
 * on a block of its own after a batch's last event, never on an event
 * whose batch is not finished: a client that resumes from its last id
 * misses nothing; one cut off in the middle of a batch gets that batch's
 * first events again.
 *
 * Backpressure. When the HTTP socket does not take more (res.write returns
 * false) the stream stops taking events from the Watcher until 'drain';
 * the Watcher then stops reading its connection once it holds maxBuffered
 * events, and the node holds back in turn (docs/watch.md, "A slow
 * watcher"), until the history moves past the watch and it ends COMPACTED.
 * Each stream has a node connection of its own (pool.ts, newClient), so a
 * slow reader never holds up anyone else's requests.
 *
 * In front of a cluster, any member that is up serves the stream (positions
 * are log positions, the same on every member). Not served (501
 * not-implemented): a prefix watch
 * behind several independent nodes (each numbers its positions apart; the
 * stream would have to merge them). A key watch behind several nodes goes
 * to the node that owns the key.
 */
import type { ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";
import type { PiccoloClient, WatchEvent, Watcher } from "../../client/client.js";
import { ErrorCode, errorName, PiccoloError } from "../../errors.js";
import { WATCH_PARK_MS } from "../../limits.js";
import type { Gateway } from "../context.js";
import { Problem, RETRY_AFTER_SECONDS } from "../problems.js";
import { checkKey, queryBytes } from "../url.js";
import { encodeBytes } from "../values.js";

export interface WatchRouteOptions {
  /** Open streams at most; over it 503 too-many-watches. */
  maxWatches: number;
  /** A comment line this often, so idle streams stay open through proxies. */
  keepaliveMs: number;
}

/** Events a stream's Watcher holds before it stops reading its node connection. */
const WATCH_MAX_BUFFERED = 256;
/** A position token is short (one number per shard); anything longer is not one. */
const MAX_POSITION_CHARS = 4096;
const POSITION = /^[0-9a-z]+\.\d+(,\d+)*$/;
/** What an EventSource waits before reconnecting after the stream ends (ms). */
const RETRY_MS = 1000;

const problemRef = { $ref: "problem#" };

/** An event's data: the key and value encoded as the other routes encode them (values.ts). */
export function eventData(e: WatchEvent): Record<string, unknown> {
  const k = encodeBytes(e.key);
  const out: Record<string, unknown> = { kind: e.kind, key: k.text, keyEncoding: k.encoding };
  if (e.value === null) out.value = null;
  else {
    const v = encodeBytes(e.value);
    out.value = v.text;
    out.encoding = v.encoding;
  }
  out.valueBytes = e.valueBytes;
  out.version = e.version;
  out.expireAtMs = e.expireAtMs;
  return out;
}

function checkPosition(raw: string, what: string): string {
  if (raw.length > MAX_POSITION_CHARS || !POSITION.test(raw))
    throw new Problem("invalid-argument", `${what}: "${raw.slice(0, 100)}" is not a watch position (an event's id)`);
  return raw;
}

/** One open stream. */
class Stream {
  private closed = false;
  private keepalive: NodeJS.Timeout | null = null;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly res: ServerResponse,
    private readonly watcher: Watcher,
    private readonly client: PiccoloClient,
    private readonly onDone: () => void,
  ) {}

  /** Writes the head and pumps events until the watch ends or the client goes. */
  start(keepaliveMs: number, startId: string): void {
    const res = this.res;
    res.on("close", () => this.finish());
    res.on("drain", () => this.wakeDrain());
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
    this.keepalive = setInterval(() => {
      if (!this.closed && !res.writableNeedDrain) res.write(": keepalive\n\n");
    }, keepaliveMs);
    void this.send(`retry: ${RETRY_MS}\nid: ${startId}\n\n`).then(() => this.pump());
  }

  /** Ends the stream from the gateway's side (shutdown): an error event, then closed. */
  stop(message: string): void {
    if (this.closed) return;
    this.res.end(this.block("error", { code: "SHUTTING_DOWN", message, position: this.watcher.position }));
    this.finish();
  }

  private block(event: string, data: unknown): string {
    return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  /** Writes; resolves once the socket takes more (at once unless it is backed up). */
  private send(text: string): Promise<void> {
    if (this.closed || this.res.write(text)) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private wakeDrain(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  private async pump(): Promise<void> {
    const it = this.watcher[Symbol.asyncIterator]();
    // The position after the events written but not yet given as an id (their batch may go on).
    let pending: string | null = null;
    const idle = Symbol("idle");
    try {
      for (;;) {
        if (this.closed) return;
        const next = it.next();
        let r: IteratorResult<WatchEvent> | typeof idle = idle;
        if (pending !== null) {
          // A batch's events are queued together: one not ready by the next turn is another batch.
          r = await Promise.race([next, new Promise<typeof idle>((resolve) => setImmediate(() => resolve(idle)))]);
          if (r === idle) {
            await this.send(`id: ${pending}\n\n`);
            pending = null;
          }
        }
        if (r === idle) r = await next;
        if (r.done === true || this.closed) return;
        const e = r.value;
        let text = "";
        if (pending !== null && pending !== e.position) text = `id: ${pending}\n\n`;
        text += `data: ${JSON.stringify(eventData(e))}\n\n`;
        pending = e.position;
        await this.send(text);
      }
    } catch (err) {
      if (this.closed) return;
      const tail = pending === null ? "" : `id: ${pending}\n\n`;
      const position = this.watcher.position;
      if (err instanceof PiccoloError && err.code === ErrorCode.COMPACTED)
        this.res.end(tail + this.block("compacted", { position, message: err.message }));
      else {
        const code = err instanceof PiccoloError ? errorName(err.code) : "INTERNAL";
        const message = err instanceof Error ? err.message : String(err);
        this.res.end(tail + this.block("error", { code, message, position }));
      }
      this.finish();
    }
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.keepalive !== null) clearInterval(this.keepalive);
    this.wakeDrain();
    if (!this.res.writableEnded) this.res.destroy();
    this.onDone();
    // Cancel the node's watch, then drop the connection (the node forgets a closed connection's watches too).
    void this.watcher
      .cancel()
      .catch(() => {})
      .finally(() => void this.client.close());
  }
}

export function watchRoutes(app: FastifyInstance, g: Gateway, o: WatchRouteOptions): void {
  /** Streams open, and setups under way (reserved so the limit holds while they connect). */
  let reserved = 0;
  const streams = new Set<Stream>();

  app.addHook("preClose", async () => {
    for (const s of [...streams]) s.stop("the gateway is shutting down; reconnect with Last-Event-ID");
  });

  app.get(
    "/v1/watch",
    {
      exposeHeadRoute: false,
      schema: {
        summary: "Watch a key or a prefix (Server-Sent Events)",
        description:
          "Every change to `key`, or to every key starting with `prefix` (percent-encoded bytes; empty: all keys), " +
          "as text/event-stream. Each change is an event whose data is {kind: put|delete|expire|expired|flush, key, " +
          "keyEncoding, value (null but for a put; null too for a value over 64 KiB), encoding, valueBytes, version, " +
          "expireAtMs}; after each batch of changes a block sets the SSE id to the watch's position. Resume with " +
          "Last-Event-ID (it wins over ?from=) or ?from=: nothing missed, nothing repeated. `event: compacted` " +
          "{position, message}: the watch fell behind the history the node keeps (read the keys again, watch from " +
          "`position`); `event: error`: the node's connection failed (reconnect with Last-Event-ID). A position " +
          "already compacted when the stream opens answers 410. Not served for a prefix behind " +
          `several independent nodes (501). At most --max-watches streams (503).`,
        querystring: {
          type: "object",
          properties: {
            key: { type: "string", description: "one key (percent-encoded bytes)" },
            prefix: { type: "string", description: "a key prefix (percent-encoded bytes; may be empty)" },
            from: { type: "string", description: "resume after this position (an event id)" },
          },
        },
        headers: { type: "object", properties: { "last-event-id": { type: "string" } } },
        response: {
          200: {
            description: "The event stream",
            content: { "text/event-stream": { schema: { type: "string" } } },
          },
          400: problemRef,
          410: problemRef,
          501: problemRef,
          503: problemRef,
        },
      },
    },
    async (req, reply) => {
      const key = queryBytes(req.originalUrl, "key");
      const prefix = queryBytes(req.originalUrl, "prefix");
      if ((key === null) === (prefix === null))
        throw new Problem("invalid-argument", "give exactly one of ?key= (one key) or ?prefix= (may be empty)");
      if (key !== null) checkKey(key, g.limits.maxKeyBytes);
      else if (prefix!.length > g.limits.maxKeyBytes)
        throw new Problem("invalid-key", `the prefix is ${prefix!.length} bytes; the limit is ${g.limits.maxKeyBytes}`);
      const q = req.query as Record<string, string | undefined>;
      const lastEventId = req.headers["last-event-id"];
      let from: string | undefined;
      if (typeof lastEventId === "string" && lastEventId !== "") from = checkPosition(lastEventId, "Last-Event-ID");
      else if (q.from !== undefined && q.from !== "") from = checkPosition(q.from, "from");
      if (!g.router.cluster && prefix !== null && g.router.nodes.length > 1)
        throw new Problem(
          "not-implemented",
          `a prefix watch behind ${g.router.nodes.length} independent nodes is not served (each numbers its positions ` +
            "apart); watch one key, or run one gateway per node",
        );
      if (reserved >= o.maxWatches)
        throw new Problem(
          "too-many-watches",
          `${reserved} watch streams are open (limit --max-watches ${o.maxWatches})`,
          { limit: o.maxWatches },
          { "retry-after": String(RETRY_AFTER_SECONDS) },
        );
      reserved++;
      let released = false;
      const release = (): void => {
        if (!released) reserved--;
        released = true;
      };
      // In a cluster any member serves any watch, and positions mean the same on every member (they are
      // log positions): a stream that fails reconnects with Last-Event-ID to whichever member is up.
      const link = g.router.cluster ? g.router.anyNode() : key !== null ? g.router.nodeFor(key) : g.router.nodes[0]!;
      // A watch resumed from a position is set up once every shard it covers has answered, and a shard
      // with nothing new answers only when a change comes or its read's park ends (WATCH_PARK_MS):
      // the setup may take that long (docs/cerializer.md, "Watch streams").
      const client = link.newClient(WATCH_PARK_MS, req.caller);
      let gone = false;
      reply.raw.once("close", () => {
        gone = true;
      });
      let watcher: Watcher;
      try {
        watcher = await link.run(
          req.caller,
          (c) =>
            c.watch(key ?? prefix!, {
              prefix: prefix !== null,
              maxBuffered: WATCH_MAX_BUFFERED,
              ...(from === undefined ? {} : { from }),
            }),
          client,
        );
      } catch (err) {
        release();
        void client.close();
        if (err instanceof PiccoloError && err.code === ErrorCode.COMPACTED) {
          const position = (err as PiccoloError & { position?: string }).position ?? "";
          throw new Problem("compacted", err.message, { code: "COMPACTED", position });
        }
        throw err;
      }
      if (gone) {
        release();
        void watcher
          .cancel()
          .catch(() => {})
          .finally(() => void client.close());
        return reply.hijack();
      }
      const s = new Stream(reply.raw, watcher, client, () => {
        streams.delete(s);
        release();
      });
      streams.add(s);
      reply.hijack();
      // A resumed stream starts at the position it resumed from: the node's set-up answer may give the
      // position after the first batch of changes already (src/io/native.ts), which would skip that
      // batch for a client cut off before the batch's own id.
      s.start(o.keepaliveMs, from ?? watcher.position);
      return reply;
    },
  );
}
