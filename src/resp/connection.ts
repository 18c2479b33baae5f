/**
 * A socket speaking RESP: the Redis port's counterpart of NativeConnection.
 * Parsing, authentication and the command table live here; ordering and
 * backpressure come from the shared Connection base.
 */
import type { Socket } from "node:net";
import { Connection, type ConnectionHost } from "../io/connection.js";
import type { InFlight } from "../io/dispatch.js";
import { MAX_KEY_BYTES, respMaxQueryBytes } from "../limits.js";
import { lookupBytes } from "./commands.js";
import { RespParser } from "./parser.js";
import { subscribed } from "./pubsub.js";
import * as reply from "./reply.js";
import { enqueue, NOT_QUEUED } from "./multi.js";
import { type MultiState, type RespHost, RespRequest, type RespSession, type WatchState } from "./request.js";

let nextClientId = 1;

/**
 * Commands that take more than one step before they write (a read, then a
 * transaction; EXEC waiting for its WATCH's reads): the connection starts
 * nothing after one of them until it answers.
 */
const BARRIERS = new Set(["exec", "rename", "renamenx", "copy"]);

const dec = new TextDecoder();

/** Commands allowed before AUTH when a password is required (as Redis). */
const BEFORE_AUTH = new Set(["auth", "hello", "quit", "reset"]);

/** What a RESP2 connection may send while subscribed (as Redis; RESP3 may send anything). */
const WHILE_SUBSCRIBED = new Set([
  "subscribe",
  "psubscribe",
  "unsubscribe",
  "punsubscribe",
  "ssubscribe",
  "sunsubscribe",
  "ping",
  "quit",
  "reset",
]);

export class RespConnection extends Connection implements RespSession {
  proto: reply.Proto = 2;
  authenticated: boolean;
  name = "";
  readonly id = nextClientId++;
  readonly createdMs = Date.now();
  lastCommand = "NULL";
  multi: MultiState | null = null;
  watch: WatchState | null = null;
  staleReads = false;
  readonly subscriptions = { channels: new Set<string>(), patterns: new Set<string>() };
  readonly address: string;
  private readonly parser: RespParser;
  /**
   * A command still under way that the commands after it must not overtake
   * (BARRIERS); they are queued for their answers' order but not started
   * until it answers, so a pipelined GET after RENAME or EXEC sees its writes.
   */
  private barrier: RespRequest | null = null;
  private afterBarrier: RespRequest[] = [];

  constructor(
    socket: Socket,
    host: ConnectionHost,
    readonly resp: RespHost,
  ) {
    super(socket, host);
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    this.authenticated = resp.requirePass === null;
    // proto-max-bulk-len: one argument is at most a value (or a key, if the value limit is smaller).
    this.parser = new RespParser(Math.max(host.maxValueBytes, MAX_KEY_BYTES), respMaxQueryBytes(host.maxValueBytes));
  }

  protected onBytes(chunk: Buffer, nowMs: number): void {
    this.parser.push(chunk, (args) => this.command(args, nowMs));
    const error = this.parser.error;
    if (error !== null) {
      if (this.parser.limit !== null)
        this.host.limitHit(`resp-${this.parser.limit}`, "closing a RESP connection over a command limit", {
          remote: this.address,
          error,
        });
      else this.host.log("info", "closing RESP connection on a protocol error", { error });
      this.fatal(reply.error(error));
    }
  }

  private command(args: Uint8Array[], nowMs: number): void {
    if (this.mayStart() && this.barrier === null) {
      const req = new RespRequest(this, this, args, nowMs);
      this.enqueue(req);
      return this.start(req);
    }
    // Held past the dispatch window (src/io/connection.ts): the parser's views last only this read.
    const req = new RespRequest(
      this,
      this,
      args.map((a) => a.slice()),
      nowMs,
    );
    this.enqueue(req);
    // Held in order by the base (even behind a barrier: requests it still holds are older); startHeld() defers it past the barrier.
    this.hold(req);
  }

  protected startHeld(req: InFlight): void {
    if (this.barrier !== null) this.afterBarrier.push(req as RespRequest);
    else this.start(req as RespRequest);
  }

  /** The barrier answered: start what waited for it, in order, until the next barrier. */
  private releaseBarrier(): void {
    this.barrier = null;
    let i = 0;
    while (i < this.afterBarrier.length && this.barrier === null) this.start(this.afterBarrier[i++]!);
    this.afterBarrier.splice(0, i);
  }

  private start(req: RespRequest): void {
    const args = req.args;
    this.resp.stats.commands++;
    const spec = lookupBytes(args[0]!);
    if (spec === undefined) {
      this.resp.stats.rejectedCalls++;
      if (this.multi !== null) this.multi.dirty = true;
      const shown = args
        .slice(1, 21)
        .map((a) => `'${dec.decode(a.subarray(0, 128))}' `)
        .join("");
      return req.error(
        `ERR unknown command '${dec.decode(args[0]!.subarray(0, 128))}', with args beginning with: ${shown}`,
      );
    }
    const name = spec.name;
    this.lastCommand = name;
    if (!this.authenticated && !BEFORE_AUTH.has(name)) {
      this.resp.stats.rejectedCalls++;
      return req.error("NOAUTH Authentication required.");
    }
    if ((spec.arity > 0 && args.length !== spec.arity) || (spec.arity < 0 && args.length < -spec.arity)) {
      this.resp.stats.rejectedCalls++;
      if (this.multi !== null) this.multi.dirty = true;
      return req.error(`ERR wrong number of arguments for '${name}' command`);
    }
    if (this.proto === 2 && subscribed(this) && !WHILE_SUBSCRIBED.has(name)) {
      this.resp.stats.rejectedCalls++;
      return req.error(
        `ERR Can't execute '${name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`,
      );
    }
    if (this.multi !== null && !NOT_QUEUED.has(name)) return enqueue(req, name);
    req.stale = this.staleReads && spec.readOnly;
    spec.run(req);
    if (req.out === null && BARRIERS.has(name)) {
      this.barrier = req;
      req.afterFinish = () => this.releaseBarrier();
    }
  }

  protected get partial(): boolean {
    return this.parser.partial;
  }

  protected truncatedAnswer(): Uint8Array {
    return reply.error("ERR Protocol error: the stream ended inside a command");
  }
}
