/**
 * The Redis port's hot path: plain GET, SET and INCR answered as a run.
 *
 * Under a pipeline (redis-benchmark -P 16, redis-cli --pipe) the general
 * path pays per command: an array of arguments, a view per argument, a
 * RespRequest with its fields, and the answer's own bytes. A heap profile of
 * 1M pipelined SETs put that at about 670 bytes allocated per command, and
 * the collector's work with it (docs/benchmarks.md, decision 0318).
 *
 * So a complete multibulk that is a plain `GET key`, `SET key value` or
 * `INCR key` is read from the parser's offsets (parser.ts, RespParser.hot),
 * without views or an argument array, and sent to its shard as one command.
 * Consecutive hot commands of one connection share one queued request, a
 * HotRun, whose answers are written one after another into its own buffer:
 * one object per run instead of several per command.
 *
 * Order. The run is the last request in the connection's queue while it
 * takes commands (Connection.isLast); anything else read after it is queued
 * behind it, and the run takes no more. Its answers arrive in the order its
 * commands were sent because hot runs are used only on a backend that
 * answers in order (one shard on the IO thread: ShardBackend.inOrder), and
 * the run checks it.
 *
 * What takes the general path instead, so every rule it applies still
 * holds: a command with options (SET ... EX), any other command, a key that
 * is empty or over MAX_KEY_BYTES, a value over --max-value-bytes, a user
 * limited by ACL rules, a connection not authenticated, in MULTI, subscribed
 * (RESP2), or refusing on a stop, and a command the dispatch window or the
 * output limit holds back (Connection.mayStart), since a held command needs
 * its own copy of its bytes. Failures are answered as the general path
 * answers them (respErrorText), per command: a run never makes one
 * command's failure look like another's success.
 *
 * Limits: a run takes at most HOT_RUN_MAX_COMMANDS commands and stops
 * taking more once its answers pass HOT_RUN_MAX_BYTES; each command counts
 * against the connection's dispatch window as a request of its own.
 */
import { HOT_RUN_MAX_COMMANDS } from "../limits.js";
import { ErrorCode } from "../errors.js";
import type { Dispatcher, RequestOwner } from "../io/dispatch.js";
import { Run } from "../io/run.js";
import { respErrorText } from "../outcomes.js";
import { isDataOutcome, Op, type Result } from "../shard/command.js";
import { E } from "./args.js";
import * as reply from "./reply.js";
import type { Proto } from "./reply.js";

/** The hot commands, by what their answer needs. */
export enum Hot {
  NONE = 0,
  GET = 1,
  SET = 2,
  INCR = 3,
}

/**
 * Which hot command the multibulk of `argc` arguments at `start` is (its
 * arguments' offsets from `start` and lengths in `offsets`, in pairs), or
 * NONE. The name is matched in any case, as Redis does.
 */
export function hotCommand(b: Uint8Array, start: number, offsets: Int32Array, argc: number): Hot {
  const at = start + offsets[0]!;
  const len = offsets[1]!;
  if (argc === 2 && len === 3) {
    if ((b[at]! | 32) === 103 && (b[at + 1]! | 32) === 101 && (b[at + 2]! | 32) === 116) return Hot.GET;
    return Hot.NONE;
  }
  if (argc === 3 && len === 3) {
    if ((b[at]! | 32) === 115 && (b[at + 1]! | 32) === 101 && (b[at + 2]! | 32) === 116) return Hot.SET;
    return Hot.NONE;
  }
  if (argc === 2 && len === 4) {
    if ((b[at]! | 32) === 105 && (b[at + 1]! | 32) === 110 && (b[at + 2]! | 32) === 99 && (b[at + 3]! | 32) === 114)
      return Hot.INCR;
  }
  return Hot.NONE;
}

export const HOT_NAMES = ["", "get", "set", "incr"] as const;
export const HOT_OPS = [0, Op.GET, Op.PUT, Op.INCRBY] as const;

const enc = new TextEncoder();
const OK = enc.encode("+OK\r\n");
const NIL2 = enc.encode("$-1\r\n");
const NIL3 = enc.encode("_\r\n");
const OVERFLOW = reply.error(E.overflow);

/** One run of hot commands of one connection: one queued request, its answers in one buffer (src/io/run.ts). */
export class HotRun extends Run {
  /** Each command's kind, by its place in the run (64 bytes: kept inside V8's heap, no malloc). */
  private readonly kinds = new Uint8Array(HOT_RUN_MAX_COMMANDS);

  constructor(
    owner: RequestOwner,
    private readonly proto: Proto,
  ) {
    super(owner, 256);
  }

  /** For the slow log: the run's first command, and how many it answers (their keys are the socket read's, gone by now). */
  override describe(): string[] {
    const first = HOT_NAMES[this.kinds[0]! as Hot] ?? "?";
    return this.sent > 1 ? [first, `(a run of ${this.sent} commands)`] : [first];
  }

  /** Sends one hot command (`hot`, its key, and for SET its value); its answer joins the run's. */
  send(d: Dispatcher, hot: Hot, key: Uint8Array, value: Uint8Array | null, nowMs: number): void {
    const c = d.begin(HOT_OPS[hot] as Op, nowMs);
    if (hot === Hot.SET) c.value = value;
    else if (hot === Hot.INCR) c.value = INCR_BY_ONE;
    const part = this.took();
    this.kinds[part] = hot;
    d.sendKey(this, part, key);
  }

  protected answer(part: number, r: Result): void {
    const hot = this.kinds[part]! as Hot;
    const op = HOT_OPS[hot] as Op;
    if (!isDataOutcome(op, r.status)) return this.bytes(reply.error(respErrorText(r.status, hot !== Hot.GET)));
    if (hot === Hot.SET) return this.bytes(OK);
    if (hot === Hot.GET) {
      if (r.flag !== 1) return this.bytes(this.proto === 3 ? NIL3 : NIL2);
      const v = r.value!;
      this.room(reply.bulkBytes(v.length));
      this.at = reply.writeBulk(this.buf, this.at, v);
      return;
    }
    // INCR: the shard's data outcomes are the value's text, or why it is not a number.
    if (r.status === ErrorCode.OVERFLOW) return this.bytes(OVERFLOW);
    if (r.status !== ErrorCode.OK) return this.bytes(reply.error(respErrorText(r.status, false)));
    const v = r.value!;
    this.room(v.length + 3);
    this.buf[this.at++] = 58; // ':'
    this.buf.set(v, this.at);
    this.at += v.length;
    this.buf[this.at++] = 13;
    this.buf[this.at++] = 10;
  }
}

const INCR_BY_ONE = enc.encode("1");
