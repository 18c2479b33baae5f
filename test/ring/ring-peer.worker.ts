// The far side of the cross-thread ring tests: a worker that either produces
// a seeded stream of messages or consumes and checks one. Both sides derive
// each message's size and bytes from (seed, sequence number), so the checker
// knows exactly what must arrive, in what order.
import { parentPort, workerData } from "node:worker_threads";
import { MessageReader, MessageWriter } from "../../src/ring/messages.js";
import { RingReader, RingWriter } from "../../src/ring/ring.js";
import { fillMessage, messageSize, verifyMessage } from "./ring-stream.js";

const { role, sab, seed, count, maxSize, recordMax } = workerData as {
  role: "produce" | "consume";
  sab: SharedArrayBuffer;
  seed: number;
  count: number;
  maxSize: number;
  recordMax: number;
};

if (role === "consume") {
  const reader = new MessageReader(new RingReader(sab));
  let seq = 0;
  let error: string | null = null;
  while (seq < count && error === null) {
    const message = reader.next();
    if (message === null) {
      reader.ring.release();
      reader.ring.wait(1000);
      continue;
    }
    error = verifyMessage(seed, seq, maxSize, message);
    reader.consume();
    seq++;
    if ((seq & 63) === 0) reader.ring.release();
  }
  reader.ring.release();
  parentPort!.postMessage({ received: seq, error });
} else {
  const ring = new RingWriter(sab);
  const writer = new MessageWriter(ring, recordMax);
  for (let seq = 0; seq < count; seq++) {
    const size = messageSize(seed, seq, maxSize);
    const offset = writer.tryReserve(size);
    if (offset >= 0) {
      fillMessage(seed, seq, ring.bytes.subarray(offset, offset + size));
    } else {
      const message = new Uint8Array(size);
      fillMessage(seed, seq, message);
      writer.enqueue(message);
    }
    if ((seq & 15) === 0) ring.publish();
    while (writer.backlogCount > 0) {
      ring.publish();
      ring.waitForRoom(recordMax, 1000);
      writer.pump();
    }
  }
  ring.publish();
  parentPort!.postMessage({ sent: count });
}
