// Every failure, on every command of every port, is an error: never nil
// (which would say "no such key"), never OK (which would say "applied").
// A node whose shards answer a chosen failure status (test/support/
// faulty-shards.ts: the real IO loop, parsers and handlers, on loopback) is
// driven through its Redis port, its native port and a real Cerializer
// process, with every status of the outcome table (src/outcomes.ts). What
// the cluster answers under faults (TIMEOUT, UNAVAILABLE, SHUTTING_DOWN) is
// among them; test/cluster/honest-failures.test.ts shows a real cluster
// answering them.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, errorName, PiccoloError } from "../../src/errors.js";
import { OUTCOMES, RESP_UNCERTAIN } from "../../src/outcomes.js";
import { PROBLEM_BASE, PROBLEMS } from "../../src/cerializer/problems.js";
import { isDataOutcome, isWrite, type Op } from "../../src/shard/command.js";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { type FaultyNode, startFaultyNode } from "../support/faulty-shards.js";
import { redisClient } from "../resp/support.js";

/** Every code but OK, by name. */
const FAILURES = Object.entries(ErrorCode).filter(([, c]) => c !== ErrorCode.OK) as [keyof typeof OUTCOMES, number][];

let n: FaultyNode;
let redis: Redis;
let native: PiccoloClient;

before(async () => {
  n = await startFaultyNode();
  // No ready check: ioredis's INFO at connect would meet the injected failures and reconnect.
  redis = redisClient({ port: n.respPort, maxRetriesPerRequest: 0, enableReadyCheck: false });
  assert.equal(await redis.ping(), "PONG");
  native = await PiccoloClient.connect({ host: "127.0.0.1", port: n.port, timeoutMs: 5_000 });
});
after(async () => {
  redis.disconnect();
  await native.close();
  await n.stop();
});

/** Redis commands that reach the shards, with arguments that pass every check before them. */
const COMMANDS: string[][] = [
  ["get", "k"],
  ["set", "k", "v"],
  ["set", "k", "v", "NX"],
  ["set", "k", "v", "XX"],
  ["set", "k", "v", "GET"],
  ["set", "k", "v", "EX", "10"],
  ["setnx", "k", "v"],
  ["setex", "k", "10", "v"],
  ["psetex", "k", "1000", "v"],
  ["getset", "k", "v"],
  ["getdel", "k"],
  ["getex", "k"],
  ["getex", "k", "PERSIST"],
  ["mget", "a", "b", "c"],
  ["mset", "a", "1", "b", "2"],
  ["msetnx", "a", "1", "b", "2"],
  ["incr", "k"],
  ["decr", "k"],
  ["incrby", "k", "5"],
  ["decrby", "k", "5"],
  ["incrbyfloat", "k", "1.5"],
  ["append", "k", "v"],
  ["strlen", "k"],
  ["getrange", "k", "0", "-1"],
  ["setrange", "k", "2", "xx"],
  ["del", "a", "b"],
  ["unlink", "a"],
  ["exists", "a", "b"],
  ["type", "k"],
  ["rename", "a", "b"],
  ["renamenx", "a", "b"],
  ["copy", "a", "b"],
  ["expire", "k", "10"],
  ["pexpire", "k", "1000"],
  ["expireat", "k", "9999999999"],
  ["pexpireat", "k", "9999999999999"],
  ["ttl", "k"],
  ["pttl", "k"],
  ["persist", "k"],
  ["scan", "0"],
  ["keys", "*"],
  ["dbsize"],
  ["flushdb"],
  ["flushall"],
];

/** What a command answers (its reply, or the error's text), and the shard ops it sent. */
async function respCall(args: string[], failWith: number | null, passFirst = 0) {
  n.shards.reset(failWith, passFirst);
  let reply: unknown;
  let error: string | null = null;
  try {
    reply = await redis.call(args[0]!, ...args.slice(1));
  } catch (err) {
    error = (err as Error).message;
  }
  const ops = [...n.shards.ops];
  n.shards.reset(null);
  return { reply, error, ops };
}

/** The first word a failure's Redis reply must start with. */
function expectedWord(code: number, ops: readonly Op[]): string {
  const o = OUTCOMES[errorName(code) as keyof typeof OUTCOMES];
  const writes = ops.some((op) => isWrite(op));
  if (writes && o.applied === "maybe") return RESP_UNCERTAIN;
  return o.resp;
}

