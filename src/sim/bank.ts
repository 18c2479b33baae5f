/**
 * The bank workload of the cluster simulator (src/sim/kv-cluster.ts,
 * `--workload bank`), the simulated twin of the chaos harness's
 * (src/chaos/bank.ts): accounts under one hash tag (so one partition, as a
 * cluster requires of a transaction), transfers between random pairs as
 * optimistic transactions, and audits reading every balance in one
 * transaction.
 *
 * Each request is a shard command Op.TXN whose value is one participant's
 * part (src/shard/txn.ts encodeTxnPart), sent to a member the way the
 * node's IO thread sends a one-partition transaction (src/io/txn.ts): the
 * member forwards it to the partition's leader, which proposes it as one
 * Raft entry (or, when both branches only read, serves it after ReadIndex),
 * and every replica applies it whole.
 *
 *   create    compares every account's version with 0, puts the starting
 *             balances; its failure branch reads them (an earlier try that
 *             timed out may have been applied): retried until it answers
 *   audit     a transaction of gets of every account, no compares
 *   transfer  a transaction of gets of both accounts, then one comparing
 *             both versions with what it read and putting both new balances
 *
 * Faults make outcomes unknown (TIMEOUT, no answer, a member lost); a
 * transfer applied or not keeps the total, so they are only counted. The run
 * fails (SimFailure, with the seed) when an audit that answered does not add
 * up or shows a balance that is not a non-negative integer, when a transfer
 * reads one, when a transaction's answer has the wrong shape, and when, after
 * healing, an audit through each member does not answer or add up.
 */
import { ErrorCode } from "../errors.js";
import { type CommandFields, Op, Result, TXN_FAILURE_READS_ONLY, TXN_SUCCESS_READS_ONLY } from "../shard/command.js";
import {
  CompareRelation,
  CompareTarget,
  type TxnOp,
  type TxnOpResult,
  type TxnPartSpec,
  unpackResults,
} from "../shard/txn.js";
import type { Prng } from "./prng.js";
import { type Answer, CLIENT_TIMEOUTS_MS, command } from "./workload.js";

export const BANK_ACCOUNTS = 5;
export const INITIAL_BALANCE = 100;
const MAX_AMOUNT = 25;
const AUDIT_CHANCE = 0.25;

/** What the bank clients need of the simulated world: a transaction sent to a member, routed by `key`. */
export interface BankWorld {
  txn(id: number, key: string, flags: number, part: TxnPartSpec, timeoutMs: number): Promise<Answer>;
  sleep(ms: number): Promise<void>;
  now(): number;
  running(): boolean;
  fail(what: string): void;
}

export interface BankCounts {
  transfers: number;
  committed: number;
  conflicts: number;
  /** Commit sent, outcome unknown (TIMEOUT, no answer, member lost). */
  unknown: number;
  /** Answered "not applied" (UNAVAILABLE, SHUTTING_DOWN), or the read before the commit failed. */
  refused: number;
  audits: number;
  auditsOk: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function accountKey(i: number): string {
  return `{bank}:acct:${i}`;
}

function op(o: Op, key: string, value?: string): TxnOp {
  const c: Omit<CommandFields, "tag" | "nowMs" | "key"> = command(o);
  return { ...c, key: enc.encode(key), value: value === undefined ? null : enc.encode(value) };
}

/** A one-participant part (src/io/txn.ts sends the same for a one-partition transaction). */
function part(compares: TxnPartSpec["compares"], success: TxnOp[], failure: TxnOp[] = []): TxnPartSpec {
  return {
    id: 0,
    participants: [],
    compares,
    success: success.map((op, index) => ({ index, op })),
    failure: failure.map((op, index) => ({ index, op })),
  };
}

const READS = TXN_SUCCESS_READS_ONLY | TXN_FAILURE_READS_ONLY;

function balance(v: string | null): number | null {
  if (v === null || !/^(0|[1-9][0-9]{0,15})$/.test(v)) return null;
  return Number(v);
}

/** A transaction's decoded answer, or why there is none. */
type Txn =
  | { kind: "ok"; succeeded: boolean; results: TxnOpResult[] }
  /** Not applied (UNAVAILABLE, SHUTTING_DOWN), or a request that never left. */
  | { kind: "refused" }
  | { kind: "unknown" };

export class BankClients {
  readonly counts: BankCounts = {
    transfers: 0,
    committed: 0,
    conflicts: 0,
    unknown: 0,
    refused: 0,
    audits: 0,
    auditsOk: 0,
  };
  readonly keys: string[];
  readonly total: number;

