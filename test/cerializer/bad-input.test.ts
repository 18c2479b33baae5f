// Every bad input the issue names gets a clear, stable 4xx problem, nothing
// is half-applied, and the gateway keeps serving everyone else.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { P, problem, type RunningGateway, startGateway } from "../support/cerializer.js";
import { type RunningNode, startNode } from "../support/node.js";

const MAX_VALUE = 64 * 1024;
const MAX_BODY = 128 * 1024;
let node: RunningNode;
let gw: RunningGateway;
before(async () => {
  node = await startNode(["--shards", "1", "--max-value-bytes", String(MAX_VALUE)]);
  gw = await startGateway(
    [node.port],
    [
      "--max-key-bytes",
      "100",
      "--max-value-bytes",
      String(MAX_VALUE),
      "--max-body-bytes",
      String(MAX_BODY),
      "--max-batch-ops",
      "50",
    ],
  );
});
after(async () => {
  await gw?.stop();
  await node?.stop();
});

const json = (path: string, body: string, method = "POST") =>
  gw.fetch(path, { method, body, headers: { "content-type": "application/json" } });

async function expectProblem(res: Response, status: number, type: string, detail?: RegExp) {
  assert.equal(res.status, status, `status for ${type}`);
  const p = await problem(res);
  assert.equal(p.type, P(type));
  assert.equal(p.status, status);
  assert.ok(typeof p.title === "string" && p.title.length > 0);
  if (detail) assert.match(p.detail, detail);
  return p;
}

