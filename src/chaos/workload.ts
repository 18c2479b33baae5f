/**
 * The workload: clients of every protocol doing reads, writes,
 * compare-and-swaps, inserts and deletes on the same few keys, each through
 * a member (HTTP: through the gateway) that it leaves when it fails it or
 * at random, one operation at a time, and
 * the history they observed, in the linearizability checker's terms
 * (src/check/linearizability.ts: a register per key with read, write and
 * cas on values):
 *
 *   read                  read -> the value, or null for absent
 *   write v               write(v); when the answer says the key was
 *                         created, cas(null -> v) succeeded (more precise)
 *   cas at version n      cas(the value written with version n -> v)
 *   insert v              cas(null -> v)
 *   delete                write(null); when the answer says there was no
 *                         such key, cas(null -> null) succeeded (a read of
 *                         absent)
 *
 * Every operation goes into the history when it is invoked, with no output;
 * an answer fills in the output and return time. A failed read is left
 * without output (the checker ignores it: it observed nothing). A failed
 * write is left without output too, which the checker reads as "may have
 * taken effect at any time after its call, or never". A request that was
 * certainly never sent (no connection could be made) is dropped. A
 * violation is recorded, printed, and fails the run.
 */
import { assert } from "../assert.js";
import type { Operation, RegisterInput } from "../check/linearizability.js";
import { Prng } from "../sim/prng.js";
import type { Outcome, ProtocolAdapter, ProtocolName, Request, StoreClient } from "./protocol.js";

/** Timeouts of the "short" clients: under the node's 5 s deadline and the gateway's 5 s timeout. */
export const SHORT_TIMEOUT_MS = [1_000, 2_500] as const;
/** Timeouts of the "long" clients: over both. */
export const LONG_TIMEOUT_MS = [8_000, 12_000] as const;
/** Pause after a failure, so a refused connection does not spin. */
const BACKOFF_MS = 20;
/** Chance that a client moves to another member after a successful operation. */
const MOVE_CHANCE = 0.05;

export interface ProtocolStats {
  operations: number;
  ok: number;
  /** Writes whose outcome is unknown (error, timeout, lost connection). */
  unknown: number;
  failedReads: number;
  /** Requests never sent (no connection): dropped from the history. */
  notSent: number;
  violations: number;
  /** Failures by label: RESP error prefix, HTTP status and problem type, native error code, client timeout... */
  failures: Map<string, number>;
  clients: { id: number; timeoutMs: number; variant: string }[];
}

export interface Violation {
  protocol: ProtocolName;
  client: number;
  key: string;
  request: string;
  detail: string;
  atS: number;
}

export interface WorkloadOptions {
  adapters: ProtocolAdapter[];
  clientsPerProtocol: number;
  keys: number;
  members: number;
  seed: number;
  clock: () => number;
}

export class Workload {
  readonly history: Operation[] = [];
  /** Operations certainly never sent: left out of the check. */
  readonly dropped = new Set<Operation>();
  readonly violations: Violation[] = [];
  readonly stats = new Map<ProtocolName, ProtocolStats>();
  /** Per key, the (value, version) pairs learned from answers, newest last: what a CAS can name. */
  private readonly versions = new Map<string, [string, number][]>();
  private stopping = false;
  private running: Promise<void>[] = [];

  constructor(private readonly o: WorkloadOptions) {
    for (const a of o.adapters)
      this.stats.set(a.name, {
        operations: 0,
        ok: 0,
        unknown: 0,
        failedReads: 0,
        notSent: 0,
        violations: 0,
        failures: new Map(),
        clients: [],
      });
  }

  start(): void {
    let id = 0;
    for (const a of this.o.adapters)
      for (let i = 0; i < this.o.clientsPerProtocol; i++) {
        const prng = new Prng((this.o.seed ^ Math.imul(id + 1, 0x9e3779b1)) >>> 0);
        // Alternate short and long timeouts, so each protocol has both.
        const [lo, hi] = i % 2 === 0 ? SHORT_TIMEOUT_MS : LONG_TIMEOUT_MS;
        const timeoutMs = lo + prng.int(hi - lo + 1);
        this.stats.get(a.name)!.clients.push({ id, timeoutMs, variant: a.variantName?.(i) ?? "" });
        this.running.push(this.client(a, id++, i, timeoutMs, prng));
      }
  }

  /** Lets every client finish the operation it is in, then stop. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }

  /** The history the checker judges. */
  checkable(): Operation[] {
    return this.history.filter((o) => !this.dropped.has(o));
  }

  private learn(key: string, value: string, version: number | undefined): void {
    if (version === undefined) return;
    let l = this.versions.get(key);
    if (l === undefined) this.versions.set(key, (l = []));
    if (l.length > 0 && l[l.length - 1]![1] >= version) return; // known, or older than what we know
    l.push([value, version]);
  }

