// Watches below the protocols: real shard worker threads keeping their
// change histories (src/shard/history.ts), parked reads (watch-reads.ts),
// and the IO thread's Watch (src/io/watch.ts) following every shard.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ErrorCode } from "../../src/errors.js";
import { Dispatcher, InFlight, type RequestOwner } from "../../src/io/dispatch.js";
import { initRouting } from "../../src/io/route.js";
import { type Durability, InlineShards, type ShardBackend, ThreadedShards } from "../../src/io/shards.js";
import { parsePosition, Watch, type WatchSink } from "../../src/io/watch.js";
import { Op, type Result } from "../../src/shard/command.js";
import { type Change, ChangeType } from "../../src/shard/history.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const owner: RequestOwner = { requestDone() {}, charge() {}, gone: false };

class OneReq extends InFlight {
  constructor(private readonly done: (status: number) => void) {
    super(owner);
  }
  onResult(_part: number, r: Result): void {
    this.done(r.status);
  }
}

interface Node {
  d: Dispatcher;
  backend: ShardBackend;
  write(op: Op, key: string, value?: string, expireAtMs?: number): Promise<number>;
  close(): Promise<void>;
}

async function start(
  kind: "threaded" | "inline",
  durability: Durability | null,
  historyBytes = 16 * 1024 * 1024,
): Promise<Node> {
  await initRouting();
  const d = new Dispatcher();
  const events = { onResult: (r: Result) => d.onResult(r), onBatchEnd() {}, onDrain() {}, onLog() {} };
  const backend =
    kind === "threaded"
      ? new ThreadedShards(2, events, false, durability, historyBytes)
      : new InlineShards(events, durability, historyBytes);
  d.backend = backend;
  d.onSentLater = () => backend.flush();
  await backend.ready!();
  return {
    d,
    backend,
    write(op, key, value, expireAtMs = 0) {
      return new Promise((resolve) => {
        const c = d.begin(op, Date.now());
        c.value = value === undefined ? null : enc.encode(value);
        c.expireAtMs = expireAtMs;
        d.sendKey(new OneReq(resolve), 0, enc.encode(key));
        backend.flush();
      });
    },
    close: () => backend.close(),
  };
}

