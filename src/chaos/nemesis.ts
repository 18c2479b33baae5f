/**
 * The nemesis: one fault at a time on one member, chosen by its own seeded
 * PRNG (src/sim/prng.ts), so a seed fixes the sequence of faults and their
 * lengths (how many fit in the run still depends on real timing).
 *
 * Kinds: kill -9 then restart from the data directory; a clean SIGTERM then
 * restart; SIGSTOP then SIGCONT (a pause: the process is alive, its sockets
 * open, nothing answers); a partition from the other members, both ways or
 * one way (only what the member sends is lost).
 *
 * Lengths come in three classes, each round of three faults taking every
 * class once in a random order, so every run of a few faults has all three:
 *   short   0.2-0.9 s  under every deadline in the system;
 *   medium  1-4.5 s    over the short clients' timeouts (1-2.5 s), under the
 *                      node's 5 s request deadline and the gateway's 5 s timeout;
 *   long    5.5-15 s   over the node's and gateway's deadlines, and above 12 s
 *                      over the long clients' timeouts too.
 * For a kill or a SIGTERM the length is how long the member stays down.
 */
import type { Prng } from "../sim/prng.js";
import { type ChaosCluster, type Member, STOP_GRACE_MS, START_TIMEOUT_MS } from "./cluster.js";

export const FAULT_KINDS = ["kill", "term", "pause", "partition", "partition-one-way"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export const LENGTH_CLASSES = ["short", "medium", "long"] as const;
export type LengthClass = (typeof LENGTH_CLASSES)[number];

/** The longest fault, by default: over every deadline, client timeouts included. */
export const DEFAULT_MAX_FAULT_MS = 15_000;
/** Calm between two faults. */
const GAP_MIN_MS = 500;
const GAP_MAX_MS = 3_000;

export type FaultCounts = Record<FaultKind, Record<LengthClass, number>>;

export function emptyFaultCounts(): FaultCounts {
  const c = {} as FaultCounts;
  for (const k of FAULT_KINDS) c[k] = { short: 0, medium: 0, long: 0 };
  return c;
}

export interface NemesisOptions {
  cluster: ChaosCluster;
  prng: Prng;
  /** Stop starting faults after this instant (Date.now() ms). */
  endAtMs: number;
  maxFaultMs: number;
  log: (line: string) => void;
  /** A failure the nemesis met (a member that would not stop or start). */
  fail: (message: string) => void;
  /** True once the run has failed: no new faults. */
  failed: () => boolean;
}

export function faultLengthMs(prng: Prng, cls: LengthClass, maxFaultMs: number): number {
  const range = (lo: number, hi: number) => Math.round(lo + prng.next() * Math.max(0, hi - lo));
  switch (cls) {
    case "short":
      return range(200, Math.min(900, maxFaultMs));
    case "medium":
      return range(Math.min(1_000, maxFaultMs), Math.min(4_500, maxFaultMs));
    case "long":
      return range(Math.min(5_500, maxFaultMs), maxFaultMs);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs faults until endAtMs; resolves with what it did. Leaves every member healed and running, or the run failed. */
export async function runNemesis(o: NemesisOptions): Promise<FaultCounts> {
  const counts = emptyFaultCounts();
  const { cluster, prng, log } = o;
  let round: LengthClass[] = [];
  const restart = async (m: Member): Promise<boolean> => {
    try {
      await m.process.start(START_TIMEOUT_MS);
      return true;
    } catch (err) {
      o.fail(`${m.name} could not be restarted: ${(err as Error).message}`);
      return false;
    }
  };
  while (Date.now() < o.endAtMs && !o.failed()) {
    await sleep(GAP_MIN_MS + prng.int(GAP_MAX_MS - GAP_MIN_MS));
    if (Date.now() >= o.endAtMs || o.failed()) break;
    if (round.length === 0) {
      round = [...LENGTH_CLASSES];
      prng.shuffle(round);
    }
    const cls = round.pop()!;
    const kind = prng.pick(FAULT_KINDS);
    const m = prng.pick(cluster.members);
    const ms = faultLengthMs(prng, cls, o.maxFaultMs);
    const what = `${kind} ${m.name} for ${(ms / 1000).toFixed(1)} s (${cls})`;
    if (!m.process.running) {
      o.fail(`${m.name} is not running before ${what}`);
      break;
    }
    log(what);
    counts[kind][cls]++;
    switch (kind) {
      case "kill":
        await m.process.kill();
        await sleep(ms);
        if (!(await restart(m))) return counts;
        log(`restarted ${m.name}`);
        break;
      case "term": {
        const t = Date.now();
        const r = await m.process.terminate(STOP_GRACE_MS);
        if (r === "timeout") o.fail(`${m.name} did not stop within ${STOP_GRACE_MS} ms of SIGTERM`);
        else if (r.code !== 0) o.fail(`${m.name} exited with ${r.signal ?? r.code} after SIGTERM, not 0`);
        else log(`${m.name} stopped cleanly in ${((Date.now() - t) / 1000).toFixed(1)} s`);
        await sleep(ms);
        if (!(await restart(m))) return counts;
        log(`restarted ${m.name}`);
        break;
      }
      case "pause":
        m.process.pause();
        await sleep(ms);
        m.process.resume();
        log(`resumed ${m.name}`);
        break;
      case "partition":
      case "partition-one-way":
        await cluster.partition(m, kind === "partition-one-way");
        await sleep(ms);
        await cluster.heal();
        log("healed");
        break;
    }
  }
  return counts;
}
