// POST /v1/rpc (the schema-driven path) and POST /v1/batch, and the
// operating routes (/healthz, /readyz, /v1/stats, /metrics, /openapi.json,
// /docs), through a real gateway in front of a real node.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { structInfo } from "../../src/protocol/json.js";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { type RunningNode, startNode } from "../support/node.js";

let node: RunningNode;
let gw: RunningGateway;
before(async () => {
  node = await startNode(["--shards", "2"]);
  gw = await startGateway([node.port]);
});
after(async () => {
  await gw?.stop();
  await node?.stop();
});

async function rpc(body: unknown): Promise<Record<string, unknown>> {
  const r = await gw.fetch("/v1/rpc", {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as Record<string, unknown>;
}

async function batch(ops: unknown[]): Promise<Record<string, unknown>[]> {
  const r = await gw.fetch("/v1/batch", {
    method: "POST",
    body: JSON.stringify(ops),
    headers: { "content-type": "application/json" },
  });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { results: Record<string, unknown>[] }).results;
}

describe("Cerializer /v1/rpc", () => {
  it("ping, put, get, ttl: the Response comes back as JSON, the caller's id echoed", async () => {
    assert.deepEqual(await rpc({ id: 7, ping: null }), { id: 7, pong: null });
    const w = await rpc({ put: { key: "rpc-a", value: { base64: "/wAB" }, ttlMs: 60_000 } });
    const written = w.written as { version: number; created: boolean };
    assert.equal(written.created, true);
    const g = await rpc({ get: { key: "rpc-a" } });
    const v = g.value as { found: boolean; value: unknown; version: number; expireAtMs: number };
    assert.equal(v.found, true);
    assert.deepEqual(v.value, { base64: "/wAB" }, "bytes that are not UTF-8 come back as base64");
    assert.equal(v.version, written.version);
    assert.ok(v.expireAtMs > Date.now());
    const t = await rpc({ ttl: { key: "rpc-a" } });
    const ms = (t.ttl as { ttlMs: number }).ttlMs;
    assert.ok(ms > 0 && ms <= 60_000);
    // The node itself agrees on the bytes.
    const c = await node.client();
    assert.deepEqual([...(await c.get("rpc-a"))!.value], [0xff, 0, 1]);
    await c.close();
  });

  it("store errors are part of the Response (200), with the store's code", async () => {
    await rpc({ put: { key: "rpc-cas", value: "x" } });
    const r = await rpc({ cas: { key: "rpc-cas", value: "y", expectedVersion: "999999999" } });
    const e = r.error as { code: number; message: string; version: number };
    assert.equal(e.code, 3, "VERSION_MISMATCH");
    assert.ok(e.version > 0);
    const ins = await rpc({ insert: { key: "rpc-cas", value: "z" } });
    assert.equal((ins.error as { code: number }).code, 2, "ALREADY_EXISTS");
  });

  it("multi-key operations, scan and stats through the schema", async () => {
    const m = await rpc({
      mput: {
        entries: [
          { key: "rpc-m1", value: "1" },
          { key: "rpc-m2", value: { text: "2" } },
        ],
      },
    });
    assert.equal((m.versions as number[]).length, 2);
    const g = await rpc({ mget: { keys: [{ key: "rpc-m1" }, { key: "rpc-absent" }, { key: "rpc-m2" }] } });
    const values = g.values as { found: boolean; value: { text: string } }[];
    assert.deepEqual(
      values.map((v) => (v.found ? v.value.text : null)),
      ["1", null, "2"],
    );
    // A scan answers one shard at a time; follow the cursor to the end.
    const keys: string[] = [];
    let cursor: number | string = 0;
    do {
      const s = await rpc({ scan: { cursor, count: 1000, prefix: "rpc-m" } });
      const page = s.scan as { cursor: number | string; keys: { key: { text: string } }[] };
      keys.push(...page.keys.map((k) => k.key.text));
      cursor = page.cursor;
    } while (cursor !== 0);
    assert.deepEqual(keys.sort(), ["rpc-m1", "rpc-m2"]);
    const st = await rpc({ stats: null });
    assert.equal((st.stats as { shards: unknown[] }).shards.length, 2);
    const d = await rpc({ mdel: { keys: [{ key: "rpc-m1" }, { key: "rpc-m2" }] } });
    assert.equal(d.count, 2);
  });

  it("knows every operation of the schema (nothing hand-listed)", async () => {
    const members = structInfo("Request")
      .fields.filter((f) => f.discriminant !== null)
      .map((f) => f.name);
    const r = await gw.fetch("/v1/rpc", {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    const p = (await r.json()) as { detail: string };
    for (const m of members) assert.match(p.detail, new RegExp(`\\b${m}\\b`));
    const openapi = (await (await gw.fetch("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { description?: string }>>;
    };
    for (const m of members) assert.match(openapi.paths["/v1/rpc"]!.post!.description!, new RegExp(`\\b${m}\\b`));
  });
});

describe("Cerializer /v1/batch", () => {
  it("runs mixed operations and answers each in order, with its own status", async () => {
    const r = await batch([
      { op: "put", key: "b-1", value: "one" },
      { op: "get", key: "b-1" },
      { op: "insert", key: "b-1", value: "again" },
      { op: "update", key: "b-absent", value: "x" },
      { op: "put", key: "b-2", value: "/wA=", encoding: "base64", ttlMs: 60_000 },
      { op: "get", key: "b-2" },
      { op: "exists", key: "b-absent" },
      { op: "delete", key: "b-1" },
      { op: "delete", key: "b-1" },
      { op: "get", key: "b-1" },
    ]);
    assert.deepEqual(
      r.map((x) => x.status),
      [201, 200, 412, 412, 201, 200, 200, 204, 404, 404],
    );
    assert.equal(r[1]!.value, "one");
    assert.equal(r[2]!.code, "ALREADY_EXISTS");
    assert.equal(r[3]!.code, "NOT_FOUND");
    assert.deepEqual([r[5]!.value, r[5]!.encoding], ["/wA=", "base64"]);
    assert.ok((r[5]!.ttlMs as number) > 0);
    assert.equal(r[6]!.exists, false);
  });

  it("applies operations on the same key in the order given", async () => {
    const ops: unknown[] = [];
    for (let i = 0; i < 200; i++) ops.push({ op: "put", key: "b-order", value: String(i) });
    ops.push({ op: "get", key: "b-order" });
    const r = await batch(ops);
    assert.equal(r.at(-1)!.value, "199");
    const versions = r.slice(0, 200).map((x) => x.version as number);
    for (let i = 1; i < versions.length; i++)
      assert.ok(versions[i]! > versions[i - 1]!, "versions rise in batch order");
  });

  it("a compare-and-swap chain: each cas uses the version before it", async () => {
    const [w] = await batch([{ op: "put", key: "b-cas", value: "0" }]);
    const v = w!.version as number;
    const r = await batch([
      { op: "cas", key: "b-cas", value: "1", version: v },
      { op: "cas", key: "b-cas", value: "2", version: v },
      { op: "delete", key: "b-cas", version: v },
    ]);
    assert.deepEqual(
      r.map((x) => x.status),
      [200, 412, 412],
    );
    assert.equal(r[1]!.currentVersion, r[0]!.version);
  });
});

describe("Cerializer operations routes", () => {
  it("/healthz and /readyz", async () => {
    assert.deepEqual(await (await gw.fetch("/healthz")).json(), { ok: true });
    const r = await gw.fetch("/readyz");
    assert.equal(r.status, 200);
    const body = (await r.json()) as { ready: boolean; nodes: { node: string; up: boolean }[] };
    assert.equal(body.ready, true);
    assert.deepEqual(
      body.nodes.map((n) => [n.node, n.up]),
      [[`127.0.0.1:${node.port}`, true]],
    );
  });

  it("/v1/stats: the gateway's and the node's own numbers", async () => {
    await gw.fetch("/v1/kv/stats-key", { method: "PUT", body: "v" });
    const s = (await (await gw.fetch("/v1/stats")).json()) as {
      gateway: { uptimeMs: number };
      nodes: { node: string; up: boolean; stats: { shards: { keys: number }[] } }[];
    };
    assert.ok(s.gateway.uptimeMs >= 0);
    assert.equal(s.nodes.length, 1);
    assert.equal(s.nodes[0]!.up, true);
    assert.ok(s.nodes[0]!.stats.shards.reduce((a, x) => a + x.keys, 0) >= 1);
  });

  it("/metrics: Prometheus text with requests by route pattern and status, node state, and node stats", async () => {
    await gw.fetch("/v1/kv/metric-key", { method: "PUT", body: "v" });
    await gw.fetch("/v1/kv/metric-absent");
    const r = await gw.fetch("/metrics");
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await r.text();
    assert.match(text, /piccolo_gateway_http_requests_total\{method="PUT",route="\/v1\/kv\/:key",status="201"\} \d+/);
    assert.match(text, /piccolo_gateway_http_requests_total\{method="GET",route="\/v1\/kv\/:key",status="404"\} \d+/);
    assert.match(text, /piccolo_gateway_http_request_duration_seconds_bucket\{le="0.005",method="PUT"/);
    assert.match(text, new RegExp(`piccolo_gateway_node_up\\{node="127.0.0.1:${node.port}"\\} 1`));
    assert.match(text, new RegExp(`piccolo_node_keys\\{node="127.0.0.1:${node.port}",shard="0"\\} \\d+`));
    assert.doesNotMatch(text, /metric-key/, "keys never become labels");
  });

  it("/openapi.json describes every route; /docs serves the interactive docs", async () => {
    const doc = (await (await gw.fetch("/openapi.json")).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    assert.match(doc.openapi, /^3\./);
    const routes = Object.entries(doc.paths).flatMap(([p, ms]) => Object.keys(ms).map((m) => `${m} ${p}`));
    for (const want of [
      "get /v1/kv/{key}",
      "put /v1/kv/{key}",
      "delete /v1/kv/{key}",
      "get /v1/kv",
      "post /v1/batch",
      "post /v1/rpc",
      "post /v1/txn",
      "get /v1/stats",
      "get /healthz",
      "get /readyz",
      "get /metrics",
      "get /v1/cluster",
      "post /v1/cluster/transfer-leader",
      "post /v1/cluster/replace",
      "get /ui",
    ])
      assert.ok(routes.includes(want), `${want} in ${routes.join(", ")}`);
    const html = await gw.fetch("/docs/");
    assert.equal(html.status, 200);
    assert.match(await html.text(), /swagger/i);
  });
});
