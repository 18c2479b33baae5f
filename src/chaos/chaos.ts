/**
 * The chaos harness: a real three-member cluster (child processes on
 * loopback, default flags, 64 partitions unless asked otherwise) with a
 * Cerializer in front, clients of all three protocols (native, RESP, HTTP
 * through the Cerializer) working on the same keys, and a nemesis that
 * kills, stops cleanly, pauses and partitions members for lengths both under
 * and over every deadline in the system (src/chaos/nemesis.ts). Every client
 * operation is recorded and the merged history, one register per key, is
 * judged by the linearizability checker (src/check/linearizability.ts).
 *
 * A run fails when any of these happens:
 *   - the history is not linearizable (or too hard to decide);
 *   - an answer looked like success but could not be (a violation:
 *     src/chaos/protocol.ts);
 *   - a member or the Cerializer exited without the harness causing it, or a
 *     member would not stop on SIGTERM or start again;
 *   - after the faults are healed, some member does not answer a read on
 *     each of its ports (or the gateway on its own) within LIVENESS_TIMEOUT_MS.
 *
 * The deterministic simulator (src/sim/kv-cluster.ts) explores many more
 * interleavings of the same logic; this harness checks the real thing:
 * processes, sockets, the WAL on disk, timers, every port.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkHistory, type Verdict } from "../check/linearizability.js";
import { PiccoloClient } from "../client/client.js";
import { Prng } from "../sim/prng.js";
import { BankWorkload, type BankResult, DEFAULT_ACCOUNTS, initialiseAccounts } from "./bank.js";
import { ChaosCluster, MEMBERS, START_TIMEOUT_MS } from "./cluster.js";
import { httpAdapter } from "./http.js";
import { nativeAdapter } from "./native.js";
import { DEFAULT_MAX_FAULT_MS, emptyFaultCounts, type FaultCounts, runNemesis } from "./nemesis.js";
import type { UnexpectedExit } from "./process.js";
import { PROTOCOLS, type ProtocolAdapter, type ProtocolName } from "./protocol.js";
import { respAdapter } from "./resp.js";
import { type ProtocolStats, type Violation, Workload } from "./workload.js";

/** After the faults are healed, each protocol must be served again within this. */
export const LIVENESS_TIMEOUT_MS = 60_000;
/** Calm time once every member serves, before the clients stop (a member that dies soon after its restart shows). */
const CALM_MS = 3_000;
/** The timeout of each liveness probe. */
const PROBE_TIMEOUT_MS = 2_000;
export const DEFAULT_CLIENTS_PER_PROTOCOL = 4;

/**
 * register: single-key reads, writes, compare-and-swaps, inserts and
 * deletes, judged by the linearizability checker (src/chaos/workload.ts);
 * bank: transfers and audits in transactions, judged by the total
 * (src/chaos/bank.ts). Both may run at once, each with its own clients.
 */
export type WorkloadName = "register" | "bank";
export const WORKLOADS: readonly WorkloadName[] = ["register", "bank"];

export interface ChaosOptions {
  seed: number;
  /** Seconds of faults (then a calm phase and the check). */
  seconds: number;
  clientsPerProtocol?: number;
  /** Keys; default: scaled with time and clients so each key's history stays checkable. */
  keys?: number;
  /** Partitions per cluster; default: the server's own (64). */
  partitions?: number;
  protocols?: readonly ProtocolName[];
  /** Default: register only. */
  workloads?: readonly WorkloadName[];
  /** The bank workload's accounts (default DEFAULT_ACCOUNTS). */
  accounts?: number;
  /** The longest fault (default 15 s). */
  maxFaultMs?: number;
  /** Where to write the history when the run fails. */
  historyDir?: string;
  /** TLS everywhere, a cluster secret and a password (src/chaos/cluster.ts). */
  secure?: boolean;
  log?: (line: string) => void;
}

