// The SPSC ring: first its mechanics on one thread (wrap-around, a full
// ring, oversize messages), then long randomized runs across real threads in
// both directions the node uses: the IO thread producing without ever
// blocking (request ring) and a worker producing to an IO thread that
// listens with Atomics.waitAsync (notify ring).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import { MessageReader, MessageWriter } from "../../src/ring/messages.js";
import { createRingBuffer, maxRecordPayload, RingReader, RingWriter } from "../../src/ring/ring.js";
import { fillMessage, messageSize, verifyMessage } from "./ring-stream.js";

const workerUrl = new URL("./ring-peer.worker.js", import.meta.url);

describe("ring on one thread", () => {
  it("wraps around the end of the data area and keeps every record whole", () => {
    const sab = createRingBuffer(256);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    // 40-byte payloads are 48-byte records: 256 is not a multiple of 48, so
    // the writer must place WRAP markers as it goes round.
    for (let round = 0; round < 100; round++) {
      const at = w.reserve(40);
      assert.ok(at >= 0, `round ${round}: an empty ring has room`);
      w.bytes.fill(round & 0xff, at, at + 40);
      w.publish();
      const off = r.next();
      assert.ok(off >= 0);
      assert.equal(r.length, 40);
      assert.ok(
        r.bytes.subarray(off, off + 40).every((b) => b === (round & 0xff)),
        `round ${round}: payload intact`,
      );
      r.consume();
      r.release();
    }
    assert.equal(r.next(), -1, "nothing left");
  });

  it("refuses a record when full and accepts it again once the reader releases", () => {
    const sab = createRingBuffer(128);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    let written = 0;
    while (w.reserve(8) >= 0) written++;
    assert.equal(written, 128 / 16, "8-byte payload + 8-byte header: 8 records fill 128 bytes");
    w.publish();
    assert.equal(w.reserve(8), -1, "full ring refuses");
    assert.ok(r.next() >= 0);
    r.consume();
    assert.equal(w.reserve(8), -1, "consumed but not released: still full");
    r.release();
    assert.ok(w.reserve(8) >= 0, "released space is reusable");
  });

  it("refuses to reserve a record larger than half the ring (an invariant, not input)", () => {
    const w = new RingWriter(createRingBuffer(256));
    assert.throws(() => w.reserve(maxRecordPayload(256) + 1), /record payload within/);
  });

  it("carries messages far larger than the ring as fragments, in order", () => {
    const sab = createRingBuffer(1024);
    const writer = new MessageWriter(new RingWriter(sab), 256);
    const reader = new MessageReader(new RingReader(sab));
    const sizes = [0, 1, 255, 256, 257, 1000, 5000, 100_000, 3];
    const got: Uint8Array[] = [];
    for (let seq = 0; seq < sizes.length; seq++) {
      const m = new Uint8Array(sizes[seq]!);
      fillMessage(7, seq, m);
      writer.enqueue(m);
    }
    // Alternate pumping and draining like two threads would.
    for (let spins = 0; got.length < sizes.length && spins < 100_000; spins++) {
      writer.pump();
      writer.ring.publish();
      for (let m = reader.next(); m !== null; m = reader.next()) {
        got.push(m.slice());
        reader.consume();
      }
      reader.ring.release();
    }
    assert.equal(got.length, sizes.length);
    for (let seq = 0; seq < sizes.length; seq++) {
      const expected = new Uint8Array(sizes[seq]!);
      fillMessage(7, seq, expected);
      assert.deepEqual(got[seq], expected, `message ${seq} (${sizes[seq]} bytes)`);
    }
  });

  it("sends new messages behind a backlog, never around it", () => {
    const sab = createRingBuffer(256);
    const writer = new MessageWriter(new RingWriter(sab), 64);
    writer.enqueue(new Uint8Array(1000)); // cannot fit at once
    assert.ok(writer.backlogCount > 0);
    assert.equal(writer.tryReserve(4), -1, "zero-copy path is closed while a backlog waits");
  });

  it("counts the bytes its backlog holds (the shards' and host channels' byte budgets read it)", () => {
    const sab = createRingBuffer(256);
    const writer = new MessageWriter(new RingWriter(sab), 64);
    const reader = new MessageReader(new RingReader(sab));
    writer.enqueue(new Uint8Array(1000));
    writer.enqueue(new Uint8Array(300));
    // A message counts whole until its last fragment is in the ring.
    assert.equal(writer.backlogBytes, 1300);
    let whole = 0;
    for (let i = 0; i < 100 && writer.backlogCount > 0; i++) {
      for (let m = reader.next(); m !== null; m = reader.next()) {
        whole++;
        reader.consume();
      }
      reader.ring.release();
      writer.pump();
      writer.ring.publish();
    }
    for (let m = reader.next(); m !== null; m = reader.next()) {
      whole++;
      reader.consume();
    }
    assert.equal(whole, 2);
    assert.equal(writer.backlogBytes, 0);
  });
});

