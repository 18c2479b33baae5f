// Real Redis clients against the Redis port: node-redis in RESP2 and RESP3,
// ioredis pipelines and reconnects, --requirepass, and redis-cli when it is
// installed.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { redisClient } from "./support.js";
import { createClient } from "redis";
import { type RunningNode, startNode } from "../support/node.js";

describe("Redis clients", () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode(["--shards", "2"]);
  });
  after(async () => {
    await node.stop();
  });

  for (const RESP of [2, 3] as const) {
    it(`node-redis, RESP${RESP}`, async () => {
      const c = createClient({ url: `redis://127.0.0.1:${node.respPort}`, RESP });
      c.on("error", () => {});
      await c.connect();
      assert.equal(await c.set(`nr${RESP}`, "v"), "OK");
      assert.equal(await c.get(`nr${RESP}`), "v");
      assert.equal(await c.get("absent"), null);
      assert.equal(await c.incr(`nr-n${RESP}`), 1);
      assert.deepEqual(await c.mGet([`nr${RESP}`, "absent"]), ["v", null]);
      assert.equal(await c.exists(`nr${RESP}`), 1);
      await c.expire(`nr${RESP}`, 100);
      assert.ok((await c.ttl(`nr${RESP}`)) > 90);
      await c.quit();
    });
  }

  it("ioredis: 1000 pipelined commands over many shards, replies in order", async () => {
    const r = redisClient({ port: node.respPort });
    const p = r.pipeline();
    for (let i = 0; i < 500; i++) p.set(`pipe:${i}`, String(i));
    for (let i = 0; i < 500; i++) p.get(`pipe:${i}`);
    const results = (await p.exec())!;
    assert.equal(results.length, 1000);
    for (let i = 0; i < 500; i++) {
      assert.deepEqual(results[i], [null, "OK"]);
      assert.deepEqual(results[500 + i], [null, String(i)]);
    }
    r.disconnect();
  });

  it("ioredis: a transaction runs (test/resp/transactions.test.ts has the rest)", async () => {
    const r = redisClient({ port: node.respPort });
    try {
      assert.deepEqual(await r.multi().set("t", "1").incr("t-n").exec(), [
        [null, "OK"],
        [null, 1],
      ]);
      assert.equal(await r.get("t"), "1");
      assert.equal(await r.ping(), "PONG", "the connection left MULTI at EXEC");
      await assert.rejects(r.call("exec"), /ERR EXEC without MULTI/);
    } finally {
      r.disconnect();
    }
  });

  it("ioredis reconnects after its socket is destroyed", async () => {
    const r = redisClient({ port: node.respPort, retryStrategy: (n) => (n > 20 ? null : 50) });
    r.on("error", () => {});
    try {
      await r.set("rc", "1");
      const reconnected = new Promise((res) => r.once("ready", res));
      (r as unknown as { stream: { destroy(): void } }).stream.destroy();
      await reconnected;
      assert.equal(await r.get("rc"), "1");
    } finally {
      r.disconnect();
    }
  });

  it("HELLO 3 answers a map; RESP3 nulls", async () => {
    const r = redisClient({ port: node.respPort });
    const hello = (await r.call("HELLO", "3")) as unknown[];
    const asObject = Array.isArray(hello)
      ? Object.fromEntries(Array.from({ length: hello.length / 2 }, (_, i) => [hello[2 * i], hello[2 * i + 1]]))
      : hello;
    assert.equal((asObject as Record<string, unknown>).proto, 3);
    assert.equal(await r.call("HELLO", "4").catch((e: Error) => e.message), "NOPROTO unsupported protocol version");
    r.disconnect();
  });

  it("redis-cli works against the port", (t) => {
    if (spawnSync("redis-cli", ["--version"]).status !== 0) {
      t.skip("redis-cli not installed (Debian package redis-tools)");
      return;
    }
    const cli = (...args: string[]) =>
      spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(node.respPort), ...args], {
        encoding: "utf8",
      }).stdout.trim();
    assert.equal(cli("set", "cli", "hello"), "OK");
    assert.equal(cli("get", "cli"), "hello");
    assert.equal(cli("incr", "cli-n"), "1");
    assert.equal(cli("dbsize") !== "", true);
    const piped = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(node.respPort), "--pipe"], {
      input: Array.from({ length: 100 }, (_, i) => `SET pipe-cli:${i} ${i}\r\n`).join(""),
      encoding: "utf8",
    });
    assert.match(piped.stdout, /errors: 0, replies: 100/);
    assert.equal(cli("get", "pipe-cli:99"), "99");
  });
});

describe("--requirepass on the Redis port", () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode(["--shards", "2", "--requirepass", "pw"]);
  });
  after(async () => {
    await node.stop();
  });

  it("NOAUTH before AUTH, WRONGPASS for a bad password, then everything works", async () => {
    // On a raw socket, to see each reply (ioredis sends HELLO first and gives up on
    // its NOAUTH, against Redis too).
    const s = connect({ host: "127.0.0.1", port: node.respPort });
    await new Promise((r) => s.once("connect", r));
    let got = "";
    s.on("data", (d: Buffer) => {
      got += d.toString();
    });
    s.write("GET k\r\nSET k v\r\nPING\r\nAUTH nope\r\nAUTH default nope\r\nAUTH pw\r\nSET k v\r\nGET k\r\n");
    const expected =
      "-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n" +
      "-WRONGPASS invalid username-password pair or user is disabled.\r\n" +
      "-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n+OK\r\n$1\r\nv\r\n";
    for (let i = 0; i < 200 && got.length < expected.length; i++) await new Promise((r) => setTimeout(r, 10));
    s.destroy();
    assert.equal(got, expected);
    const withPassword = redisClient({ port: node.respPort, password: "pw" });
    assert.equal(await withPassword.get("k"), "v");
    withPassword.disconnect();
    const nr = createClient({ url: `redis://default:pw@127.0.0.1:${node.respPort}`, RESP: 3 });
    nr.on("error", () => {});
    await nr.connect();
    assert.equal(await nr.get("k"), "v");
    await nr.quit();
  });
});
