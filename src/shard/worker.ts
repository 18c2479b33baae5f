/**
 * A shard worker thread: the host around one ShardCore.
 *
 * The loop is the whole job: take every command waiting in the request ring,
 * apply it, write its result into the notify ring, publish the batch (one
 * wakeup for the IO thread however many results), and sleep in Atomics.wait
 * when there is nothing to do. Nothing here is shared but the two rings; the
 * map is private to this thread, so it needs no locks.
 *
 * The worker may block, the IO thread may not: when the notify ring is full
 * the worker waits for the IO thread to drain it (Atomics.wait on the ring's
 * tail). The IO thread always drains, so this cannot deadlock.
 */
import { parentPort, workerData } from "node:worker_threads";
import { assert } from "../assert.js";
import { EXPIRE_SWEEP_INTERVAL_MS, RING_RECORD_MAX_BYTES } from "../limits.js";
import { MessageReader, MessageWriter } from "../ring/messages.js";
import { RingReader, RingWriter } from "../ring/ring.js";
import { CommandView, Result } from "./command.js";
import { ShardCore } from "./execute.js";
import { pinCurrentThread } from "./pin.js";
import { sweepTick } from "./sweep.js";

export interface ShardWorkerData {
  shard: number;
  requestRing: SharedArrayBuffer;
  notifyRing: SharedArrayBuffer;
  /** Core to pin to, or -1 to leave the thread unpinned. */
  pinCore: number;
}

/** Results between two publishes: bounds the IO thread's wait for the first answers of a long batch. */
const PUBLISH_EVERY = 64;

function main(data: ShardWorkerData): void {
  if (data.pinCore >= 0) parentPort!.postMessage({ type: "pin", ...pinCurrentThread(data.pinCore) });
  const requests = new MessageReader(new RingReader(data.requestRing));
  const notifyRing = new RingWriter(data.notifyRing);
  const results = new MessageWriter(notifyRing, RING_RECORD_MAX_BYTES);
  const core = new ShardCore();
  const command = new CommandView();
  const result = new Result();
  /** When the last sweep tick ran, on the monotonic clock (a wall-clock step must not stop the ticks). */
  let lastTickMs = performance.now();

  const emit = (r: Result): void => {
    const bytes = r.byteLength();
    for (;;) {
      const at = results.tryReserve(bytes);
      if (at >= 0) {
        r.encode(notifyRing.bytes, at);
        return;
      }
      if (bytes > RING_RECORD_MAX_BYTES || results.backlogCount > 0) {
        // Too big for one record: copy it out (the value view is only valid
        // until the next command) and let the writer fragment it.
        const copy = new Uint8Array(bytes);
        r.encode(copy, 0);
        results.enqueue(copy);
        drainBacklog();
        return;
      }
      notifyRing.publish();
      notifyRing.waitForRoom(bytes, 1000);
    }
  };

  // A sweep tick is due every EXPIRE_SWEEP_INTERVAL_MS: checked after each
  // batch, when the wait below times out (an idle shard), and every
  // PUBLISH_EVERY commands of a long batch, so a shard that never runs out
  // of requests still sweeps on time.
  const sweepIfDue = (): void => {
    const tickMs = performance.now();
    if (tickMs - lastTickMs < EXPIRE_SWEEP_INTERVAL_MS) return;
    lastTickMs = tickMs;
    sweepTick(core, Date.now());
  };

  const drainBacklog = (): void => {
    while (!results.pump()) {
      notifyRing.publish();
      notifyRing.waitForRoom(RING_RECORD_MAX_BYTES, 1000);
    }
  };

  for (;;) {
    let batch = 0;
    for (let m = requests.next(); m !== null; m = requests.next()) {
      assert(command.wrap(m), "the IO thread writes well-formed commands");
      core.execute(command, result.reset(command.tag));
      emit(result);
      requests.consume();
      if (++batch % PUBLISH_EVERY === 0) {
        requests.ring.release();
        notifyRing.publish();
        sweepIfDue();
      }
    }
    requests.ring.release();
    if (notifyRing.dirty) notifyRing.publish();

    sweepIfDue();
    // Sleep until the next tick is due, not a whole interval from now.
    if (batch === 0) requests.ring.wait(Math.max(1, EXPIRE_SWEEP_INTERVAL_MS - (performance.now() - lastTickMs)));
  }
}

main(workerData as ShardWorkerData);