describe("the Redis port answers every failure as an error", () => {
  for (const [name, code] of FAILURES)
    it(`${name}: no command answers it with nil, OK or a count`, async () => {
      for (const args of COMMANDS) {
        const { reply, error, ops } = await respCall(args, code);
        const what = `${args.join(" ")} with ${name}`;
        assert.ok(ops.length > 0, `${what}: the command reached the shards`);
        // Data outcomes of the command's own ops keep their Redis shapes (SET NX's nil...): commands.test.ts.
        if (ops.some((op) => isDataOutcome(op, code))) continue;
        assert.notEqual(error, null, `${what}: answered ${JSON.stringify(reply)} instead of an error`);
        const word = expectedWord(code, ops);
        assert.ok(error!.startsWith(`${word} `), `${what}: "${error}" should start with ${word}`);
        assert.doesNotMatch(error!, /^ERR \d+$/, `${what}: a code number is not an answer`);
      }
    });

  it("a command that fails after some of its writes were applied says UNCERTAIN, whatever the failure", async () => {
    const unavailable = ErrorCode.UNAVAILABLE;
    // MSET, RENAME are one transaction each (issue #16): refused whole, never partly applied.
    let r = await respCall(["mset", "a", "1", "b", "2"], unavailable);
    assert.match(r.error ?? "", new RegExp(`^${expectedWord(unavailable, r.ops)} `));
    assert.doesNotMatch(r.error ?? "", /partly/);
    await respCall(["set", "src", "value"], null);
    // RENAME: the read of the source answered, its transaction refused: nothing was applied.
    r = await respCall(["rename", "src", "dst"], unavailable, 1);
    assert.ok(r.error !== null && !/partly/.test(r.error), `RENAME: ${r.error}`);
    assert.deepEqual((await respCall(["mget", "src", "dst"], null)).reply, ["value", null]);
    // DEL of several keys, one refused.
    r = await respCall(["del", "a", "b"], unavailable, 1);
    assert.match(r.error ?? "", /^UNCERTAIN /);
    // A read fan-out that partly failed changed nothing: the failure's own word.
    r = await respCall(["mget", "a", "b"], unavailable, 1);
    assert.match(r.error ?? "", /^CLUSTERDOWN /);
    // And with no failure, the same commands succeed (the harness does not fail by itself).
    assert.equal((await respCall(["mset", "a", "1", "b", "2"], null)).reply, "OK");
    assert.deepEqual((await respCall(["mget", "a", "b"], null)).reply, ["1", "2"]);
  });
});

describe("the native port answers every failure as an error with its code", () => {
  const calls: [string, (c: PiccoloClient) => Promise<unknown>][] = [
    ["get", (c) => c.get("k")],
    ["put", (c) => c.put("k", "v")],
    ["insert", (c) => c.insert("k", "v")],
    ["update", (c) => c.update("k", "v")],
    ["cas", (c) => c.cas("k", "v", 1)],
    ["delete", (c) => c.delete("k")],
    ["exists", (c) => c.exists("k")],
    ["expire", (c) => c.expire("k", 1000)],
    ["persist", (c) => c.persist("k")],
    ["ttl", (c) => c.ttl("k")],
    ["mget", (c) => c.mget(["a", "b"])],
    ["mput", (c) => c.mput([["a", "1"]])],
    ["mdel", (c) => c.mdel(["a", "b"])],
    ["scan", (c) => c.scan()],
    ["stats", (c) => c.stats()],
  ];
  for (const [name, code] of FAILURES)
    it(`${name}: every operation rejects with it`, async () => {
      for (const [op, call] of calls) {
        n.shards.reset(code);
        try {
          const got = await call(native).then(
            (v) => ({ ok: true as const, v }),
            (e: unknown) => ({ ok: false as const, e }),
          );
          assert.equal(got.ok, false, `${op} with ${name} resolved: ${JSON.stringify(got.ok && got.v)}`);
          if (!got.ok) {
            assert.ok(got.e instanceof PiccoloError, `${op}: ${String(got.e)}`);
            assert.equal(got.e.codeName, name, `${op} with ${name}: ${got.e.message}`);
          }
        } finally {
          n.shards.reset(null);
        }
      }
    });

  it("an mput that fails after some keys were written answers TIMEOUT (outcome unknown), saying so", async () => {
    n.shards.reset(ErrorCode.UNAVAILABLE, 1);
    await assert.rejects(
      native.mput([
        ["a", "1"],
        ["b", "2"],
      ]),
      (e: PiccoloError) => {
        assert.equal(e.codeName, "TIMEOUT");
        assert.match(e.message, /partly applied: 1 of 2 keys written/);
        return true;
      },
    );
    n.shards.reset(null);
  });
});

