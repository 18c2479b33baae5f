/**
 * A single-producer / single-consumer ring of variable-length records in a
 * SharedArrayBuffer, coordinated with Atomics only.
 *
 * Piccolo has two rings per shard worker: the request ring (IO thread writes,
 * worker reads) and the notify ring (worker writes, IO thread reads). Each
 * side of a ring is owned by exactly one thread, so no locks are needed: the
 * producer alone moves `head`, the consumer alone moves `tail`, and each
 * publishes its position with a sequentially consistent Atomics.store that the
 * other side reads with Atomics.load. Everything the producer wrote into the
 * data area before its store of `head` is visible to a consumer that loads
 * that `head` (Atomics give us the happens-before edge).
 *
 * Layout of the SharedArrayBuffer:
 *
 *   0     HEAD              producer's position (bytes written, mod 2^32)
 *   64    TAIL              consumer's position (bytes consumed, mod 2^32)
 *   128   CONSUMER_WAITING  1 while the consumer sleeps (or is about to)
 *   192   PRODUCER_WAITING  1 while the producer sleeps for space
 *   256   data area, `capacity` bytes, a power of two
 *
 * Each field has a 64-byte cache line to itself so the two threads do not
 * false-share a line they both write.
 *
 * Positions are free-running unsigned 32-bit counters; `head - tail` (mod
 * 2^32) is the number of bytes in use and `pos & (capacity - 1)` the offset
 * in the data area. Because capacity is a power of two that divides 2^32,
 * the wrap of the counter and the wrap of the area line up.
 *
 * A record is [u32 length][u32 flags][payload][padding to 8 bytes]. It is
 * never split across the end of the data area: when it does not fit in the
 * bytes left before the end, the producer writes a WRAP marker there and
 * starts the record at offset 0. The consumer thus always sees a record as
 * one contiguous view, which lets both sides encode and decode in place.
 *
 * Sleeping. The consumer, finding the ring empty, sets CONSUMER_WAITING, then
 * checks HEAD once more, then waits on HEAD. The producer, after publishing
 * HEAD, reads CONSUMER_WAITING and notifies when it is set. With sequentially
 * consistent atomics one of the two always sees the other's write, so a
 * wakeup can never be lost (the Dekker pattern). The same protocol, mirrored,
 * lets a producer sleep until the consumer frees space.
 */
import { assert } from "../assert.js";

const HEAD = 0;
const TAIL = 16;
const CONSUMER_WAITING = 32;
const PRODUCER_WAITING = 48;
export const RING_HEADER_BYTES = 256;

/** Bytes of a record header: u32 length, u32 flags. */
export const RECORD_HEADER_BYTES = 8;
const WRAP = 0xffffffff;

/** Record flag: more fragments of the same message follow this one. */
export const FLAG_MORE = 1;

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Allocates the shared memory for one ring with `capacityBytes` of data area. */
export function createRingBuffer(capacityBytes: number): SharedArrayBuffer {
  assert(capacityBytes >= 64 && (capacityBytes & (capacityBytes - 1)) === 0, "ring capacity is a power of two >= 64");
  assert(capacityBytes <= 1 << 30, "ring capacity fits the 32-bit position counters");
  return new SharedArrayBuffer(RING_HEADER_BYTES + capacityBytes);
}

/** The largest payload one record may carry in a ring of this capacity. */
export function maxRecordPayload(capacityBytes: number): number {
  // Half the ring: a record plus a WRAP marker before it always fits in an
  // empty ring, so a writer waiting for space is never waiting forever.
  return capacityBytes / 2 - RECORD_HEADER_BYTES;
}

class RingView {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  readonly mask: number;
  /** The data area, as bytes. Payload offsets returned by the ring index into this. */
  readonly bytes: Uint8Array;
  /** The same data area, for reading and writing u32 record headers. */
  protected readonly view: DataView;
  protected readonly ctl: Int32Array;

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.capacity = sab.byteLength - RING_HEADER_BYTES;
    assert(this.capacity > 0 && (this.capacity & (this.capacity - 1)) === 0, "ring capacity is a power of two");
    this.mask = this.capacity - 1;
    this.ctl = new Int32Array(sab, 0, RING_HEADER_BYTES / 4);
    this.bytes = new Uint8Array(sab, RING_HEADER_BYTES, this.capacity);
    this.view = new DataView(sab, RING_HEADER_BYTES, this.capacity);
  }

  /** Bytes currently in the ring, as seen from this side (for stats and tests). */
  usedBytes(): number {
    return (Atomics.load(this.ctl, HEAD) - Atomics.load(this.ctl, TAIL)) >>> 0;
  }
}

