// Misbehaving clients on the native port, and crowds of idle ones on both
// ports, against a node started with the default flags. Each story: the
// misbehaving client is cut off (and the node logs which limit it hit), the
// node's peak RSS stays under the bound docs/architecture.md states
// (nodeMemoryBoundBytes in src/limits.ts), and meanwhile another client
// keeps being served.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { defaultShards } from "../../src/node/config.js";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import * as capnp from "capnp-es";
import { encodeGetRequest } from "../../src/client/hot-wire.js";
import type { PiccoloClient } from "../../src/client/client.js";
import {
  DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
  FRAME_INITIAL_BYTES,
  maxFrameBytes,
  nodeMemoryBoundBytes,
} from "../../src/limits.js";
import { keepServing } from "../support/bystander.js";
import { eventually } from "../support/eventually.js";
import { MiB, mib, peakRssBytes, resetPeakRss, settledRss, virtualBytes } from "../support/memory.js";
import { type RunningNode, startNode } from "../support/node.js";
import { Request } from "../../src/protocol/gen/piccolo.js";

const V = DEFAULT_MAX_VALUE_BYTES;

/** Opens `n` raw connections to `port`, a few hundred at a time (the listen backlog is finite). */
async function openMany(port: number, n: number): Promise<Socket[]> {
  const all: Socket[] = [];
  for (let i = 0; i < n; i += 250) {
    const batch = Array.from({ length: Math.min(250, n - i) }, () => {
      const s = connect({ host: "127.0.0.1", port });
      s.on("error", () => {});
      return new Promise<Socket>((resolve, reject) => {
        s.once("connect", () => resolve(s));
        s.once("error", reject);
      });
    });
    all.push(...(await Promise.all(batch)));
  }
  return all;
}

/** A header that claims a frame of `bytes` (one segment), and nothing else. */
function frameHeader(bytes: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(0, 0); // one segment
  b.writeUInt32LE((bytes - 8) / 8, 4); // of this many words
  return b;
}

describe("memory limits on the native port (default flags)", () => {
  let node: RunningNode;
  let bystander: PiccoloClient;
  let baseline = 0;

  before(async () => {
    node = await startNode();
    bystander = await node.client({ timeoutMs: 120_000 });
    await bystander.put("witness", "here");
    await bystander.put("big", Buffer.alloc(MiB, 7));
    baseline = await settledRss(node.process.pid!);
  });
  after(async () => {
    assert.equal((await bystander.get("witness"))?.value.toString(), "here");
    await bystander.close();
    assert.equal(await node.stop(), 0);
  });

  /** Runs `misbehave` while a second client keeps being served; checks the peak RSS against the stated bound. */
  async function whileServing(
    t: { diagnostic(m: string): void },
    active: { native?: number; resp?: number; idle?: number },
    misbehave: () => Promise<void>,
    minServed = 1,
  ): Promise<void> {
    const pid = node.process.pid!;
    resetPeakRss(pid);
    const other = keepServing(async (i) => {
      await bystander.put(`other:${i % 10}`, `v${i}`);
      assert.equal((await bystander.get(`other:${i % 10}`))?.value.toString(), `v${i}`);
    });
    await misbehave();
    const served = await other.stop();
    assert.ok(served >= minServed, `the other client was served meanwhile (${served} of at least ${minServed})`);
    const peak = peakRssBytes(pid);
    const bound = nodeMemoryBoundBytes({
      baselineBytes: baseline,
      dataBytes: 2 * MiB,
      shards: defaultShards(),
      idleConnections: active.idle ?? 0,
      nativeConnections: 1 + (active.native ?? 0), // the other client, and the misbehaving ones
      respConnections: active.resp ?? 0,
      maxValueBytes: V,
      clientOutputLimitBytes: DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES,
    });
    t.diagnostic(
      `peak RSS ${mib(peak)} (baseline ${mib(baseline)}), bound ${mib(bound)}; other client served ${served}x`,
    );
    assert.ok(peak <= bound, `peak RSS ${mib(peak)} is over the stated bound ${mib(bound)}`);
  }

  it("100,000 pipelined GETs of a 1 MiB value, not read: held at the soft limit while others are served; read, they come", async (t) => {
    await whileServing(
      t,
      { native: 1 },
      async () => {
        const s = connect({ host: "127.0.0.1", port: node.port });
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        s.pause(); // reads nothing, for now
        const key = Buffer.from("big");
        const frames: Uint8Array[] = [];
        for (let i = 1; i <= 100_000; i++) frames.push(encodeGetRequest(i, key, false));
        s.write(Buffer.concat(frames));
        await sleep(5_000);
        assert.equal(s.destroyed, false);
        assert.doesNotMatch(node.stderr(), /"limit":"client-output-limit"/);
        // It reads now, and the rest of its pipeline is served: 64 MiB of answers.
        let got = 0;
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`only ${got} bytes of answers in 60 s`)), 60_000);
          s.on("data", (d: Buffer) => {
            got += d.length;
            if (got >= 64 * MiB) {
              clearTimeout(timer);
              resolve();
            }
          });
          s.resume();
        });
        s.destroy();
      },
      10, // at least one put-and-get every 500 ms while the pipeline waits
    );
  });

  it("an mget of a thousand 1 MiB values, never read: the connection is closed at the output limit", async (t) => {
    await whileServing(t, { native: 1 }, async () => {
      const s = connect({ host: "127.0.0.1", port: node.port });
      s.on("error", () => {});
      await new Promise((r) => s.once("connect", r));
      s.pause(); // never reads
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      const m = new capnp.Message();
      const r = m.initRoot(Request);
      r.id = 1n;
      const list = r._initMget()._initKeys(1000);
      for (let i = 0; i < 1000; i++) list[i]!._initKey(3).copyBuffer(Buffer.from("big"));
      s.write(new Uint8Array(m.toArrayBuffer()));
      await eventually(
        "the node closes it over its output limit",
        async () => assert.match(node.stderr(), /"limit":"client-output-limit"/),
        60_000,
        100,
      );
      s.resume(); // reads what the kernel held for it, then meets the end of the connection
      await Promise.race([
        closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error("still open 20 s after the cut")), 20_000)),
      ]);
    });
  });

  it("200 connections each sending a header that claims a 16 MiB frame, then 1 KiB: the node allocates for what arrived", async (t) => {
    const F = maxFrameBytes(V);
    const claimed = F - (F % 8);
    const n = 200;
    let grewBy = 0;
    await whileServing(t, { native: n }, async () => {
      const socks = await openMany(node.port, n);
      await new Promise((r) => setTimeout(r, 500));
      // Virtual size, not RSS: a 16 MiB buffer of which 1 KiB is written costs one page of RSS, but is allocated.
      const before = virtualBytes(node.process.pid!);
      for (const s of socks) s.write(Buffer.concat([frameHeader(claimed), Buffer.alloc(1024)]));
      await new Promise((r) => setTimeout(r, 1500));
      grewBy = virtualBytes(node.process.pid!) - before;
      assert.ok(
        socks.every((s) => !s.destroyed),
        "a frame under the limit is waited for, not refused",
      );
      for (const s of socks) s.destroy();
    });
    t.diagnostic(`virtual size grew by ${mib(grewBy)} for ${n} frames claiming ${mib(claimed)} each`);
    // Allocating the claims would be n x 16 MiB = 3.2 GiB; what arrived is n x 1 KiB, in first pieces of 64 KiB.
    assert.ok(grewBy < n * FRAME_INITIAL_BYTES * 2 + 64 * MiB, `virtual size grew by ${mib(grewBy)}`);
  });

  it("3,000 idle connections (1,500 native, 1,500 RESP, half of them after one PING): all held, RSS under the bound", async (t) => {
    const n = 1500;
    let native: Socket[] = [];
    let resp: Socket[] = [];
    await whileServing(t, { idle: 2 * n }, async () => {
      native = await openMany(node.port, n);
      resp = await openMany(node.respPort, n);
      for (const s of resp.slice(0, n / 2)) s.write("PING\r\n");
      await new Promise((r) => setTimeout(r, 2000));
      assert.ok(
        [...native, ...resp].every((s) => !s.destroyed),
        "every connection under the cap is kept",
      );
    });
    for (const s of [...native, ...resp]) s.destroy();
  });
});

