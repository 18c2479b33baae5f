// Retrying an operation through a bounded window: a cluster may be electing a
// leader, or a member catching up, when a test asks. The last error is kept,
// so a test that gives up says why.
import { setTimeout as sleep } from "node:timers/promises";

/** f's value once it stops throwing, or an error naming `what` after `ms`. */
export async function eventually<T>(what: string, f: () => Promise<T>, ms = 10_000, everyMs = 50): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      return await f();
    } catch (err) {
      last = err;
      await sleep(everyMs);
    }
  }
  throw new Error(`${what}: ${(last as Error)?.message}`);
}