/** The producing side. Exactly one thread may own a RingWriter for a ring. */
export class RingWriter extends RingView {
  private head: number;
  private tailSeen: number;
  readonly maxPayload: number;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.head = Atomics.load(this.ctl, HEAD) >>> 0;
    this.tailSeen = Atomics.load(this.ctl, TAIL) >>> 0;
    this.maxPayload = maxRecordPayload(this.capacity);
  }

  /**
   * Reserves a record of `payloadBytes` and returns the offset in `bytes`
   * where its payload goes, or -1 when the ring has no room now. The record
   * becomes visible to the consumer at the next publish(); records reserved
   * between two publishes form one batch.
   */
  reserve(payloadBytes: number, flags = 0): number {
    assert(payloadBytes >= 0 && payloadBytes <= this.maxPayload, "record payload within the ring's record limit");
    const need = RECORD_HEADER_BYTES + align8(payloadBytes);
    let offset = this.head & this.mask;
    const untilEnd = this.capacity - offset;
    const total = need > untilEnd ? untilEnd + need : need;
    if (!this.hasRoom(total)) return -1;
    if (need > untilEnd) {
      // untilEnd >= 8: every record is a multiple of 8 bytes and so is the area.
      this.view.setUint32(offset, WRAP, true);
      this.head = (this.head + untilEnd) >>> 0;
      offset = 0;
    }
    this.view.setUint32(offset, payloadBytes, true);
    this.view.setUint32(offset + 4, flags, true);
    this.head = (this.head + need) >>> 0;
    return offset + RECORD_HEADER_BYTES;
  }

  private hasRoom(total: number): boolean {
    if (this.capacity - ((this.head - this.tailSeen) >>> 0) >= total) return true;
    this.tailSeen = Atomics.load(this.ctl, TAIL) >>> 0;
    const used = (this.head - this.tailSeen) >>> 0;
    assert(used <= this.capacity, "ring positions: 0 <= head - tail <= capacity");
    return this.capacity - used >= total;
  }

  /** Whether the records written since the last publish() are still unpublished. */
  get dirty(): boolean {
    return this.head !== Atomics.load(this.ctl, HEAD) >>> 0;
  }

  /** Makes every reserved record visible to the consumer, and wakes it if it sleeps. */
  publish(): void {
    Atomics.store(this.ctl, HEAD, this.head | 0);
    if (Atomics.load(this.ctl, CONSUMER_WAITING) !== 0) Atomics.notify(this.ctl, HEAD);
  }

  /**
   * The event loop's way to wait for room (the IO thread never blocks):
   * resolves once the consumer releases space, or returns null when a
   * record of `payloadBytes` fits already. Needed when the consumer frees
   * space without answering, e.g. while it reassembles the fragments of a
   * large message: no result will arrive to prompt the next fragment.
   */
  roomAsync(payloadBytes: number): Promise<unknown> | null {
    const worst = 2 * (RECORD_HEADER_BYTES + align8(payloadBytes));
    if (this.hasRoom(worst)) return null;
    Atomics.store(this.ctl, PRODUCER_WAITING, 1);
    const tail = Atomics.load(this.ctl, TAIL);
    if (this.hasRoom(worst)) {
      Atomics.store(this.ctl, PRODUCER_WAITING, 0);
      return null;
    }
    const result = Atomics.waitAsync(this.ctl, TAIL, tail);
    if (!result.async) {
      Atomics.store(this.ctl, PRODUCER_WAITING, 0);
      return null;
    }
    return result.value.then(() => Atomics.store(this.ctl, PRODUCER_WAITING, 0));
  }

  /**
   * Blocks the calling thread until a record of `payloadBytes` fits, or until
   * `timeoutMs` passes. Only for worker threads: the IO thread must never
   * block, it applies backpressure instead. Returns whether there is room.
   */
  waitForRoom(payloadBytes: number, timeoutMs: number): boolean {
    const worst = 2 * (RECORD_HEADER_BYTES + align8(payloadBytes));
    for (;;) {
      if (this.hasRoom(worst)) return true;
      Atomics.store(this.ctl, PRODUCER_WAITING, 1);
      const tail = Atomics.load(this.ctl, TAIL);
      if (this.hasRoom(worst)) {
        Atomics.store(this.ctl, PRODUCER_WAITING, 0);
        return true;
      }
      const result = Atomics.wait(this.ctl, TAIL, tail, timeoutMs);
      Atomics.store(this.ctl, PRODUCER_WAITING, 0);
      if (result === "timed-out") return this.hasRoom(worst);
    }
  }
}

