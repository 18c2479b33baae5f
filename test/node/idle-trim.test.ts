// Memory given back when the node goes idle (src/idle-trim.ts, decision
// 0299): a real node as `npm start` starts it (durable, the default layout)
// takes a pipelined load, then sits idle; its IO thread runs its young-
// generation collections (INFO memory's piccolo_idle_collections reaches
// IDLE_TRIM_COLLECTIONS and stays there), V8's heap is no larger than right
// after the load (smaller, when the load had grown it), and every key is
// still there.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { IDLE_TRIM_CHECK_MS, IDLE_TRIM_COLLECTIONS } from "../../src/limits.js";
import { type RunningNode, startNode } from "../support/node.js";
import { cmd, exchange } from "../resp/support.js";

const KEYS = 200_000;
const BATCH = 20_000;

/** INFO memory's fields as numbers. */
async function memory(port: number): Promise<Record<string, number>> {
  const r = await exchange(port, cmd("INFO", "memory"), (s) => s.endsWith("\r\n") && s.includes("maxmemory_policy"));
  const out: Record<string, number> = {};
  for (const line of r.split("\r\n")) {
    const [k, v] = line.split(":");
    if (k !== undefined && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

describe("the idle trim", () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode();
  });
  after(async () => {
    await node.kill();
  });

  it("after a load, an idle node collects its young generation a few times, then stops; nothing is lost", async () => {
    const start = await memory(node.respPort);
    const value = "v".repeat(64);
    for (let start = 0; start < KEYS; start += BATCH) {
      const parts: Buffer[] = [];
      for (let i = start; i < start + BATCH; i++) parts.push(cmd("SET", `idle:${String(i).padStart(12, "0")}`, value));
      const expected = BATCH * "+OK\r\n".length;
      const r = await exchange(node.respPort, Buffer.concat(parts), (s) => s.length >= expected);
      assert.equal(r, "+OK\r\n".repeat(BATCH));
    }
    const loaded = await memory(node.respPort);
    // Idle: the trim's checks run every IDLE_TRIM_CHECK_MS; give it its collections and some slack.
    const deadline = Date.now() + (IDLE_TRIM_COLLECTIONS + 4) * IDLE_TRIM_CHECK_MS;
    let m = loaded;
    while (Date.now() < deadline && (m.piccolo_idle_collections ?? 0) < IDLE_TRIM_COLLECTIONS) {
      await sleep(500);
      m = await memory(node.respPort);
    }
    assert.equal(m.piccolo_idle_collections, IDLE_TRIM_COLLECTIONS, JSON.stringify(m));
    // Once used up, no more until the node has been busy again: the count holds across two more checks.
    await sleep(2 * IDLE_TRIM_CHECK_MS + 200);
    const later = await memory(node.respPort);
    assert.equal(later.piccolo_idle_collections, IDLE_TRIM_COLLECTIONS);
    const [before, grown, trimmed] = [start, loaded, later].map((x) => x.piccolo_heap_total!) as [
      number,
      number,
      number,
    ];
    const heaps = `V8 heap: ${before} at start, ${grown} after the load, ${trimmed} idle`;
    assert.ok(trimmed <= grown, heaps);
    // Where the load grew the young generation (it does on Node 20: 17 -> 29 MB here), V8 gave it back.
    if (grown > before + 8 * 1024 * 1024) assert.ok(trimmed < grown - 4 * 1024 * 1024, heaps);
    const check = await exchange(node.respPort, cmd("DBSIZE"), (s) => s.endsWith("\r\n"));
    assert.equal(check, `:${KEYS}\r\n`);
  });
});
