// One thread of the native load generator (bench/lib/native-load.ts): its
// share of the connections, redis-benchmark's model on Piccolo's own
// protocol. Each connection writes a batch of `pipeline` requests in one
// write, waits for all their answers, records each answer's latency from the
// batch's write (as redis-benchmark does with -P), and writes the next batch
// until the thread's share of requests is spent.
//
// Why by hand: the capnp-es client costs more CPU per request than the node
// spends serving it, so a benchmark through it measures the client. Here a
// request is a template laid out once by src/client/hot-wire.ts, and per
// request only its id and the 12 digits of each of its keys are written into
// it; an answer is only cut from the stream by its segment table and its
// union's discriminant read (error or not). Nothing is allocated per request
// but what Node's sockets allocate.
//
// The multi-key requests (MSET's stand-ins: an mput, or a txn of puts, of
// MULTI_KEYS keys) are laid out once by capnp-es, as the client lays them
// out, and rewritten the same way: each key's digits in place.
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import * as hdr from "hdr-histogram-js";
import * as capnp from "capnp-es";
import { encodeGetRequest, encodeWriteRequest } from "../../src/client/hot-wire.js";
import { Request, Request_Which, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { frameBytes } from "./capnp-frames.js";
import { MULTI_KEYS, type NativeLoadOptions } from "./native-load.js";

/** A thread's share of a nativeLoad run. */
export type WorkerJob = Omit<NativeLoadOptions, "host" | "threads" | "seed"> & { host: string; seed: number };

export interface WorkerReport {
  requests: number;
  errors: number;
  /** Answers whose shape this reader does not know (a multi-segment frame): counted, not checked. */
  unchecked: number;
  /** hdr-histogram of latencies in microseconds, compressed (encodeIntoCompressedBase64). */
  histogram: string;
  /** Event-loop utilisation over the run: the share of its time this thread was busy. */
  elu: number;
}

const job = workerData as WorkerJob;
const KEY_TEMPLATE = Buffer.from("key:000000000000");
const DIGITS = 12;

/** A request laid out once; `idAt` is where each copy's id goes, `digitsAt` where each of its keys' digits go. */
function template(): { frame: Uint8Array; idAt: number; digitsAt: number[] } {
  const value = Buffer.alloc(job.valueBytes, "x");
  const frame = layout(0, value);
  const keysIn = job.test === "mput" || job.test === "txn" ? MULTI_KEYS : 1;
  const digitsAt: number[] = [];
  const bytes = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  for (let at = bytes.indexOf(KEY_TEMPLATE); at >= 0; at = bytes.indexOf(KEY_TEMPLATE, at + KEY_TEMPLATE.length))
    digitsAt.push(at + 4);
  // Every request here is one segment: an 8-byte table, the root pointer, the root's data (id first).
  const idAt = 16;
  const check = layout(0x01020304, value);
  if (
    digitsAt.length !== keysIn ||
    new Uint32Array(frame.buffer, frame.byteOffset, 1)[0] !== 0 ||
    new DataView(check.buffer, check.byteOffset).getUint32(idAt, true) !== 0x01020304
  )
    throw new Error("native-load: the request's layout is not the one this generator writes into");
  return { frame, idAt, digitsAt };
}

/** The request with id `id`, every key KEY_TEMPLATE. */
function layout(id: number, value: Uint8Array): Uint8Array {
  if (job.test === "get") return encodeGetRequest(id, KEY_TEMPLATE, false);
  if (job.test === "put") return encodeWriteRequest(id, Request_Which.PUT, KEY_TEMPLATE, value, 0, 0, false);
  // As src/client/client.ts builds mput and txn (capnpRequest): capnp-es, one segment for this size.
  const message = new capnp.Message();
  const req = message.initRoot(Request);
  req.id = BigInt(id);
  const set = (d: capnp.Data, from: Uint8Array) => d.copyBuffer(from);
  if (job.test === "mput") {
    const list = req._initMput()._initEntries(MULTI_KEYS);
    for (let i = 0; i < MULTI_KEYS; i++) {
      set(list[i]!._initKey(KEY_TEMPLATE.length), KEY_TEMPLATE);
      set(list[i]!._initValue(value.length), value);
    }
  } else {
    const t = req._initTxn();
    // MSET's promise: all or nothing, answered OK; so only the verdict is asked for, as the Redis port asks.
    t.verdictOnly = true;
    t._initCompares(0);
    t._initFailure(0);
    const ops = t._initSuccess(MULTI_KEYS);
    for (let i = 0; i < MULTI_KEYS; i++) {
      const p = ops[i]!._initPut();
      set(p._initKey(KEY_TEMPLATE.length), KEY_TEMPLATE);
      set(p._initValue(value.length), value);
    }
  }
  return new Uint8Array(message.toArrayBuffer());
}

const tpl = template();
const histogram = hdr.build({
  bitBucketSize: 32,
  lowestDiscernibleValue: 1,
  highestTrackableValue: 60_000_000,
  numberOfSignificantValueDigits: 3,
  useWebAssembly: false,
});
let seed = job.seed >>> 0 || 1;
/** xorshift32: a fresh key number per request without Math.random's cost or its shared state. */
function nextKey(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % job.keyspace;
}

let left = job.requests; // not yet sent by any of this thread's connections
let errors = 0;
let unchecked = 0;
let answered = 0;
let nextId = 1;
let open = 0;

class Lane {
  /** `pipeline` copies of the template back to back, rewritten before each batch. */
  private readonly batch: Uint8Array;
  private readonly view: DataView;
  private inFlight = 0;
  private sentAt = 0;
  /** Bytes of an answer cut by a read, kept until the rest arrives. */
  private carry: Buffer | null = null;

  private readonly sock: Socket;

  constructor(connected: () => void, failed: (err: Error) => void) {
    const size = tpl.frame.length;
    this.batch = new Uint8Array(size * job.pipeline);
    for (let i = 0; i < job.pipeline; i++) this.batch.set(tpl.frame, i * size);
    this.view = new DataView(this.batch.buffer);
    // onread: the socket reads into the thread's one buffer and calls back, without a Buffer and a
    // stream event per read (a third of the generator's CPU per answer went there).
    this.sock = connect({
      port: job.port,
      host: job.host,
      noDelay: true,
      onread: { buffer: readBuffer, callback: (n: number, buf: Uint8Array) => this.read(buf, n) },
    });
    this.sock.once("connect", connected);
    this.sock.once("error", failed);
    this.sock.on("close", () => {
      if (this.inFlight > 0)
        throw new Error(`native-load: the node closed a connection with ${this.inFlight} answers due`);
    });
  }

  end(): void {
    this.sock.end();
  }

  /** Once connected, an error ends the run (the worker's error reaches nativeLoad). */
  failOnError(): void {
    this.sock.on("error", (err) => {
      throw new Error(`native-load: ${err.message}`);
    });
  }

  /** Sends the next batch (fewer than `pipeline` at the end); false when there is nothing left to send. */
  send(): boolean {
    const n = Math.min(job.pipeline, left);
    if (n === 0) return false;
    left -= n;
    const size = tpl.frame.length;
    for (let i = 0; i < n; i++) {
      const at = i * size;
      this.view.setUint32(at + tpl.idAt, nextId++ >>> 0, true);
      for (const digitsAt of tpl.digitsAt) {
        let k = nextKey();
        for (let d = DIGITS - 1; d >= 0; d--) {
          this.batch[at + digitsAt + d] = 48 + (k % 10);
          k = Math.floor(k / 10);
        }
      }
    }
    this.inFlight = n;
    this.sentAt = performance.now();
    // The batch is rewritten only once all its answers are in, so the socket is done with it by then.
    this.sock.write(n === job.pipeline ? this.batch : this.batch.subarray(0, n * size));
    return true;
  }

  /** Always true: keep reading (false would pause the socket). */
  private read(into: Uint8Array, n: number): boolean {
    const chunk = Buffer.from(into.buffer, into.byteOffset, n);
    let buf = chunk;
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let at = 0;
    // One latency for every answer of this read, taken at its first, as redis-benchmark does with -P (its
    // readHandler sets c->latency once per read), rather than a clock read per answer.
    let latencyUs = 0;
    for (;;) {
      const size = frameBytes(buf, at);
      if (size < 0 || buf.length - at < size) break;
      if (latencyUs === 0) latencyUs = Math.max(1, Math.round((performance.now() - this.sentAt) * 1000));
      this.answer(buf, at, buf.readUInt32LE(at) + 1, size, latencyUs);
      at += size;
    }
    // The read buffer is the thread's and is read into again: keep a copy of a cut answer.
    if (at < buf.length) this.carry = Buffer.from(buf.subarray(at));
    return true;
  }

  private answer(buf: Buffer, at: number, segments: number, size: number, latencyUs: number): void {
    if (segments === 1 && size >= 32) {
      // The root pointer is word 0 of the segment (byte 8); the union's discriminant is at byte 8 of its data.
      const rootAt = at + 16 + (buf.readInt32LE(at + 8) >> 2) * 8;
      if (rootAt + 10 <= at + size) {
        if (buf.readUInt16LE(rootAt + 8) === Response_Which.ERROR) errors++;
      } else unchecked++;
    } else unchecked++;
    histogram.recordValue(latencyUs);
    answered++;
    if (--this.inFlight === 0 && !this.send()) {
      this.end();
      if (--open === 0) finish();
    }
  }
}

let eluStart = performance.eventLoopUtilization();

function finish(): void {
  const elu = performance.eventLoopUtilization(eluStart).utilization;
  parentPort!.postMessage({
    type: "done",
    report: {
      requests: answered,
      errors,
      unchecked,
      histogram: hdr.encodeIntoCompressedBase64(histogram),
      elu,
    } satisfies WorkerReport,
  });
}

const readBuffer = Buffer.alloc(256 * 1024);
const lanes: Lane[] = [];
await Promise.all(
  Array.from(
    { length: job.connections },
    () =>
      new Promise<void>((resolve, reject) => {
        lanes.push(new Lane(resolve, reject));
      }),
  ),
);
for (const lane of lanes) lane.failOnError();
parentPort!.once("message", () => {
  eluStart = performance.eventLoopUtilization();
  open = lanes.length;
  for (const lane of lanes) {
    if (lane.send()) continue;
    lane.end();
    open--;
  }
  if (open === 0) finish();
});
parentPort!.postMessage({ type: "ready" });
