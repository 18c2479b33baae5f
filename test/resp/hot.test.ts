// The Redis port's hot path (src/resp/hot.ts, decision 0318): plain GET, SET
// and INCR answered as a run, everything else on the general path. Pipelines
// on raw sockets mix the two, and each answer must be the one Redis gives, in
// request order: on the default layout in memory and durable (answers held
// until the journal's commit), and where the general path must take over
// (options, MULTI, ACL-limited users, limits, RESP3).
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../support/node.js";
import { cmd, exchange as rawExchange } from "./support.js";

/** Sends `payload` (in pieces of `piece` bytes when given) and reads until `expected` bytes came back, or `expected` says so. */
function exchange(
  port: number,
  payload: Buffer,
  expected: number | ((reply: string) => boolean),
  piece = 0,
): Promise<string> {
  return rawExchange(port, payload, typeof expected === "number" ? (r) => r.length >= expected : expected, { piece });
}

/** A pipeline of commands and the exact replies Redis 7 gives to them. */
function mixed(prefix: string): { payload: Buffer; replies: string } {
  const c: Buffer[] = [];
  const r: string[] = [];
  const add = (b: Buffer, reply: string) => {
    c.push(b);
    r.push(reply);
  };
  for (let i = 0; i < 40; i++) {
    const k = `${prefix}:${i}`;
    add(cmd("SET", k, `v${i}`), "+OK\r\n");
    add(cmd("get", k), `$${`v${i}`.length}\r\nv${i}\r\n`);
    // The general path between hot commands: an answer of another shape in the middle of a run.
    if (i % 7 === 3) add(cmd("EXISTS", k, `${prefix}:none`), ":1\r\n");
    if (i % 11 === 5) add(cmd("SET", k, "x", "XX", "GET"), `$${`v${i}`.length}\r\nv${i}\r\n`);
    if (i % 11 === 5) add(cmd("GET", k), "$1\r\nx\r\n");
  }
  add(cmd("GET", `${prefix}:absent`), "$-1\r\n");
  add(cmd("INCR", `${prefix}:n`), ":1\r\n");
  add(cmd("Incr", `${prefix}:n`), ":2\r\n");
  add(cmd("INCRBY", `${prefix}:n`, "10"), ":12\r\n");
  add(cmd("INCR", `${prefix}:n`), ":13\r\n");
  add(cmd("INCR", `${prefix}:0`), "-ERR value is not an integer or out of range\r\n");
  add(cmd("SET", `${prefix}:big`, "9223372036854775807"), "+OK\r\n");
  add(cmd("INCR", `${prefix}:big`), "-ERR increment or decrement would overflow\r\n");
  add(cmd("GET", `${prefix}:big`), "$19\r\n9223372036854775807\r\n");
  // Not hot: an empty key, a wrong arity; each answered by the general path, in its place.
  add(cmd("SET", "", "v"), "-ERR empty keys are not supported by Piccolo\r\n");
  add(cmd("GET", `${prefix}:0`, "extra"), "-ERR wrong number of arguments for 'get' command\r\n");
  add(cmd("SET", `${prefix}:last`, "end"), "+OK\r\n");
  add(cmd("GET", `${prefix}:last`), "$3\r\nend\r\n");
  return { payload: Buffer.concat(c), replies: r.join("") };
}