/** A sink that records what arrives, and can be made "not ready" (a client that does not read). */
class Collect implements WatchSink {
  events: { type: number; key: string; value: string | null; version: number }[] = [];
  position = "";
  createdAt = "";
  endedWith: { code: number; position: string } | null = null;
  ready = true;
  private waiters: (() => void)[] = [];
  changes(changes: Change[], position: string): void {
    for (const c of changes)
      this.events.push({
        type: c.type,
        key: dec.decode(c.key),
        value: c.value === null ? null : dec.decode(c.value),
        version: c.version,
      });
    this.position = position;
    this.wake();
  }
  created(position: string): void {
    this.createdAt = position;
    this.position = position;
    this.wake();
  }
  ended(code: number, _message: string, position: string): void {
    this.endedWith = { code, position };
    this.wake();
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  async until(check: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
}

function watch(node: Node, prefix: string, from: number[] | null, sink: Collect, exact = false): Watch {
  const w = new Watch(owner, node.d, enc.encode(prefix), exact, from, sink);
  w.start();
  node.backend.flush();
  return w;
}

function durable(): Durability {
  const root = mkdtempSync(join(tmpdir(), "piccolo-watch-"));
  roots.push(root);
  return { shardDir: (s) => join(root, `shard-${s}`), fsync: "everysec", snapshotLogBytes: 64 * 1024 * 1024 };
}

for (const layout of [
  { name: "two shard workers, in memory", kind: "threaded" as const, durability: () => null },
  { name: "two shard workers, durable", kind: "threaded" as const, durability: durable },
  { name: "inline, durable", kind: "inline" as const, durability: durable },
]) {
  describe(`watches, ${layout.name}`, () => {
    it("a prefix watch gets every put, delete and expiry under it, in each key's order, and nothing else", async () => {
      const node = await start(layout.kind, layout.durability());
      try {
        const sink = new Collect();
        watch(node, "user:", null, sink);
        await sink.until(() => sink.createdAt !== "", "the watch to be created");
        for (let i = 0; i < 20; i++) await node.write(Op.PUT, `user:${i % 5}`, `v${i}`);
        await node.write(Op.PUT, "other:1", "not watched");
        await node.write(Op.DELETE, "user:0");
        await node.write(Op.PUT, "user:ttl", "short", Date.now() + 50);
        await sink.until(
          () => sink.events.some((e) => e.type === ChangeType.EXPIRED && e.key === "user:ttl"),
          "the expiry of user:ttl (the sweep, within a few ticks)",
        );
        assert.ok(
          sink.events.every((e) => e.key.startsWith("user:")),
          "only keys under the prefix",
        );
        for (let k = 0; k < 5; k++) {
          const puts = sink.events.filter((e) => e.key === `user:${k}` && e.type === ChangeType.PUT);
          assert.deepEqual(
            puts.map((e) => e.value),
            [0, 1, 2, 3].map((j) => `v${j * 5 + k}`),
            `user:${k}'s puts in order`,
          );
          for (let j = 1; j < puts.length; j++) assert.ok(puts[j]!.version > puts[j - 1]!.version);
        }
        const u0 = sink.events.filter((e) => e.key === "user:0").map((e) => e.type);
        assert.equal(u0[u0.length - 1], ChangeType.DELETE);
      } finally {
        await node.close();
      }
    });

    it("resuming from a position misses nothing and repeats nothing; an old run's position is COMPACTED", async () => {
      const node = await start(layout.kind, layout.durability());
      try {
        const first = new Collect();
        const w = watch(node, "k", null, first);
        await first.until(() => first.createdAt !== "", "created");
        for (let i = 0; i < 10; i++) await node.write(Op.PUT, `k${i}`, `a${i}`);
        await first.until(() => first.events.length === 10, "ten events");
        w.cancel(); // the watcher goes away; writes go on
        const resumeFrom = first.position;
        for (let i = 0; i < 10; i++) await node.write(Op.PUT, `k${i}`, `b${i}`);
        const second = new Collect();
        const seqs = parsePosition(resumeFrom, node.d.startedMs.toString(36), node.d.shardCount);
        assert.ok(seqs !== null);
        watch(node, "k", seqs, second);
        await second.until(() => second.events.length >= 10, "the ten missed events");
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(
          second.events.map((e) => e.value).sort(),
          Array.from({ length: 10 }, (_, i) => `b${i}`).sort(),
          "exactly the changes after the position",
        );
        const stale = new Collect();
        watch(node, "k", new Array(node.d.shardCount).fill(1_000_000), stale);
        await stale.until(() => stale.endedWith !== null, "the end of a watch from a position never handed out");
        assert.equal(stale.endedWith!.code, ErrorCode.COMPACTED);
        assert.ok(parsePosition(stale.endedWith!.position, node.d.startedMs.toString(36), node.d.shardCount));
      } finally {
        await node.close();
      }
    });

    it("a key watched alone; a watcher that does not read is never buffered for, and is cut off COMPACTED once the history moves past it", async () => {
      const node = await start(layout.kind, layout.durability(), 300 * 1024);
      try {
        const one = new Collect();
        watch(node, "exact", null, one, true);
        const slow = new Collect();
        watch(node, "", null, slow);
        await one.until(() => one.createdAt !== "", "created");
        await slow.until(() => slow.createdAt !== "", "created");
        slow.ready = false;
        await node.write(Op.PUT, "exactly-not", "x");
        await node.write(Op.PUT, "exact", "1");
        await one.until(() => one.events.length === 1, "the exact key's put");
        assert.equal(one.events[0]!.key, "exact");
        const seen = slow.events.length;
        // 300 KiB of history per shard, chunks of 256 KiB: 2 MB of changes push its position out.
        const big = "v".repeat(1000);
        for (let i = 0; i < 2000; i++) await node.write(Op.PUT, `fill:${i}`, big);
        assert.ok(slow.events.length <= seen + 1, "nothing delivered to a sink that is not ready");
        slow.ready = true;
        await slow.until(() => slow.endedWith !== null, "the slow watcher to be cut off");
        assert.equal(slow.endedWith!.code, ErrorCode.COMPACTED);
      } finally {
        await node.close();
      }
    });
  });
}