export interface ChaosResult {
  passed: boolean;
  workloads: readonly WorkloadName[];
  /** null when the run failed before the history could be judged, or ran no register workload. */
  verdict: Verdict | null;
  checkMs: number;
  keys: number;
  protocols: Map<ProtocolName, ProtocolStats>;
  violations: Violation[];
  exits: UnexpectedExit[];
  /** Other failures: a member that would not stop or start, a protocol not served after healing. */
  failures: string[];
  faults: FaultCounts;
  /** The bank workload's outcome; null when it did not run. */
  bank: BankResult | null;
  /** Operations in the checked history. */
  checked: number;
  historyFile: string | null;
}

/**
 * Keys for a run: one per 5 s, at least 3. The checker's search is
 * exponential in the worst case, so each key's history must stay small:
 * the cluster, not the client count, bounds the throughput (a few hundred
 * operations a second on a 2-core machine), so this keeps about a thousand
 * operations per key however long the run. Fewer keys would mean more
 * concurrent operations per key (more races to catch) and a slower check.
 */
export function defaultKeys(seconds: number): number {
  return Math.max(3, Math.ceil(seconds / 5));
}

/**
 * After the faults: each member must answer a linearizable read on each of
 * its ports (and the gateway on its own) within LIVENESS_TIMEOUT_MS. A
 * member that restarted but cannot catch up, forward or elect shows here.
 * The probes' reads are not recorded (leaving reads out of a history never
 * hides a write).
 */
