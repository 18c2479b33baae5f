/**
 * The bank workload (issue #16): accounts under one hash tag, clients of
 * every protocol moving money between random pairs with optimistic
 * transactions, and audits reading every balance in one transaction.
 *
 * The accounts are `{bank}:acct:0` ... `{bank}:acct:<n-1>`: one hash tag, so
 * one partition, which a cluster requires of a transaction (anything else is
 * CROSS_PARTITION: docs/transactions.md). Each starts at INITIAL_BALANCE,
 * written once, before the clients start, by one native transaction that
 * holds only if no account exists yet.
 *
 * Each client, of each protocol, does one thing at a time: one time in four
 * an audit, else a transfer between two distinct accounts picked at random
 * (protocol.ts, BankClient, says how each protocol does them). A transfer
 * moves 1 to 25 but never more than the payer holds, so no balance may ever
 * go below zero; a payer holding 0 moves nothing.
 *
 * What must hold, whatever the faults:
 *   - every audit that answered sees every account, each balance a
 *     non-negative integer, and the balances add up to the total;
 *   - every transfer's read sees both accounts, non-negative integers;
 *   - after the faults are healed, an audit on every protocol, through every
 *     member (HTTP: the gateway), answers within the liveness deadline and
 *     adds up to the total.
 * A transfer whose outcome is unknown (a timeout, UNCERTAIN, a lost
 * connection after the commit was sent) is allowed: applied or not, it
 * keeps the total. They are counted per protocol and outcome.
 *
 * What it does not check: it does not tell whether each unknown transfer
 * was applied (the register workload, judged by the linearizability
 * checker, is the test of single-key outcomes); a conservation bug that
 * happened to keep every audited sum equal would pass.
 */
import { Prng } from "../sim/prng.js";
import type { AuditOutcome, BankClient, ProtocolAdapter, ProtocolName, TransferOutcome } from "./protocol.js";
import { LONG_TIMEOUT_MS, SHORT_TIMEOUT_MS } from "./workload.js";

export const DEFAULT_ACCOUNTS = 8;
export const INITIAL_BALANCE = 100;
/** The most one transfer moves. */
const MAX_AMOUNT = 25;
/** Chance that an operation is an audit. */
const AUDIT_CHANCE = 0.25;
const BACKOFF_MS = 20;
const MOVE_CHANCE = 0.05;

export function accountKey(i: number): string {
  return `{bank}:acct:${i}`;
}

export interface BankStats {
  transfers: number;
  committed: number;
  /** A compare (WATCH) failed: applied nothing. */
  conflicts: number;
  /** The payer held nothing. */
  skipped: number;
  /** The commit was sent and no answer said what happened. */
  unknown: number;
  /** The read before the commit failed: nothing written. */
  readFailed: number;
  audits: number;
  auditsOk: number;
  auditsFailed: number;
  /** Requests certainly never sent (no connection). */
  notSent: number;
  /** Answers that cannot be true, and audits that break the invariant. */
  problems: number;
  failures: Map<string, number>;
  clients: { id: number; timeoutMs: number; variant: string }[];
}

export interface BankProblem {
  protocol: ProtocolName;
  /** -1 for the final audit. */
  client: number;
  what: string;
  detail: string;
  atS: number;
}

export interface BankOptions {
  adapters: ProtocolAdapter[];
  clientsPerProtocol: number;
  accounts: number;
  members: number;
  seed: number;
  clock: () => number;
}

export interface BankResult {
  accounts: number;
  total: number;
  stats: Map<ProtocolName, BankStats>;
  problems: BankProblem[];
  /** Final audits that answered and added up, of those asked for. */
  finalAudits: { ok: number; asked: number };
}

function emptyStats(): BankStats {
  return {
    transfers: 0,
    committed: 0,
    conflicts: 0,
    skipped: 0,
    unknown: 0,
    readFailed: 0,
    audits: 0,
    auditsOk: 0,
    auditsFailed: 0,
    notSent: 0,
    problems: 0,
    failures: new Map(),
    clients: [],
  };
}

/** A balance as the workload writes them: a non-negative integer in decimal, nothing else. */
function balance(v: string | null): number | null {
  if (v === null || !/^(0|[1-9][0-9]{0,15})$/.test(v)) return null;
  return Number(v);
}

