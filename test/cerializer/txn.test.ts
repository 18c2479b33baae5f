// POST /v1/txn through a real gateway: in front of one node (both branches,
// compares, encodings, bad input, the limits), and in front of a three-member
// cluster, where keys in different partitions are 409 and hash-tagged keys
// work; the cluster client's txn() there too.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PiccoloClusterClient } from "../../src/client/cluster-client.js";
import { partitionOf } from "../../src/cluster/placement.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { initHash } from "../../src/hash.js";
import { TXN_MAX_OPS } from "../../src/limits.js";
import { P, problem, type RunningGateway, startGateway } from "../support/cerializer.js";
import { memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";

interface TxnAnswer {
  succeeded: boolean;
  results: Record<string, unknown>[];
}

function post(gw: RunningGateway, body: unknown, raw = false): Promise<Response> {
  return gw.fetch("/v1/txn", {
    method: "POST",
    body: raw ? (body as string) : JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
}

async function txn(gw: RunningGateway, body: unknown): Promise<TxnAnswer> {
  const r = await post(gw, body);
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as TxnAnswer;
}

async function expectProblem(r: Response, status: number, type: string): Promise<Record<string, unknown>> {
  assert.equal(r.status, status, await r.clone().text());
  const p = await problem(r);
  assert.equal(p.type, P(type));
  return p;
}

describe("Cerializer /v1/txn in front of one node", () => {
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

  it("the success branch: puts, a get, a delete, results in order", async () => {
    const r = await txn(gw, {
      compare: [{ key: "h1:a", target: "version", relation: "equal", version: 0 }],
      success: [
        { op: "put", key: "h1:a", value: "1" },
        { op: "put", key: "h1:b", value: "/wAB", encoding: "base64", ttlMs: 60_000 },
        { op: "get", key: "h1:b" },
        { op: "delete", key: "h1:none" },
      ],
      failure: [{ op: "get", key: "h1:a" }],
    });
    assert.equal(r.succeeded, true);
    assert.equal(r.results.length, 4);
    assert.equal(r.results[0]!.op, "put");
    assert.equal(r.results[0]!.created, true);
    const version = r.results[1]!.version as number;
    assert.ok(version > 0);
    const g = r.results[2]!;
    assert.equal(g.found, true);
    assert.equal(g.value, "/wAB", "bytes that are not UTF-8 come back as base64");
    assert.equal(g.encoding, "base64");
    assert.equal(g.version, version);
    assert.ok((g.ttlMs as number) > 50_000 && (g.ttlMs as number) <= 60_000, `ttlMs ${g.ttlMs}`);
    assert.deepEqual(r.results[3], { op: "delete", existed: false });
    // The node itself agrees.
    const c = await node.client();
    assert.deepEqual([...(await c.get("h1:b"))!.value], [0xff, 0, 1]);
    assert.equal((await c.get("h1:a"))?.value.toString(), "1");
    await c.close();
  });

  it("the failure branch: a stale version compare applies nothing of the success branch", async () => {
    const w = await txn(gw, { success: [{ op: "put", key: "h2:a", value: "old" }] });
    const v = w.results[0]!.version as number;
    await txn(gw, { success: [{ op: "put", key: "h2:a", value: "newer" }] });
    const r = await txn(gw, {
      compare: [{ key: "h2:a", version: v }],
      success: [
        { op: "put", key: "h2:a", value: "mine" },
        { op: "put", key: "h2:c", value: "x" },
      ],
      failure: [
        { op: "get", key: "h2:a" },
        { op: "get", key: "h2:c" },
      ],
    });
    assert.equal(r.succeeded, false);
    assert.equal(r.results[0]!.value, "newer");
    assert.ok((r.results[0]!.version as number) > v);
    assert.equal(r.results[0]!.ttlMs, null);
    assert.deepEqual(r.results[1], { op: "get", found: false });
    assert.equal((await gw.fetch("/v1/kv/h2:c")).status, 404);
  });

  it("compares on value and on absence", async () => {
    await txn(gw, { success: [{ op: "put", key: "h3:k", value: "banana" }] });
    const holds = async (compare: unknown[]) => (await txn(gw, { compare })).succeeded;
    assert.equal(await holds([{ key: "h3:k", value: "banana" }]), true);
    assert.equal(await holds([{ key: "h3:k", value: "apple" }]), false);
    assert.equal(await holds([{ key: "h3:k", target: "value", relation: "greater", value: "apple" }]), true);
    assert.equal(await holds([{ key: "h3:k", relation: "less", value: "apple" }]), false);
    assert.equal(await holds([{ key: "h3:none", version: 0 }]), true);
    assert.equal(await holds([{ key: "h3:k", version: 0 }]), false);
    assert.equal(await holds([{ key: "h3:k", version: 0, relation: "greater" }]), true);
    assert.equal(await holds([{ key: "h3:none", value: "" }]), false, "an absent key matches no value");
  });

  it('"verdictOnly": true answers only which branch ran; the branch runs all the same', async () => {
    const puts = Array.from({ length: 10 }, (_, i) => ({ op: "put", key: `h7:${i}`, value: `v${i}` }));
    assert.deepEqual(await txn(gw, { success: puts, verdictOnly: true }), { succeeded: true, results: [] });
    assert.equal(await (await gw.fetch("/v1/kv/h7:9")).text(), "v9");
    const r = await txn(gw, {
      compare: [{ key: "h7:0", value: "other" }],
      success: [{ op: "put", key: "h7:1", value: "no" }],
      failure: [{ op: "put", key: "h7:f", value: "yes" }],
      verdictOnly: true,
    });
    assert.deepEqual(r, { succeeded: false, results: [] });
    assert.equal(await (await gw.fetch("/v1/kv/h7:1")).text(), "v1");
    assert.equal(await (await gw.fetch("/v1/kv/h7:f")).text(), "yes");
    await expectProblem(await post(gw, { success: puts, verdictOnly: "yes" }), 400, "invalid-request");
  });

  it("invalid JSON, a body that does not fit the schema, and bad ops are 400; nothing is applied", async () => {
    await expectProblem(await post(gw, '{"success": [', true), 400, "invalid-json");
    await expectProblem(await post(gw, { success: [{ op: "incr", key: "a" }] }), 400, "invalid-request");
    await expectProblem(
      await post(gw, { compare: [{ key: "a", relation: "like", version: 1 }] }),
      400,
      "invalid-request",
    );
    await expectProblem(await post(gw, { succes: [] }), 400, "invalid-request");
    await expectProblem(await post(gw, [{ op: "get", key: "a" }]), 400, "invalid-request");
    const put = { op: "put", key: "h4:applied?", value: "1" };
    const cases: [unknown, string][] = [
      [{ success: [put, { op: "put", key: "h4:a" }] }, "invalid-request"],
      [{ success: [put, { op: "get", key: "h4:a", value: "x" }] }, "invalid-request"],
      [{ compare: [{ key: "h4:a" }], success: [put] }, "invalid-request"],
      [{ compare: [{ key: "h4:a", version: 1, value: "x" }], success: [put] }, "invalid-request"],
      [{ success: [put, { op: "get", key: "" }] }, "invalid-key"],
      [{ success: [put, { op: "put", key: "h4:a", value: "!!", encoding: "base64" }] }, "invalid-base64"],
      [{ success: [put, { op: "put", key: "h4:a", value: "1", ttlMs: 0 }] }, "invalid-request"],
    ];
    for (const [body, type] of cases) await expectProblem(await post(gw, body), 400, type);
    await expectProblem(
      await gw.fetch("/v1/txn", { method: "POST", body: "{}", headers: { "content-type": "text/plain" } }),
      415,
      "unsupported-media-type",
    );
    assert.equal((await gw.fetch("/v1/kv/h4:applied%3F")).status, 404);
  });

  it(`over ${TXN_MAX_OPS} compares and ops is 413 transaction-too-large; at the limit it runs`, async () => {
    const gets = Array.from({ length: TXN_MAX_OPS }, (_, i) => ({ op: "get", key: `h5:${i}` }));
    const ok = await txn(gw, { success: gets });
    assert.equal(ok.results.length, TXN_MAX_OPS);
    const p = await expectProblem(
      await post(gw, { success: [{ op: "put", key: "h5:written", value: "1" }, ...gets] }),
      413,
      "transaction-too-large",
    );
    assert.equal(p.code, "TXN_TOO_LARGE");
    assert.equal((await gw.fetch("/v1/kv/h5:written")).status, 404);
  });

  it("/v1/batch says it is not atomic; /openapi.json describes /v1/txn", async () => {
    const r = await gw.fetch("/v1/batch", {
      method: "POST",
      body: JSON.stringify([{ op: "put", key: "h6:a", value: "1" }]),
      headers: { "content-type": "application/json" },
    });
    assert.equal(((await r.json()) as { atomic: unknown }).atomic, false);
    const doc = (await (await gw.fetch("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { description?: string; responses?: Record<string, unknown> }>>;
    };
    const t = doc.paths["/v1/txn"]?.post;
    assert.ok(t !== undefined, "post /v1/txn is described");
    assert.ok(t.responses?.["409"] !== undefined && t.responses["413"] !== undefined);
    assert.match(doc.paths["/v1/batch"]!.post!.description ?? "", /Not atomic/);
  });
});

describe("Cerializer /v1/txn in front of a three-member cluster (64 partitions)", () => {
  let root: string;
  const nodes: RunningNode[] = [];
  let gw: RunningGateway;
  let untagged: [string, string];

  before(async () => {
    await initHash();
    const a = "acct-a";
    let b = "acct-b";
    for (let i = 0; partitionOf(Buffer.from(b), 64) === partitionOf(Buffer.from(a), 64); i++) b = `acct-b${i}`;
    untagged = [a, b];
    root = await mkdtemp(join(tmpdir(), "piccolo-gw-txn-"));
    const list = await memberList();
    for (let i = 0; i < 3; i++) nodes.push(await startMember(list, root, i));
    gw = await startGateway(
      nodes.map((n) => n.port),
      ["--cluster", "true"],
    );
  });
  after(async () => {
    await gw?.stop();
    await stopAll(nodes);
    await rm(root, { recursive: true, force: true });
  });

  /** Retries while the cluster elects its leaders (503 unavailable / 504 before any leader). */
  async function settled(body: unknown): Promise<Response> {
    const end = Date.now() + 20_000;
    for (;;) {
      const r = await post(gw, body);
      if ((r.status !== 503 && r.status !== 504) || Date.now() > end) return r;
      await r.arrayBuffer();
      await sleep(100);
    }
  }

  it("hash-tagged keys in one transaction work", async () => {
    const [x, y] = ["{acct}:a", "{acct}:b"];
    const r = await settled({
      compare: [
        { key: x, version: 0 },
        { key: y, version: 0 },
      ],
      success: [
        { op: "put", key: x, value: "50" },
        { op: "put", key: y, value: "50" },
      ],
    });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(((await r.json()) as TxnAnswer).succeeded, true);
    const t = await txn(gw, {
      compare: [{ key: x, value: "50" }],
      success: [
        { op: "put", key: x, value: "40" },
        { op: "put", key: y, value: "60" },
        { op: "get", key: x },
      ],
    });
    assert.equal(t.succeeded, true);
    assert.equal(t.results[2]!.value, "40");
    // Verdict only, through the partition's leader: no results, the branch applied.
    const v = await txn(gw, {
      compare: [{ key: x, value: "40" }],
      success: [
        { op: "put", key: "{acct}:c", value: "1" },
        { op: "put", key: "{acct}:d", value: "2" },
      ],
      verdictOnly: true,
    });
    assert.deepEqual(v, { succeeded: true, results: [] });
    assert.equal(await (await gw.fetch(`/v1/kv/${encodeURIComponent("{acct}:d")}`)).text(), "2");
  });

  it("untagged keys in different partitions are 409 cross-partition, and nothing is applied", async () => {
    const [a, b] = untagged;
    const r = await settled({
      success: [
        { op: "put", key: a, value: "1" },
        { op: "put", key: b, value: "1" },
      ],
    });
    const p = await expectProblem(r, 409, "cross-partition");
    assert.equal(p.code, "CROSS_PARTITION");
    assert.equal(p.applied, "no");
    for (const k of untagged) assert.equal((await gw.fetch(`/v1/kv/${k}`)).status, 404);
  });

  it("the cluster client routes a tagged transaction, and refuses keys across partitions before sending", async () => {
    const cc = await PiccoloClusterClient.connect({ members: nodes.map((n) => `127.0.0.1:${n.port}`) });
    try {
      const r = await cc.txn({
        compare: [{ key: "{acct}:a", value: "40" }],
        success: [
          { op: "put", key: "{acct}:a", value: "30" },
          { op: "put", key: "{acct}:b", value: "70" },
        ],
      });
      assert.equal(r.succeeded, true);
      await assert.rejects(
        cc.txn({ success: untagged.map((key) => ({ op: "put" as const, key, value: "2" })) }),
        (err: unknown) => err instanceof PiccoloError && err.code === ErrorCode.CROSS_PARTITION && err.unsent,
      );
      // A plain client: the member answers CROSS_PARTITION itself.
      const plain = await nodes[0]!.client();
      await assert.rejects(
        plain.txn({ success: untagged.map((key) => ({ op: "put" as const, key, value: "3" })) }),
        (err: unknown) => err instanceof PiccoloError && err.code === ErrorCode.CROSS_PARTITION,
      );
      assert.equal(await plain.get(untagged[0]), null);
      await plain.close();
      const sum = await cc.txn({
        success: [
          { op: "get", key: "{acct}:a" },
          { op: "get", key: "{acct}:b" },
        ],
      });
      assert.deepEqual(
        sum.results.map((x) => (x.op === "get" ? x.value?.toString() : null)),
        ["30", "70"],
      );
    } finally {
      await cc.close();
    }
  });
});

describe("Cerializer /v1/txn and /v1/rpc's txn in front of two independent nodes", () => {
  const nodes: RunningNode[] = [];
  let gw: RunningGateway;
  before(async () => {
    for (let i = 0; i < 2; i++) nodes.push(await startNode(["--in-memory", "--shards", "1"]));
    gw = await startGateway(nodes.map((n) => n.port));
  });
  after(async () => {
    await gw?.stop();
    await stopAll(nodes);
  });

  /** Which node (0 or 1) the gateway places `key` on, found by writing it through /v1/kv. */
  async function placed(keys: string[]): Promise<number[]> {
    const clients = await Promise.all(nodes.map((n) => n.client()));
    const out: number[] = [];
    for (const k of keys) {
      const r = await gw.fetch(`/v1/kv/${k}`, { method: "PUT", body: "probe" });
      assert.ok(r.status === 201 || r.status === 200);
      const on = await Promise.all(clients.map((c) => c.exists(k)));
      assert.equal(on.filter(Boolean).length, 1);
      out.push(on.indexOf(true));
    }
    for (const c of clients) await c.close();
    return out;
  }

  it("keys the gateway places on different nodes are 409 cross-partition, on /v1/txn and /v1/rpc alike", async () => {
    const keys = Array.from({ length: 16 }, (_, i) => `n2:${i}`);
    const where = await placed(keys);
    const a = keys[where.indexOf(0)]!;
    const b = keys[where.indexOf(1)]!;
    assert.ok(where.includes(0) && where.includes(1), "the keys spread over both nodes");
    const p = await expectProblem(
      await post(gw, {
        success: [
          { op: "put", key: a, value: "x" },
          { op: "put", key: b, value: "x" },
        ],
      }),
      409,
      "cross-partition",
    );
    assert.match(p.detail as string, /different nodes/);
    const r = await gw.fetch("/v1/rpc", {
      method: "POST",
      body: JSON.stringify({ txn: { success: [{ put: { key: a, value: "y" } }, { put: { key: b, value: "y" } }] } }),
      headers: { "content-type": "application/json" },
    });
    await expectProblem(r, 409, "cross-partition");
    for (const k of [a, b]) assert.equal(await (await gw.fetch(`/v1/kv/${k}`)).text(), "probe");
  });

  it("/v1/rpc sends a txn to the node that owns its keys", async () => {
    for (let i = 0; i < 8; i++) {
      const key = `n2:rpc:${i}`;
      const r = await gw.fetch("/v1/rpc", {
        method: "POST",
        body: JSON.stringify({
          txn: { compares: [{ key, target: 0, relation: 0, version: 0 }], success: [{ put: { key, value: "r" } }] },
        }),
        headers: { "content-type": "application/json" },
      });
      assert.equal(r.status, 200, await r.clone().text());
      const out = (await r.json()) as { txn: { succeeded: boolean; results: { put: { created: boolean } }[] } };
      assert.equal(out.txn.succeeded, true);
      assert.equal(out.txn.results[0]!.put.created, true);
      assert.equal(await (await gw.fetch(`/v1/kv/${key}`)).text(), "r", `${key} is where the gateway reads it`);
    }
  });
});