  constructor(
    private readonly world: BankWorld,
    private readonly rng: Prng,
    /** blind: TEST ONLY, transfers without their compares (lost updates): the audits must catch it. */
    private readonly o: { members: number; accounts: number; blind?: boolean },
  ) {
    this.keys = Array.from({ length: o.accounts }, (_, i) => accountKey(i));
    this.total = o.accounts * INITIAL_BALANCE;
  }

  private async send(member: number, flags: number, p: TxnPartSpec, timeoutMs: number): Promise<Txn> {
    const call = this.world.now();
    const a = await this.world.txn(member, this.keys[0]!, flags, p, timeoutMs);
    if (a.kind !== "answer")
      return a.kind === "lost" && call === this.world.now() ? { kind: "refused" } : { kind: "unknown" };
    const r = new Result();
    r.decode(a.result);
    switch (r.status) {
      case ErrorCode.OK:
        return { kind: "ok", succeeded: r.flag === 1, results: r.value === null ? [] : unpackResults(r.value) };
      case ErrorCode.TIMEOUT:
        return { kind: "unknown" };
      case ErrorCode.UNAVAILABLE:
      case ErrorCode.SHUTTING_DOWN:
        return { kind: "refused" };
      default:
        this.world.fail(`bank: a transaction answered status ${r.status}`);
        return { kind: "unknown" };
    }
  }

  /** The gets of a read-only transaction's answer, as values and versions (0: absent). */
  private gets(
    what: string,
    t: Txn & { kind: "ok" },
    n: number,
  ): { values: (string | null)[]; versions: number[] } | null {
    if (!t.succeeded || t.results.length !== n) {
      this.world.fail(`bank: ${what}: ${n} gets answered succeeded=${t.succeeded} with ${t.results.length} results`);
      return null;
    }
    const values: (string | null)[] = [];
    const versions: number[] = [];
    for (const r of t.results) {
      if (r.status !== ErrorCode.OK) {
        this.world.fail(`bank: ${what}: a get inside answered status ${r.status}`);
        return null;
      }
      const found = r.flag === 1 && r.value !== null;
      values.push(found ? dec.decode(r.value!) : null);
      versions.push(found ? r.version : 0);
    }
    return { values, versions };
  }

  /** Whether `values` are every account's balance, adding up to the total; fails the run if not. */
  private judge(what: string, values: (string | null)[]): boolean {
    let sum = 0;
    for (const [i, v] of values.entries()) {
      const b = balance(v);
      if (b === null) {
        this.world.fail(
          `bank: ${what}: account ${i} reads ${JSON.stringify(v)}, not a balance: ${JSON.stringify(values)}`,
        );
        return false;
      }
      sum += b;
    }
    if (sum !== this.total) {
      this.world.fail(`bank: ${what}: the balances add up to ${sum}, not ${this.total}: ${JSON.stringify(values)}`);
      return false;
    }
    return true;
  }