describe("the connection cap (--max-connections 300)", () => {
  it("refuses the connections over it at once, logs it, and keeps serving those it holds", async () => {
    const node = await startNode(["--max-connections", "300"]);
    try {
      const c = await node.client({ timeoutMs: 10_000 }); // one of the 300
      const held = await openMany(node.port, 299);
      const extra = await openMany(node.port, 20);
      const closedAll = await Promise.all(
        extra.map(
          (s) =>
            new Promise<boolean>((resolve) => {
              if (s.destroyed) return resolve(true);
              s.once("close", () => resolve(true));
              setTimeout(() => resolve(false), 5000);
            }),
        ),
      );
      assert.ok(closedAll.every(Boolean), "every connection over the cap is closed");
      assert.ok(
        held.every((s) => !s.destroyed),
        "those under it are kept",
      );
      await c.put("k", "v");
      assert.equal((await c.get("k"))?.value.toString(), "v");
      await eventually("the node logs the cap", async () => {
        const lines = node.stderr().match(/"limit":"max-connections"/g) ?? [];
        assert.equal(lines.length, 1, "20 refusals in a moment: one line (rate-limited)");
      });
      for (const s of held) s.destroy();
      await c.close();
    } finally {
      await node.stop();
    }
  });
});

describe("the output soft limit over time (--client-output-stall-ms 2000)", () => {
  it("closes a client over the soft limit that reads nothing, and keeps one that reads slowly", async () => {
    const node = await startNode(["--client-output-stall-ms", "2000"]);
    try {
      const c = await node.client({ timeoutMs: 30_000 });
      await c.put("big", Buffer.alloc(MiB, 7));
      const gets = Buffer.from("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(40)); // 40 MiB of answers: over 8 MiB, under 256
      const open = async () => {
        const s = connect({ host: "127.0.0.1", port: node.respPort });
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        const closed = new Promise<void>((r) => s.once("close", () => r()));
        return { s, closed };
      };
      const stalled = await open();
      stalled.s.pause(); // reads nothing
      stalled.s.write(gets);
      const slow = await open();
      let read = 0;
      slow.s.on("data", (d: Buffer) => {
        read += d.length;
        slow.s.pause(); // one socket read every 200 ms: about 300 KiB/s
        setTimeout(() => slow.s.resume(), 200);
      });
      slow.s.write(gets);
      await eventually(
        "the node closes the client that reads nothing",
        async () => assert.match(node.stderr(), /"limit":"client-output-stall"/),
        15_000,
        100,
      );
      stalled.s.resume();
      await Promise.race([
        stalled.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error("still open 10 s after the cut")), 10_000)),
      ]);
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(slow.s.destroyed, false, "the slow reader keeps its connection");
      assert.ok(read > 0 && read < 40 * MiB, "and it was still reading");
      assert.equal((node.stderr().match(/"limit":"client-output-stall"/g) ?? []).length, 1, "one client was closed");
      slow.s.destroy();
      assert.equal((await c.get("big"))?.value.length, MiB, "and everyone else is served");
      await c.close();
    } finally {
      await node.stop();
    }
  });
});
