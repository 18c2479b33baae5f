/**
 * Messages of any size over a ring of bounded records (decision 0004).
 *
 * A ring record is at most RING_RECORD_MAX_BYTES, but a value may be 16 MiB.
 * A message larger than one record travels as a run of fragments: every
 * fragment but the last carries FLAG_MORE, and the reader glues them back
 * together. Because the ring is FIFO and has one producer, the fragments of
 * one message are never interleaved with another message's, and order is
 * kept for free.
 *
 * The writer never blocks and never drops. A message that does not fit right
 * now (ring full, or a fragment run in progress) waits in the writer's
 * backlog, a FIFO that pump() drains as the consumer frees space. While the
 * backlog is non-empty every new message joins it, behind the others, so
 * order is kept. The owner watches `backlogCount` and `backlogBytes` to
 * apply backpressure upstream (the IO loop stops reading sockets; see
 * limits.ts), or drops what the protocol above may lose (Raft traffic;
 * src/cluster/host-channel.ts): the writer itself never refuses a message.
 *
 * The common case, a small message into a ring with room, goes straight into
 * ring memory through tryReserve(): no intermediate buffer at all.
 */
import { assert } from "../assert.js";
import { FLAG_MORE, type RingReader, type RingWriter } from "./ring.js";

export class MessageWriter {
  readonly ring: RingWriter;
  readonly recordMaxBytes: number;
  private readonly backlog: Uint8Array[] = [];
  private backlogHead = 0;
  /** Bytes of backlog[backlogHead] already written as fragments. */
  private written = 0;
  /** Bytes of the messages in the backlog (a message counts whole until its last fragment is in the ring). */
  private queuedBytes = 0;
  /** A pumpWhenRoom() wait is parked on the ring. */
  private awaitingRoom = false;

  constructor(ring: RingWriter, recordMaxBytes: number) {
    assert(recordMaxBytes > 0 && recordMaxBytes <= ring.maxPayload, "record size fits the ring");
    this.ring = ring;
    this.recordMaxBytes = recordMaxBytes;
  }

  /** Messages waiting in the backlog (not yet wholly in the ring). */
  get backlogCount(): number {
    return this.backlog.length - this.backlogHead;
  }

  /** Bytes of the messages waiting in the backlog: the memory the backlog holds. */
  get backlogBytes(): number {
    return this.queuedBytes;
  }

  /**
   * The zero-copy path: the payload offset in ring.bytes for a one-record
   * message of `length` bytes, or -1 when the caller must build the message
   * in its own buffer and enqueue() it (ring full, backlog not empty, or the
   * message needs fragments).
   */
  tryReserve(length: number): number {
    if (this.backlogHead < this.backlog.length || length > this.recordMaxBytes) return -1;
    return this.ring.reserve(length);
  }

  /** Queues a whole message; it goes into the ring as room allows. */
  enqueue(message: Uint8Array): void {
    this.backlog.push(message);
    this.queuedBytes += message.length;
    this.pump();
  }

  /**
   * Moves backlog into the ring as far as room allows. Returns true when the
   * backlog is empty. Publishing is the caller's job (one publish per batch).
   */
  pump(): boolean {
    const ring = this.ring;
    while (this.backlogHead < this.backlog.length) {
      const message = this.backlog[this.backlogHead]!;
      const remaining = message.length - this.written;
      const size = Math.min(remaining, this.recordMaxBytes);
      const more = remaining > this.recordMaxBytes ? FLAG_MORE : 0;
      const offset = ring.reserve(size, more);
      if (offset < 0) return false;
      ring.bytes.set(message.subarray(this.written, this.written + size), offset);
      if (more) {
        this.written += size;
        continue;
      }
      this.written = 0;
      this.queuedBytes -= message.length;
      this.backlog[this.backlogHead++] = EMPTY;
      if (this.backlogHead > 1024 && this.backlogHead * 2 > this.backlog.length) {
        this.backlog.splice(0, this.backlogHead);
        this.backlogHead = 0;
      }
    }
    this.backlog.length = 0;
    this.backlogHead = 0;
    assert(this.queuedBytes === 0, "an empty backlog holds no bytes");
    return true;
  }

  /**
   * For a writer on an event loop (it must not block): moves the backlog into
   * the ring now and each time the reader frees space, publishing as it goes,
   * until the backlog is empty; one wait at a time. The reader may free space
   * without answering (while it reassembles a large message), so this waits
   * on the ring itself. `stopped` ends it; `onRoom` runs after each wait (the
   * owner's backpressure check).
   */
  pumpWhenRoom(stopped: () => boolean, onRoom?: () => void): void {
    if (this.awaitingRoom || stopped()) return;
    for (;;) {
      const empty = this.pump();
      this.ring.publish();
      if (empty) return;
      const wait = this.ring.roomAsync(this.recordMaxBytes);
      if (wait === null) continue;
      this.awaitingRoom = true;
      void wait.then(() => {
        this.awaitingRoom = false;
        this.pumpWhenRoom(stopped, onRoom);
        onRoom?.();
      });
      return;
    }
  }
}

const EMPTY = new Uint8Array(0);

export class MessageReader {
  readonly ring: RingReader;
  private readonly parts: Uint8Array[] = [];
  private partsBytes = 0;
  /** Whether the last message returned is a view into the ring (to consume) or a reassembled copy. */
  private inRing = false;

  constructor(ring: RingReader) {
    this.ring = ring;
  }

  /**
   * The next whole message, or null when none is complete yet. A one-record
   * message is a view into ring memory, valid until consume(); a fragmented
   * one is a fresh buffer the caller may keep.
   */
  next(): Uint8Array | null {
    const ring = this.ring;
    for (;;) {
      const offset = ring.next();
      if (offset < 0) return null;
      const fragment = ring.bytes.subarray(offset, offset + ring.length);
      if ((ring.flags & FLAG_MORE) === 0 && this.parts.length === 0) {
        this.inRing = true;
        return fragment;
      }
      this.parts.push(fragment.slice());
      this.partsBytes += fragment.length;
      ring.consume();
      if ((ring.flags & FLAG_MORE) === 0) {
        const whole = new Uint8Array(this.partsBytes);
        let at = 0;
        for (const part of this.parts) {
          whole.set(part, at);
          at += part.length;
        }
        this.parts.length = 0;
        this.partsBytes = 0;
        this.inRing = false;
        return whole;
      }
    }
  }

  /** True while fragments of an incomplete message have been taken from the ring. */
  get assembling(): boolean {
    return this.parts.length > 0;
  }

  /** Done with the message from next(). Space returns to the writer at ring.release(). */
  consume(): void {
    if (this.inRing) this.ring.consume();
    this.inRing = false;
  }
}
