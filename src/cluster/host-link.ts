/**
 * The IO thread's handle on a group host (src/cluster/group-host.ts): the
 * same calls whether the host runs inline on the IO thread (`--shards 0`) or
 * on a group worker thread behind a pair of rings (decision 0189), or, in
 * the simulator, behind the same rings on the same thread.
 */
import { Worker } from "node:worker_threads";
import { RING_BYTES } from "../limits.js";
import { createRingBuffer } from "../ring/ring.js";
import {
  GroupHost,
  type HostConfig,
  type HostDeps,
  type HostOptions,
  type HostOut,
  type HostOutcome,
  type HostStatus,
  type Route,
  type ServeMode,
} from "./group-host.js";
import type { GroupWorkerData } from "./group-worker.js";
import { In, jsonBytes, Out, parseJson, RecordReader, RecordWriter } from "./host-channel.js";
import { encodeRaftBatch, encodeRaftFrames, type GroupMessage } from "./peer-codec.js";

/** What the IO thread does with what a host says. */
export interface LinkEvents {
  /** An encoded peer frame of Raft messages for member `to`. */
  sendFrame(to: number, frame: Uint8Array): void;
  route(r: Route): void;
  log(level: "debug" | "info" | "warn" | "error", message: string, detail?: object): void;
  fatal(message: string, detail?: object): void;
  /** A peer's frame did not decode on the worker: drop that peer's connection. */
  badFrame(from: number, why: string): void;
}

export interface HostLink {
  serve(group: number, mode: ServeMode, command: Uint8Array): Promise<HostOutcome>;
  step(messages: GroupMessage[]): void;
  /** A peer's Raft frame as it arrived, for a host that decodes frames itself (a group worker). */
  stepFrame?(from: number, frame: Uint8Array): void;
  transfer(group: number, to: number, handoff?: boolean): Promise<string | null>;
  stepReplace(group: number, remove: number, add: number): Promise<string | null>;
  rebalance(settled: number[]): void;
  /** `member` may have failed or came back: wake the quiet groups it is in; `lost`: its connection closed. */
  wake(member: number, lost?: boolean): void;
  status(): Promise<HostStatus>;
  close(): Promise<void>;
}

/** A host on the IO thread itself: plain calls. */
export class InlineHostLink implements HostLink {
  private constructor(private readonly host: GroupHost) {}

  static async open(o: HostOptions, events: LinkEvents, deps: HostDeps): Promise<InlineHostLink> {
    const out: HostOut = {
      send: (to, messages) => {
        for (const frame of encodeRaftFrames(messages)) events.sendFrame(to, frame);
      },
      flush: () => {}, // the WAL does not block this thread: frames leave at the end of the turn
      takeInput: () => {}, // nor does anything wait: what arrives is handled as it arrives
      route: (r) => events.route(r),
      log: (level, message, detail) => events.log(level, message, detail),
      fatal: (message, detail) => events.fatal(message, detail),
    };
    const host = await GroupHost.open(o, out, deps);
    host.start();
    return new InlineHostLink(host);
  }

  serve(group: number, mode: ServeMode, command: Uint8Array): Promise<HostOutcome> {
    return this.host.serve(group, mode, command);
  }
  step(messages: GroupMessage[]): void {
    this.host.step(messages);
  }
  async transfer(group: number, to: number, handoff = false): Promise<string | null> {
    return this.host.transfer(group, to, handoff);
  }
  async stepReplace(group: number, remove: number, add: number): Promise<string | null> {
    return this.host.stepReplace(group, remove, add);
  }
  rebalance(settled: number[]): void {
    this.host.rebalance(settled);
  }
  wake(member: number, lost = false): void {
    this.host.wake(member, lost);
  }
  async status(): Promise<HostStatus> {
    return this.host.status();
  }
  close(): Promise<void> {
    return this.host.close();
  }
}

/** Control requests to a group worker (JSON: rare, small). */
export type Control =
  | { op: "transfer"; group: number; to: number; handoff?: boolean }
  | { op: "replace"; group: number; remove: number; add: number }
  | { op: "rebalance"; settled: number[] }
  | { op: "wake"; member: number; lost: boolean }
  | { op: "status" }
  | { op: "close" };

/**
 * A host spoken to over a pair of rings (src/cluster/host-channel.ts): the IO
 * thread's end. Its other end is a HostServer (src/cluster/host-server.ts),
 * on a group worker thread in the node (WorkerHostLink below), or on the same
 * thread in the simulator, which drives both ends' reads itself (poll()).
 */
export class ChannelHostLink implements HostLink {
  private readonly toWorker: RecordWriter;
  private readonly fromWorker: RecordReader;
  private nextId = 1;
  private readonly outcomes = new Map<number, (o: HostOutcome) => void>();
  private readonly replies = new Map<number, (v: unknown) => void>();

