// Pub/sub and keyspace notifications on the Redis port, against real nodes
// (each layout, and the default flags): SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE
// counts and messages, PUBSUB introspection, what a subscribed RESP2
// connection may send, RESP3 push messages, keyspace notifications on
// the node's watches (set, del, expire, persist, expired; every class, and
// narrower flags; off by default), and a subscriber that does not read cut
// off by the client output limit while another keeps receiving.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { eventually } from "../support/eventually.js";
import { LAYOUTS, memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";
import { redisClient } from "./support.js";

/** A RESP value as the raw client reads it: a push (RESP3 `>`) is marked as one. */
type Value = string | number | null | Value[] | { push: Value[] } | { error: string };

/** Parses one RESP2/RESP3 value from `b` at `at`; null when incomplete. */
function parse(b: Buffer, at: number): { v: Value; end: number } | null {
  const nl = b.indexOf("\r\n", at);
  if (nl < 0) return null;
  const type = String.fromCharCode(b[at]!);
  const line = b.toString("latin1", at + 1, nl);
  const next = nl + 2;
  switch (type) {
    case "+":
      return { v: line, end: next };
    case "-":
      return { v: { error: line }, end: next };
    case ":":
      return { v: Number(line), end: next };
    case "_":
      return { v: null, end: next };
    case "$": {
      const n = Number(line);
      if (n < 0) return { v: null, end: next };
      if (b.length < next + n + 2) return null;
      return { v: b.toString("latin1", next, next + n), end: next + n + 2 };
    }
    case "*":
    case ">":
    case "%": {
      let n = Number(line);
      if (n < 0) return { v: null, end: next };
      if (type === "%") n *= 2;
      const items: Value[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parse(b, p);
        if (r === null) return null;
        items.push(r.v);
        p = r.end;
      }
      return { v: type === ">" ? { push: items } : items, end: p };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

/** A raw RESP connection: send() a command, next() the next value the node sends (replies and messages alike). */
class Raw {
  private buf: Buffer = Buffer.alloc(0);
  private readonly values: Value[] = [];
  private wake: (() => void) | null = null;
  readonly closed: Promise<void>;

  private constructor(readonly s: Socket) {
    s.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const r = parse(this.buf, 0);
        if (r === null) break;
        this.values.push(r.v);
        this.buf = this.buf.subarray(r.end);
      }
      this.wake?.();
    });
    s.on("error", () => {});
    this.closed = new Promise((r) => s.once("close", () => r()));
  }

  static async open(port: number): Promise<Raw> {
    const s = connect(port, "127.0.0.1");
    await new Promise((r) => s.once("connect", r));
    return new Raw(s);
  }

  send(...args: (string | Buffer)[]): void {
    const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
    for (const a of args) {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(a);
      parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
    }
    this.s.write(Buffer.concat(parts));
  }

  async next(ms = 5000): Promise<Value> {
    const end = Date.now() + ms;
    while (this.values.length === 0) {
      const left = end - Date.now();
      if (left <= 0) throw new Error("nothing arrived in time");
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
    return this.values.shift()!;
  }

  /** The values that arrived within `ms` (none expected, usually). */
  async drain(ms: number): Promise<Value[]> {
    await sleep(ms);
    return this.values.splice(0);
  }

  async call(...args: string[]): Promise<Value> {
    this.send(...args);
    return this.next();
  }

  close(): void {
    this.s.destroy();
  }
}

/** Every message an ioredis subscriber gets, as [pattern or "", channel, message]. */
function collect(sub: Redis): string[][] {
  const got: string[][] = [];
  sub.on("message", (ch: string, msg: string) => got.push(["", ch, msg]));
  sub.on("pmessage", (p: string, ch: string, msg: string) => got.push([p, ch, msg]));
  return got;
}

async function until<T>(what: string, f: () => T | undefined, ms = 5000): Promise<T> {
  return eventually(
    what,
    async () => {
      const v = f();
      if (v === undefined) throw new Error("not yet");
      return v;
    },
    ms,
    10,
  );
}

const SUITES = [{ name: "default flags", args: [] as string[] }, ...LAYOUTS];

for (const layout of SUITES) {
  describe(`pub/sub, ${layout.name}`, () => {
    let node: RunningNode;
    let pub: Redis;
    before(async () => {
      node = await startNode(layout.args);
      pub = redisClient({ port: node.respPort });
    });
    after(async () => {
      pub.disconnect();
      await node.stop();
    });

    it("keyspace notifications are off by default", async () => {
      assert.deepEqual(await pub.config("GET", "notify-keyspace-events"), ["notify-keyspace-events", ""]);
      const sub = await Raw.open(node.respPort);
      assert.deepEqual(await sub.call("PSUBSCRIBE", "__key*__:*"), ["psubscribe", "__key*__:*", 1]);
      await pub.set("off:a", "1");
      await pub.del("off:a");
      await pub.set("off:b", "1", "PX", 20);
      await sleep(100);
      assert.equal(await pub.get("off:b"), null);
      assert.deepEqual(await sub.drain(300), [], "no notification while notify-keyspace-events is empty");
      sub.close();
    });

    it("SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE answer each channel with the connection's count; PUBLISH answers its receivers", async () => {
      const sub = await Raw.open(node.respPort);
      sub.send("SUBSCRIBE", "c:a", "c:b", "c:a");
      assert.deepEqual(await sub.next(), ["subscribe", "c:a", 1]);
      assert.deepEqual(await sub.next(), ["subscribe", "c:b", 2]);
      assert.deepEqual(await sub.next(), ["subscribe", "c:a", 2], "a channel subscribed twice counts once");
      assert.deepEqual(await sub.call("PSUBSCRIBE", "c:*"), ["psubscribe", "c:*", 3]);

      assert.equal(await pub.publish("c:a", "hello"), 2, "the channel and the pattern: two receivers");
      assert.deepEqual(await sub.next(), ["message", "c:a", "hello"]);
      assert.deepEqual(await sub.next(), ["pmessage", "c:*", "c:a", "hello"]);
      assert.equal(await pub.publish("c:z", "by pattern"), 1);
      assert.deepEqual(await sub.next(), ["pmessage", "c:*", "c:z", "by pattern"]);
      assert.equal(await pub.publish("other", "x"), 0, "nobody listens on 'other'");

      // A second subscriber: both receive; binary payloads arrive intact.
      const two = redisClient({ port: node.respPort });
      const got = collect(two);
      assert.equal(await two.subscribe("c:b"), 1);
      assert.equal(await pub.publish("c:b", "to both"), 3);
      assert.deepEqual(await sub.next(), ["message", "c:b", "to both"]);
      assert.deepEqual(await sub.next(), ["pmessage", "c:*", "c:b", "to both"]);
      await until("the second subscriber's message", () => (got.length === 1 ? true : undefined));
      assert.deepEqual(got, [["", "c:b", "to both"]]);

      assert.deepEqual(await sub.call("UNSUBSCRIBE", "c:a"), ["unsubscribe", "c:a", 2]);
      assert.equal(await pub.publish("c:a", "pattern only"), 1);
      assert.deepEqual(await sub.next(), ["pmessage", "c:*", "c:a", "pattern only"]);
      assert.deepEqual(await sub.call("PUNSUBSCRIBE"), ["punsubscribe", "c:*", 1]);
      assert.deepEqual(await sub.call("UNSUBSCRIBE"), ["unsubscribe", "c:b", 0]);
      assert.deepEqual(await sub.call("UNSUBSCRIBE"), ["unsubscribe", null, 0], "nothing left to leave");
      assert.equal(await pub.publish("c:a", "nobody"), 0);
      assert.equal(await pub.publish("c:b", "the second one"), 1);
      assert.deepEqual(await sub.drain(100), [], "nothing after unsubscribing");
      // Out of subscribed mode, any command again.
      assert.deepEqual(await sub.call("SET", "c:key", "v"), "OK");
      sub.close();
      two.disconnect();
    });

    it("ioredis: subscribe, psubscribe and messages", async () => {
      const sub = redisClient({ port: node.respPort });
      const got = collect(sub);
      assert.equal(await sub.subscribe("io:1", "io:2"), 2);
      assert.equal(await sub.psubscribe("io:*"), 3);
      assert.equal(await pub.publish("io:1", "one"), 2);
      assert.equal(await pub.publish("io:3", "three"), 1);
      await until("three messages", () => (got.length === 3 ? true : undefined));
      assert.deepEqual(got, [
        ["", "io:1", "one"],
        ["io:*", "io:1", "one"],
        ["io:*", "io:3", "three"],
      ]);
      assert.equal(await sub.unsubscribe("io:1"), 2);
      sub.disconnect();
      // A closed subscriber is forgotten.
      await eventually("the closed subscriber is gone", async () =>
        assert.equal(await pub.publish("io:2", "after close"), 0),
      );
    });

    it("PUBSUB CHANNELS, NUMSUB, NUMPAT", async () => {
      const a = await Raw.open(node.respPort);
      const b = await Raw.open(node.respPort);
      a.send("SUBSCRIBE", "ps:x", "ps:y");
      await a.next();
      await a.next();
      assert.deepEqual(await b.call("SUBSCRIBE", "ps:x"), ["subscribe", "ps:x", 1]);
      assert.deepEqual(await b.call("PSUBSCRIBE", "ps:*"), ["psubscribe", "ps:*", 2]);
      assert.deepEqual(await a.call("PSUBSCRIBE", "ps:*"), ["psubscribe", "ps:*", 3]);
      assert.deepEqual(((await pub.pubsub("CHANNELS", "ps:*")) as string[]).sort(), ["ps:x", "ps:y"]);
      assert.deepEqual(await pub.pubsub("CHANNELS", "ps:y*"), ["ps:y"]);
      assert.ok(((await pub.pubsub("CHANNELS")) as string[]).includes("ps:x"));
      assert.deepEqual(await pub.pubsub("NUMSUB", "ps:x", "ps:y", "ps:none"), ["ps:x", 2, "ps:y", 1, "ps:none", 0]);
      assert.deepEqual(await pub.pubsub("NUMSUB"), []);
      assert.equal(await pub.pubsub("NUMPAT"), 1, "one pattern, however many subscribe to it");
      await eventually("INFO counts the channels and patterns", async () => {
        const info = await pub.info("stats");
        assert.match(info, /\r\npubsub_channels:2\r\n/);
        assert.match(info, /\r\npubsub_patterns:1\r\n/);
      });
      b.close();
      await eventually("b's subscriptions are gone", async () =>
        assert.deepEqual(await pub.pubsub("NUMSUB", "ps:x", "ps:y"), ["ps:x", 1, "ps:y", 1]),
      );
      // RESET leaves every channel and pattern.
      assert.equal(await a.call("RESET"), "RESET");
      assert.deepEqual(await pub.pubsub("NUMSUB", "ps:x", "ps:y"), ["ps:x", 0, "ps:y", 0]);
      assert.equal(await pub.pubsub("NUMPAT"), 0);
      assert.deepEqual(await pub.pubsub("CHANNELS", "ps:*"), []);
      a.close();
      await assert.rejects(pub.call("PUBSUB", "NOPE"), /unknown subcommand/);
    });

    it("RESP2: a subscribed connection may send only the pub/sub commands, PING, QUIT and RESET", async () => {
      const c = await Raw.open(node.respPort);
      assert.deepEqual(await c.call("SUBSCRIBE", "r2"), ["subscribe", "r2", 1]);
      assert.deepEqual(await c.call("GET", "k"), {
        error:
          "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
      });
      for (const cmd of [
        ["SET", "k", "v"],
        ["PUBLISH", "r2", "x"],
        ["PUBSUB", "NUMPAT"],
        ["CONFIG", "GET", "x"],
      ]) {
        const r = (await c.call(...cmd)) as { error: string };
        assert.match(r.error, /^ERR Can't execute/, cmd[0]);
      }
      assert.deepEqual(await c.call("PING"), ["pong", ""], "PING in subscribed mode is a message-shaped array");
      assert.deepEqual(await c.call("PING", "hi"), ["pong", "hi"]);
      assert.deepEqual(await c.call("PSUBSCRIBE", "r*"), ["psubscribe", "r*", 2]);
      // The restriction held: nothing was set.
      assert.equal(await pub.get("k"), null);
      assert.equal(await pub.publish("r2", "m"), 2);
      assert.deepEqual(await c.next(), ["message", "r2", "m"]);
      assert.deepEqual(await c.next(), ["pmessage", "r*", "r2", "m"]);
      assert.deepEqual(await c.call("UNSUBSCRIBE"), ["unsubscribe", "r2", 1]);
      assert.match(((await c.call("GET", "k")) as { error: string }).error, /^ERR Can't execute/, "a pattern is left");
      assert.deepEqual(await c.call("PUNSUBSCRIBE", "r*"), ["punsubscribe", "r*", 0]);
      assert.equal(await c.call("GET", "k"), null, "out of subscribed mode");
      assert.equal(await c.call("PING"), "PONG");
      c.close();
    });

    it("RESP3: confirmations and messages are pushes; any command may be sent while subscribed", async () => {
      const c = await Raw.open(node.respPort);
      const hello = (await c.call("HELLO", "3")) as Value[];
      assert.equal(hello[hello.indexOf("proto") + 1], 3);
      c.send("SUBSCRIBE", "r3", "r3b");
      assert.deepEqual(await c.next(), { push: ["subscribe", "r3", 1] });
      assert.deepEqual(await c.next(), { push: ["subscribe", "r3b", 2] });
      assert.deepEqual(await c.call("PSUBSCRIBE", "r3*"), { push: ["psubscribe", "r3*", 3] });
      assert.equal(await c.call("SET", "r3:k", "v"), "OK");
      assert.equal(await c.call("GET", "r3:k"), "v");
      assert.equal(await c.call("PING"), "PONG", "a plain PONG in RESP3");
      assert.equal(await pub.publish("r3", "pushed"), 2);
      assert.deepEqual(await c.next(), { push: ["message", "r3", "pushed"] });
      assert.deepEqual(await c.next(), { push: ["pmessage", "r3*", "r3", "pushed"] });
      // Its own PUBLISH reaches itself.
      c.send("PUBLISH", "r3b", "self");
      const two = [await c.next(), await c.next(), await c.next()];
      assert.deepEqual(
        two.filter((v) => typeof v === "number"),
        [2],
      );
      assert.deepEqual(
        two.filter((v) => typeof v === "object"),
        [{ push: ["message", "r3b", "self"] }, { push: ["pmessage", "r3*", "r3b", "self"] }],
      );
      assert.deepEqual(await c.call("UNSUBSCRIBE", "r3"), { push: ["unsubscribe", "r3", 2] });
      c.send("UNSUBSCRIBE", "r3");
      assert.deepEqual(await c.next(), { push: ["unsubscribe", "r3", 2] });
      c.send("PUNSUBSCRIBE");
      assert.deepEqual(await c.next(), { push: ["punsubscribe", "r3*", 1] });
      c.send("UNSUBSCRIBE");
      assert.deepEqual(await c.next(), { push: ["unsubscribe", "r3b", 0] });
      c.send("UNSUBSCRIBE");
      assert.deepEqual(await c.next(), { push: ["unsubscribe", null, 0] });
      c.close();
    });

    it("keyspace notifications with KEA: set, del, expire, persist, expired on both channels", async () => {
      assert.equal(await pub.config("SET", "notify-keyspace-events", "KEA"), "OK");
      assert.deepEqual(await pub.config("GET", "notify-keyspace-events"), ["notify-keyspace-events", "AKE"]);
      const sub = await Raw.open(node.respPort);
      assert.deepEqual(await sub.call("PSUBSCRIBE", "__keyspace@0__:ks:*"), ["psubscribe", "__keyspace@0__:ks:*", 1]);
      assert.deepEqual(await sub.call("SUBSCRIBE", "__keyevent@0__:expired"), [
        "subscribe",
        "__keyevent@0__:expired",
        2,
      ]);
      await pub.set("ks:a", "1");
      await pub.expire("ks:a", 100);
      await pub.persist("ks:a");
      await pub.incr("ks:a");
      await pub.del("ks:a");
      await pub.set("ks:b", "1", "PX", 30);
      const want: Value[] = [
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:a", "set"],
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:a", "expire"],
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:a", "persist"],
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:a", "set"],
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:a", "del"],
      ];
      const got: Value[] = [];
      for (let i = 0; i < want.length + 1; i++) got.push(await sub.next());
      // ks:a's events in its order; ks:b's set may come anywhere (another shard).
      const b = got.filter((v) => (v as string[])[2] === "__keyspace@0__:ks:b");
      assert.deepEqual(b, [["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:b", "set"]]);
      assert.deepEqual(
        got.filter((v) => (v as string[])[2] !== "__keyspace@0__:ks:b"),
        want,
      );
      // ks:b expires (the sweep, or this read): both its keyspace and its keyevent message.
      await sleep(60);
      assert.equal(await pub.get("ks:b"), null);
      const expired = [await sub.next(), await sub.next()];
      assert.deepEqual(expired, [
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:b", "expired"],
        ["message", "__keyevent@0__:expired", "ks:b"],
      ]);
      // The keyevent channel of "set" names the key.
      assert.deepEqual(await sub.call("SUBSCRIBE", "__keyevent@0__:set"), ["subscribe", "__keyevent@0__:set", 3]);
      await pub.set("ks:c", "1");
      const c = [await sub.next(), await sub.next()];
      assert.deepEqual(c, [
        ["pmessage", "__keyspace@0__:ks:*", "__keyspace@0__:ks:c", "set"],
        ["message", "__keyevent@0__:set", "ks:c"],
      ]);
      // Another key: its keyevent message only (its keyspace channel is not subscribed).
      await pub.set("elsewhere", "1");
      assert.deepEqual(await sub.next(), ["message", "__keyevent@0__:set", "elsewhere"]);
      assert.deepEqual(await sub.drain(200), []);
      sub.close();
      assert.equal(await pub.config("SET", "notify-keyspace-events", ""), "OK");
    });

    it("narrower flags: Ex sends only keyevent expired; Kg only keyspace generic events", async () => {
      const sub = await Raw.open(node.respPort);
      assert.deepEqual(await sub.call("PSUBSCRIBE", "__key*@0__:*"), ["psubscribe", "__key*@0__:*", 1]);
      assert.equal(await pub.config("SET", "notify-keyspace-events", "Ex"), "OK");
      assert.deepEqual(await pub.config("GET", "notify-keyspace-events"), ["notify-keyspace-events", "xE"]);
      await pub.set("nx:a", "1");
      await pub.expire("nx:a", 100);
      await pub.del("nx:a");
      await pub.set("nx:a", "1", "PX", 30);
      await sleep(60);
      assert.equal(await pub.get("nx:a"), null);
      // nx:a's earlier changes would come before its expiry (one key, one shard, in order).
      assert.deepEqual(await sub.next(), ["pmessage", "__key*@0__:*", "__keyevent@0__:expired", "nx:a"]);
      assert.deepEqual(await sub.drain(200), []);

      assert.equal(await pub.config("SET", "notify-keyspace-events", "Kg"), "OK");
      await pub.set("nx:b", "1");
      await pub.expire("nx:b", 100);
      await pub.del("nx:b");
      assert.deepEqual(await sub.next(), ["pmessage", "__key*@0__:*", "__keyspace@0__:nx:b", "expire"]);
      assert.deepEqual(await sub.next(), ["pmessage", "__key*@0__:*", "__keyspace@0__:nx:b", "del"]);
      assert.deepEqual(await sub.drain(200), [], "no set ($ is off), no keyevent (E is off)");

      // K or E alone, without a class, sends nothing (as Redis).
      assert.equal(await pub.config("SET", "notify-keyspace-events", "KE"), "OK");
      await pub.set("nx:c", "1");
      await pub.del("nx:c");
      assert.deepEqual(await sub.drain(300), []);
      assert.equal(await pub.config("SET", "notify-keyspace-events", ""), "OK");
      await pub.set("nx:d", "1");
      assert.deepEqual(await sub.drain(300), [], "off again");
      sub.close();

      await assert.rejects(pub.config("SET", "notify-keyspace-events", "KEQ"), /Invalid event class character/);
      await assert.rejects(pub.config("SET", "maxmemory", "1"), /Unknown option/);
      assert.deepEqual(await pub.config("GET", "notify-keyspace-events"), ["notify-keyspace-events", ""]);
    });
  });
}

describe("pub/sub: a subscriber that does not read", () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode(["--max-value-bytes", "1048576", "--client-output-limit-bytes", "4194304"]);
  });
  after(async () => {
    await node.stop();
  });

  it("is closed at the client output limit while another subscriber receives every message", async () => {
    const slow = await Raw.open(node.respPort);
    assert.deepEqual(await slow.call("SUBSCRIBE", "flood"), ["subscribe", "flood", 1]);
    let slowBytes = 0;
    slow.s.removeAllListeners("data");
    slow.s.on("data", (d: Buffer) => {
      slowBytes += d.length;
    });
    slow.s.pause(); // reads nothing more: the kernel's buffers fill, then the node's
    const good = redisClient({ port: node.respPort });
    let received = 0;
    let bytes = 0;
    good.on("messageBuffer", (_ch: Buffer, msg: Buffer) => {
      received++;
      bytes += msg.length;
    });
    assert.equal(await good.subscribe("flood"), 1);
    const pub = redisClient({ port: node.respPort });
    const payload = Buffer.alloc(64 * 1024, 7);
    const N = 1000; // 64 MiB: far past the kernel's buffers and the 4 MiB limit
    const counts: number[] = [];
    for (let i = 0; i < N; i += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => pub.publish("flood", payload)));
      counts.push(...batch);
    }
    // The node closed it (a paused socket does not see its close until it reads on).
    const cut = `"limit":"client-output-limit","remote":"127.0.0.1:${slow.s.localPort}"`;
    await eventually("the node logs the slow subscriber cut off", async () => assert.ok(node.stderr().includes(cut)));
    slow.s.resume();
    await Promise.race([slow.closed, sleep(10_000).then(() => assert.fail("the slow subscriber was not closed"))]);
    assert.ok(slowBytes < (N / 2) * payload.length, `the slow subscriber got ${slowBytes} bytes: far from all`);
    assert.equal(counts[0], 2, "both subscribers received the first message");
    assert.equal(counts[counts.length - 1], 1, "only the reading subscriber is left");
    await until("every message reaches the reading subscriber", () => (received === N ? true : undefined), 30_000);
    assert.equal(bytes, N * payload.length);
    assert.equal(await pub.publish("flood", "x"), 1);
    good.disconnect();
    pub.disconnect();
    slow.close();
  });
});

