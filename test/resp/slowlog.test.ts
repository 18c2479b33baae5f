// The Redis port's slow log names every command with its arguments, as Redis 7's
// SLOWLOG does (src/io/slowlog.ts, decision 0336): up to 32 arguments, each cut
// at 128 bytes with "... (N more bytes)", "... (N more arguments)" past them,
// secrets redacted; whether the command took the hot path (a run of plain
// SETs, src/resp/hot.ts) or the general one (APPEND, MSET, SETEX), and when its
// arguments were read from bytes that later reads would have moved (a
// pipeline spanning many socket reads, its commands still in flight on the
// workers). Raw sockets send; the threshold is 0, so every command is slow.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type RunningNode, startNode } from "../support/node.js";
import { cmd, exchange, redisClient } from "./support.js";

/** Sends `payload` on a raw socket and waits for `answers` simple answers (+, -, :), or until `answers` says so. */
function send(port: number, payload: Buffer, answers: number | ((reply: string) => boolean)): Promise<string> {
  const enough =
    typeof answers === "number" ? (r: string) => (r.match(/(^|\r\n)[-+:]/g) ?? []).length >= answers : answers;
  return exchange(port, payload, enough, { timeoutMs: 20_000 });
}

type Entry = [number, number, number, string[], string, string];

async function slowlog(port: number, n = 1024): Promise<Entry[]> {
  const r = redisClient({ port });
  try {
    return (await r.call("slowlog", "get", String(n))) as Entry[];
  } finally {
    r.disconnect();
  }
}

const SLOW = ["--slowlog-slower-than", "0", "--slowlog-max-len", "1024"];
let inline: RunningNode;
let threaded: RunningNode;

