/**
 * The IO thread's side of the shards: where commands go and results come from.
 *
 * Two backends behind one interface:
 *   - ThreadedShards: one worker thread per shard, a request ring and a
 *     notify ring each (the design; see docs/architecture.md).
 *   - InlineShards (--shards 0): the maps live on the IO thread itself and a
 *     command runs the moment it is sent. No thread hop, no rings: the
 *     baseline the benchmark compares the threaded design against.
 *
 * The IO loop calls send() for each command as it parses a socket's bytes,
 * then flush() once at the end of that turn, so every shard gets one wakeup
 * per batch however many commands the batch holds.
 */
import { cpus } from "node:os";
import { Worker } from "node:worker_threads";
import { assert } from "../assert.js";
import type { ClusterInfo } from "../protocol/cluster-info.js";
import { MAX_SHARD_BACKLOG_BYTES, MAX_SHARD_BACKLOG_COUNT, RING_BYTES, RING_RECORD_MAX_BYTES } from "../limits.js";
import { MessageReader, MessageWriter } from "../ring/messages.js";
import { createRingBuffer, RingReader, RingWriter } from "../ring/ring.js";
import { type CommandFields, CommandView, commandBytes, encodeCommand, Result } from "../shard/command.js";
import { ShardCore } from "../shard/execute.js";
import { EXPIRE_SWEEP_INTERVAL_MS } from "../limits.js";
import { sweepTick } from "../shard/sweep.js";

export type { ClusterInfo } from "../protocol/cluster-info.js";

export interface ShardBackend {
  /** Cluster mode only: the partition map and each partition's state here. */
  clusterInfo?(): Promise<ClusterInfo>;
  /** Cluster mode only: the node's client listener is up at host:port (the backend joins its peers now). */
  listening?(clientAddress: string): Promise<void>;
  /**
   * Cluster mode only: asks the partition's leader to take the next
   * membership step of moving its replica on `remove` to `add`; an error
   * message, or null.
   */
  replaceReplica?(partition: number, remove: number, add: number): Promise<string | null>;
  /** Cluster mode only: asks the partition's leader to hand over to `member`; an error message, or null. */
  transferLeader?(partition: number, member: number): Promise<string | null>;
  /** Number of shards (at least 1; inline mode has 1). */
  readonly count: number;
  /** Sends one command to shard `shard`. Never drops: a full ring queues it. */
  send(shard: number, command: CommandFields): void;
  /** Publishes what send() wrote, one wakeup per shard. */
  flush(): void;
  /** True while some shard's backlog is over its limits (count or bytes): stop reading sockets. */
  congested(): boolean;
  close(): Promise<void>;
}

export interface ShardEvents {
  /** A command's result. `result.value` is valid only during the call. */
  onResult(result: Result): void;
  /** Called after a batch of results has been delivered (flush sockets now). */
  onBatchEnd(): void;
  /** Called when a congested backend has room again. */
  onDrain(): void;
  /** A worker said something worth logging (pinning outcome, crash). */
  onLog(level: "info" | "warn" | "error", message: string, detail?: object): void;
}

