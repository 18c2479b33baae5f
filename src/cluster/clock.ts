/**
 * Time, passed in. The cluster's host code (the group host, the forwarder,
 * member liveness and rebalancing) reads the time and sets its timers only
 * through a Clock, never through Date.now or setTimeout directly, so that the
 * deterministic simulator (src/sim/kv-cluster.ts) can run that very code on
 * virtual time: TigerBeetle's simulator runs the real replica the same way,
 * with its clock, network and disk passed in. In the node the clock is
 * `realClock`, a thin layer over Node's own functions (no allocation of its
 * own: a timer costs what setTimeout costs).
 */

/** A timer handle, as setTimeout/setInterval return it; only the clock that made it can clear it. */
export type Timer = unknown;

export interface Clock {
  /** Wall-clock milliseconds (as Date.now): deadlines, and the time stamped on commands. */
  now(): number;
  /** A monotonic reading with sub-millisecond precision (as performance.now), for measuring durations. */
  preciseMs(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer): void;
  setInterval(fn: () => void, ms: number): Timer;
  clearInterval(timer: Timer): void;
}

/** Node's clock and timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  preciseMs: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t as NodeJS.Timeout),
};

/** Resolves after `ms` on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

/** The promise's value, or null once `deadline` (clock.now() milliseconds) passes first. */
export function withDeadline<T>(clock: Clock, p: Promise<T>, deadline: number): Promise<T | null> {
  return new Promise<T | null>((resolve, reject) => {
    const t = clock.setTimeout(() => resolve(null), Math.max(0, deadline - clock.now()));
    p.then(
      (v) => {
        clock.clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clock.clearTimeout(t);
        reject(e);
      },
    );
  });
}
