// The Redis port with a real client library (ioredis) against real nodes:
// reply shapes and Redis's error texts, not just happy paths.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import { redisClient } from "./support.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function err(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail("expected an error reply");
}

for (const layout of LAYOUTS) {
  describe(`Redis commands, ${layout.name}`, () => {
    let node: RunningNode;
    let r: Redis;
    before(async () => {
      node = await startNode(layout.args);
      r = redisClient({ port: node.respPort, lazyConnect: true, maxRetriesPerRequest: 0 });
      await r.connect();
    });
    after(async () => {
      r.disconnect();
      assert.equal(await node.stop(), 0);
    });

    it("PING, ECHO, SELECT, TIME", async () => {
      assert.equal(await r.ping(), "PONG");
      assert.equal(await r.ping("hi"), "hi");
      assert.equal(await r.echo("x y"), "x y");
      assert.equal(await r.select(0), "OK");
      assert.equal(await err(r.select(1)), "ERR DB index is out of range");
      assert.equal(await err(r.select("x" as unknown as number)), "ERR value is not an integer or out of range");
      const [s, us] = await r.time();
      assert.ok(Math.abs(Number(s) * 1000 - Date.now()) < 5000);
      assert.ok(Number(us) >= 0 && Number(us) < 1_000_000);
    });

    it("SET with its options, GET, and syntax errors", async () => {
      assert.equal(await r.set("s", "v"), "OK");
      assert.equal(await r.get("s"), "v");
      assert.equal(await r.get("nope"), null);
      assert.equal(await r.set("s", "w", "NX"), null);
      assert.equal(await r.set("s2", "w", "XX"), null);
      assert.equal(await r.set("s", "w", "XX"), "OK");
      assert.equal(await r.set("s", "z", "GET"), "w");
      assert.equal(await r.set("fresh", "z", "GET"), null);
      assert.equal(await r.set("s", "e", "EX", 100), "OK");
      assert.ok((await r.ttl("s")) > 98);
      assert.equal(await r.set("s", "k", "KEEPTTL"), "OK");
      assert.ok((await r.pttl("s")) > 98_000);
      assert.equal(await r.set("s", "p", "PX", 50_000), "OK");
      assert.ok((await r.pttl("s")) <= 50_000);
      await r.set("s", "at", "EXAT", Math.floor(Date.now() / 1000) + 100);
      assert.ok((await r.ttl("s")) > 90);
      assert.equal(await err(r.set("s", "v", "EX", 0)), "ERR invalid expire time in 'set' command");
      assert.equal(await err(r.set("s", "v", "EX", "x")), "ERR value is not an integer or out of range");
      assert.equal(await err(r.call("set", "s", "v", "NX", "XX")), "ERR syntax error");
      assert.equal(await err(r.call("set", "s", "v", "BOGUS")), "ERR syntax error");
      assert.equal(await err(r.call("get")), "ERR wrong number of arguments for 'get' command");
    });

    it("SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX", async () => {
      assert.equal(await r.setnx("n", "1"), 1);
      assert.equal(await r.setnx("n", "2"), 0);
      assert.equal(await r.setex("e", 100, "v"), "OK");
      assert.ok((await r.ttl("e")) > 98);
      assert.equal(await err(r.setex("e", -1, "v")), "ERR invalid expire time in 'setex' command");
      assert.equal(await r.psetex("pe", 100_000, "v"), "OK");
      assert.equal(await r.getset("n", "3"), "1");
      assert.equal(await r.getset("gs-new", "x"), null);
      assert.equal(await r.getdel("n"), "3");
      assert.equal(await r.getdel("n"), null);
      await r.set("gx", "v");
      assert.equal(await r.getex("gx", "EX", 100), "v");
      assert.ok((await r.ttl("gx")) > 98);
      assert.equal(await r.getex("gx", "PERSIST"), "v");
      assert.equal(await r.ttl("gx"), -1);
      assert.equal(await r.getex("missing"), null);
    });

    it("MGET, MSET, MSETNX all-or-nothing", async () => {
      assert.equal(await r.mset("a", "1", "b", "2", "c", "3"), "OK");
      assert.deepEqual(await r.mget("a", "b", "zz", "c"), ["1", "2", null, "3"]);
      assert.equal(await err(r.call("mset", "a", "1", "b")), "ERR wrong number of arguments for 'mset' command");
      assert.equal(await r.msetnx("x1", "1", "x2", "2"), 1);
      assert.equal(await r.msetnx("x3", "3", "x1", "other", "x4", "4"), 0);
      assert.deepEqual(await r.mget("x1", "x3", "x4"), ["1", null, null], "nothing of the failed MSETNX remains");
    });

    it("counters: INCR family, overflow and type errors, INCRBYFLOAT", async () => {
      assert.equal(await r.incr("cnt"), 1);
      assert.equal(await r.incrby("cnt", 41), 42);
      assert.equal(await r.decr("cnt"), 41);
      assert.equal(await r.decrby("cnt", 50), -9);
      await r.set("big", "9223372036854775806");
      await r.incr("big");
      assert.equal(await r.get("big"), "9223372036854775807", "exact at the 64-bit limit");
      assert.equal(await err(r.incr("big")), "ERR increment or decrement would overflow");
      await r.set("txt", "abc");
      assert.equal(await err(r.incr("txt")), "ERR value is not an integer or out of range");
      assert.equal(await err(r.incrby("cnt", "x" as unknown as number)), "ERR value is not an integer or out of range");
      assert.equal(await r.incrbyfloat("fl", 10.5), "10.5");
      assert.equal(await r.incrbyfloat("fl", 0.1), "10.6");
      assert.equal(await err(r.incrbyfloat("txt", 1)), "ERR value is not a valid float");
    });

    it("APPEND, STRLEN, GETRANGE, SETRANGE", async () => {
      assert.equal(await r.append("ap", "Hello"), 5);
      assert.equal(await r.append("ap", " World"), 11);
      assert.equal(await r.strlen("ap"), 11);
      assert.equal(await r.strlen("none"), 0);
      assert.equal(await r.getrange("ap", 0, 4), "Hello");
      assert.equal(await r.getrange("ap", -5, -1), "World");
      assert.equal(await r.getrange("ap", 5, 2), "");
      assert.equal(await r.getrange("ap", 0, 100), "Hello World");
      assert.equal(await r.setrange("sr", 5, "x"), 6);
      assert.equal(await r.get("sr"), "\0\0\0\0\0x");
      assert.equal(await err(r.setrange("sr", -1, "x")), "ERR offset is out of range");
    });

    it("DEL, UNLINK, EXISTS count; TYPE; RENAME", async () => {
      await r.mset("d1", "1", "d2", "2");
      assert.equal(await r.exists("d1", "d2", "d1", "nope"), 3);
      assert.equal(await r.type("d1"), "string");
      assert.equal(await r.type("nope"), "none");
      assert.equal(await r.del("d1", "nope"), 1);
      assert.equal(await r.unlink("d2"), 1);
      await r.set("src", "v", "EX", 100);
      assert.equal(await r.rename("src", "dst"), "OK");
      assert.equal(await r.get("src"), null);
      assert.equal(await r.get("dst"), "v");
      assert.ok((await r.ttl("dst")) > 90, "RENAME keeps the TTL");
      assert.equal(await err(r.rename("nope", "x")), "ERR no such key");
    });

    it("EXPIRE family with NX/XX/GT/LT, TTL, PTTL, PERSIST, and real expiry", async () => {
      await r.set("k", "v");
      assert.equal(await r.ttl("k"), -1);
      assert.equal(await r.ttl("nope"), -2);
      assert.equal(await r.expire("k", 100, "XX"), 0);
      assert.equal(await r.expire("k", 100, "NX"), 1);
      assert.equal(await r.expire("k", 50, "GT"), 0);
      assert.equal(await r.expire("k", 200, "GT"), 1);
      assert.equal(await r.expire("k", 10, "LT"), 1);
      assert.equal(
        await err(r.call("expire", "k", "10", "NX", "XX")),
        "ERR NX and XX, GT or LT options at the same time are not compatible",
      );
      assert.equal(await r.pexpire("k", 100_000), 1);
      assert.equal(await r.persist("k"), 1);
      assert.equal(await r.persist("k"), 0);
      assert.equal(await r.expireat("k", Math.floor(Date.now() / 1000) + 100), 1);
      assert.equal(await r.pexpireat("k", Date.now() + 150), 1);
      await sleep(300);
      assert.equal(await r.get("k"), null);
      assert.equal(await r.expire("nope", 10), 0);
      await r.set("gone", "v");
      assert.equal(await r.expire("gone", -1), 1, "a past expiry deletes");
      assert.equal(await r.exists("gone"), 0);
    });

    it("SCAN to cursor 0 returns every key; MATCH and KEYS use globs; DBSIZE", async () => {
      await r.flushall();
      const keys = Array.from({ length: 250 }, (_, i) => `user:${i}`);
      await r.mset(...keys.flatMap((k) => [k, "1"]));
      await r.mset("other:1", "x", "other:2", "y");
      const seen = new Set<string>();
      let cursor = "0";
      do {
        const [next, batch] = await r.scan(cursor, "MATCH", "user:*", "COUNT", 50);
        for (const k of batch) seen.add(k);
        cursor = next;
      } while (cursor !== "0");
      assert.equal(seen.size, 250);
      assert.deepEqual((await r.keys("other:*")).sort(), ["other:1", "other:2"]);
      assert.deepEqual((await r.keys("user:1?")).length, 10);
      assert.deepEqual((await r.keys("[o]ther:[12]")).sort(), ["other:1", "other:2"]);
      assert.equal(await r.dbsize(), 252);
      assert.equal(await err(r.scan("abc")), "ERR invalid cursor");
      assert.equal(await r.flushdb(), "OK");
      assert.equal(await r.dbsize(), 0);
    });

    it("CLIENT, COMMAND, CONFIG GET, INFO", async () => {
      assert.equal(await r.client("SETNAME", "tester"), "OK");
      assert.equal(await r.client("GETNAME"), "tester");
      assert.ok(Number(await r.client("ID")) > 0);
      assert.match(String(await r.client("INFO")), /name=tester/);
      assert.match(String(await r.client("LIST")), /name=tester/);
      assert.equal(
        await err(r.client("SETNAME", "a b")),
        "ERR Client names cannot contain spaces, newlines or special characters.",
      );
      const count = (await r.command("COUNT")) as unknown as number;
      assert.ok(count >= 50);
      const [get] = (await r.command("INFO", "get")) as unknown[][];
      assert.equal(get![0], "get");
      assert.equal(get![1], 2);
      assert.deepEqual(await r.config("GET", "save"), ["save", ""]);
      // Durable by default (docs/durability.md): the journal is our append-only file.
      assert.deepEqual(await r.config("GET", "appendonly"), ["appendonly", "yes"]);
      assert.deepEqual(await r.config("GET", "appendfsync"), ["appendfsync", "everysec"]);
      const info = await r.info();
      for (const section of ["# Server", "# Clients", "# Memory", "# Stats", "# Keyspace"])
        assert.ok(info.includes(section), section);
      assert.match(await r.info("server"), /redis_version:/);
    });

    it("READONLY and READWRITE answer OK on a single node; reads go on as before; RESET clears READONLY", async () => {
      await r.set("ro", "v");
      assert.equal(await r.call("readonly"), "OK");
      assert.match(String(await r.client("INFO")), / flags=r /);
      assert.equal(await r.get("ro"), "v");
      assert.deepEqual(await r.mget("ro", "ro-absent"), ["v", null]);
      assert.equal(await r.exists("ro"), 1);
      assert.equal(await r.set("ro", "w"), "OK", "writes are unaffected");
      assert.equal(await r.get("ro"), "w");
      assert.equal(await r.call("readwrite"), "OK");
      assert.match(String(await r.client("INFO")), / flags=N /);
      assert.equal(await r.call("readonly"), "OK");
      assert.equal(await r.call("reset"), "RESET");
      assert.match(String(await r.client("INFO")), / flags=N /);
      assert.equal(await err(r.call("readonly", "x")), "ERR wrong number of arguments for 'readonly' command");
    });

    it("unknown commands are refused; RESET leaves a MULTI; the connection goes on", async () => {
      assert.equal(
        await err(r.call("frobnicate", "a", "b")),
        "ERR unknown command 'frobnicate', with args beginning with: 'a' 'b' ",
      );
      assert.equal(await r.call("multi"), "OK");
      assert.equal(await r.call("set", "in-multi", "1"), "QUEUED");
      assert.equal(await r.call("reset"), "RESET");
      assert.equal(await r.get("in-multi"), null, "RESET discarded the transaction");
      assert.equal(await err(r.call("exec")), "ERR EXEC without MULTI");
      assert.equal(await r.ping(), "PONG");
    });
  });
}
