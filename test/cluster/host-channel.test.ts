// The typed records between the IO thread and a group worker: each record is
// handed over once, in order, even when a handler asks for the ring to be
// read again from inside the drain (a record whose handler starts a round,
// which first takes in what waits in the ring). Found by the chaos harness: a
// request handed over twice was proposed twice, and its write applied twice.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type HostRecord, RecordReader, RecordWriter } from "../../src/cluster/host-channel.js";
import { RING_BYTES } from "../../src/limits.js";
import { createRingBuffer } from "../../src/ring/ring.js";

describe("host channel records", () => {
  it("a poll from inside a record's handler does not hand any record over twice", () => {
    const sab = createRingBuffer(RING_BYTES);
    const writer = new RecordWriter(sab);
    for (let i = 1; i <= 5; i++) writer.write(1, i, 0, 0, new Uint8Array([i]));
    writer.flush();
    const seen: number[] = [];
    const reader: RecordReader = new RecordReader(sab, (r: HostRecord) => {
      seen.push(r.a);
      reader.poll(); // what a round started by this record does first
    });
    reader.start();
    reader.close();
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  });

  it("a poll outside any handler takes in what waits", () => {
    const sab = createRingBuffer(RING_BYTES);
    const writer = new RecordWriter(sab);
    const seen: number[] = [];
    const reader = new RecordReader(sab, (r) => seen.push(r.a));
    writer.write(1, 7, 0, 0);
    writer.flush();
    reader.poll();
    writer.write(1, 8, 0, 0);
    writer.flush();
    reader.poll();
    assert.deepEqual(seen, [7, 8]);
    reader.close();
  });
});
