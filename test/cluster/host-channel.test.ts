// The typed records between the IO thread and a group worker: each record is
// handed over once, in order, even when a handler asks for the ring to be
// read again from inside the drain (a record whose handler starts a round,
// which first takes in what waits in the ring). Found by the chaos harness: a
// request handed over twice was proposed twice, and its write applied twice.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type HostRecord, RecordReader, RecordWriter } from "../../src/cluster/host-channel.js";
import { HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES, RING_BYTES } from "../../src/limits.js";
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

  it("drops Raft frames once its backlog holds its byte budget (counted, logged once), and never other records", async () => {
    const sab = createRingBuffer(RING_BYTES);
    const logs: string[] = [];
    const writer = new RecordWriter(sab, (_level, message) => logs.push(message));
    // Nobody reads: the ring fills, then the backlog grows to the budget.
    const frame = new Uint8Array(1024 * 1024);
    let accepted = 0;
    while (writer.writeRaft(2, accepted + 1, frame)) accepted++;
    assert.ok(writer.backlogBytes >= HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES, "dropping starts at the budget");
    assert.ok(writer.backlogBytes < HOST_CHANNEL_MAX_RAFT_BACKLOG_BYTES + 2 * frame.length, "and not later");
    for (let i = 0; i < 10; i++) assert.equal(writer.writeRaft(2, 0, frame), false);
    assert.equal(writer.droppedRaftFrames, 11);
    assert.equal(logs.length, 1, "eleven drops in a moment: one log line");
    writer.write(1, 999_999, 0, 0, new Uint8Array(8)); // a request: never dropped, queued behind the frames
    // The reader takes everything that was accepted, in order, then the request; the backlog empties.
    const seen: number[] = [];
    const reader = new RecordReader(sab, (r) => seen.push(r.a));
    for (let i = 0; i < 5000 && seen.at(-1) !== 999_999; i++) {
      reader.poll();
      await new Promise((r) => setTimeout(r, 1));
    }
    reader.close();
    writer.close();
    assert.deepEqual(seen, [...Array.from({ length: accepted }, (_, i) => i + 1), 999_999]);
    assert.equal(writer.backlogBytes, 0);
  });
});