export class BankWorkload {
  readonly stats = new Map<ProtocolName, BankStats>();
  readonly problems: BankProblem[] = [];
  readonly keys: string[];
  readonly total: number;
  private stopping = false;
  private running: Promise<void>[] = [];
  private finalAudits = { ok: 0, asked: 0 };

  constructor(private readonly o: BankOptions) {
    this.keys = Array.from({ length: o.accounts }, (_, i) => accountKey(i));
    this.total = o.accounts * INITIAL_BALANCE;
    for (const a of o.adapters) this.stats.set(a.name, emptyStats());
  }

  /**
   * What an audit's values must be: every account present, a non-negative
   * integer, adding up to the total. Null when they are; else what is wrong.
   */
  judgeAudit(values: readonly (string | null)[]): string | null {
    if (values.length !== this.keys.length) return `${values.length} balances for ${this.keys.length} accounts`;
    let sum = 0;
    for (const [i, v] of values.entries()) {
      const b = balance(v);
      if (b === null) return `account ${i} reads ${JSON.stringify(v)}, not a balance: ${JSON.stringify(values)}`;
      sum += b;
    }
    return sum === this.total ? null : `the balances add up to ${sum}, not ${this.total}: ${JSON.stringify(values)}`;
  }

  start(): void {
    let id = 0;
    for (const a of this.o.adapters)
      for (let i = 0; i < this.o.clientsPerProtocol; i++) {
        // A stream apart from the register workload's clients (src/chaos/workload.ts).
        const prng = new Prng((this.o.seed ^ Math.imul(id + 1, 0x85ebca6b) ^ 0x6a09e667) >>> 0);
        const [lo, hi] = i % 2 === 0 ? SHORT_TIMEOUT_MS : LONG_TIMEOUT_MS;
        const timeoutMs = lo + prng.int(hi - lo + 1);
        this.stats.get(a.name)!.clients.push({ id, timeoutMs, variant: a.variantName?.(i) ?? "" });
        this.running.push(this.client(a, id++, i, timeoutMs, prng));
      }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }

  private problem(p: ProtocolName, client: number, what: string, detail: string): void {
    this.stats.get(p)!.problems++;
    this.problems.push({ protocol: p, client, what, detail, atS: this.o.clock() / 1000 });
  }

  private failure(s: BankStats, label: string, sent: boolean): void {
    s.failures.set(label, (s.failures.get(label) ?? 0) + 1);
    if (!sent) s.notSent++;
  }

  private async client(a: ProtocolAdapter, id: number, variant: number, timeoutMs: number, prng: Prng): Promise<void> {
    const s = this.stats.get(a.name)!;
    const links = new Map<number, BankClient>();
    let member = prng.int(this.o.members);
    while (!this.stopping) {
      let link = links.get(member);
      if (link === undefined) links.set(member, (link = a.openBank(member, timeoutMs, variant)));
      let good: boolean;
      if (prng.chance(AUDIT_CHANCE)) good = this.audit(a.name, id, s, await link.audit(this.keys));
      else {
        const x = prng.int(this.keys.length);
        const y = (x + 1 + prng.int(this.keys.length - 1)) % this.keys.length;
        const amount = 1 + prng.int(MAX_AMOUNT);
        const plan = (vx: string | null, vy: string | null): [string, string] | null => {
          const bx = balance(vx);
          const by = balance(vy);
          if (bx === null || by === null) {
            this.problem(
              a.name,
              id,
              `transfer ${x} -> ${y}`,
              `its read saw ${JSON.stringify([vx, vy])}, not two balances`,
            );
            return null;
          }
          const move = Math.min(amount, bx);
          return move === 0 ? null : [String(bx - move), String(by + move)];
        };
        good = this.transfer(a.name, id, s, x, y, await link.transfer(this.keys[x]!, this.keys[y]!, plan));
      }
      if (!good || prng.chance(MOVE_CHANCE)) member = prng.int(this.o.members);
      if (!good) await new Promise((r) => setTimeout(r, BACKOFF_MS));
    }
    await Promise.all([...links.values()].map((l) => l.close()));
  }