describe("keyspace notifications: the watch falls behind the history", () => {
  let node: RunningNode;
  before(async () => {
    // The smallest history (256 KiB a shard): one MSET of large values passes it in one batch.
    node = await startNode(["--shards", "2", "--watch-history-bytes", "262144"]);
  });
  after(async () => {
    await node.stop();
  });

  it("starts again from now: what happened in between is not sent, later changes are", async () => {
    const pub = redisClient({ port: node.respPort });
    const sub = await Raw.open(node.respPort);
    assert.equal(await pub.config("SET", "notify-keyspace-events", "KA"), "OK");
    assert.deepEqual(await sub.call("PSUBSCRIBE", "__keyspace@0__:*"), ["psubscribe", "__keyspace@0__:*", 1]);
    const restarts = async () =>
      Number(/piccolo_keyspace_notification_restarts:(\d+)/.exec(await pub.info("stats"))![1]);
    assert.equal(await restarts(), 0);
    const big = Buffer.alloc(60_000, 1);
    const args: (string | Buffer)[] = [];
    for (let i = 0; i < 40; i++) args.push(`big:${i}`, big);
    assert.equal(await pub.mset(...args), "OK");
    await eventually("the watch was restarted", async () => assert.equal(await restarts(), 1));
    await pub.set("after", "1");
    const got: Value[] = [];
    for (;;) {
      const v = await sub.next();
      got.push(v);
      if ((v as string[])[2] === "__keyspace@0__:after") break;
    }
    assert.ok(got.length < 41, `${got.length - 1} of the 40 big keys' events were sent: the watch fell behind`);
    assert.deepEqual(got[got.length - 1], ["pmessage", "__keyspace@0__:*", "__keyspace@0__:after", "set"]);
    pub.disconnect();
    sub.close();
  });
});

