/**
 * One Redis command in flight, and the small vocabulary command handlers use
 * to talk to shards: one() for a single command, many() for a fan-out whose
 * results are gathered in order, everyShard() for node-wide commands.
 * A handler may chain steps: the callback of one() can call one() again.
 */
import { MAX_BATCH_KEYS, MAX_KEY_BYTES } from "../limits.js";
import { type Dispatcher, InFlight, type RequestOwner } from "../io/dispatch.js";
import { copyResult } from "../io/native.js";
import type { PartResult } from "../protocol/codec.js";
import { type CommandFields, FLAG_STALE_READ, isWrite, type Op, type Result } from "../shard/command.js";
import * as reply from "./reply.js";

export interface RespSession {
  /** RESP version spoken on this connection. */
  proto: reply.Proto;
  authenticated: boolean;
  name: string;
  readonly id: number;
  readonly createdMs: number;
  lastCommand: string;
  /** Inside a refused MULTI: commands are answered with errors until EXEC or DISCARD. */
  refusedMulti: boolean;
  /** After READONLY (until READWRITE or RESET): read-only commands may be served stale. */
  staleReads: boolean;
  readonly address: string;
  readonly resp: RespHost;
}

/** What the commands need from the node. */
export interface RespHost {
  readonly dispatcher: Dispatcher;
  readonly maxValueBytes: number;
  readonly requirePass: string | null;
  port: number;
  readonly nativePort: number;
  /** Every RESP session, for CLIENT LIST and INFO. */
  sessions(): Iterable<RespSession>;
  readonly stats: { commands: number; connectionsReceived: number; rejectedCalls: number };
}

export class RespRequest extends InFlight {
  private continuation: ((r: Result) => void) | null = null;
  private parts: PartResult[] | null = null;
  private gathered: ((parts: PartResult[]) => void) | null = null;
  private holding = false;
  /**
   * This command's reads carry FLAG_STALE_READ: the connection sent READONLY
   * and the command is read-only. (Tied to the Redis command's own flag, not
   * to the shard op, as Redis does: a write command's read step, if one ever
   * has one, must see the current value.)
   */
  stale = false;

  constructor(
    owner: RequestOwner,
    readonly session: RespSession,
    readonly args: Uint8Array[],
    readonly nowMs: number,
  ) {
    super(owner);
  }

  get d(): Dispatcher {
    return this.session.resp.dispatcher;
  }

  get proto(): reply.Proto {
    return this.session.proto;
  }

  reply(bytes: Uint8Array): void {
    this.finish(bytes);
  }

  error(text: string): void {
    this.finish(reply.error(text));
  }

  /** A fresh command; set its fields, then pass it to one()/many(). */
  cmd(op: Op): CommandFields {
    const c = this.d.begin(op, this.nowMs);
    if (this.stale && !isWrite(op)) c.flags = FLAG_STALE_READ;
    return c;
  }

  /** Sends the command (already set up with cmd()) for `key`; `then` gets its result. */
  one(key: Uint8Array, then: (r: Result) => void): void {
    this.continuation = then;
    this.d.sendKey(this, 0, key);
  }

  /** As one(), to a given shard (SCAN walks shards by number). */
  oneAt(shard: number, key: Uint8Array, then: (r: Result) => void): void {
    this.continuation = then;
    this.d.send(shard, this, 0, key);
  }

  /**
   * Sends `n` commands; build(i) sets up command i with cmd() and returns its
   * key. `then` gets every result, in order, once all are back.
   */
  many(n: number, build: (i: number) => Uint8Array, then: (parts: PartResult[]) => void): void {
    this.parts = new Array<PartResult>(n);
    this.gathered = then;
    // Held open while sending: inline shards answer inside send().
    this.holding = true;
    for (let i = 0; i < n; i++) {
      const key = build(i);
      this.d.sendKey(this, i, key);
    }
    this.holding = false;
    if (this.remaining === 0) this.complete();
  }

  /**
   * One command `op` per key (MGET, DEL, EXISTS...), after checking the keys
   * and the batch limit; `then` gets the results in key order.
   */
  eachKey(keys: Uint8Array[], op: Op, then: (parts: PartResult[]) => void): void {
    if (keys.length > MAX_BATCH_KEYS) return this.error(`ERR too many keys (the limit is ${MAX_BATCH_KEYS})`);
    for (const k of keys) if (!this.keyOk(k)) return;
    this.many(
      keys.length,
      (i) => {
        this.cmd(op);
        return keys[i]!;
      },
      then,
    );
  }

  /** Sends command `op` to every shard; `then` gets the results by shard. */
  everyShard(op: Op, then: (parts: PartResult[]) => void): void {
    const n = this.d.shardCount;
    this.parts = new Array<PartResult>(n);
    this.gathered = then;
    this.holding = true;
    for (let s = 0; s < n; s++) {
      this.cmd(op);
      this.d.send(s, this, s, EMPTY);
    }
    this.holding = false;
    if (this.remaining === 0) this.complete();
  }

  onResult(part: number, r: Result): void {
    if (this.continuation !== null) {
      const then = this.continuation;
      this.continuation = null;
      then(r);
      return;
    }
    this.parts![part] = copyResult(r);
    if (this.remaining === 0 && !this.holding) this.complete();
  }

  private complete(): void {
    const then = this.gathered!;
    const parts = this.parts!;
    this.gathered = null;
    this.parts = null;
    then(parts);
  }

  /** Checks a key argument; answers the error and returns false when it is not acceptable. */
  keyOk(key: Uint8Array): boolean {
    if (key.length === 0) {
      this.error("ERR empty keys are not supported by Piccolo");
      return false;
    }
    if (key.length > MAX_KEY_BYTES) {
      this.error(`ERR key too large (${key.length} bytes; the limit is ${MAX_KEY_BYTES})`);
      return false;
    }
    return true;
  }
}

const EMPTY = new Uint8Array(0);