describe("the Cerializer answers every failure as a problem, never as success or 404", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGateway([n.port]);
  });
  after(async () => {
    await gw.stop();
  });

  const json = { "content-type": "application/json" };
  const routes: { name: string; write: boolean; path: string; init?: RequestInit }[] = [
    { name: "GET /v1/kv/k", write: false, path: "/v1/kv/k" },
    { name: "GET /v1/kv/k (JSON)", write: false, path: "/v1/kv/k", init: { headers: { accept: "application/json" } } },
    { name: "PUT /v1/kv/k", write: true, path: "/v1/kv/k", init: { method: "PUT", body: "v" } },
    {
      name: "PUT If-None-Match: *",
      write: true,
      path: "/v1/kv/k",
      init: { method: "PUT", body: "v", headers: { "if-none-match": "*" } },
    },
    {
      name: "PUT If-Match: *",
      write: true,
      path: "/v1/kv/k",
      init: { method: "PUT", body: "v", headers: { "if-match": "*" } },
    },
    {
      name: 'PUT If-Match: "1"',
      write: true,
      path: "/v1/kv/k",
      init: { method: "PUT", body: "v", headers: { "if-match": '"1"' } },
    },
    { name: "DELETE /v1/kv/k", write: true, path: "/v1/kv/k", init: { method: "DELETE" } },
    { name: "GET /v1/kv?prefix=", write: false, path: "/v1/kv?prefix=k" },
  ];
  /** Codes only a client makes (a node never sends them as a result): they would mark the node down. */
  const nodeSends = FAILURES.filter(([name]) => name !== "CONNECTION_CLOSED");
  /** Codes a route may legitimately turn into its own condition answer (404, 412). */
  const conditions = new Set(["NOT_FOUND", "ALREADY_EXISTS", "VERSION_MISMATCH"]);

  for (const [name, code] of nodeSends)
    it(`${name}: every route answers a problem with the table's type and status`, async () => {
      for (const r of routes) {
        n.shards.reset(code);
        let res: Response;
        try {
          res = await gw.fetch(r.path, r.init);
        } finally {
          n.shards.reset(null);
        }
        const what = `${r.name} with ${name}`;
        const body = (await res.json()) as { type?: string; code?: string; applied?: string };
        assert.ok(res.status >= 400, `${what}: ${res.status} ${JSON.stringify(body)}`);
        if (conditions.has(name)) continue;
        assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8", what);
        const o = OUTCOMES[name];
        const maybe = r.write && o.applied === "maybe";
        const type = maybe ? "node-timeout" : o.problem;
        assert.equal(body.type, PROBLEM_BASE + type, what);
        assert.equal(res.status, PROBLEMS[type as keyof typeof PROBLEMS].status, what);
        assert.equal(body.code, name, what);
        if (r.write) assert.equal(body.applied, maybe ? "maybe" : "no", what);
      }
    });

  for (const [name, code] of nodeSends)
    it(`${name}: a batch answers it in each operation's slot, and the RPC path in the response's error`, async () => {
      n.shards.reset(code);
      try {
        const batch = await gw.fetch("/v1/batch", {
          method: "POST",
          headers: json,
          body: JSON.stringify([
            { op: "get", key: "a" },
            { op: "put", key: "b", value: "1" },
            { op: "delete", key: "c" },
          ]),
        });
        const { results } = (await batch.json()) as { results: { status: number; code?: string }[] };
        assert.equal(results.length, 3);
        for (const [i, res] of results.entries()) {
          assert.ok(res.status >= 400, `batch op ${i} with ${name}: ${JSON.stringify(res)}`);
          if (!conditions.has(name)) assert.equal(res.code, name);
        }
        const rpc = await gw.fetch("/v1/rpc", { method: "POST", headers: json, body: '{"get":{"key":"a"}}' });
        const answer = (await rpc.json()) as { error?: { code: number }; status?: number; code?: string };
        // A refusal of the caller is HTTP's to say (401/403 problem+json, routes/rpc.ts); a store error is the Response's.
        if (name === "NOAUTH" || name === "NOPERM" || name === "DENIED") {
          assert.equal(rpc.status, name === "NOAUTH" ? 401 : 403, `rpc get with ${name}: ${JSON.stringify(answer)}`);
          assert.equal(answer.code, name);
        } else assert.equal(answer.error?.code, code, `rpc get with ${name}: ${JSON.stringify(answer)}`);
      } finally {
        n.shards.reset(null);
      }
    });
});