  constructor(requestRing: SharedArrayBuffer, notifyRing: SharedArrayBuffer, events: LinkEvents) {
    this.toWorker = new RecordWriter(requestRing, (level, message, detail) => events.log(level, message, detail));
    this.fromWorker = new RecordReader(notifyRing, (r) => {
      switch (r.kind) {
        case Out.Outcome: {
          const done = this.outcomes.get(r.a);
          this.outcomes.delete(r.a);
          done?.(r.b === 0 ? { kind: "result", result: r.payload.slice() } : { kind: "notLeader", leader: r.c });
          return;
        }
        case Out.Send:
          events.sendFrame(r.a, r.payload.slice());
          return;
        case Out.Route:
          events.route({ group: r.a, replica: r.b === 1, leader: r.c });
          return;
        case Out.Reply: {
          const done = this.replies.get(r.a);
          this.replies.delete(r.a);
          done?.(parseJson(r.payload));
          return;
        }
        case Out.Log: {
          const l = parseJson<{ level: "debug" | "info" | "warn" | "error"; message: string; detail?: object }>(
            r.payload,
          );
          events.log(l.level, l.message, l.detail);
          return;
        }
        case Out.BadFrame:
          events.badFrame(r.a, new TextDecoder().decode(r.payload.slice()));
          return;
        case Out.Fatal: {
          const f = parseJson<{ message: string; detail?: object }>(r.payload);
          events.fatal(f.message, f.detail);
          return;
        }
      }
    });
  }

  /** Reads what the host says as it arrives (Atomics.waitAsync; see RecordReader.start). */
  start(): void {
    this.fromWorker.start();
  }

  /** Reads what the host said so far, now (the simulator's alternative to start()). */
  poll(): void {
    this.fromWorker.poll();
  }

  serve(group: number, mode: ServeMode, command: Uint8Array): Promise<HostOutcome> {
    const id = this.id();
    return new Promise((resolve) => {
      this.outcomes.set(id, resolve);
      this.toWorker.write(In.Serve, id, group, mode, command);
    });
  }

  step(messages: GroupMessage[]): void {
    // A share of one decoded peer frame: within a frame's message limit, and the ring fragments any size.
    this.toWorker.writeRaft(In.Step, 0, encodeRaftBatch(messages));
  }

  /** A peer's Raft frame as it arrived: the worker decodes it (decision 0189, "pass-through"). */
  stepFrame(from: number, frame: Uint8Array): void {
    this.toWorker.writeRaft(In.Step, from, frame);
  }

  transfer(group: number, to: number, handoff = false): Promise<string | null> {
    return this.control({ op: "transfer", group, to, handoff }) as Promise<string | null>;
  }

  stepReplace(group: number, remove: number, add: number): Promise<string | null> {
    return this.control({ op: "replace", group, remove, add }) as Promise<string | null>;
  }

  rebalance(settled: number[]): void {
    this.toWorker.write(In.Control, 0, 0, 0, jsonBytes({ op: "rebalance", settled } satisfies Control));
  }

  wake(member: number, lost = false): void {
    this.toWorker.write(In.Control, 0, 0, 0, jsonBytes({ op: "wake", member, lost } satisfies Control));
  }

  status(): Promise<HostStatus> {
    return this.control({ op: "status" }) as Promise<HostStatus>;
  }

  async close(): Promise<void> {
    await this.control({ op: "close" });
    this.fromWorker.close();
    this.toWorker.close();
  }

  private control(c: Control): Promise<unknown> {
    const id = this.id();
    return new Promise((resolve) => {
      this.replies.set(id, resolve);
      this.toWorker.write(In.Control, id, 0, 0, jsonBytes(c));
    });
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = id >= 0xffff_fffe ? 1 : id + 1;
    return id;
  }
}

/** A host on its own thread (src/cluster/group-worker.ts), spoken to over two rings. */
export class WorkerHostLink extends ChannelHostLink {
  private closing = false;

  private constructor(
    private readonly worker: Worker,
    requestRing: SharedArrayBuffer,
    notifyRing: SharedArrayBuffer,
    events: LinkEvents,
  ) {
    super(requestRing, notifyRing, events);
    worker.on("error", (err) => events.fatal("group worker crashed", { err }));
    worker.on("exit", (code) => {
      if (!this.closing) events.fatal(`group worker exited (code ${code})`);
    });
  }

  static open(o: HostConfig, events: LinkEvents): Promise<WorkerHostLink> {
    const requestRing = createRingBuffer(RING_BYTES);
    const notifyRing = createRingBuffer(RING_BYTES);
    const data: GroupWorkerData = { options: o, requestRing, notifyRing };
    const worker = new Worker(new URL("./group-worker.js", import.meta.url), { workerData: data });
    const link = new WorkerHostLink(worker, requestRing, notifyRing, events);
    return new Promise((resolve, reject) => {
      const onMessage = (m: { type: string; error?: string }): void => {
        worker.off("message", onMessage);
        if (m.type === "ready") {
          link.start();
          resolve(link);
        } else reject(new Error(m.error ?? "group worker failed to start"));
      };
      worker.on("message", onMessage);
    });
  }

  override async close(): Promise<void> {
    this.closing = true;
    await super.close();
    await this.worker.terminate();
  }
}
