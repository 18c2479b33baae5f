// A load generator for Piccolo's native protocol, built not to be the
// bottleneck: redis-benchmark's model (-c connections, -P requests per batch,
// -n requests in all, random keys key:%012d below -r, values of -d bytes) run
// by worker threads (one per two cores by default: DEFAULT_THREADS), each
// with its share of the connections (bench/lib/native-load-worker.ts writes
// pre-laid-out frames and only cuts the answers apart). The capnp-es client,
// which bench:native used before, spent more CPU per request than the node it
// measured.
//
// Whether it is the bottleneck is measured, not assumed: each run reports
// what the generator itself used, its threads' event-loop utilisation (far
// from 1: the thread waited for the node) and the process's CPU time over the
// run, per request and in cores (bench:redis sets it beside redis-benchmark's
// own, from /usr/bin/time, on the same node and workload); bench:native also
// runs it against a trivial endpoint (bench/lib/native-sink.ts), which shows
// its ceiling on the machine.
import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import * as hdr from "hdr-histogram-js";
import type { WorkerJob, WorkerReport } from "./native-load-worker.js";

export interface NativeLoadOptions {
  host?: string;
  port: number;
  /** -c */
  connections: number;
  /** -P */
  pipeline: number;
  /** -n */
  requests: number;
  /** -r */
  keyspace: number;
  /** -d */
  valueBytes: number;
  test: NativeTest;
  /** Worker threads (default: DEFAULT_THREADS; never more than connections). */
  threads?: number;
  seed?: number;
}

/**
 * The requests the generator sends: put and get of one key; mput of MULTI_KEYS keys (each key atomic on
 * its own); a txn whose success branch puts MULTI_KEYS keys (atomic as a whole, as Redis's MSET is),
 * asking for the verdict only (Txn.verdictOnly), as MSET answers OK and nothing per key.
 */
export type NativeTest = "put" | "get" | "mput" | "txn";

/** Keys of an mput or txn request: redis-benchmark's MSET sets 10. */
export const MULTI_KEYS = 10;

export interface NativeLoadResult {
  test: NativeTest;
  rps: number;
  requests: number;
  errors: number;
  unchecked: number;
  elapsedMs: number;
  p50ms: number;
  p99ms: number;
  threads: number;
  /** Each thread's event-loop utilisation over the run (0-1). */
  elu: number[];
  /** The generator's process CPU time over the run divided by the run's time: cores it kept busy. */
  cpuCores: number;
}

const WORKER = new URL("./native-load-worker.js", import.meta.url);

/**
 * One thread per two cores: the other half is the server's. Measured on the 2-core machine of
 * docs/benchmarks.md (bench:native --quick --layouts 0, 2026-12-03), one thread against two: 22 against
 * 34 us of CPU per request at -c 50 -P 1 and 3.3 against 5.4 at -P 16, and the node served 1.4x more
 * (27,092 against 19,170 SETs/s at -P 1; 168,267 against 123,301 at -P 16): a second thread wakes for
 * fewer answers each time and takes its CPU from the node it measures. redis-benchmark too runs one
 * thread unless told otherwise.
 */
export const DEFAULT_THREADS = Math.max(1, Math.floor(availableParallelism() / 2));

/** Splits `total` into `parts` shares as even as integers allow (the first ones one larger). */
function shares(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

export async function nativeLoad(o: NativeLoadOptions): Promise<NativeLoadResult> {
  const threads = Math.max(1, Math.min(o.threads ?? DEFAULT_THREADS, o.connections));
  const conns = shares(o.connections, threads);
  // Requests in proportion to connections, so every thread's lanes run about as long.
  const reqs = conns.map((c) => Math.floor((o.requests * c) / o.connections));
  reqs[0]! += o.requests - reqs.reduce((a, b) => a + b, 0);
  const workers = conns.map((connections, i) => {
    const job: WorkerJob = {
      host: o.host ?? "127.0.0.1",
      port: o.port,
      connections,
      pipeline: o.pipeline,
      requests: reqs[i]!,
      keyspace: o.keyspace,
      valueBytes: o.valueBytes,
      test: o.test,
      seed: (o.seed ?? 0x9e3779b9) + i * 7919,
    };
    return new Worker(WORKER, { workerData: job });
  });
  const failed = new Promise<never>((_, reject) => {
    for (const w of workers) w.once("error", reject);
  });
  const message = (w: Worker, type: string) =>
    new Promise<{ type: string; report?: WorkerReport }>((resolve) => {
      const on = (m: { type: string; report?: WorkerReport }) => {
        if (m.type !== type) return;
        w.off("message", on);
        resolve(m);
      };
      w.on("message", on);
    });
  try {
    await Promise.race([Promise.all(workers.map((w) => message(w, "ready"))), failed]);
    const done = workers.map((w) => message(w, "done"));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const w of workers) w.postMessage("go");
    const reports = (await Promise.race([Promise.all(done), failed])).map((m) => m.report!);
    const elapsedMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const histogram = hdr.build({ useWebAssembly: false, numberOfSignificantValueDigits: 3 });
    for (const r of reports) histogram.add(hdr.decodeFromCompressedBase64(r.histogram, 32, false));
    const requests = reports.reduce((n, r) => n + r.requests, 0);
    return {
      test: o.test,
      rps: (requests * 1000) / elapsedMs,
      requests,
      errors: reports.reduce((n, r) => n + r.errors, 0),
      unchecked: reports.reduce((n, r) => n + r.unchecked, 0),
      elapsedMs,
      p50ms: histogram.getValueAtPercentile(50) / 1000,
      p99ms: histogram.getValueAtPercentile(99) / 1000,
      threads,
      elu: reports.map((r) => r.elu),
      cpuCores: (cpu.user + cpu.system) / 1000 / elapsedMs,
    };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
