// The Cerializer in front of a three-member cluster (--cluster true): every
// key through the gateway, a listing with each key once, and a member killed
// under it: the gateway fails over to the others and keeps serving every key.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

let root: string;
const nodes: RunningNode[] = [];
let gw: RunningGateway;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-gw-cluster-"));
  const list = await memberList();
  for (let i = 0; i < 3; i++) nodes.push(await startMember(list, root, i, ["--partitions", "8"]));
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

async function eventually(what: string, f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await f().catch(() => false)) return;
    await sleep(50);
  }
  assert.fail(`timed out: ${what}`);
}

describe("Cerializer in front of a cluster", () => {
  const keys = Array.from({ length: 24 }, (_, i) => `gk-${i}`);

  it("writes and reads every key through the gateway; a listing has each key once", async () => {
    for (const k of keys)
      await eventually(`PUT ${k}`, async () => {
        const r = await gw.fetch(`/v1/kv/${k}`, { method: "PUT", body: k });
        await r.arrayBuffer();
        return r.status === 201 || r.status === 200;
      });
    for (const k of keys) assert.equal(await (await gw.fetch(`/v1/kv/${k}`)).text(), k);
    const seen: string[] = [];
    let cursor: string | null = "";
    do {
      const page = (await (await gw.fetch(`/v1/kv?prefix=gk-&limit=5${cursor ? `&cursor=${cursor}` : ""}`)).json()) as {
        keys: { key: string }[];
        cursor: string | null;
      };
      seen.push(...page.keys.map((x) => x.key));
      cursor = page.cursor;
    } while (cursor !== null);
    assert.deepEqual(seen.sort(), [...keys].sort(), "each key once, not once per member");
    const metrics = await (await gw.fetch("/metrics")).text();
    assert.match(metrics, /piccolo_cluster_wal_rounds_total\{node="127\.0\.0\.1:\d+"\} [1-9]/);
    assert.match(metrics, /piccolo_cluster_proposals_total\{node="127\.0\.0\.1:\d+"\} [1-9]/);
    assert.match(metrics, /piccolo_cluster_elections_total\{node="127\.0\.0\.1:\d+"\} \d+/);
    // Each leader reports its followers' lag; each member its apply lag per partition.
    assert.match(metrics, /piccolo_cluster_follower_lag_entries\{node="[^"]+",partition="\d+",follower="\d"\} \d+/);
    assert.match(metrics, /piccolo_cluster_apply_lag_entries\{node="[^"]+",partition="\d+"\} \d+/);
  });

  it("a member killed under the gateway: every key is still served through the others", async () => {
    nodes[0]!.process.kill("SIGKILL");
    await nodes[0]!.stop();
    for (const k of keys)
      await eventually(`GET ${k} after the kill`, async () => {
        const r = await gw.fetch(`/v1/kv/${k}`);
        return r.status === 200 && (await r.text()) === k;
      });
    await eventually("a write after the kill", async () => {
      const r = await gw.fetch("/v1/kv/after-kill", { method: "PUT", body: "yes" });
      await r.arrayBuffer();
      return r.status === 201;
    });
  });
});
