// Taking events from a client watch in tests.
import assert from "node:assert/strict";
import type { WatchEvent, Watcher } from "../../src/client/client.js";

/** Takes `n` events from the watcher, failing (and cancelling the watch) if they do not come within `ms`. */
export async function take(w: Watcher, n: number, ms = 10_000): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  if (n === 0) return out;
  const it = w[Symbol.asyncIterator]();
  const deadline = setTimeout(() => void w.cancel(), ms);
  try {
    while (out.length < n) {
      const r = await it.next();
      if (r.done) break;
      out.push(r.value);
    }
  } finally {
    clearTimeout(deadline);
  }
  assert.equal(out.length, n, `expected ${n} events within ${ms} ms`);
  return out;
}
