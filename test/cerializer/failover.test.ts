// A node killed (SIGKILL) and restarted under a running gateway: while it is
// down every request gets 503 node-unavailable with Retry-After (never a hang,
// never a crash), /readyz says so, and once the node is back the gateway
// recovers by itself. Also: two independent nodes behind one gateway, each
// key served by the node the router picks, a listing spanning both.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { P, problem, startGateway } from "../support/cerializer.js";
import { freePort, startNode } from "../support/node.js";

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("Cerializer with nodes going away", () => {
  it("answers 503 + Retry-After while the node is down, and recovers when it returns", async () => {
    const port = await freePort();
    let node = await startNode(["--shards", "1", "--port", String(port)]);
    const gw = await startGateway([port]);
    try {
      assert.equal((await gw.fetch("/v1/kv/f-1", { method: "PUT", body: "before" })).status, 201);

      // Load running across the kill: every answer must be a clean one.
      let stop = false;
      const statuses = new Map<number, number>();
      const load = (async () => {
        let i = 0;
        while (!stop) {
          const r = await gw.fetch(`/v1/kv/load-${i++ % 50}`, { method: "PUT", body: "x" });
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status >= 500) {
            const p = await problem(r);
            assert.ok([P("node-unavailable"), P("node-timeout")].includes(p.type), p.type);
          } else await r.arrayBuffer();
        }
      })();

      await sleep(100);
      node.process.kill("SIGKILL");
      await node.stop();

      const r = await until("a 503", async () => {
        const x = await gw.fetch("/v1/kv/f-1");
        if (x.status === 503) return x;
        await x.arrayBuffer();
        return undefined;
      });
      assert.equal(r.headers.get("retry-after"), "1");
      const p = await problem(r);
      assert.equal(p.type, P("node-unavailable"));
      assert.match(p.detail, new RegExp(`127\\.0\\.0\\.1:${port}`));
      const ready = await gw.fetch("/readyz");
      assert.equal(ready.status, 503);
      const rp = await problem(ready);
      assert.deepEqual(
        (rp.nodes as { up: boolean }[]).map((n) => n.up),
        [false],
      );
      // Failing fast: a down node costs no connect timeout per request.
      const t0 = Date.now();
      for (let i = 0; i < 20; i++) assert.equal((await gw.fetch("/v1/kv/f-1")).status, 503);
      assert.ok(Date.now() - t0 < 5_000, "20 requests to a down node did not each wait for a timeout");

      node = await startNode(["--shards", "1", "--port", String(port)]);
      await until("the gateway to recover", async () => {
        const x = await gw.fetch("/v1/kv/f-2", { method: "PUT", body: "after" });
        await x.arrayBuffer();
        return x.status === 201 ? true : undefined;
      });
      assert.equal(await (await gw.fetch("/v1/kv/f-2")).text(), "after");
      assert.equal((await gw.fetch("/readyz")).status, 200);
      stop = true;
      await load;
      assert.ok((statuses.get(201) ?? 0) + (statuses.get(200) ?? 0) > 0, "the load saw successes");
      for (const s of statuses.keys()) assert.ok([200, 201, 503, 504].includes(s), `unexpected status ${s}`);
      const metrics = await (await gw.fetch("/metrics")).text();
      assert.match(metrics, /piccolo_gateway_node_state_changes_total\{node="[^"]+",state="down"\} [1-9]/);
      assert.match(metrics, /piccolo_gateway_node_state_changes_total\{node="[^"]+",state="up"\} [1-9]/);
      assert.equal(gw.process.exitCode, null, "the gateway never exited");
    } finally {
      await gw.stop();
      await node.stop();
    }
  });

  it("starts with its node down, and serves once the node comes up", async () => {
    const port = await freePort();
    const gw = await startGateway([port]);
    try {
      const r = await gw.fetch("/v1/kv/x");
      assert.equal(r.status, 503);
      await problem(r);
      const node = await startNode(["--shards", "1", "--port", String(port)]);
      try {
        await until("the gateway to see the node", async () => {
          const x = await gw.fetch("/readyz");
          await x.arrayBuffer();
          return x.status === 200 ? true : undefined;
        });
        assert.equal((await gw.fetch("/v1/kv/x", { method: "PUT", body: "v" })).status, 201);
      } finally {
        await node.stop();
      }
    } finally {
      await gw.stop();
    }
  });

  it("spreads keys over two independent nodes; one down fails only its own keys", async () => {
    const a = await startNode(["--shards", "1"]);
    const b = await startNode(["--shards", "1"]);
    const gw = await startGateway([a.port, b.port]);
    try {
      const keys = Array.from({ length: 60 }, (_, i) => `spread-${i}`);
      for (const k of keys) assert.equal((await gw.fetch(`/v1/kv/${k}`, { method: "PUT", body: k })).status, 201);
      const ca = await a.client();
      const cb = await b.client();
      const onA = (await ca.keys("spread-")).map(String);
      const onB = (await cb.keys("spread-")).map(String);
      await ca.close();
      await cb.close();
      assert.equal(onA.length + onB.length, keys.length, "each key lives on exactly one node");
      assert.ok(onA.length > 5 && onB.length > 5, `both nodes hold keys (${onA.length}/${onB.length})`);
      // A listing spans both nodes.
      const seen: string[] = [];
      let cursor: string | null = "";
      do {
        const page = (await (
          await gw.fetch(`/v1/kv?prefix=spread-&limit=7${cursor ? `&cursor=${cursor}` : ""}`)
        ).json()) as { keys: { key: string }[]; cursor: string | null };
        seen.push(...page.keys.map((k) => k.key));
        cursor = page.cursor;
      } while (cursor !== null);
      assert.deepEqual(seen.sort(), [...keys].sort());
      // Node b goes away: its keys get 503, node a's keys still work.
      await b.stop();
      const bKey = onB[0]!;
      const aKey = onA[0]!;
      await until("node b's key to fail", async () => {
        const x = await gw.fetch(`/v1/kv/${bKey}`);
        await x.arrayBuffer();
        return x.status === 503 ? true : undefined;
      });
      assert.equal(await (await gw.fetch(`/v1/kv/${aKey}`)).text(), aKey);
    } finally {
      await gw.stop();
      await a.stop();
      await b.stop();
    }
  });
});
