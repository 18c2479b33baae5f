// Misbehaving clients on the Redis port, against a node started with the
// default flags (one shard per core, 16 MiB values, 256 MiB output limit).
// Each story: the client gets Redis's error reply (when it reads), its
// connection is closed and the node logs which limit it hit; meanwhile
// another client keeps being served, and the node's peak RSS stays under the
// bound docs/architecture.md states (nodeMemoryBoundBytes in src/limits.ts).
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { defaultShards } from "../../src/node/config.js";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import {
  DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
  nodeMemoryBoundBytes,
  RESP_MAX_ARGS,
  respMaxQueryBytes,
} from "../../src/limits.js";
import { keepServing } from "../support/bystander.js";
import { eventually } from "../support/eventually.js";
import { MiB, mib, peakRssBytes, resetPeakRss, settledRss } from "../support/memory.js";
import { type RunningNode, startNode } from "../support/node.js";
import { redisClient } from "./support.js";

const V = DEFAULT_MAX_VALUE_BYTES;

/** A raw connection that reads what the node answers (up to 4 KiB kept) and notices the close. */
async function open(port: number): Promise<{ s: Socket; reply: () => string; closed: Promise<void> }> {
  const s = connect({ host: "127.0.0.1", port });
  s.on("error", () => {}); // EPIPE/ECONNRESET once the node has closed: the close is what we check
  await new Promise((r) => s.once("connect", r));
  let reply = "";
  s.on("data", (d: Buffer) => {
    if (reply.length < 4096) reply += d.toString("latin1");
  });
  const closed = new Promise<void>((r) => s.once("close", () => r()));
  return { s, reply: () => reply, closed };
}

/** Writes `head`, then `unit` over and over (as fast as the socket takes it) until the node closes the connection. */
async function flood(port: number, head: Buffer | string, unit: Buffer): Promise<string> {
  const c = await open(port);
  let done = false;
  void c.closed.then(() => (done = true));
  c.s.write(head);
  const pump = (): void => {
    while (!done && c.s.write(unit));
    if (!done) c.s.once("drain", pump);
  };
  pump();
  await Promise.race([
    c.closed,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error("the node did not close the connection in 60 s")), 60_000),
    ),
  ]);
  return c.reply();
}