async function everyMemberServes(
  adapters: ProtocolAdapter[],
  fail: (message: string) => void,
  failed: () => boolean,
): Promise<void> {
  const deadline = Date.now() + LIVENESS_TIMEOUT_MS;
  const probes: Promise<void>[] = [];
  for (const a of adapters)
    for (let m = 0; m < (a.name === "http" ? 1 : MEMBERS); m++)
      probes.push(
        (async () => {
          const c = a.open(m, PROBE_TIMEOUT_MS, m);
          let last = "";
          try {
            while (Date.now() < deadline) {
              if (failed()) return; // already failed (a member exited): no need to wait for it
              const out = await c.run("k0", { kind: "read" });
              if (out.kind === "ok") return;
              if (out.kind === "violation") return fail(`a liveness probe's ${a.name} read: ${out.detail}`);
              last = out.label;
              await new Promise((r) => setTimeout(r, 100));
            }
            const where = a.name === "http" ? "the Cerializer" : `n${m + 1}`;
            fail(`${where} served no ${a.name} read within ${LIVENESS_TIMEOUT_MS} ms of healing (last: ${last})`);
          } finally {
            await c.close();
          }
        })(),
      );
  await Promise.all(probes);
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  const stamp = (line: string) => log(`${(clock() / 1000).toFixed(1)}s ${line}`);
  const protocols = o.protocols ?? PROTOCOLS;
  const clientsPerProtocol = o.clientsPerProtocol ?? DEFAULT_CLIENTS_PER_PROTOCOL;
  const keys = o.keys ?? defaultKeys(o.seconds);
  const workloads = o.workloads ?? ["register"];
  const exits: UnexpectedExit[] = [];
  const failures: string[] = [];
  const failed = () => exits.length > 0 || failures.length > 0;
  const fail = (message: string) => {
    failures.push(message);
    stamp(`FAILURE: ${message}`);
  };

  const root = await mkdtemp(join(tmpdir(), "piccolo-chaos-"));
  const cluster = await ChaosCluster.create({
    root,
    partitions: o.partitions,
    secure: o.secure === true,
    clock,
    onUnexpectedExit: (e) => {
      exits.push(e);
      stamp(`FAILURE: ${e.name} exited by itself (${e.signal ?? `code ${e.code}`}); last stderr:`);
      for (const l of e.stderr) log(`  ${l}`);
    },
  });
  // Interrupted (Ctrl-C, a CI timeout): take the cluster down with us, not leave it running.
  const onSignal = (signal: NodeJS.Signals) => {
    cluster.killNow();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const make: Record<ProtocolName, (c: ChaosCluster) => ProtocolAdapter> = {
    native: nativeAdapter,
    resp: respAdapter,
    http: httpAdapter,
  };
  const workload = workloads.includes("register")
    ? new Workload({
        adapters: protocols.map((p) => make[p](cluster)),
        clientsPerProtocol,
        keys,
        members: MEMBERS,
        seed: o.seed,
        clock,
      })
    : null;
  const bank = workloads.includes("bank")
    ? new BankWorkload({
        adapters: protocols.map((p) => make[p](cluster)),
        clientsPerProtocol,
        accounts: o.accounts ?? DEFAULT_ACCOUNTS,
        members: MEMBERS,
        seed: o.seed,
        clock,
      })
    : null;
  let faults = emptyFaultCounts();
  let verdict: Verdict | null = null;
  let checkMs = 0;
  let historyFile: string | null = null;
  try {
    try {
      await cluster.startAll();
    } catch (err) {
      fail(`the cluster did not start: ${(err as Error).message}`);
    }
    if (!failed()) {
      stamp(`cluster up: ${cluster.memberList}; cerializer on 127.0.0.1:${cluster.httpPort}`);
      if (bank !== null) {
        const c = new PiccoloClient({
          host: "127.0.0.1",
          port: cluster.members[0]!.clientPort,
          timeoutMs: 5_000,
          ...cluster.clientOptions(),
        });
        try {
          await initialiseAccounts(bank.keys, (t) => c.txn(t), LIVENESS_TIMEOUT_MS);
          stamp(`bank: ${bank.keys.length} accounts created, ${bank.total} in all`);
        } catch (err) {
          fail(`bank: ${(err as Error).message}`);
        } finally {
          await c.close().catch(() => {});
        }
      }
    }
    if (!failed()) {
      workload?.start();
      bank?.start();
      faults = await runNemesis({
        cluster,
        prng: new Prng(o.seed),
        endAtMs: Date.now() + o.seconds * 1000,
        maxFaultMs: o.maxFaultMs ?? DEFAULT_MAX_FAULT_MS,
        log: stamp,
        fail,
        failed,
      });
      // Calm: everything healed and running; every protocol must be served again.
      await cluster.heal();
      for (const m of cluster.members) m.process.resume();
      for (const m of cluster.members)
        if (!m.process.running && !failed())
          await m.process.start(START_TIMEOUT_MS).catch((err) => fail(`${m.name} did not restart: ${err.message}`));
      stamp("faults over; every member must now serve reads on every port");
      const adapters = protocols.map((p) => make[p](cluster));
      if (!failed()) await everyMemberServes(adapters, fail, failed);
      if (!failed()) stamp("every member serves");
      await new Promise((r) => setTimeout(r, CALM_MS));
    }
    await Promise.all([workload?.stop(), bank?.stop()]);
    if (bank !== null && !failed()) {
      // Every transfer has ended (applied or not): the total must be whole, seen through every port.
      await bank.finalAudit(LIVENESS_TIMEOUT_MS, PROBE_TIMEOUT_MS, fail);
      if (!failed()) stamp(`bank: the final audits add up to ${bank.total} on every port`);
    }
    const history = workload?.checkable() ?? [];
    const c0 = performance.now();
    verdict = workload === null ? null : checkHistory(history);
    checkMs = performance.now() - c0;
    const violations = workload?.violations ?? [];
    const passed =
      (verdict === null || verdict.ok === true) &&
      violations.length === 0 &&
      (bank === null || bank.problems.length === 0) &&
      !failed();
    if (!passed) {
      historyFile = join(o.historyDir ?? tmpdir(), `piccolo-chaos-${o.seed}-${Date.now()}.json`);
      await writeFile(
        historyFile,
        JSON.stringify(
          {
            seed: o.seed,
            options: { ...o, log: undefined },
            verdict,
            violations,
            bankProblems: bank?.problems ?? [],
            exits,
            failures,
            history,
          },
          null,
          1,
        ),
      );
    }
    return {
      passed,
      workloads,
      verdict,
      checkMs,
      keys,
      protocols: workload?.stats ?? new Map(),
      violations,
      exits,
      failures,
      faults,
      bank: bank?.result() ?? null,
      checked: history.length,
      historyFile,
    };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cluster.stopAll();
    await rm(root, { recursive: true, force: true });
  }
}