  /** Creates the accounts through member 1 (retried until answered); false when the run is over first. */
  async create(): Promise<boolean> {
    const k = this.keys;
    const p = part(
      k.map((key) => ({
        key: enc.encode(key),
        target: CompareTarget.VERSION,
        relation: CompareRelation.EQUAL,
        number: 0,
        value: null,
      })),
      k.map((key) => op(Op.PUT, key, String(INITIAL_BALANCE))),
      k.map((key) => op(Op.GET, key)),
    );
    for (let tries = 0; tries < 100; tries++) {
      const t = await this.send(1 + (tries % this.o.members), TXN_FAILURE_READS_ONLY, p, 7_000);
      if (t.kind === "ok") {
        if (t.succeeded) return true;
        const g = this.gets("create's failure branch", { ...t, succeeded: true }, k.length);
        if (g === null) return false;
        if (g.values.every((v) => v === String(INITIAL_BALANCE))) return true;
        this.world.fail(`bank: the accounts existed, not as created: ${JSON.stringify(g.values)}`);
        return false;
      }
      await this.world.sleep(200);
    }
    this.world.fail("bank: the accounts could not be created in 100 tries");
    return false;
  }

  /** Client `id`'s loop, until the world stops running. */
  async run(_id: number): Promise<void> {
    const r = this.rng;
    const w = this.world;
    while (w.running()) {
      await w.sleep(r.next() * 20);
      const member = 1 + r.int(this.o.members);
      const timeoutMs = r.pick(CLIENT_TIMEOUTS_MS);
      if (r.chance(AUDIT_CHANCE)) {
        await this.audit(member, timeoutMs, "an audit");
        continue;
      }
      const x = r.int(this.keys.length);
      const y = (x + 1 + r.int(this.keys.length - 1)) % this.keys.length;
      const amount = 1 + r.int(MAX_AMOUNT);
      this.counts.transfers++;
      const kx = this.keys[x]!;
      const ky = this.keys[y]!;
      const read = await this.send(member, READS, part([], [op(Op.GET, kx), op(Op.GET, ky)]), timeoutMs);
      if (read.kind !== "ok") {
        this.counts.refused++;
        continue;
      }
      const g = this.gets("a transfer's read", read, 2);
      if (g === null) return;
      const bx = balance(g.values[0]!);
      const by = balance(g.values[1]!);
      if (bx === null || by === null) {
        w.fail(`bank: a transfer's read of accounts ${x} and ${y} saw ${JSON.stringify(g.values)}`);
        return;
      }
      const move = Math.min(amount, bx);
      if (move === 0) continue;
      const compare = (key: string, version: number) => ({
        key: enc.encode(key),
        target: CompareTarget.VERSION,
        relation: CompareRelation.EQUAL,
        number: version,
        value: null,
      });
      const t = await this.send(
        member,
        TXN_FAILURE_READS_ONLY,
        part(this.o.blind === true ? [] : [compare(kx, g.versions[0]!), compare(ky, g.versions[1]!)], [
          op(Op.PUT, kx, String(bx - move)),
          op(Op.PUT, ky, String(by + move)),
        ]),
        timeoutMs,
      );
      if (t.kind === "unknown") this.counts.unknown++;
      else if (t.kind === "refused") this.counts.refused++;
      else if (!t.succeeded) this.counts.conflicts++;
      else if (t.results.length !== 2 || t.results.some((x) => x.status !== ErrorCode.OK)) {
        w.fail(`bank: a transfer's two puts answered ${t.results.map((x) => `status ${x.status}`).join(", ")}`);
        return;
      } else this.counts.committed++;
    }
  }

  /** One audit through `member`; true when it answered (and added up). */
  async audit(member: number, timeoutMs: number, what: string): Promise<boolean> {
    this.counts.audits++;
    const t = await this.send(
      member,
      READS,
      part(
        [],
        this.keys.map((k) => op(Op.GET, k)),
      ),
      timeoutMs,
    );
    if (t.kind !== "ok") return false;
    const g = this.gets(what, t, this.keys.length);
    if (g === null || !this.judge(what, g.values)) return false;
    this.counts.auditsOk++;
    return true;
  }
}