describe("Cerializer bad input", () => {
  it("invalid JSON is 400 invalid-json on every JSON route", async () => {
    await expectProblem(await json("/v1/batch", "[{"), 400, "invalid-json");
    await expectProblem(await json("/v1/rpc", "{nope"), 400, "invalid-json");
    await expectProblem(await json("/v1/kv/k", '{"value": ', "PUT"), 400, "invalid-json");
    await expectProblem(await json("/v1/rpc", ""), 400, "invalid-json");
  });

  it("bad percent-encoding in a key is 400 bad-percent-encoding", async () => {
    for (const k of ["%G1", "abc%", "%2", "a%zzb"])
      await expectProblem(await gw.fetch(`/v1/kv/${k}`), 400, "bad-percent-encoding");
    // ...and in a listing prefix.
    await expectProblem(await gw.fetch("/v1/kv?prefix=%Q0"), 400, "bad-percent-encoding");
  });

  it("an empty or over-long key is 400 invalid-key, on every route", async () => {
    await expectProblem(await gw.fetch("/v1/kv/"), 400, "invalid-key", /empty/);
    const long = "k".repeat(101);
    await expectProblem(await gw.fetch(`/v1/kv/${long}`), 400, "invalid-key", /101 bytes; the limit is 100/);
    await expectProblem(await gw.fetch(`/v1/kv/${long}`, { method: "PUT", body: "v" }), 400, "invalid-key");
    await expectProblem(await gw.fetch(`/v1/kv/${long}`, { method: "DELETE" }), 400, "invalid-key");
    await expectProblem(await json("/v1/batch", JSON.stringify([{ op: "get", key: long }])), 400, "invalid-key");
    await expectProblem(await json("/v1/rpc", JSON.stringify({ get: { key: long } })), 400, "invalid-key");
    // Exactly at the limit is fine.
    const edge = "k".repeat(100);
    assert.equal((await gw.fetch(`/v1/kv/${edge}`, { method: "PUT", body: "v" })).status, 201);
  });

  it("a value at the limit is stored; one byte over is 413 value-too-large", async () => {
    const at = new Uint8Array(MAX_VALUE).fill(7);
    assert.equal((await gw.fetch("/v1/kv/big", { method: "PUT", body: at })).status, 201);
    assert.equal((await (await gw.fetch("/v1/kv/big")).arrayBuffer()).byteLength, MAX_VALUE);
    const over = new Uint8Array(MAX_VALUE + 1);
    await expectProblem(await gw.fetch("/v1/kv/big", { method: "PUT", body: over }), 413, "value-too-large");
    assert.equal((await (await gw.fetch("/v1/kv/big")).arrayBuffer()).byteLength, MAX_VALUE, "unchanged");
    // Through the envelope (base64) and through a batch too.
    const b64 = Buffer.from(over).toString("base64");
    await expectProblem(
      await json("/v1/kv/big", JSON.stringify({ value: b64, encoding: "base64" }), "PUT"),
      413,
      "value-too-large",
    );
    await expectProblem(
      await json("/v1/batch", JSON.stringify([{ op: "put", key: "big", value: b64, encoding: "base64" }])),
      413,
      "value-too-large",
    );
  });

  it("a body over --max-body-bytes is 413 body-too-large", async () => {
    const body = new Uint8Array(MAX_BODY + 1);
    await expectProblem(await gw.fetch("/v1/kv/huge", { method: "PUT", body }), 413, "body-too-large");
    await expectProblem(await json("/v1/batch", `[${" ".repeat(MAX_BODY)}]`), 413, "body-too-large");
  });

  it("a batch over the limit is 413 and applies nothing", async () => {
    const ops = Array.from({ length: 51 }, (_, i) => ({ op: "put", key: `over-${i}`, value: "v" }));
    const p = await expectProblem(await json("/v1/batch", JSON.stringify(ops)), 413, "batch-too-large");
    assert.equal(p.limit, 50);
    assert.equal((await gw.fetch("/v1/kv/over-0")).status, 404, "nothing was applied");
  });

  it("a batch with one bad operation is refused whole, naming it", async () => {
    const cases: [unknown, string][] = [
      [{ nope: 1 }, "invalid-request"],
      [[{ op: "explode", key: "a" }], "invalid-request"],
      [[{ op: "put", key: "a" }], "invalid-request"],
      [[{ op: "get", key: "a", value: "x" }], "invalid-request"],
      [[{ op: "cas", key: "a", value: "x" }], "invalid-request"],
      [[{ op: "get", key: "a", extra: true }], "invalid-request"],
      [[{ op: "get", key: 5 }], "invalid-request"],
      [
        [
          { op: "put", key: "ok-1", value: "v" },
          { op: "put", key: "a", value: "!!", encoding: "base64" },
        ],
        "invalid-base64",
      ],
      [[{ op: "put", key: "ok-1", value: "v", ttlMs: 0 }], "invalid-request"],
    ];
    for (const [body, type] of cases) await expectProblem(await json("/v1/batch", JSON.stringify(body)), 400, type);
    assert.equal((await gw.fetch("/v1/kv/ok-1")).status, 404, "the valid operation before the bad one was not applied");
  });

  it("a consistency other than linearizable or stale is 400 invalid-consistency, on both read routes", async () => {
    for (const path of ["/v1/kv/k?consistency=eventual", "/v1/kv?consistency=STALE", "/v1/kv/k?consistency="]) {
      const p = await expectProblem(await gw.fetch(path), 400, "invalid-consistency", /one of linearizable, stale/);
      assert.deepEqual(p.allowed, ["linearizable", "stale"]);
    }
  });

  it("bad base64 in an envelope is 400 invalid-base64", async () => {
    await expectProblem(
      await json("/v1/kv/b64", JSON.stringify({ value: "not base64!", encoding: "base64" }), "PUT"),
      400,
      "invalid-base64",
    );
    await expectProblem(await json("/v1/kv/b64", JSON.stringify({ value: 5 }), "PUT"), 400, "invalid-request");
    await expectProblem(
      await json("/v1/kv/b64", JSON.stringify({ value: "x", colour: "red" }), "PUT"),
      400,
      "invalid-request",
    );
    await expectProblem(
      await json("/v1/kv/b64", JSON.stringify({ value: "x", key: "other" }), "PUT"),
      400,
      "invalid-argument",
      /differs/,
    );
  });

  it("RPC: a field that does not fit the schema is 400 naming the field", async () => {
    const cases: [unknown, string, RegExp][] = [
      [{ get: { kee: "a" } }, "get.kee", /no such field in Key/],
      [{ bogus: {} }, "bogus", /no such field in Request/],
      [{}, "", /exactly one of/],
      [{ get: { key: "a" }, ping: null }, "ping", /only one of/],
      [{ put: { key: "a", value: "v", ttlMs: "soon" } }, "put.ttlMs", /uint64/],
      [{ put: { key: "a", value: "v", ttlMs: -1 } }, "put.ttlMs", /uint64/],
      [{ put: { key: "a", value: "v", keepTtl: "yes" } }, "put.keepTtl", /boolean/],
      [{ put: { key: "a", value: { base64: "***" } } }, "put.value", /base64/],
      [{ mget: { keys: "a" } }, "mget.keys", /array/],
      [{ mget: { keys: [{ key: "a" }, { key: 7 }] } }, "mget.keys[1].key", /Data/],
      [{ scan: { count: 2 ** 40 } }, "scan.count", /uint32/],
      [{ ping: 5 }, "ping", /null/],
    ];
    for (const [body, field, detail] of cases) {
      const p = await expectProblem(await json("/v1/rpc", JSON.stringify(body)), 400, "invalid-rpc-field", detail);
      if (field !== "") assert.equal(p.field, field, JSON.stringify(body));
    }
    // Not even an object: the route's own schema says so.
    await expectProblem(await json("/v1/rpc", JSON.stringify("a string")), 400, "invalid-request", /object/);
    // The gateway owns authentication of its connections.
    const p = await expectProblem(
      await json("/v1/rpc", JSON.stringify({ auth: { password: "x" } })),
      400,
      "invalid-rpc-field",
    );
    assert.equal(p.field, "auth");
  });

  it("JSON routes refuse other content types with 415", async () => {
    await expectProblem(
      await gw.fetch("/v1/batch", { method: "POST", body: "[]", headers: { "content-type": "text/plain" } }),
      415,
      "unsupported-media-type",
    );
    await expectProblem(
      await gw.fetch("/v1/rpc", { method: "POST", body: "{}", headers: { "content-type": "application/x-thing" } }),
      415,
      "unsupported-media-type",
    );
  });

  it("unknown routes are 404 route-not-found; a wrong method is 405 with Allow", async () => {
    await expectProblem(await gw.fetch("/v2/kv/a"), 404, "route-not-found");
    await expectProblem(await gw.fetch("/"), 404, "route-not-found");
    const r = await gw.fetch("/v1/batch", { method: "GET" });
    await expectProblem(r, 405, "method-not-allowed");
    assert.equal(r.headers.get("allow"), "POST");
    const k = await gw.fetch("/v1/kv/a", { method: "POST", body: "x" });
    await expectProblem(k, 405, "method-not-allowed", /POST is not allowed on \/v1\/kv\/a/);
    assert.equal(k.headers.get("allow"), "GET, PUT, DELETE");
  });

  it("after all of that, the gateway and the node still serve", async () => {
    assert.equal((await gw.fetch("/v1/kv/alive", { method: "PUT", body: "yes" })).status, 201);
    assert.equal(await (await gw.fetch("/v1/kv/alive")).text(), "yes");
    assert.equal((await gw.fetch("/healthz")).status, 200);
    assert.equal(gw.process.exitCode, null);
    assert.doesNotMatch(gw.stderr(), /internal error/);
  });
});