describe("memory limits on the Redis port (default flags)", () => {
  let node: RunningNode;
  let bystander: Redis;
  let baseline = 0;

  before(async () => {
    node = await startNode();
    bystander = redisClient({ port: node.respPort });
    await bystander.set("witness", "here");
    await bystander.set("big", Buffer.alloc(MiB, 7)); // the 1 MiB value of the pipelining story
    baseline = await settledRss(node.process.pid!);
  });
  after(async () => {
    assert.equal(await bystander.get("witness"), "here");
    bystander.disconnect();
    assert.equal(await node.stop(), 0);
  });

  /** Runs `misbehave` while a second client keeps being served; checks the peak RSS against the stated bound. */
  async function whileServing(
    t: { diagnostic(m: string): void },
    misbehave: () => Promise<void>,
    minServed = 1,
  ): Promise<void> {
    const pid = node.process.pid!;
    resetPeakRss(pid);
    const other = keepServing(async (i) => {
      await bystander.set(`other:${i % 10}`, `v${i}`);
      assert.equal(await bystander.get(`other:${i % 10}`), `v${i}`);
    });
    await misbehave();
    const served = await other.stop();
    assert.ok(served >= minServed, `the other client was served meanwhile (${served} of at least ${minServed})`);
    const peak = peakRssBytes(pid);
    const bound = nodeMemoryBoundBytes({
      baselineBytes: baseline,
      dataBytes: 2 * MiB,
      shards: defaultShards(),
      idleConnections: 0,
      nativeConnections: 0,
      respConnections: 2, // the misbehaving client and the other one
      maxValueBytes: V,
      clientOutputLimitBytes: DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES,
    });
    t.diagnostic(
      `peak RSS ${mib(peak)} (baseline ${mib(baseline)}), bound ${mib(bound)}; other client served ${served}x`,
    );
    assert.ok(peak <= bound, `peak RSS ${mib(peak)} is over the stated bound ${mib(bound)}`);
  }

  const junk = Buffer.alloc(64 * 1024, 97);

  it("endless bulk data after a bulk at the value limit: Redis's error, then the connection closes", async (t) => {
    await whileServing(t, async () => {
      const reply = await flood(node.respPort, `*1\r\n$${V}\r\n`, junk);
      assert.equal(reply, "-ERR Protocol error: expected '\\r\\n' after bulk data\r\n");
    });
  });

  it("a bulk length over the value limit is refused from its header, logged", async (t) => {
    await whileServing(t, async () => {
      const reply = await flood(node.respPort, `*1\r\n$${V + 1}\r\n`, junk);
      assert.equal(reply, "-ERR Protocol error: invalid bulk length\r\n");
    });
    await eventually("the node logs the limit", async () => assert.match(node.stderr(), /"limit":"resp-bulk"/), 5000);
  });

  it("a multibulk header claiming 1,048,576 arguments is refused from its header, logged", async (t) => {
    assert.ok(1024 * 1024 > RESP_MAX_ARGS);
    await whileServing(t, async () => {
      const reply = await flood(node.respPort, "*1048576\r\n", Buffer.from("$1\r\nx\r\n".repeat(8192)));
      assert.equal(reply, "-ERR Protocol error: invalid multibulk length\r\n");
    });
    await eventually("the node logs the limit", async () => assert.match(node.stderr(), /"limit":"resp-args"/), 5000);
  });

  it("a command larger than the query buffer limit (five 16 MiB arguments) is refused once it passes it, logged", async (t) => {
    const limit = respMaxQueryBytes(V);
    assert.ok(5 * V > limit && 4 * V <= limit + 1024, "four values fit, five do not");
    await whileServing(t, async () => {
      const arg = Buffer.concat([Buffer.from(`$${V}\r\n`), Buffer.alloc(V, 98), Buffer.from("\r\n")]);
      const reply = await flood(node.respPort, "*5\r\n", arg);
      assert.match(reply, /^-ERR Protocol error: command too large \(\d+ bytes; the limit is 67108864\)\r\n$/);
    });
    await eventually(
      "the node logs the limit",
      async () => assert.match(node.stderr(), /"limit":"resp-query-buffer"/),
      5000,
    );
  });

  it("100,000 pipelined GETs of a 1 MiB value, not read: held at the soft limit while others are served; read, they all come", async (t) => {
    await whileServing(
      t,
      async () => {
        const s = connect({ host: "127.0.0.1", port: node.respPort });
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        s.pause(); // reads nothing, for now
        const get = Buffer.from("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
        s.write(Buffer.concat(Array<Buffer>(100_000).fill(get)));
        // The dispatch window keeps its 1 MiB answers to a handful in the rings at a time, and the
        // connection stops taking requests at the soft limit: no cut, no flood ahead of the others.
        await sleep(5_000);
        assert.equal(s.destroyed, false);
        assert.doesNotMatch(node.stderr(), /"limit":"client-output-limit"/);
        // It reads now, and the rest of its pipeline is served: 64 answers of 1 MiB, in order.
        const want = 64 * (MiB + "$1048576\r\n\r\n".length);
        let got = 0;
        let head = "";
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`only ${got} bytes of answers in 60 s`)), 60_000);
          s.on("data", (d: Buffer) => {
            if (head.length < 16) head += d.toString("latin1", 0, 16);
            got += d.length;
            if (got >= want) {
              clearTimeout(timer);
              resolve();
            }
          });
          s.resume();
        });
        assert.match(head, /^\$1048576\r\n/, "the answers it asked for");
        s.destroy();
      },
      // Served while the pipeline waits: at least one set-and-get every 500 ms (the flood used to hold
      // every other client's commands behind thousands of 1 MiB answers for tens of seconds).
      10,
    );
  });

  it("an MGET of a thousand 1 MiB values, never read: the connection is closed at the output limit", async (t) => {
    await whileServing(t, async () => {
      const c = await open(node.respPort);
      c.s.pause(); // never reads
      const keys = Array<string>(1000).fill("big");
      c.s.write(`*${keys.length + 1}\r\n$4\r\nMGET\r\n${keys.map((k) => `$${k.length}\r\n${k}\r\n`).join("")}`);
      await eventually(
        "the node closes it over its output limit",
        async () => assert.match(node.stderr(), /"limit":"client-output-limit"/),
        60_000,
        100,
      );
      c.s.resume();
      await Promise.race([
        c.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error("still open 20 s after the cut")), 20_000)),
      ]);
    });
  });
});
