/**
 * A watch on the IO thread: one long poll per shard it covers (Op.WATCH,
 * src/shard/watch-reads.ts), each re-issued from where the last answer
 * ended, the changes handed to the protocol's sink in each shard's order
 * (docs/watch.md). Protocol-neutral: the native protocol, the Redis port's
 * keyspace notifications and the Cerializer's event stream all watch
 * through it.
 *
 * Position. A shard numbers its changes 1, 2, 3...; a watch's position is
 * one number per shard, plus the run of the node that numbered them (the
 * history lives in memory: after a restart, an old position is COMPACTED).
 * As a token: `<run>.<seq>,<seq>,...` (one seq per shard, in shard order).
 * In a cluster the "shards" are partitions, a seq is a log position (the
 * same on every replica) and the run is the cluster's id: a watcher can
 * resume on any member.
 * A key watched alone needs its own shard only; a prefix covers all shards.
 *
 * Backpressure. A shard's answer is read only when the sink can take it
 * (sink.ready); while it cannot, the watch simply does not ask again, so a
 * slow watcher costs one position per shard, never a growing buffer. If it
 * falls further behind than the history keeps, its next read answers
 * COMPACTED and the watch ends with the current position: cut off with a
 * clear message, and it may resume after reading the keys again.
 */
import { ErrorCode } from "../errors.js";
import { WATCH_READ_MAX_BYTES } from "../limits.js";
import { Op, type Result, WATCH_EXACT, WATCH_NO_PARK } from "../shard/command.js";
import { type Change, decodeChanges } from "../shard/history.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";

export interface WatchSink {
  /** Changes of one shard, in its order; `position` is the watch's position after them. */
  changes(changes: Change[], position: string): void;
  /** The watch is established (every shard answered once); `position` is where it starts. */
  created(position: string): void;
  /** The watch ended and will deliver nothing more (COMPACTED with the current position, or a failure). */
  ended(code: number, message: string, position: string): void;
  /** Whether the sink takes more now; when false the watch waits and asks again later. */
  readonly ready: boolean;
}

/** How long a paused watch waits before it looks at its sink again. */
const PAUSE_RECHECK_MS = 20;
/** Where shards do not park reads (a cluster), how long a watch waits after an empty answer. */
const WATCH_POLL_MS = 100;
/** After a failed read (a shard refusing, the node stopping), the watch asks again this much later. */
const RETRY_MS = 200;

/** Parses a position token for a node of `shards` shards in run `run`; null when it is not one of this run's. */
export function parsePosition(token: string, run: string, shards: number): number[] | null {
  const dot = token.indexOf(".");
  if (dot < 0 || token.slice(0, dot) !== run) return null;
  const seqs = token
    .slice(dot + 1)
    .split(",")
    .map((s) => Number(s));
  if (seqs.length !== shards || seqs.some((n) => !Number.isSafeInteger(n) || n < 0)) return null;
  return seqs;
}

/** Whether `token` is shaped like a position at all (to answer INVALID_ARGUMENT rather than COMPACTED). */
export function looksLikePosition(token: string): boolean {
  return /^[0-9a-z]+\.\d+(,\d+)*$/.test(token);
}

export class Watch extends InFlight {
  /** Per shard: the last seq delivered (-1: not yet known, "from now"). */
  private readonly cursor: number[];
  private readonly shards: number[];
  private readonly waiting: boolean[];
  private createdSent = false;
  private done = false;

  constructor(
    owner: RequestOwner,
    private readonly d: Dispatcher,
    private readonly key: Uint8Array,
    private readonly exact: boolean,
    from: number[] | null,
    private readonly sink: WatchSink,
  ) {
    super(owner);
    // Results to a watch are not an answer the connection queues: never charged as one (dispatch.ts).
    this.out = SENTINEL;
    const n = d.shardCount;
    this.cursor = from ?? new Array<number>(n).fill(-1);
    this.shards = exact ? [d.shardOf(key)] : Array.from({ length: n }, (_, s) => s);
    this.waiting = new Array<boolean>(n).fill(false);
  }

  get run(): string {
    return this.d.watchRun;
  }

  position(): string {
    return `${this.run}.${this.cursor.map((c) => Math.max(c, 0)).join(",")}`;
  }

  start(): void {
    for (const s of this.shards) this.ask(s);
  }

  /** Stops the watch: nothing more is delivered (a parked read still out is answered later and ignored). */
  cancel(): void {
    this.done = true;
  }

  private ask(shard: number): void {
    if (this.done || this.owner.gone) return;
    const c = this.d.begin(Op.WATCH, Date.now());
    const from = this.cursor[shard]!;
    // -1: "from now": the shard answers its current position at once.
    c.arg0 = from;
    c.arg1 = WATCH_READ_MAX_BYTES;
    c.flags = (this.exact ? WATCH_EXACT : 0) | (from < 0 || !this.d.watchParks ? WATCH_NO_PARK : 0);
    this.waiting[shard] = true;
    this.d.send(shard, this, shard, this.key);
  }

  onResult(shard: number, r: Result): void {
    this.waiting[shard] = false;
    if (this.done || this.owner.gone) return;
    if (r.status === ErrorCode.COMPACTED) {
      this.cursor[shard] = r.num;
      this.end(
        ErrorCode.COMPACTED,
        `the watch fell behind, or resumed from a position older than the history kept (shard ${shard} keeps changes from ${r.version}); read the keys again and watch from the position given`,
        true,
      );
      return;
    }
    if (r.status !== ErrorCode.OK) {
      // A shard refusing for now (the node stopping, a failed journal taking changes back): ask again soon.
      this.later(() => this.ask(shard), RETRY_MS);
      return;
    }
    const wasNew = this.cursor[shard]! < 0;
    let got = false;
    if (r.value !== null) {
      const changes = decodeChanges(r.value);
      this.cursor[shard] = r.num;
      got = changes.length > 0;
      if (got) this.sink.changes(changes, this.position());
    } else if (this.cursor[shard]! < 0 || r.num > this.cursor[shard]!) this.cursor[shard] = r.num;
    if (!this.createdSent && this.shards.every((s) => this.cursor[s]! >= 0)) {
      this.createdSent = true;
      this.sink.created(this.position());
    }
    // Where reads do not park (a cluster's replicas), an empty answer waits a little before asking again.
    if (!got && !wasNew && !this.d.watchParks) this.later(() => this.askWhenReady(shard), WATCH_POLL_MS);
    else this.askWhenReady(shard);
  }

  private askWhenReady(shard: number): void {
    if (this.done || this.owner.gone) return;
    if (this.sink.ready) return this.ask(shard);
    this.later(() => this.askWhenReady(shard), PAUSE_RECHECK_MS);
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      fn();
      this.d.onSentLater();
    }, ms);
    t.unref();
  }

  private end(code: number, message: string, withPosition: boolean): void {
    this.cancel();
    this.sink.ended(code, message, withPosition ? this.position() : "");
  }
}

const SENTINEL = new Uint8Array(0);
