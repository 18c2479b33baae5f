// A real cluster that cannot serve says so, on every port. Three members with
// the default flags; keys written; then two members paused (SIGSTOP) for
// longer than a request's deadline, so no partition has a majority. Through
// the member left, every read and write must answer an error (CLUSTERDOWN,
// TIMEOUT, UNCERTAIN on the Redis port; UNAVAILABLE or TIMEOUT natively; 503
// or 504 through the Cerializer), never nil or 404 for a key that has a value,
// never OK for a write that was not applied. Resumed, the cluster serves
// every key again. (Before the outcome table, the Redis port answered nil
// to GET and SET here: test/node/honest-failures.test.ts has every status
// on every command.)
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import type { PiccoloError } from "../../src/errors.js";
import { redisClient } from "../resp/support.js";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

let root: string;
const nodes: RunningNode[] = [];
let gw: RunningGateway;
let redis: Redis;
const KEYS = Array.from({ length: 12 }, (_, i) => `honest-${i}`);

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-honest-"));
  const list = await memberList();
  for (let i = 0; i < 3; i++) nodes.push(await startMember(list, root, i));
  gw = await startGateway(
    nodes.map((n) => n.port),
    ["--cluster", "true"],
  );
  // A client timeout longer than the member's 5 s deadline: the member's own answer is what we see.
  redis = redisClient({ port: nodes[0]!.respPort, commandTimeout: 12_000, maxRetriesPerRequest: 0 });
});
after(async () => {
  redis?.disconnect();
  for (const n of nodes) n.process.kill("SIGCONT");
  await gw?.stop();
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

/** The Redis reply, or the error's text. */
async function call(...args: string[]): Promise<{ reply?: unknown; error?: string }> {
  try {
    return { reply: await redis.call(args[0]!, ...args.slice(1)) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

describe("a cluster without a majority answers errors, never absent or done", () => {
  it("every key is written while the cluster is whole", async () => {
    for (const k of KEYS)
      await eventually(`set ${k}`, async () => assert.equal((await call("set", k, "v1")).reply, "OK"));
  });

  it("with two members paused past the deadline, the third answers every request with an error", async () => {
    nodes[1]!.process.kill("SIGSTOP");
    nodes[2]!.process.kill("SIGSTOP");
    const native = await nodes[0]!.client({ timeoutMs: 12_000 });
    try {
      // Natively: rejected with UNAVAILABLE (nothing applied) or TIMEOUT (unknown), never null.
      const unavailable = (e: PiccoloError) => /^(UNAVAILABLE|TIMEOUT)$/.test(e.codeName);
      // Through the Cerializer: 503 or 504 problems, never 200 or 404.
      const failedOver = async (what: string, res: Promise<Response>) => {
        const r = await res;
        assert.ok(r.status === 503 || r.status === 504, `${what}: ${r.status} ${await r.text()}`);
      };
      // Every protocol at once: each request may wait out the request deadline (5 s) before its error.
      const [results] = await Promise.all([
        Promise.all(
          KEYS.flatMap((k) => [
            call("get", k).then((r) => ({ what: `GET ${k}`, ...r })),
            call("set", k, "v2").then((r) => ({ what: `SET ${k}`, ...r })),
            call("setex", k, "100", "v3").then((r) => ({ what: `SETEX ${k}`, ...r })),
            call("incr", `${k}-n`).then((r) => ({ what: `INCR ${k}-n`, ...r })),
          ]),
        ),
        Promise.all(
          KEYS.slice(0, 4).flatMap((k) => [
            assert.rejects(native.get(k), unavailable),
            assert.rejects(native.put(k, "v4"), unavailable),
            failedOver(`GET ${k}`, gw.fetch(`/v1/kv/${k}`)),
            failedOver(`PUT ${k}`, gw.fetch(`/v1/kv/${k}`, { method: "PUT", body: "v5" })),
          ]),
        ),
      ]);
      for (const r of results) {
        assert.ok(r.error !== undefined, `${r.what} answered ${JSON.stringify(r.reply)} instead of an error`);
        assert.match(r.error, /^(CLUSTERDOWN|TIMEOUT|UNCERTAIN) /, `${r.what}: ${r.error}`);
      }
      // Reads changed nothing and say so; no read says UNCERTAIN.
      for (const r of results.filter((x) => x.what.startsWith("GET")))
        assert.match(r.error!, /^(CLUSTERDOWN|TIMEOUT) /, r.what);
    } finally {
      await native.close();
      nodes[1]!.process.kill("SIGCONT");
      nodes[2]!.process.kill("SIGCONT");
    }
  });

  it("resumed, the cluster serves every key again, each with a value it was given", async () => {
    for (const k of KEYS)
      await eventually(
        `get ${k}`,
        async () => {
          const r = await call("get", k);
          assert.ok(typeof r.reply === "string" && /^v[1-5]$/.test(r.reply), `${k}: ${JSON.stringify(r)}`);
        },
        30_000,
        200,
      );
    for (const n of nodes) assert.equal(n.process.exitCode, null, "every member is still running");
  });
});
