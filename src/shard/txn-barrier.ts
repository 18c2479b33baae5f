/**
 * Where the shards of one multi-shard transaction meet: a slot of a few
 * integers in shared memory (docs/transactions.md).
 *
 * Every participant's worker reaches the transaction's part in its request
 * ring, and there it waits for the others, so for a moment every
 * participant is at the same point of its stream of commands: whatever came
 * before the transaction on any shard is before it, everything after is
 * after it. That is the whole isolation argument; the IO thread's single
 * ordering of all rings (src/io/txn.ts) makes the waits deadlock-free.
 *
 * A slot's integers, each counted up by the participants:
 *   ARRIVED   parts that evaluated their compares
 *   VETOES    parts whose compares failed (the failure branch runs everywhere)
 *   WRITTEN   parts whose record is on disk, or failed to be
 *   FAILED    parts that could not write their record (every part aborts)
 *   ABORTED   parts done aborting (no participant moves on before all have)
 *
 * A count is bumped after the facts it stands for (a veto before the
 * arrival), and Atomics are sequentially consistent: once ARRIVED reaches
 * the participant count, every veto is visible.
 */
import { TXN_BARRIER_SLOTS } from "../limits.js";

export const SLOT_INTS = 8;
const ARRIVED = 0;
const VETOES = 1;
const WRITTEN = 2;
const FAILED = 3;
const ABORTED = 4;

/** How long a participant waits before it says (once) that it is still waiting: a bug, never a normal case. */
const WAIT_WARN_MS = 10_000;

export function createBarrierTable(slots = TXN_BARRIER_SLOTS): SharedArrayBuffer {
  return new SharedArrayBuffer(slots * SLOT_INTS * 4);
}

/** The IO thread's side: which slots are free. A slot is reset when it is handed out. */
export class BarrierSlots {
  private readonly table: Int32Array;
  private readonly free: number[] = [];

  constructor(buffer: SharedArrayBuffer) {
    this.table = new Int32Array(buffer);
    for (let s = this.table.length / SLOT_INTS - 1; s >= 0; s--) this.free.push(s);
  }

  acquire(): number {
    const slot = this.free.pop();
    if (slot === undefined) return -1;
    // No worker touches a free slot: every participant answered before it was released.
    for (let i = 0; i < SLOT_INTS; i++) Atomics.store(this.table, slot * SLOT_INTS + i, 0);
    return slot;
  }

  release(slot: number): void {
    this.free.push(slot);
  }

  get available(): number {
    return this.free.length;
  }
}

/** A worker's side: meeting the other participants of the transaction in `slot`. */
export class Barrier {
  private readonly table: Int32Array;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly warn: (message: string) => void,
  ) {
    this.table = new Int32Array(buffer);
  }

  /** Counts this part's compares in and waits for every participant's: true when all held. */
  vote(slot: number, participants: number, holds: boolean): boolean {
    const base = slot * SLOT_INTS;
    if (!holds) Atomics.add(this.table, base + VETOES, 1);
    this.meet(base + ARRIVED, participants);
    return Atomics.load(this.table, base + VETOES) === 0;
  }

  /** Counts this part's write in (or its failure) and waits for every participant's: true when all were written. */
  written(slot: number, participants: number, ok: boolean): boolean {
    const base = slot * SLOT_INTS;
    if (!ok) Atomics.add(this.table, base + FAILED, 1);
    this.meet(base + WRITTEN, participants);
    return Atomics.load(this.table, base + FAILED) === 0;
  }

  /** Waits until every participant has voided its part (or found it had none on disk). */
  aborted(slot: number, participants: number): void {
    this.meet(slot * SLOT_INTS + ABORTED, participants);
  }

  private meet(at: number, participants: number): void {
    const t = this.table;
    Atomics.add(t, at, 1);
    Atomics.notify(t, at);
    const started = performance.now();
    let warned = false;
    for (let v = Atomics.load(t, at); v < participants; v = Atomics.load(t, at)) {
      Atomics.wait(t, at, v, 1000);
      if (!warned && performance.now() - started > WAIT_WARN_MS) {
        warned = true;
        this.warn(
          `a transaction's participants have not all arrived after ${WAIT_WARN_MS} ms (${v} of ${participants})`,
        );
      }
    }
  }
}
