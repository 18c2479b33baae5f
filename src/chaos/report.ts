/**
 * The chaos run's summary, as lines of text: per protocol what the clients
 * did and how every answer was classified, the faults by kind and length,
 * the checker's verdict, and on failure everything needed to look into it.
 */
import type { BankResult } from "./bank.js";
import type { ChaosResult } from "./chaos.js";
import { FAULT_KINDS, LENGTH_CLASSES } from "./nemesis.js";

/** Violations printed in full; the rest are in the history file. */
const VIOLATIONS_SHOWN = 20;

export function summary(r: ChaosResult): string[] {
  const lines: string[] = [];
  for (const [name, s] of r.protocols) {
    const timeouts = s.clients
      .map((c) => `${c.id}: ${(c.timeoutMs / 1000).toFixed(1)} s${c.variant === "" ? "" : ` ${c.variant}`}`)
      .join(", ");
    lines.push(
      `${name.padEnd(6)} ${s.operations} operations: ${s.ok} ok, ${s.unknown} unknown (writes), ` +
        `${s.failedReads} failed reads, ${s.notSent} not sent, ${s.violations} violations ` +
        `[clients and timeouts ${timeouts}]`,
    );
    const f = [...s.failures].sort((a, b) => b[1] - a[1]).map(([label, n]) => `${label} ${n}`);
    if (f.length > 0) lines.push(`       failures by answer: ${f.join(", ")}`);
  }
  const kinds = FAULT_KINDS.map((k) => {
    const c = r.faults[k];
    const total = LENGTH_CLASSES.reduce((n, cls) => n + c[cls], 0);
    return `${k} ${total} (${LENGTH_CLASSES.map((cls) => `${c[cls]} ${cls}`).join(", ")})`;
  });
  lines.push(`faults: ${kinds.join("; ")}`);
  if (r.bank !== null) lines.push(...bankSummary(r.bank));
  const v = r.verdict;
  if (!r.workloads.includes("register")) lines.push("check: no register workload (linearizability not checked)");
  else if (v === null) lines.push("check: not run");
  else if (v.ok === true)
    lines.push(
      `check: ${r.checked} operations on ${v.keys} keys (${r.keys} in use): linearizable (${(r.checkMs / 1000).toFixed(1)} s)`,
    );
  else if (v.ok === "unknown") lines.push(`check: UNDECIDED on key ${v.key}: ${v.detail}`);
  else {
    lines.push(`check: NOT LINEARIZABLE: ${v.detail}`);
    lines.push(`  (the key's ${v.operations.length} operations are in the history file)`);
  }
  for (const x of r.violations.slice(0, VIOLATIONS_SHOWN))
    lines.push(
      `VIOLATION at ${x.atS.toFixed(1)}s, ${x.protocol} client ${x.client}, ${x.request} on ${x.key}: ${x.detail}`,
    );
  if (r.violations.length > VIOLATIONS_SHOWN)
    lines.push(`... ${r.violations.length - VIOLATIONS_SHOWN} more violations in the history file`);
  for (const e of r.exits) {
    lines.push(
      `EXIT: ${e.name} exited by itself at ${e.atS.toFixed(1)}s (${e.signal ?? `code ${e.code}`}); last stderr:`,
    );
    for (const l of e.stderr) lines.push(`    ${l}`);
  }
  for (const f of r.failures) lines.push(`FAILURE: ${f}`);
  lines.push(`verdict: ${r.passed ? "PASS" : "FAIL"}`);
  return lines;
}

/** The bank workload's lines: per protocol, transfers and audits by outcome; the final audits; every problem. */
export function bankSummary(b: BankResult): string[] {
  const lines: string[] = [`bank: ${b.accounts} accounts under one hash tag, ${b.total} in all`];
  for (const [name, s] of b.stats) {
    const clients = s.clients
      .map((c) => `${c.id}: ${(c.timeoutMs / 1000).toFixed(1)} s${c.variant === "" ? "" : ` ${c.variant}`}`)
      .join(", ");
    lines.push(
      `${name.padEnd(6)} ${s.transfers} transfers: ${s.committed} committed, ${s.conflicts} conflicts, ` +
        `${s.skipped} skipped (payer empty), ${s.unknown} unknown, ${s.readFailed} failed reads; ` +
        `${s.audits} audits: ${s.auditsOk} ok, ${s.auditsFailed} failed; ${s.notSent} not sent; ` +
        `${s.problems} problems [clients and timeouts ${clients}]`,
    );
    const f = [...s.failures].sort((a, c) => c[1] - a[1]).map(([label, n]) => `${label} ${n}`);
    if (f.length > 0) lines.push(`       failures by answer: ${f.join(", ")}`);
  }
  lines.push(`bank: final audits that added up: ${b.finalAudits.ok} of ${b.finalAudits.asked}`);
  for (const x of b.problems.slice(0, VIOLATIONS_SHOWN))
    lines.push(
      `BANK PROBLEM at ${x.atS.toFixed(1)}s, ${x.protocol} client ${x.client === -1 ? "(final audit)" : x.client}, ${x.what}: ${x.detail}`,
    );
  if (b.problems.length > VIOLATIONS_SHOWN)
    lines.push(`... ${b.problems.length - VIOLATIONS_SHOWN} more bank problems in the history file`);
  return lines;
}
