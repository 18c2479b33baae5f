// Watches over the native protocol (issue #16): real node processes, the
// real client's watch(). Every change under a prefix in each key's order;
// resuming after a disconnect with nothing missed or repeated; COMPACTED for
// a position the node no longer keeps (fallen behind, or from before a
// restart); a reader that stops reading; cancel; bad input.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient, WatchEvent, Watcher } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { SHUTDOWN_GRACE_MS } from "../../src/limits.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";
import { take } from "../support/watch.js";

async function rejectsWith(p: Promise<unknown>, code: number): Promise<PiccoloError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PiccoloError, `expected a PiccoloError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.message}`);
    return err;
  }
  assert.fail(`expected error code ${code}, but it succeeded`);
}

const summary = (e: WatchEvent) => `${e.kind} ${e.key.toString()}${e.value === null ? "" : `=${e.value.toString()}`}`;

for (const layout of [...LAYOUTS, { name: "default layout", args: [] as string[] }]) {
  describe(`native watch, ${layout.name}`, () => {
    let node: RunningNode;
    let c: PiccoloClient;
    before(async () => {
      node = await startNode(layout.args);
      c = await node.client();
    });
    after(async () => {
      await c.close();
      // The watches' parked shard reads are not answers a stop waits for (InFlight.openEnded): before,
      // a node that had served watches waited out the whole 5 s grace period after its clients had gone.
      const t0 = Date.now();
      assert.equal(await node.stop(), 0);
      const ms = Date.now() - t0;
      assert.ok(ms < SHUTDOWN_GRACE_MS, `stopped ${ms} ms after SIGTERM: it waited for the watches' parked reads`);
    });

    it("a prefix watch gets every put, delete and expiry under it, in order, with values and versions", async () => {
      const w = await c.watch("cfg:", { prefix: true });
      const a = await c.put("cfg:a", "1");
      await c.put("other", "x");
      const b = await c.put("cfg:b", "2");
      await c.put("cfg:a", "3");
      await c.delete("cfg:b");
      await c.put("cfg:ttl", "t", { ttlMs: 150 });
      // Five changes, then the TTL's expiry (the sweep removes it within a few 100 ms ticks).
      const events = await take(w, 6);
      const byKey = (k: string) => events.filter((e) => e.key.toString() === k).map(summary);
      assert.deepEqual(byKey("cfg:a"), ["put cfg:a=1", "put cfg:a=3"]);
      assert.deepEqual(byKey("cfg:b"), ["put cfg:b=2", "delete cfg:b"]);
      assert.deepEqual(byKey("cfg:ttl"), ["put cfg:ttl=t", "expired cfg:ttl"]);
      assert.equal(events.find((e) => e.key.toString() === "cfg:a")!.version, a);
      assert.equal(events.find((e) => e.key.toString() === "cfg:b")!.version, b);
      assert.ok(events.every((e) => e.key.toString().startsWith("cfg:")));
      await w.cancel();
    });

    it("resuming from the last position after a disconnect: nothing missed, nothing twice", async () => {
      const other = await node.client();
      const w = await other.watch("r:", { prefix: true });
      for (let i = 0; i < 10; i++) await c.put(`r:${i % 3}`, `a${i}`);
      const seen = await take(w, 10);
      const position = w.position;
      assert.equal(position, seen[9]!.position);
      await other.close(); // the watcher goes away
      for (let i = 0; i < 10; i++) await c.put(`r:${i % 3}`, `b${i}`);
      const again = await node.client();
      const resumed = await again.watch("r:", { prefix: true, from: position });
      const missed = await take(resumed, 10);
      assert.deepEqual(
        missed.map((e) => e.value!.toString()).sort(),
        Array.from({ length: 10 }, (_, i) => `b${i}`).sort(),
      );
      for (const k of ["r:0", "r:1", "r:2"]) {
        const values = missed.filter((e) => e.key.toString() === k).map((e) => e.value!.toString());
        const want = Array.from({ length: 10 }, (_, i) => i)
          .filter((i) => `r:${i % 3}` === k)
          .map((i) => `b${i}`);
        assert.deepEqual(values, want, `${k} in order`);
      }
      await c.put("r:x", "later");
      const [later] = await take(resumed, 1);
      assert.equal(summary(later!), "put r:x=later", "then the stream goes on live");
      await resumed.cancel();
      await again.close();
    });

    it("each event's own position: resuming from the middle of a batch gets the rest of it, once; a resumed watch is set up at once", async () => {
      const w = await c.watch("mid:", { prefix: true });
      // Pipelined: the node answers many of them in one frame.
      await Promise.all(Array.from({ length: 40 }, (_, i) => c.put(`mid:${i % 4}`, `v${i}`)));
      const first = await take(w, 40);
      await w.cancel();
      const cut = first[13]!;
      // A quiet node: every shard's read finds nothing new. Set up within a 3 s client timeout all the same.
      const quick = await node.client({ timeoutMs: 3000 });
      const resumed = await quick.watch("mid:", { prefix: true, from: cut.position });
      const rest = await take(resumed, 26);
      assert.deepEqual(
        rest.map((e) => `${e.key.toString()}=${e.value!.toString()}`).sort(),
        first
          .slice(14)
          .map((e) => `${e.key.toString()}=${e.value!.toString()}`)
          .sort(),
        "exactly the events after the 14th",
      );
      await resumed.cancel();
      await quick.close();
    });

    it("one key alone; cancel ends the iteration; other calls on the connection go on", async () => {
      const w = await c.watch("solo");
      await c.put("solo-not", "x");
      await c.put("solo", "1");
      const [e] = await take(w, 1);
      assert.equal(summary(e!), "put solo=1");
      await w.cancel();
      const rest: WatchEvent[] = [];
      for await (const x of w) rest.push(x);
      assert.deepEqual(rest, []);
      await c.put("solo", "2");
      assert.equal((await c.get("solo"))!.value.toString(), "2");
    });

    it("bad input: a garbage position, one from another run, too many watches", async () => {
      await rejectsWith(c.watch("k", { from: "not a position" }), ErrorCode.INVALID_ARGUMENT);
      const old = await rejectsWith(c.watch("k", { from: "zzzz.1,2,3" }), ErrorCode.COMPACTED);
      assert.match(old.message, /another run/);
      const extra = await node.client();
      const open: Watcher[] = [];
      for (let i = 0; i < 256; i++) open.push(await extra.watch(`many:${i}`));
      await rejectsWith(extra.watch("many:one-more"), ErrorCode.INVALID_ARGUMENT);
      await extra.close();
      await c.put("after-limits", "ok");
      assert.equal((await c.get("after-limits"))!.value.toString(), "ok", "the node and the connection go on");
    });
  });
}