for (const layout of [
  { name: "in memory, the default layout", args: ["--in-memory", "--max-value-bytes", "4096"] },
  { name: "durable, the default layout (answers held until the commit)", args: ["--max-value-bytes", "4096"] },
]) {
  describe(`the Redis port's hot GET/SET/INCR: ${layout.name}`, () => {
    let node: RunningNode;
    before(async () => {
      node = await startNode(layout.args);
    });
    after(async () => {
      assert.equal(await node.stop(), 0);
    });

    it("a pipeline mixing hot and general commands gets Redis's answers in request order", async () => {
      const { payload, replies } = mixed("p");
      assert.equal(await exchange(node.respPort, payload, replies.length), replies);
    });

    it("the same pipeline cut into 7-byte pieces (commands split across reads) answers the same", async () => {
      const { payload, replies } = mixed("q");
      assert.equal(await exchange(node.respPort, payload, replies.length, 7), replies);
    });

    it("3,000 pipelined SETs then GETs (runs fill and start again) are all answered, in order", async () => {
      const n = 3000;
      const sets = Array.from({ length: n }, (_, i) => cmd("SET", `r:${i}`, `value-${i}`));
      const gets = Array.from({ length: n }, (_, i) => cmd("GET", `r:${i}`));
      const expected =
        "+OK\r\n".repeat(n) + Array.from({ length: n }, (_, i) => `$${`value-${i}`.length}\r\nvalue-${i}\r\n`).join("");
      assert.equal(await exchange(node.respPort, Buffer.concat([...sets, ...gets]), expected.length), expected);
    });

    it("batches of different sizes on one connection (each run sized by the last) answer exactly", async () => {
      // A run's first buffer takes the size of the connection's last run (src/io/run.ts, expect): a batch
      // larger than the last, or past the 2 KiB a first buffer may have, must grow it and lose nothing.
      const value = (i: number) => `${String(i).padStart(4, "0")}:${"v".repeat(996 - (i % 7) * 100)}`;
      const keys = Array.from({ length: 64 }, (_, i) => `sized:${i}`);
      const s = connect({ host: "127.0.0.1", port: node.respPort });
      await new Promise((r) => s.once("connect", r));
      let got = "";
      s.setEncoding("latin1");
      s.on("data", (d: string) => {
        got += d;
      });
      const round = async (payload: Buffer, expected: string) => {
        got = "";
        s.write(payload);
        const until = Date.now() + 10_000;
        while (got.length < expected.length && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
        assert.equal(got, expected);
      };
      try {
        await round(Buffer.concat(keys.map((k, i) => cmd("SET", k, value(i)))), "+OK\r\n".repeat(keys.length));
        for (const [r, n] of [20, 1, 5, 64, 2, 3, 40, 1].entries()) {
          const batch = keys.slice(0, n);
          await round(
            Buffer.concat(batch.map((k) => cmd("GET", k))),
            batch.map((_, i) => `$${value(i).length}\r\n${value(i)}\r\n`).join(""),
          );
          // Small answers after large ones, and a mix in one run.
          await round(
            Buffer.concat([cmd("SET", `sized:x${r}`, "1"), cmd("INCR", `sized:n${r}`), cmd("GET", `sized:x${r}`)]),
            "+OK\r\n:1\r\n$1\r\n1\r\n",
          );
        }
      } finally {
        s.destroy();
      }
    });

    it("a value over --max-value-bytes is refused by the general path, and the pipeline goes on", async () => {
      const payload = Buffer.concat([
        cmd("SET", "big", Buffer.alloc(5000, 97)),
        cmd("SET", "small", "ok"),
        cmd("GET", "big"),
        cmd("GET", "small"),
      ]);
      const full = await exchange(node.respPort, payload, (r) => r.endsWith("$2\r\nok\r\n"));
      assert.match(full, /^-ERR [^\r\n]*(large|limit|size)[^\r\n]*\r\n\+OK\r\n\$-1\r\n\$2\r\nok\r\n$/i);
    });

    it("inside MULTI, GET and SET are queued, not run, and EXEC answers them in order", async () => {
      const payload = Buffer.concat([
        cmd("MULTI"),
        cmd("SET", "m:1", "a"),
        cmd("GET", "m:1"),
        cmd("INCR", "m:n"),
        cmd("EXEC"),
        cmd("GET", "m:1"),
      ]);
      const expected = "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n$1\r\na\r\n:1\r\n$1\r\na\r\n";
      assert.equal(await exchange(node.respPort, payload, expected.length), expected);
    });

    it("RESP3 (HELLO 3): an absent key is RESP3's null", async () => {
      const hello = await exchange(node.respPort, cmd("HELLO", "3"), 10);
      assert.match(hello, /^%/);
      const payload = Buffer.concat([cmd("HELLO", "3"), cmd("GET", "resp3:absent"), cmd("SET", "resp3:k", "v")]);
      const reply = await exchange(node.respPort, payload, hello.length + 8);
      assert.equal(reply.slice(hello.length), "_\r\n+OK\r\n");
    });

    it("a user limited to some keys gets NOPERM from the general path, pipelined among its own keys", async () => {
      const setup = Buffer.concat([cmd("ACL", "SETUSER", "lim", "on", ">pw", "~mine:*", "+@all")]);
      assert.equal(await exchange(node.respPort, setup, 5), "+OK\r\n");
      const payload = Buffer.concat([
        cmd("AUTH", "lim", "pw"),
        cmd("SET", "mine:1", "a"),
        cmd("SET", "theirs:1", "b"),
        cmd("GET", "mine:1"),
        cmd("GET", "theirs:1"),
      ]);
      const full = await exchange(node.respPort, payload, (r) => r.split("\r\n").length >= 7);
      assert.match(full, /^\+OK\r\n\+OK\r\n-NOPERM [^\r\n]+\r\n\$1\r\na\r\n-NOPERM [^\r\n]+\r\n$/);
    });
  });
}
