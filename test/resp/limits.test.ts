// Misbehaving clients on the Redis port, against a node started with the
// default flags (one shard per core, 16 MiB values, 256 MiB output limit).
// Each story: the client gets Redis's error reply (when it reads), its
// connection is closed and the node logs which limit it hit; meanwhile
// another client keeps being served, and the node's peak RSS stays under the
// bound docs/architecture.md states (nodeMemoryBoundBytes in src/limits.ts).
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { availableParallelism } from "node:os";
import { after, before, describe, it } from "node:test";
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
  async function whileServing(t: { diagnostic(m: string): void }, misbehave: () => Promise<void>): Promise<void> {
    const pid = node.process.pid!;
    resetPeakRss(pid);
    const other = keepServing(async (i) => {
      await bystander.set(`other:${i % 10}`, `v${i}`);
      assert.equal(await bystander.get(`other:${i % 10}`), `v${i}`);
    });
    await misbehave();
    const served = await other.stop();
    assert.ok(served > 0, "the other client was served meanwhile");
    const peak = peakRssBytes(pid);
    const bound = nodeMemoryBoundBytes({
      baselineBytes: baseline,
      dataBytes: 2 * MiB,
      shards: availableParallelism(),
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

  it("100,000 pipelined GETs of a 1 MiB value, never read: the connection is closed at the output limit", async (t) => {
    await whileServing(t, async () => {
      const c = await open(node.respPort);
      c.s.pause(); // never reads
      const get = Buffer.from("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
      c.s.write(Buffer.concat(Array<Buffer>(100_000).fill(get)));
      await eventually(
        "the node closes it over its output limit",
        async () => assert.match(node.stderr(), /"limit":"client-output-limit"/),
        60_000,
        100,
      );
      // The client reads now: what the kernel held for it, then the end of the connection.
      c.s.resume();
      await Promise.race([
        c.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error("still open 20 s after the cut")), 20_000)),
      ]);
      assert.match(c.reply(), /^\$1048576\r\n/, "what it did receive are the answers it asked for");
    });
  });
});
