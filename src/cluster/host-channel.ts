/**
 * The records between the IO thread and a group worker (decision 0189), over
 * the same pair of SPSC rings as single-node mode (src/ring): requests and
 * peer traffic in, answers and peer traffic out. Both ends run an event loop
 * (the group worker has timers and asynchronous file IO), so neither blocks:
 * each waits with Atomics.waitAsync, and a writer whose ring is full keeps a
 * FIFO backlog that moves on as the reader frees space (src/ring/messages.ts:
 * never a drop, never a reorder).
 *
 * Limits: each ring is RING_BYTES with records of at most RING_RECORD_MAX_BYTES
 * (larger messages travel as fragments). A writer's backlog (what waits for
 * ring space while the reading thread is busy) is bounded in bytes, record
 * kind by record kind:
 *   - Raft traffic (In.Step: peer frames for the worker; Out.Send: frames
 *     for the peers) is written with writeRaft(), which drops a frame once
 *     the backlog holds HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES, counted and
 *     logged: Raft resends what is lost, as it does when the peer transport
 *     drops past PEER_MAX_QUEUED_BYTES. (Raft's flow control alone would
 *     allow groups x followers x maxInflight appends of 1 MiB: gigabytes.)
 *   - Client commands (In.Serve) are capped where they enter: the commands
 *     in flight on a member, CLUSTER_MAX_IN_FLIGHT_BYTES (past it the IO
 *     loop stops reading client sockets), and those forwarded by each peer,
 *     which its own cap bounds the same way.
 *   - Their answers (Out.Outcome) answer those commands: one each.
 *   - Control, replies, routes and logs are small and few.
 * A backlog that grows means the reader's thread is starved, and the
 * members' proposal latency shows it.
 *
 * A record is a 13-byte header and a payload:
 *
 *   offset size
 *   0      u8   kind (below)
 *   1      u32  a    \
 *   5      u32  b     } meaning depends on the kind
 *   9      u32  c    /
 *   13     ...  payload
 */
import { assert } from "../assert.js";
import { LimitLog, type LimitLogSink } from "../limit-log.js";
import { HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES, RING_RECORD_MAX_BYTES } from "../limits.js";
import { MessageReader, MessageWriter } from "../ring/messages.js";
import { RingReader, RingWriter } from "../ring/ring.js";

export const RECORD_HEADER = 13;

/** IO thread to group worker. */
export const In = {
  /** a=request id, b=partition, c=ServeMode; payload: an encoded Command. */
  Serve: 1,
  /** a=the member it came from; payload: a peer frame of Raft messages, as it arrived or re-encoded. */
  Step: 2,
  /** a=request id (0: no reply wanted); payload: a JSON control request. */
  Control: 3,
} as const;

/** Group worker to IO thread. */
export const Out = {
  /** a=request id, b=0 result / 1 not the leader, c=leader hint; payload: the encoded Result. */
  Outcome: 1,
  /** a=destination member; payload: a peer frame of Raft messages, ready for the socket. */
  Send: 2,
  /** a=partition, b=1 when this member is a replica, c=leader (0: unknown). */
  Route: 3,
  /** a=request id; payload: the JSON answer to a control request. */
  Reply: 4,
  /** payload: JSON {level, message, detail}. */
  Log: 5,
  /** payload: JSON {message, detail}: the worker cannot go on; the member must stop. */
  Fatal: 6,
  /** a=member; payload: why (text): a frame it sent does not decode: drop its connection. */
  BadFrame: 7,
} as const;

const EMPTY = new Uint8Array(0);

/** The writing end: records in order, published once per event-loop turn. */
export class RecordWriter {
  private readonly w: MessageWriter;
  private publishQueued = false;
  private closed = false;
  private readonly stopped = (): boolean => this.closed;
  private readonly limits: LimitLog;
  /** Raft frames dropped because the backlog was full (see writeRaft). */
  droppedRaftFrames = 0;

  /** `onLimit` logs a limit hit (rate-limited here): the Raft backlog overflowing. */
  constructor(sab: SharedArrayBuffer, onLimit: LimitLogSink = () => {}) {
    this.w = new MessageWriter(new RingWriter(sab), RING_RECORD_MAX_BYTES);
    this.limits = new LimitLog(onLimit);
  }

  /** Records waiting for ring space (the owner's backpressure signal). */
  get backlogCount(): number {
    return this.w.backlogCount;
  }

  /** Bytes of the records waiting for ring space. */
  get backlogBytes(): number {
    return this.w.backlogBytes;
  }

