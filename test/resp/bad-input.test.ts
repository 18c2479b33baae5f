// Broken RESP streams on raw sockets: each gets Redis's error reply and only
// that connection is closed; a bystander and its data are unaffected.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import { redisClient } from "./support.js";
import { type RunningNode, startNode } from "../support/node.js";

async function exchange(
  port: number,
  payload: Buffer | string,
  halfClose = false,
): Promise<{ reply: string; closed: boolean }> {
  const s = connect({ host: "127.0.0.1", port });
  await new Promise((r) => s.once("connect", r));
  let reply = "";
  let closed = false;
  s.on("data", (d: Buffer) => {
    reply += d.toString("latin1");
  });
  s.on("error", () => {});
  const done = new Promise<void>((r) => s.once("close", () => r()));
  if (halfClose) s.end(payload);
  else s.write(payload);
  await Promise.race([done.then(() => (closed = true)), new Promise((r) => setTimeout(r, 1500))]);
  s.destroy();
  return { reply, closed };
}

describe("bad input on the Redis port", () => {
  let node: RunningNode;
  let bystander: Redis;
  before(async () => {
    node = await startNode(["--shards", "2", "--max-value-bytes", "1024"]);
    bystander = redisClient({ port: node.respPort });
    await bystander.set("witness", "here");
  });
  after(async () => {
    assert.equal(await bystander.get("witness"), "here");
    bystander.disconnect();
    assert.equal(await node.stop(), 0);
  });

  const fatal: [string, string | Buffer, RegExp][] = [
    ["malformed multibulk length", "*x\r\n", /^-ERR Protocol error: invalid multibulk length\r\n$/],
    ["'$' expected", "*1\r\n:5\r\n", /^-ERR Protocol error: expected '\$', got ':'\r\n$/],
    ["bulk length over the limit", "*2\r\n$3\r\nGET\r\n$99999\r\n", /^-ERR Protocol error: invalid bulk length\r\n$/],
    ["unbalanced quotes inline", 'SET "oops\r\n', /^-ERR Protocol error: unbalanced quotes in request\r\n$/],
    ["inline line over 64 KiB", Buffer.alloc(70_000, 65), /^-ERR Protocol error: too big inline request\r\n$/],
  ];
  for (const [name, payload, re] of fatal) {
    it(`${name}: Redis's error, then that connection closes`, async () => {
      const { reply, closed } = await exchange(node.respPort, payload);
      assert.match(reply, re);
      assert.equal(closed, true);
      assert.equal(await bystander.ping(), "PONG");
    });
  }

  it("answers before the bad bytes still go out, in order", async () => {
    const { reply, closed } = await exchange(node.respPort, "PING\r\n*1\r\n$4\r\nPING\r\n*z\r\n");
    assert.equal(reply, "+PONG\r\n+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n");
    assert.equal(closed, true);
  });

  it("a truncated command then a half-close gets an error and a close", async () => {
    const { reply, closed } = await exchange(node.respPort, "*2\r\n$3\r\nGET\r\n$5\r\nab", true);
    assert.match(reply, /^-ERR Protocol error/);
    assert.equal(closed, true);
  });

  it("per-command errors keep the connection: unknown, arity, non-integer, oversize key", async () => {
    const r = redisClient({ port: node.respPort });
    await assert.rejects(r.call("nosuch"), /ERR unknown command 'nosuch'/);
    await assert.rejects(r.call("get"), /ERR wrong number of arguments for 'get' command/);
    await assert.rejects(r.call("expire", "k", "soon"), /ERR value is not an integer or out of range/);
    await assert.rejects(r.call("set", "", "v"), /ERR empty keys/);
    assert.equal(await r.ping(), "PONG");
    r.disconnect();
  });
});