describe("pub/sub in a cluster", () => {
  let root: string;
  const nodes: RunningNode[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "piccolo-resp-pubsub-"));
    const list = await memberList();
    nodes.push(...(await Promise.all([0, 1, 2].map((i) => startMember(list, root, i, ["--tick-ms", "20"])))));
    // A PUBLISH is relayed to the members connected at that moment (best effort, as Redis Cluster's bus):
    // the test starts once every member has authenticated and greeted every other.
    for (const n of nodes)
      await eventually(
        "every member connected to every other",
        async () => {
          const c = await n.client({ timeoutMs: 5_000 });
          try {
            assert.ok((await c.clusterInfo()).members.every((m) => m.connected));
          } finally {
            await c.close();
          }
        },
        30_000,
      );
  });
  after(async () => {
    await stopAll(nodes);
    await rm(root, { recursive: true, force: true });
  });

  it("PUBLISH reaches every member's subscribers; keyspace notifications cover every partition's changes", async () => {
    const sub = await Raw.open(nodes[0]!.respPort);
    const p0 = redisClient({ port: nodes[0]!.respPort });
    const p1 = redisClient({ port: nodes[1]!.respPort });
    assert.deepEqual(await sub.call("SUBSCRIBE", "news"), ["subscribe", "news", 1]);
    // Relayed to every member, as Redis Cluster does; the count is the publishing member's own receivers.
    assert.equal(await p1.publish("news", "from n2"), 0, "no subscriber on n2 itself");
    assert.deepEqual(await sub.next(), ["message", "news", "from n2"], "relayed to n1's subscriber");
    assert.equal(await p0.publish("news", "from n1"), 1);
    assert.deepEqual(await sub.next(), ["message", "news", "from n1"]);
    assert.deepEqual(await sub.drain(200), [], "each message once");
    // A member's watch spans every partition (docs/watch.md, "In a cluster"): a write through another
    // member, to keys in many partitions, is notified here.
    assert.equal(await p0.config("SET", "notify-keyspace-events", "KEA"), "OK");
    const ks = await Raw.open(nodes[0]!.respPort);
    assert.deepEqual(await ks.call("PSUBSCRIBE", "__keyevent@0__:set"), ["psubscribe", "__keyevent@0__:set", 1]);
    await new Promise((r) => setTimeout(r, 300)); // the watch is set up on its first subscriber
    const keys = Array.from({ length: 8 }, (_, i) => `ks-${i}`);
    for (const k of keys) await p1.set(k, "v");
    const got: string[] = [];
    for (let i = 0; i < keys.length; i++) {
      const m = (await ks.next()) as string[];
      assert.equal(m[0], "pmessage");
      got.push(m[3]!);
    }
    assert.deepEqual(got.sort(), [...keys].sort());
    ks.close();
    assert.equal(await p0.config("SET", "notify-keyspace-events", ""), "OK");
    assert.deepEqual(await p0.config("GET", "notify-keyspace-events"), ["notify-keyspace-events", ""]);
    sub.close();
    p0.disconnect();
    p1.disconnect();
  });
});
