/**
 * One tick of the active expiry sweep, for the hosts of a ShardCore: the
 * shard worker's loop (worker.ts) and the inline backend's timer
 * (io/shards.ts). Runs every EXPIRE_SWEEP_INTERVAL_MS.
 *
 * Redis's activeExpireCycle, made deterministic where it matters: the first
 * step always examines the next EXPIRE_SWEEP_SAMPLE_COUNT keys of the
 * shard's expiry list (every key with a TTL, none without), so the pace
 * stated in limits.ts holds however busy the machine is, once the tick
 * runs. Further steps follow while a step found more than a quarter of its
 * sample expired (a backlog worth the effort), until EXPIRE_SWEEP_BUDGET_MS
 * of this tick is spent: extra effort is bounded by time, as in Redis, so a
 * mass expiry cannot stall the shard's requests.
 *
 * The tick also takes a step of the index's incremental rebuild when one is
 * running (REBUILD_TICK_SLOTS, decision 0053), so that a build a load left
 * unfinished ends while the shard is idle. Only single-node shards tick
 * here: a cluster partition's map changes only by its Raft log, so that
 * every replica lays its index out alike.
 */
import { EXPIRE_SWEEP_BUDGET_MS, EXPIRE_SWEEP_SAMPLE_COUNT, REBUILD_TICK_SLOTS } from "../limits.js";
import type { ShardCore } from "./execute.js";

const monotonicMs = (): number => performance.now();

/** Runs one tick at `nowMs` (the expiry clock); returns the keys removed. `clock` measures the budget. */
export function sweepTick(core: ShardCore, nowMs: number, clock: () => number = monotonicMs): number {
  const started = clock();
  core.store.rebuildStep(REBUILD_TICK_SLOTS);
  let removed = 0;
  for (;;) {
    const step = core.sweep(nowMs, EXPIRE_SWEEP_SAMPLE_COUNT);
    removed += step;
    if (step * 4 <= EXPIRE_SWEEP_SAMPLE_COUNT) return removed;
    if (clock() - started >= EXPIRE_SWEEP_BUDGET_MS) return removed;
  }
}