export class InlineShards implements ShardBackend {
  readonly count = 1;
  private readonly core = new ShardCore();
  private readonly view = new CommandView();
  private readonly result = new Result();
  private scratch = new Uint8Array(64 * 1024);
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly events: ShardEvents) {
    // The sweep's tick (src/shard/sweep.ts); here it runs on the IO thread.
    this.sweepTimer = setInterval(() => sweepTick(this.core, Date.now()), EXPIRE_SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  send(_shard: number, c: CommandFields): void {
    const bytes = commandBytes(c.key.length, c.value === null ? 0 : c.value.length);
    if (bytes > this.scratch.length) this.scratch = new Uint8Array(bytes);
    // The same encoded command as the threaded path: replayable, and the
    // baseline pays the same encode cost so the comparison is about the hop.
    encodeCommand(this.scratch, 0, c);
    this.view.wrap(this.scratch.subarray(0, bytes));
    this.core.execute(this.view, this.result.reset(c.tag));
    this.events.onResult(this.result);
  }

  flush(): void {
    this.events.onBatchEnd();
  }

  congested(): boolean {
    return false;
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
  }
}

interface ShardLink {
  worker: Worker;
  requests: MessageWriter;
  results: MessageReader;
  waiting: boolean;
}

export class ThreadedShards implements ShardBackend {
  readonly count: number;
  private readonly links: ShardLink[] = [];
  private readonly result = new Result();
  private closing = false;
  private wasCongested = false;
  private pinWarned = false;

  constructor(
    count: number,
    private readonly events: ShardEvents,
    pin = true,
  ) {
    assert(count >= 1, "threaded backend has at least one shard");
    this.count = count;
    const cores = cpus().length;
    for (let shard = 0; shard < count; shard++) {
      const requestRing = createRingBuffer(RING_BYTES);
      const notifyRing = createRingBuffer(RING_BYTES);
      const worker = new Worker(new URL("../shard/worker.js", import.meta.url), {
        workerData: { shard, requestRing, notifyRing, pinCore: pin ? shard % cores : -1 },
      });
      worker.on("message", (m: { type: string; ok: boolean; detail: string }) => {
        if (m.type !== "pin") return;
        if (m.ok) return events.onLog("info", m.detail, { shard });
        // Refused pinning is logged once per node, not once per worker: it is
        // one fact about the platform, and the node runs correctly unpinned.
        if (this.pinWarned) return;
        this.pinWarned = true;
        events.onLog("warn", `${m.detail}; shard workers run unpinned`, { shard });
      });
      worker.on("error", (err) => events.onLog("error", "shard worker crashed", { shard, err }));
      worker.on("exit", (code) => {
        if (!this.closing) {
          // A dead shard would silently lose every key it owns: stop loudly.
          events.onLog("error", `shard worker ${shard} exited (code ${code}); the node cannot serve its keys`);
          process.exitCode = 70;
          process.kill(process.pid, "SIGTERM");
        }
      });
      const link: ShardLink = {
        worker,
        requests: new MessageWriter(new RingWriter(requestRing), RING_RECORD_MAX_BYTES),
        results: new MessageReader(new RingReader(notifyRing)),
        waiting: false,
      };
      this.links.push(link);
      this.listen(link);
    }
  }

  send(shard: number, c: CommandFields): void {
    const link = this.links[shard]!;
    const bytes = commandBytes(c.key.length, c.value === null ? 0 : c.value.length);
    const at = link.requests.tryReserve(bytes);
    if (at >= 0) {
      encodeCommand(link.requests.ring.bytes, at, c);
      return;
    }
    const copy = new Uint8Array(bytes);
    encodeCommand(copy, 0, c);
    link.requests.enqueue(copy);
  }

  flush(): void {
    for (const link of this.links) {
      if (link.requests.ring.dirty) link.requests.ring.publish();
      if (link.requests.backlogCount > 0) this.pumpWhenRoom(link);
    }
  }

  /** Moves a shard's backlog into its request ring as the worker frees space (MessageWriter.pumpWhenRoom). */
  private pumpWhenRoom(link: ShardLink): void {
    link.requests.pumpWhenRoom(this.stopped, this.onRoom);
  }

  private readonly stopped = (): boolean => this.closing;
  private readonly onRoom = (): void => this.checkDrained();

  private checkDrained(): void {
    if (this.wasCongested && !this.congested()) {
      this.wasCongested = false;
      this.events.onDrain();
    }
  }

  congested(): boolean {
    for (const link of this.links) {
      const w = link.requests;
      if (w.backlogCount >= MAX_SHARD_BACKLOG_COUNT || w.backlogBytes >= MAX_SHARD_BACKLOG_BYTES) {
        this.wasCongested = true;
        return true;
      }
    }
    return false;
  }

  /** Parks a waitAsync on the shard's notify ring; drains it each time it fires. */
  private listen(link: ShardLink): void {
    const drainAndRearm = (): void => {
      link.waiting = false;
      link.results.ring.awake();
      if (this.closing) return;
      for (;;) {
        this.drain(link);
        const wait = link.results.ring.waitAsync();
        if (wait === null) continue; // more arrived meanwhile
        link.waiting = true;
        wait.then(drainAndRearm);
        return;
      }
    };
    drainAndRearm();
  }

  private drain(link: ShardLink): void {
    const reader = link.results;
    let delivered = 0;
    for (let m = reader.next(); m !== null; m = reader.next()) {
      assert(this.result.decode(m), "shard workers write well-formed results");
      this.events.onResult(this.result);
      reader.consume();
      delivered++;
    }
    reader.ring.release();
    // Results free request-ring space as a side effect: move backlogs on.
    if (link.requests.backlogCount > 0) this.pumpWhenRoom(link);
    if (delivered > 0) this.events.onBatchEnd();
    this.checkDrained();
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.links.map((l) => l.worker.terminate()));
  }
}