  /** A (value, version) pair to compare against: usually one of the newest, sometimes any. */
  private casTarget(key: string, prng: Prng): [string, number] | null {
    const l = this.versions.get(key);
    if (l === undefined || l.length === 0) return null;
    if (prng.chance(0.7)) return l[Math.max(0, l.length - 1 - prng.int(3))]!;
    return l[prng.int(l.length)]!;
  }

  private pickRequest(a: ProtocolAdapter, key: string, value: string, prng: Prng): Request {
    const roll = prng.next();
    const can = (k: Request["kind"]) => a.kinds.includes(k);
    if (roll < 0.45) return { kind: "read" };
    if (roll < 0.86 && roll >= 0.72 && can("cas")) {
      const t = this.casTarget(key, prng);
      if (t !== null) return { kind: "cas", expected: t[0], version: t[1], value };
    }
    if (roll >= 0.86 && roll < 0.94 && can("insert")) return { kind: "insert", value };
    if (roll >= 0.94 && can("delete")) return { kind: "delete" };
    return { kind: "write", value };
  }

  private async client(a: ProtocolAdapter, id: number, variant: number, timeoutMs: number, prng: Prng): Promise<void> {
    const stats = this.stats.get(a.name)!;
    const links = new Map<number, StoreClient>();
    let n = 0;
    let member = prng.int(this.o.members);
    while (!this.stopping) {
      let link = links.get(member);
      if (link === undefined) links.set(member, (link = a.open(member, timeoutMs, variant)));
      const key = `k${prng.int(this.o.keys)}`;
      const q = this.pickRequest(a, key, `c${id}-${n++}`, prng);
      const op: Operation = { client: id, key, input: inputOf(q), output: null, call: this.o.clock(), ret: 0 };
      this.history.push(op);
      stats.operations++;
      const out = await link.run(key, q);
      op.ret = this.o.clock();
      this.record(a.name, id, op, q, out, stats);
      // Like an application with a connection: stay on a member while it answers, move to another
      // (at random, maybe the same) when it fails, and now and then for no reason, to spread the load.
      if (out.kind !== "ok" || prng.chance(MOVE_CHANCE)) member = prng.int(this.o.members);
      if (out.kind !== "ok") await new Promise((r) => setTimeout(r, BACKOFF_MS));
    }
    await Promise.all([...links.values()].map((l) => l.close()));
  }

  private record(p: ProtocolName, id: number, op: Operation, q: Request, out: Outcome, stats: ProtocolStats): void {
    if (out.kind === "failed") {
      stats.failures.set(out.label, (stats.failures.get(out.label) ?? 0) + 1);
      if (!out.sent) {
        this.dropped.add(op);
        stats.notSent++;
      } else if (q.kind === "read") stats.failedReads++;
      else stats.unknown++;
      return;
    }
    if (out.kind === "violation") {
      stats.violations++;
      // Left without output: it stays in the history as an operation of unknown outcome.
      this.violations.push({
        protocol: p,
        client: id,
        key: op.key,
        request: describeRequest(q),
        detail: out.detail,
        atS: op.ret / 1000,
      });
      return;
    }
    stats.ok++;
    const r = out.reply;
    switch (q.kind) {
      case "read":
        assert(r.kind === "read", "a read is answered with a read");
        op.output = { kind: "read", value: r.value };
        if (r.value !== null) this.learn(op.key, r.value, r.version);
        break;
      case "write":
        assert(r.kind === "write", "a write is answered with a write");
        if (r.created === true) {
          op.input = { kind: "cas", expected: null, value: q.value };
          op.output = { kind: "cas", ok: true };
        } else op.output = { kind: "write" };
        this.learn(op.key, q.value, r.version);
        break;
      case "cas":
      case "insert":
        assert(r.kind === "cas", "a compare-and-swap is answered with one");
        op.output = { kind: "cas", ok: r.ok };
        if (r.ok) this.learn(op.key, q.value, r.version);
        break;
      case "delete":
        assert(r.kind === "delete", "a delete is answered with one");
        if (r.existed) op.output = { kind: "write" };
        else {
          op.input = { kind: "cas", expected: null, value: null };
          op.output = { kind: "cas", ok: true };
        }
        break;
    }
  }
}

function inputOf(q: Request): RegisterInput {
  switch (q.kind) {
    case "read":
      return { kind: "read" };
    case "write":
      return { kind: "write", value: q.value };
    case "cas":
      return { kind: "cas", expected: q.expected, value: q.value };
    case "insert":
      return { kind: "cas", expected: null, value: q.value };
    case "delete":
      return { kind: "write", value: null };
  }
}

export function describeRequest(q: Request): string {
  switch (q.kind) {
    case "read":
      return "read";
    case "write":
      return `write(${q.value})`;
    case "cas":
      return `cas(version ${q.version} = ${q.expected} -> ${q.value})`;
    case "insert":
      return `insert(${q.value})`;
    case "delete":
      return "delete";
  }
}