describe("native watch: limits", () => {
  it("a watcher that stops reading is held back, not buffered for, and cut off COMPACTED once the history moves past it", async () => {
    const node = await startNode(["--watch-history-bytes", String(256 * 1024), "--shards", "2"]);
    try {
      const c = await node.client();
      const slowClient = await node.client();
      const slow = await slowClient.watch("", { prefix: true, maxBuffered: 100 });
      const big = "v".repeat(4000);
      // 24 MB of changes: more than the reader's 100 events, the connection's 8 MiB soft output limit
      // (past it the node stops asking the shards for more) and the shards' 256 KiB histories together.
      for (let i = 0; i < 6000; i += 100)
        await Promise.all(Array.from({ length: 100 }, (_, j) => c.put(`fill:${i + j}`, big)));
      let count = 0;
      const err = await rejectsWith(
        (async () => {
          for await (const _ of slow) count++;
        })(),
        ErrorCode.COMPACTED,
      );
      assert.ok(count < 6000, `it could not have received every change (got ${count})`);
      assert.match(err.message, /fell behind/);
      // What a watcher does next: watch from now, then read the keys again (the position it ended with
      // was current on every shard when the watch ended, but a slow reader sees it late).
      assert.match(slow.position, /^[0-9a-z]+\.\d+,\d+$/);
      const again = await c.watch("", { prefix: true });
      await c.put("after-cut", "x");
      const [next] = await take(again, 1);
      assert.equal(next!.key.toString(), "after-cut");
      await again.cancel();
      // The node kept serving everyone else meanwhile.
      assert.equal((await c.get("fill:5999"))!.value.length, 4000);
      await c.close();
      await slowClient.close();
    } finally {
      assert.equal(await node.stop(), 0);
    }
  });

  it("a position from before a restart is COMPACTED (the history lives in memory)", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "piccolo-watch-restart-"));
    try {
      let node = await startNode(["--data-dir", dir]);
      let c = await node.client();
      const w = await c.watch("k");
      await c.put("k", "1");
      await take(w, 1);
      const position = w.position;
      await c.close();
      assert.equal(await node.stop(), 0);
      node = await startNode(["--data-dir", dir]);
      c = await node.client();
      assert.equal((await c.get("k"))!.value.toString(), "1", "the data is durable");
      await rejectsWith(c.watch("k", { from: position }), ErrorCode.COMPACTED);
      await c.close();
      assert.equal(await node.stop(), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