describe("the Redis port's slow log shows each command's arguments", () => {
  before(async () => {
    // Inline (--shards 0) is where plain SETs run as a hot run. Threaded and durable under --fsync always,
    // a write is answered only once its journal's fsync is done: later reads arrive while it is in flight.
    [inline, threaded] = await Promise.all([
      startNode(["--shards", "0", "--in-memory", ...SLOW]),
      startNode(["--shards", "2", "--fsync", "always", ...SLOW]),
    ]);
  });
  after(async () => {
    await Promise.all([inline?.stop(), threaded?.stop()]);
  });

  it("a hot run of SETs, APPEND and MSET, long arguments cut as Redis cuts them, secrets redacted", async () => {
    const big = "x".repeat(200);
    const pairs = Array.from({ length: 20 }, (_, i) => [`m${i}`, String(i)]).flat();
    const payload = Buffer.concat([
      cmd("SET", "k1", "v1"),
      cmd("SET", "k2", "v2"),
      cmd("APPEND", "a", "tail"),
      cmd("MSET", ...pairs),
      cmd("SET", "big", big),
      cmd("AUTH", "sekrit"),
      cmd("CONFIG", "SET", "requirepass", "hunter2"),
      cmd("HELLO", "2", "AUTH", "default", "swordfish"),
      cmd("ACL", "SETUSER", "slowpoke", "on", ">opensesame", "~*", "+@all"),
      cmd("PING"),
    ]);
    const reply = await send(inline.respPort, payload, (r) => r.endsWith("+PONG\r\n"));
    assert.match(reply, /^\+OK\r\n\+OK\r\n:\d+\r\n\+OK\r\n\+OK\r\n-/, "the commands were answered");
    const entries = await slowlog(inline.respPort, 20);
    const find = (name: string, arg1: string) => {
      const e = entries.find((x) => x[3][0] === name && x[3][1] === arg1);
      assert.ok(e, `an entry for ${name} ${arg1} in ${JSON.stringify(entries.map((x) => x[3]))}`);
      return e[3];
    };
    // The two SETs went as one hot run (one read): the run's entry is its first command and its length.
    const run = find("SET", "k1");
    assert.deepEqual(run.slice(0, 3), ["SET", "k1", "v1"]);
    assert.ok(run.length === 3 || /^\(a run of 2 commands\)$/.test(run[3]!), JSON.stringify(run));
    assert.deepEqual(find("APPEND", "a"), ["APPEND", "a", "tail"]);
    // 41 arguments: 31 kept, the 32nd says how many more there were (Redis 7's shape).
    const mset = find("MSET", "m0");
    assert.equal(mset.length, 32);
    assert.deepEqual(mset.slice(0, 31), ["MSET", ...pairs.slice(0, 30)]);
    assert.equal(mset[31], "... (10 more arguments)");
    // A 200-byte argument: its first 128 bytes, and how many more it had.
    assert.deepEqual(find("SET", "big"), ["SET", "big", `${"x".repeat(128)}... (72 more bytes)`]);
    assert.deepEqual(find("AUTH", "(redacted)"), ["AUTH", "(redacted)"]);
    assert.deepEqual(find("CONFIG", "SET"), ["CONFIG", "SET", "requirepass", "(redacted)"]);
    assert.deepEqual(find("HELLO", "2"), ["HELLO", "2", "AUTH", "(redacted)", "(redacted)"]);
    assert.deepEqual(find("ACL", "SETUSER"), ["ACL", "SETUSER", "slowpoke", ...Array(4).fill("(redacted)")]);
    for (const secret of ["sekrit", "hunter2", "swordfish", "opensesame"])
      assert.ok(!JSON.stringify(entries).includes(secret), `${secret} is in no entry`);
  });

  it("a pipeline spanning many reads, in flight on the workers: each entry's arguments are its own", async () => {
    // About 500 KB of SETEXs in one write: the node reads it in pieces, commands cross the reads' edges and
    // are parsed from the connection's own buffer (moved to its start at each read) while earlier ones wait
    // for their fsync.
    const n = 1000;
    const value = (i: number) => `value-${i}-${"y".repeat(400 + (i % 97))}`;
    // A RENAME first: the commands after it wait for its answer (it is a barrier), held with copies of their
    // arguments, and the rest start as they are read (src/io/connection.ts).
    const payload = Buffer.concat([
      cmd("SET", "ren:a", "1"),
      cmd("RENAME", "ren:a", "ren:b"),
      ...Array.from({ length: n }, (_, i) => cmd("SETEX", `pipe:${i}`, "1000", value(i))),
    ]);
    const reply = await send(threaded.respPort, payload, n + 2);
    assert.equal((reply.match(/\+OK\r\n/g) ?? []).length, n + 2, "every command answered OK");
    const entries = (await slowlog(threaded.respPort)).filter((e) => e[3][0] === "SETEX");
    // The newest 1,024 entries: every SETEX, and the reading client's own hello (ioredis's INFO...).
    assert.equal(entries.length, n);
    for (const e of entries) {
      const i = Number(/^pipe:(\d+)$/.exec(e[3][1] ?? "")?.[1]);
      const v = value(i);
      assert.deepEqual(e[3], ["SETEX", `pipe:${i}`, "1000", `${v.slice(0, 128)}... (${v.length - 128} more bytes)`]);
    }
    // And the same on the hot path: runs of plain SETs across reads, on the inline node.
    const sets = Buffer.concat(
      Array.from({ length: n }, (_, i) => cmd("SET", `hot:${i}`, `v${i}-${"z".repeat(i % 50)}`)),
    );
    await send(inline.respPort, sets, n);
    const runs = (await slowlog(inline.respPort)).filter((e) => e[3][0] === "SET" && e[3][1]?.startsWith("hot:"));
    assert.ok(runs.length > 0);
    for (const e of runs) {
      const i = Number(e[3][1]!.slice(4));
      assert.deepEqual(e[3].slice(0, 3), ["SET", `hot:${i}`, `v${i}-${"z".repeat(i % 50)}`]);
    }
  });
});