  /** Files an audit's outcome; false when it failed. */
  private audit(p: ProtocolName, id: number, s: BankStats, out: AuditOutcome): boolean {
    s.audits++;
    if (out.kind === "failed") {
      s.auditsFailed++;
      this.failure(s, out.label, out.sent);
      return false;
    }
    if (out.kind === "violation") {
      this.problem(p, id, "audit", out.detail);
      return false;
    }
    const wrong = this.judgeAudit(out.values);
    if (wrong !== null) this.problem(p, id, "audit", wrong);
    else s.auditsOk++;
    return true;
  }

  /** Files a transfer's outcome; false when it failed. */
  private transfer(p: ProtocolName, id: number, s: BankStats, x: number, y: number, out: TransferOutcome): boolean {
    s.transfers++;
    switch (out.kind) {
      case "committed":
        s.committed++;
        return true;
      case "conflict":
        s.conflicts++;
        return true;
      case "skipped":
        s.skipped++;
        return true;
      case "failed":
        if (!out.sent) s.notSent++;
        else if (out.phase === "read") s.readFailed++;
        else s.unknown++;
        s.failures.set(out.label, (s.failures.get(out.label) ?? 0) + 1);
        return false;
      case "violation":
        this.problem(p, id, `transfer ${x} -> ${y}`, out.detail);
        return false;
    }
  }

  /**
   * After the faults are healed: an audit through each member on every
   * protocol (HTTP: the gateway) must answer within `deadlineMs` and add up.
   */
  async finalAudit(deadlineMs: number, probeTimeoutMs: number, fail: (message: string) => void): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    const runs: Promise<void>[] = [];
    for (const a of this.o.adapters)
      for (let m = 0; m < (a.name === "http" ? 1 : this.o.members); m++) {
        this.finalAudits.asked++;
        runs.push(
          (async () => {
            const c = a.openBank(m, probeTimeoutMs, m);
            const where = a.name === "http" ? "the Cerializer" : `n${m + 1}`;
            let last = "";
            try {
              while (Date.now() < deadline) {
                const out = await c.audit(this.keys);
                if (out.kind === "ok") {
                  const wrong = this.judgeAudit(out.values);
                  if (wrong === null) {
                    this.finalAudits.ok++;
                    return;
                  }
                  this.problem(a.name, -1, `final audit through ${where}`, wrong);
                  return fail(`the final ${a.name} audit through ${where}: ${wrong}`);
                }
                if (out.kind === "violation") {
                  this.problem(a.name, -1, `final audit through ${where}`, out.detail);
                  return fail(`the final ${a.name} audit through ${where}: ${out.detail}`);
                }
                last = out.label;
                await new Promise((r) => setTimeout(r, 100));
              }
              fail(`${where} answered no ${a.name} audit within ${deadlineMs} ms of healing (last: ${last})`);
            } finally {
              await c.close();
            }
          })(),
        );
      }
    await Promise.all(runs);
  }

  result(): BankResult {
    return {
      accounts: this.keys.length,
      total: this.total,
      stats: this.stats,
      problems: this.problems,
      finalAudits: { ...this.finalAudits },
    };
  }
}

/**
 * Creates the accounts: one transaction that writes every account's
 * starting balance only if none exists (version 0), retried until it
 * answers; when its compare fails, the accounts must already be there whole
 * (an earlier try that timed out was applied), which its failure branch's
 * gets show. Throws when it cannot within `deadlineMs`.
 */
export async function initialiseAccounts(
  keys: readonly string[],
  txn: (t: {
    compare: { key: string; version: number }[];
    success: { op: "put"; key: string; value: string }[];
    failure: { op: "get"; key: string }[];
  }) => Promise<{ succeeded: boolean; results: { op: string; found?: boolean; value?: Buffer | null }[] }>,
  deadlineMs: number,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const r = await txn({
        compare: keys.map((key) => ({ key, version: 0 })),
        success: keys.map((key) => ({ op: "put", key, value: String(INITIAL_BALANCE) })),
        failure: keys.map((key) => ({ op: "get", key })),
      });
      if (r.succeeded) return;
      const values = r.results.map((g) => (g.found ? (g.value?.toString() ?? null) : null));
      if (values.every((v) => v === String(INITIAL_BALANCE))) return;
      throw new Error(`the accounts were there already, not as created: ${JSON.stringify(values)}`);
    } catch (err) {
      if ((err as Error).message.startsWith("the accounts were")) throw err;
      last = (err as Error).message;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`could not create the accounts within ${deadlineMs} ms (last: ${last})`);
}
