// Issue #19's table: the redis-benchmark workloads Piccolo is measured on
// against Redis, each with its goal, and their request counts. Shared by
// bench:redis (RESP, and the native protocol beside it) and bench:native.
//
// Request counts: a full bench:redis (7 servers, 3 rounds, the native runs
// beside two of them) takes about 6 minutes on the 2-core machine of
// docs/benchmarks.md; each run still lasts a second or more at the rates
// measured there, long enough that starting 50 connections is noise.

import type { NativeTest } from "./native-load.js";

export interface Goal {
  /** "ops": Piccolo's ops/s at least `ratio` x Redis's; "p50": Piccolo's p50 at most `ratio` x Redis's. */
  kind: "ops" | "p50";
  ratio: number;
}

export interface Workload {
  /** "c50 P1": redis-benchmark's -c and -P. */
  name: string;
  connections: number;
  pipeline: number;
  /** redis-benchmark's test names (-t, upper case), each run with `requests` (-n) unless in `requestsFor`. */
  tests: string[];
  requests: number;
  /** A smaller -n for a slower test (MSET writes 10 keys a request). */
  requestsFor?: Record<string, number>;
  goal: Goal;
}

export const KEYSPACE = 100_000; // -r
export const VALUE_BYTES = 64; // -d

export const WORKLOADS: Workload[] = [
  {
    name: "c50 P1",
    connections: 50,
    pipeline: 1,
    tests: ["SET", "GET"],
    requests: 50_000,
    goal: { kind: "ops", ratio: 1.0 },
  },
  {
    name: "c50 P16",
    connections: 50,
    pipeline: 16,
    tests: ["SET", "GET", "INCR", "MSET"],
    requests: 200_000,
    requestsFor: { MSET: 20_000 },
    goal: { kind: "ops", ratio: 1.0 },
  },
  {
    name: "c1 P1",
    connections: 1,
    pipeline: 1,
    tests: ["SET", "GET"],
    requests: 10_000,
    goal: { kind: "p50", ratio: 1.2 },
  },
];

/**
 * What the native protocol sends for a redis-benchmark test (decision 0315): SET as put, GET as get,
 * MSET (10 keys, atomic as a whole in Redis and on Piccolo's Redis port) as a txn of 10 puts asking for
 * the verdict only (Txn.verdictOnly), the native request with the same promise and answer, and as an mput of 10 keys (each key atomic on its own, nothing more),
 * the cheaper one a native client would pick when it needs no more. INCR has none: the native protocol
 * has no increment (a txn cannot compute a new value from an old one), so it is not measured there.
 * `label` names the native run in the tables; `test` is the Redis test it stands beside.
 */
export interface NativeTestSpec {
  test: string;
  label: string;
  op: NativeTest;
}

const NATIVE_TESTS: Record<string, NativeTestSpec[]> = {
  SET: [{ test: "SET", label: "SET", op: "put" }],
  GET: [{ test: "GET", label: "GET", op: "get" }],
  MSET: [
    { test: "MSET", label: "MSET (txn)", op: "txn" },
    { test: "MSET", label: "MSET (mput)", op: "mput" },
  ],
};

/** The native runs of a workload, in its tests' order. */
export function nativeTests(w: Workload): NativeTestSpec[] {
  return w.tests.flatMap((t) => NATIVE_TESTS[t] ?? []);
}

/** Whether `ratio` (Piccolo/Redis: ops/s for "ops", p50 for "p50") meets `goal`. */
export function meets(goal: Goal, ratio: number): boolean {
  return goal.kind === "ops" ? ratio >= goal.ratio : ratio <= goal.ratio;
}

export function goalText(goal: Goal): string {
  return goal.kind === "ops" ? `ops/s >= ${goal.ratio.toFixed(1)}x` : `p50 <= ${goal.ratio.toFixed(1)}x`;
}