/** The consuming side. Exactly one thread may own a RingReader for a ring. */
export class RingReader extends RingView {
  private tail: number;
  private headSeen: number;
  /** Bytes the record returned by the last next() occupies, for consume(). */
  private pending = 0;
  /** Payload length of the record returned by the last next(). */
  length = 0;
  /** Flags of the record returned by the last next(). */
  flags = 0;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.tail = Atomics.load(this.ctl, TAIL) >>> 0;
    this.headSeen = Atomics.load(this.ctl, HEAD) >>> 0;
  }

  /**
   * The payload offset of the next record, with its `length` and `flags`
   * set, or -1 when the ring is empty. The bytes stay valid until consume().
   * Calling next() again without consume() returns the same record.
   */
  next(): number {
    if (this.tail === this.headSeen) {
      this.headSeen = Atomics.load(this.ctl, HEAD) >>> 0;
      if (this.tail === this.headSeen) return -1;
    }
    let offset = this.tail & this.mask;
    let length = this.view.getUint32(offset, true);
    let skipped = 0;
    if (length === WRAP) {
      skipped = this.capacity - offset;
      offset = 0;
      length = this.view.getUint32(0, true);
    }
    assert(length <= maxRecordPayload(this.capacity), "ring record length within bounds (ring memory intact)");
    this.length = length;
    this.flags = this.view.getUint32(offset + 4, true);
    this.pending = skipped + RECORD_HEADER_BYTES + align8(length);
    assert((this.headSeen - this.tail) >>> 0 >= this.pending, "a published record lies entirely before head");
    return offset + RECORD_HEADER_BYTES;
  }

  /** Drops the record returned by next(). Its space returns to the producer at release(). */
  consume(): void {
    assert(this.pending > 0, "consume() follows a successful next()");
    this.tail = (this.tail + this.pending) >>> 0;
    this.pending = 0;
  }

  /** Gives the space of every consumed record back to the producer, waking it if it waits. */
  release(): void {
    Atomics.store(this.ctl, TAIL, this.tail | 0);
    if (Atomics.load(this.ctl, PRODUCER_WAITING) !== 0) Atomics.notify(this.ctl, TAIL);
  }

  /** True when nothing is published beyond what this reader has consumed. */
  isEmpty(): boolean {
    return this.tail === Atomics.load(this.ctl, HEAD) >>> 0;
  }

  /**
   * Blocks until a record is published or `timeoutMs` passes (worker threads
   * only; the IO thread uses waitAsync()).
   */
  wait(timeoutMs: number): void {
    Atomics.store(this.ctl, CONSUMER_WAITING, 1);
    if (this.isEmpty()) Atomics.wait(this.ctl, HEAD, this.tail | 0, timeoutMs);
    Atomics.store(this.ctl, CONSUMER_WAITING, 0);
  }

  /**
   * Resolves when a record is published beyond what this reader consumed,
   * without blocking the event loop: Atomics.waitAsync parks a promise, and
   * the producer's notify in publish() settles it. Returns null when a record
   * is already there (the caller goes on synchronously, no promise made).
   */
  waitAsync(): Promise<unknown> | null {
    Atomics.store(this.ctl, CONSUMER_WAITING, 1);
    const result = Atomics.waitAsync(this.ctl, HEAD, this.tail | 0);
    if (!result.async) {
      Atomics.store(this.ctl, CONSUMER_WAITING, 0);
      return null;
    }
    return result.value;
  }

  /** Called once the waitAsync() promise settled. */
  awake(): void {
    Atomics.store(this.ctl, CONSUMER_WAITING, 0);
  }
}
