/**
 * Memory given back when the node goes idle (decision 0299).
 *
 * Under a load, V8 grows the IO thread's young generation (the new space,
 * where short-lived objects are made) from 1 MiB to 32 MiB, and keeps it:
 * it shrinks the new space only at a collection that finds the allocation
 * rate low, and an idle process allocates nothing, so it never collects,
 * so it never shrinks. After loading 1M keys the node held ~30 MiB of RSS
 * for a new space with next to nothing live (bench:memory).
 *
 * So every IDLE_TRIM_CHECK_MS the IO thread looks at its event loop's
 * utilization over the interval (the fraction spent running callbacks,
 * performance.eventLoopUtilization), and when it was under
 * IDLE_TRIM_MAX_UTILIZATION it runs a young-generation collection (a
 * scavenge: about a millisecond with nothing live), at most
 * IDLE_TRIM_COLLECTIONS times until the loop is busy again. V8 judges the
 * allocation rate over its last ~5 s of collections, so the first ones after
 * a load still see the load's tail; a later one sees only idleness and
 * shrinks the new space (three were not always enough, five were in every
 * run measured). A busy node is never collected by this; an idle one pays
 * a few milliseconds after each burst of work.
 *
 * The collector's entry point is V8's `gc` extension, exposed at run time
 * (the flag, then a fresh context that has it); where that does not work the
 * trim is off and the node says so at debug level: it costs memory, never
 * correctness.
 */
import { performance } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { IDLE_TRIM_CHECK_MS, IDLE_TRIM_COLLECTIONS, IDLE_TRIM_MAX_UTILIZATION } from "./limits.js";

type Collect = (options: { type: "minor" | "major"; execution: "sync" }) => void;

/** V8's `gc` function, or null when this runtime will not expose it. */
function collector(): Collect | null {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as Collect) : null;
  } catch {
    return null;
  }
}

/** Collections this thread's idle trim has run (INFO memory's piccolo_idle_collections, the IO thread's). */
let collections = 0;
export const idleCollections = (): number => collections;

/**
 * The policy, for any thread: told every IDLE_TRIM_CHECK_MS whether the
 * interval just past was idle, it collects on up to IDLE_TRIM_COLLECTIONS
 * idle intervals in a row after a busy one. A thread that was never busy
 * has nothing to give back and is never collected, and V8's `gc` (a context
 * of its own, ~0.5 MiB) is made only at the first collection, so a node that
 * serves nothing keeps its smallest size.
 */
export class IdleTrimmer {
  private left = 0;
  /** undefined until first needed; null when this runtime will not expose it. */
  private gc: Collect | null | undefined = undefined;

  constructor(private readonly log: (message: string) => void = () => {}) {}

  check(idle: boolean): void {
    if (!idle) {
      this.left = IDLE_TRIM_COLLECTIONS;
      return;
    }
    if (this.left === 0) return;
    this.left--;
    if (this.gc === undefined) {
      this.gc = collector();
      if (this.gc === null) this.log("idle trim off: V8's gc extension is not available in this runtime");
    }
    if (this.gc === null) return;
    this.gc({ type: "minor", execution: "sync" });
    collections++;
  }
}

export interface IdleTrim {
  stop(): void;
}

/**
 * Starts the idle check on the IO thread, whose event loop runs timers: idle
 * is under IDLE_TRIM_MAX_UTILIZATION of the interval spent in callbacks. A
 * shard worker blocks in its ring's wait instead, and tells its own trimmer
 * from its loop (src/shard/worker.ts). `log` hears once if the trim cannot run.
 */
export function startIdleTrim(log: (message: string) => void): IdleTrim {
  const trimmer = new IdleTrimmer(log);
  let last = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    trimmer.check(performance.eventLoopUtilization(now, last).utilization < IDLE_TRIM_MAX_UTILIZATION);
    last = now;
  }, IDLE_TRIM_CHECK_MS);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