  /**
   * Writes a record of Raft traffic, which Raft may lose: dropped (false)
   * when the backlog already holds HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES. One
   * comparison; the drop is counted and logged, rate-limited.
   */
  writeRaft(kind: number, a: number, payload: Uint8Array): boolean {
    if (this.w.backlogBytes >= HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES) {
      this.droppedRaftFrames++;
      this.limits.hit("host-channel-raft-backlog", "a thread is not keeping up: dropping Raft frames (Raft resends)", {
        backlogBytes: this.w.backlogBytes,
        dropped: this.droppedRaftFrames,
      });
      return false;
    }
    this.write(kind, a, 0, 0, payload);
    return true;
  }

  write(kind: number, a: number, b: number, c: number, payload: Uint8Array = EMPTY): void {
    const length = RECORD_HEADER + payload.length;
    const at = this.w.tryReserve(length);
    if (at >= 0) {
      header(this.w.ring.bytes, at, kind, a, b, c);
      this.w.ring.bytes.set(payload, at + RECORD_HEADER);
    } else {
      const copy = new Uint8Array(length);
      header(copy, 0, kind, a, b, c);
      copy.set(payload, RECORD_HEADER);
      this.w.enqueue(copy);
      this.w.pumpWhenRoom(this.stopped);
    }
    if (!this.publishQueued) {
      // One publish (one wakeup of the other side) for everything written in this turn.
      this.publishQueued = true;
      queueMicrotask(() => {
        this.publishQueued = false;
        this.flush();
      });
    }
  }

  /** Publishes what was written so far now, not at the end of the turn. */
  flush(): void {
    if (this.w.ring.dirty) this.w.ring.publish();
  }

  close(): void {
    this.closed = true;
  }
}

/** A record as the reader hands it over; `payload` is valid only during the call. */
export interface HostRecord {
  kind: number;
  a: number;
  b: number;
  c: number;
  payload: Uint8Array;
}

/**
 * The reading end: calls `onRecord` for each record as it arrives, from a
 * waitAsync loop (no thread ever blocks on it), and `onBatchEnd` after each
 * batch.
 */
export class RecordReader {
  private readonly r: MessageReader;
  private readonly rec: HostRecord = { kind: 0, a: 0, b: 0, c: 0, payload: EMPTY };
  private closed = false;
  private draining = false;

  constructor(
    sab: SharedArrayBuffer,
    private readonly onRecord: (r: HostRecord) => void,
    private readonly onBatchEnd: () => void = () => {},
  ) {
    this.r = new MessageReader(new RingReader(sab));
  }

  start(): void {
    const drainAndRearm = (): void => {
      this.r.ring.awake();
      for (;;) {
        if (this.closed) return;
        this.drain();
        const wait = this.r.ring.waitAsync();
        if (wait === null) continue; // more arrived meanwhile
        void wait.then(drainAndRearm);
        return;
      }
    };
    drainAndRearm();
  }

  /**
   * Handles the records waiting now, without waiting for the next turn's
   * wake-up. A no-op when called from inside `onRecord` (a record's handler
   * that starts a round synchronously): the drain under way goes on by
   * itself, and draining again there would hand the record being handled,
   * not yet consumed, over a second time.
   */
  poll(): void {
    if (!this.closed && !this.draining) this.drain();
  }

  close(): void {
    this.closed = true;
  }

  private drain(): void {
    assert(!this.draining, "ring drains do not nest");
    this.draining = true;
    try {
      this.drainRecords();
    } finally {
      this.draining = false;
    }
  }

  private drainRecords(): void {
    let n = 0;
    for (let m = this.r.next(); m !== null; m = this.r.next()) {
      assert(m.length >= RECORD_HEADER, "host records carry their header");
      const v = new DataView(m.buffer, m.byteOffset, RECORD_HEADER);
      const rec = this.rec;
      rec.kind = m[0]!;
      rec.a = v.getUint32(1, true);
      rec.b = v.getUint32(5, true);
      rec.c = v.getUint32(9, true);
      rec.payload = m.subarray(RECORD_HEADER);
      this.onRecord(rec);
      this.r.consume();
      n++;
    }
    this.r.ring.release();
    if (n > 0) this.onBatchEnd();
  }
}

function header(b: Uint8Array, at: number, kind: number, a: number, bb: number, c: number): void {
  const v = new DataView(b.buffer, b.byteOffset + at, RECORD_HEADER);
  v.setUint8(0, kind);
  v.setUint32(1, a >>> 0, true);
  v.setUint32(5, bb >>> 0, true);
  v.setUint32(9, c >>> 0, true);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function jsonBytes(v: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(v));
}

export function parseJson<T>(b: Uint8Array): T {
  return JSON.parse(decoder.decode(b.slice())) as T; // slice: TextDecoder refuses shared memory
}