interface Outcome {
  received?: number;
  sent?: number;
  error?: string | null;
}

function runWorker(data: object): { done: Promise<Outcome>; worker: Worker } {
  const worker = new Worker(workerUrl, { workerData: data });
  const done = new Promise<Outcome>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) => code !== 0 && reject(new Error(`worker exited ${code}`)));
  });
  return { done, worker };
}

describe("ring across threads", () => {
  for (const seed of [1, 2, 3]) {
    it(`IO-style producer (never blocks) to a sleeping worker consumer, seed ${seed}`, async () => {
      const count = 20_000;
      const maxSize = 20_000;
      const recordMax = 512;
      // A small ring, so it is full, wraps and fragments constantly.
      const sab = createRingBuffer(4096);
      const { done } = runWorker({ role: "consume", sab, seed, count, maxSize, recordMax });
      const ring = new RingWriter(sab);
      const writer = new MessageWriter(ring, recordMax);
      let seq = 0;
      await new Promise<void>((resolve) => {
        const step = () => {
          // Like the IO loop: write what fits, leave the rest in the backlog,
          // come back on a later turn of the event loop.
          writer.pump();
          while (seq < count && writer.backlogCount < 32) {
            const size = messageSize(seed, seq, maxSize);
            const at = writer.tryReserve(size);
            if (at >= 0) fillMessage(seed, seq, ring.bytes.subarray(at, at + size));
            else {
              const m = new Uint8Array(size);
              fillMessage(seed, seq, m);
              writer.enqueue(m);
            }
            seq++;
          }
          ring.publish();
          if (seq === count && writer.backlogCount === 0) resolve();
          else setImmediate(step);
        };
        step();
      });
      const outcome = await done;
      assert.equal(outcome.error, null, `replay: seed ${seed}`);
      assert.equal(outcome.received, count);
    });

    it(`worker producer (blocks when full) to an event-loop consumer on waitAsync, seed ${seed}`, async () => {
      const count = 20_000;
      const maxSize = 20_000;
      const recordMax = 512;
      const sab = createRingBuffer(4096);
      const { done } = runWorker({ role: "produce", sab, seed, count, maxSize, recordMax });
      const reader = new MessageReader(new RingReader(sab));
      let seq = 0;
      let error: string | null = null;
      while (seq < count && error === null) {
        const m = reader.next();
        if (m === null) {
          reader.ring.release();
          const wait = reader.ring.waitAsync();
          if (wait !== null) {
            await wait;
            reader.ring.awake();
          }
          continue;
        }
        error = verifyMessage(seed, seq, maxSize, m);
        reader.consume();
        seq++;
      }
      reader.ring.release();
      const outcome = await done;
      assert.equal(error, null, `replay: seed ${seed}`);
      assert.equal(seq, count);
      assert.equal(outcome.sent, count);
    });
  }
});
