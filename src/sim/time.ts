/**
 * Virtual time for the cluster simulator (src/sim/kv-cluster.ts): one
 * scheduler of timed events for the whole simulated world, and a Clock
 * (src/cluster/clock.ts) per member incarnation over it. The host code reads
 * the time and sets its timers only through its Clock, so the same code the
 * node runs on Node's timers runs here on virtual time, and a seed replays a
 * run exactly.
 *
 * A member's clock can be
 *   - paused (SIGSTOP): nothing of the member runs until it resumes; its
 *     timers that came due meanwhile fire at once when it does (as Node's
 *     overdue timers do after SIGCONT), in their order; its wall clock kept
 *     running, so deadlines passed during the pause have passed;
 *   - killed (kill -9): every timer of that incarnation is dropped, and
 *     whatever it was waiting for never comes;
 *   - fast or slow: each incarnation's clock runs at its own rate (a few
 *     percent apart), so members disagree on how long a tick is.
 *
 * The scheduler runs one event at a time, in (time, order of scheduling)
 * order, and lets every promise reaction that event caused run before the
 * next one (settle()): time does not move while the code has work to do.
 */
import { assert } from "../assert.js";
import type { Clock, Timer } from "../cluster/clock.js";

export interface SimEvent {
  at: number;
  seq: number;
  fn: () => void;
  owner: SimClock | null;
  cancelled: boolean;
  /** > 0 for an interval: it comes back this many virtual ms after it ran. */
  every: number;
}

/** A binary min-heap of events by (at, seq). */
class EventHeap {
  private readonly a: SimEvent[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): SimEvent | undefined {
    return this.a[0];
  }
  push(e: SimEvent): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): SimEvent | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(x: SimEvent, y: SimEvent): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

/**
 * Lets every pending promise reaction run: a macrotask comes only once all
 * microtasks have run, whatever chains of them an event set off.
 */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class Scheduler {
  /** Virtual milliseconds since the simulation began. */
  now = 0;
  /** Events run so far. */
  ran = 0;
  private readonly heap = new EventHeap();
  private seq = 0;

  at(at: number, fn: () => void, owner: SimClock | null = null, every = 0): SimEvent {
    assert(at >= this.now, "events are not scheduled in the past");
    const e: SimEvent = { at, seq: this.seq++, fn, owner, cancelled: false, every };
    this.heap.push(e);
    return e;
  }

  after(ms: number, fn: () => void, owner: SimClock | null = null): SimEvent {
    return this.at(this.now + Math.max(0, ms), fn, owner);
  }

  /**
   * Runs events up to virtual time `until`; after each, `between` (which
   * settles what the event set off). Events of a paused clock wait for it to
   * resume; those of a killed one are dropped.
   */
  async runUntil(until: number, between: () => Promise<void>): Promise<void> {
    for (;;) {
      const e = this.heap.peek();
      if (e === undefined || e.at > until) break;
      this.heap.pop();
      if (e.cancelled) continue;
      const owner = e.owner;
      if (owner !== null) {
        if (owner.dead) continue;
        if (owner.pausedUntil > e.at) {
          // Re-queued in the order they come out: a paused member's events keep their order.
          e.at = owner.pausedUntil;
          e.seq = this.seq++;
          this.heap.push(e);
          continue;
        }
      }
      this.now = e.at;
      this.ran++;
      if (e.every > 0) {
        e.at = this.now + e.every;
        e.seq = this.seq++;
        this.heap.push(e);
      } else owner?.forget(e);
      e.fn();
      await between();
    }
    this.now = Math.max(this.now, until);
  }
}

/** One member incarnation's clock and timers (see the file comment). */
export class SimClock implements Clock {
  dead = false;
  /** Virtual time until which this member is paused (0: running). */
  pausedUntil = 0;
  private readonly timers = new Set<SimEvent>();
  /** Wall-clock reading at virtual time 0 (clocks differ, as machines' do). */
  private readonly epochMs: number;

  constructor(
    private readonly sched: Scheduler,
    /** Local milliseconds per virtual millisecond (1: exact). */
    private readonly rate: number,
    epochMs = 1_800_000_000_000,
  ) {
    this.epochMs = epochMs;
  }

  now(): number {
    return Math.floor(this.epochMs + this.sched.now * this.rate);
  }

  preciseMs(): number {
    return this.sched.now * this.rate;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms, 0);
  }

  clearTimeout(timer: Timer): void {
    this.cancel(timer);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms, Math.max(1, ms) / this.rate);
  }

  clearInterval(timer: Timer): void {
    this.cancel(timer);
  }

  /** Something that happens to this member (a frame arriving, a disk write completing), after `ms` virtual ms. */
  event(ms: number, fn: () => void): SimEvent {
    const e = this.sched.after(ms, fn, this);
    this.timers.add(e);
    return e;
  }

  /** SIGSTOP for `ms` virtual ms. */
  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.sched.now + ms);
  }

  /** kill -9: nothing scheduled for this incarnation runs any more. */
  kill(): void {
    this.dead = true;
    for (const e of this.timers) e.cancelled = true;
    this.timers.clear();
  }

  /** The scheduler ran a one-shot event of ours. */
  forget(e: SimEvent): void {
    this.timers.delete(e);
  }

  private schedule(fn: () => void, ms: number, every: number): SimEvent {
    // Node runs a timer of 0 (or less) after 1 ms; local ms become virtual at this clock's rate.
    const e = this.sched.at(this.sched.now + Math.max(1, ms) / this.rate, fn, this, every);
    if (this.dead) e.cancelled = true;
    else this.timers.add(e);
    return e;
  }

  private cancel(timer: Timer): void {
    const e = timer as SimEvent;
    e.cancelled = true;
    this.timers.delete(e);
  }
}
