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
  /**
   * Changes of shard `shard`, in its order; `position` is the watch's
   * position after them (the position after change i is `position` with
   * shard `shard`'s seq replaced by change i's seq).
   */
  changes(changes: Change[], position: string, shard: number): void;
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
  /** Per shard: asked at least once (a shard's first read never parks: the watch is set up at once). */
  private readonly asked: boolean[];
  private createdSent = false;
  private done = false;
  /**
   * Cut off COMPACTED: every other shard is asked where it is now (part
   * shardCount + shard), so the position the watch ends with is a current
   * one on every shard, not only on the one that answered COMPACTED.
   */
  private ending: { code: number; message: string; now: number[]; left: number } | null = null;
  /** A resumed watch's first answers, by shard, until every shard has answered once (start()). */
  private firstRound: Map<number, { value: Uint8Array | null; num: number }> | null = null;

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
    this.asked = new Array<boolean>(n).fill(false);
  }

  /** A stop does not wait for a watch's parked reads (dispatch.ts, awaitingAnswers). */
  override get openEnded(): boolean {
    return true;
  }

  get run(): string {
    return this.d.watchRun;
  }

  position(): string {
    return `${this.run}.${this.cursor.map((c) => Math.max(c, 0)).join(",")}`;
  }

  start(): void {
    // Resumed from a position: set up once every shard's first read (never parked) came back.
    if (this.shards.every((s) => this.cursor[s]! >= 0)) this.firstRound = new Map();
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
    // -1: "from now": the shard answers its current position at once. A first read never parks, so a
    // watch resumed during a quiet spell is set up at once, not after WATCH_PARK_MS.
    c.arg0 = from;
    c.arg1 = WATCH_READ_MAX_BYTES;
    const park = this.asked[shard]! && from >= 0 && this.d.watchParks;
    c.flags = (this.exact ? WATCH_EXACT : 0) | (park ? 0 : WATCH_NO_PARK);
    this.asked[shard] = true;
    this.waiting[shard] = true;
    this.d.send(shard, this, shard, this.key);
  }

  /** Asks `shard` where it is now (the end of a watch cut off COMPACTED). */
  private askNow(shard: number): void {
    const c = this.d.begin(Op.WATCH, Date.now());
    c.arg0 = -1;
    c.flags = WATCH_NO_PARK;
    this.d.send(shard, this, this.d.shardCount + shard, this.key);
  }

  onResult(part: number, r: Result): void {
    const n = this.d.shardCount;
    if (part >= n) return this.onNow(part - n, r);
    const shard = part;
    this.waiting[shard] = false;
    if (this.done || this.owner.gone || this.ending !== null) return;
    if (r.status === ErrorCode.COMPACTED) {
      const message = `the watch fell behind, or resumed from a position older than the history kept (shard ${shard} keeps changes from ${r.version}); read the keys again and watch from the position given`;
      const others = this.shards.filter((s) => s !== shard);
      this.ending = { code: ErrorCode.COMPACTED, message, now: [...this.cursor], left: others.length };
      this.ending.now[shard] = r.num;
      if (others.length === 0) return this.finishEnding();
      for (const s of others) this.askNow(s);
      this.d.onSentLater();
      return;
    }
    if (r.status !== ErrorCode.OK) {
      // A shard refusing for now (the node stopping, a failed journal taking changes back): ask again soon.
      this.later(() => this.ask(shard), RETRY_MS);
      return;
    }
    if (this.firstRound !== null) {
      // A resumed watch: every shard's first answer is held until all came back, so a position nobody
      // keeps any more fails the watch's set-up (COMPACTED above) rather than a stream already open.
      this.firstRound.set(shard, { value: r.value === null ? null : r.value.slice(), num: r.num });
      if (this.firstRound.size < this.shards.length) return;
      const first = this.firstRound;
      this.firstRound = null;
      this.createdSent = true;
      this.sink.created(this.position());
      for (const s of this.shards) {
        const f = first.get(s)!;
        this.accept(s, f.value, f.num);
      }
      return;
    }
    this.accept(shard, r.value, r.num);
  }

  /** Takes a shard's answer: its changes to the sink, its position, and the next read. */
  private accept(shard: number, value: Uint8Array | null, num: number): void {
    if (this.done || this.owner.gone) return;
    const wasNew = this.cursor[shard]! < 0;
    let got = false;
    if (value !== null) {
      const changes = decodeChanges(value);
      this.cursor[shard] = num;
      got = changes.length > 0;
      if (got) this.sink.changes(changes, this.position(), shard);
    } else if (this.cursor[shard]! < 0 || num > this.cursor[shard]!) this.cursor[shard] = num;
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

  private onNow(shard: number, r: Result): void {
    const e = this.ending;
    if (e === null || this.done) return;
    // A shard that cannot say (the node stopping): its last known position stands.
    if (r.status === ErrorCode.OK) e.now[shard] = r.num;
    if (--e.left === 0) this.finishEnding();
  }

  private finishEnding(): void {
    const e = this.ending!;
    for (const [s, seq] of e.now.entries()) this.cursor[s] = seq;
    this.cancel();
    if (this.owner.gone) return;
    this.sink.ended(e.code, e.message, this.position());
  }
}

const SENTINEL = new Uint8Array(0);
