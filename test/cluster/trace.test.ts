// Request tracing in a 3-member cluster with the default 64 partitions
// (docs/tracing.md, "In a cluster"): a traced put names its partition, the
// entry's index and term, the members whose fsync covered it (the leader's
// own, and each follower's acknowledgement) and the commit; sent to a member
// that does not lead the partition, it shows the forward too.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient, RequestTrace } from "../../src/client/client.js";
import { partitionOf } from "../../src/cluster/placement.js";
import { initHash } from "../../src/hash.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember } from "../support/node.js";

const PARTITIONS = 64;
let root: string;
const nodes: RunningNode[] = [];
const clients: PiccoloClient[] = [];

before(async () => {
  await initHash();
  root = await mkdtemp(join(tmpdir(), "piccolo-trace-"));
  const list = await memberList();
  nodes.push(...(await Promise.all([0, 1, 2].map((i) => startMember(list, root, i, ["--tick-ms", "20"])))));
  for (const n of nodes) clients.push(await n.client({ timeoutMs: 8000 }));
});
after(async () => {
  for (const c of clients) await c.close();
  for (const n of nodes) await n.stop();
  await rm(root, { recursive: true, force: true });
});

/** The partition's leader as member 1 sees it, once there is one. */
async function leaderOf(key: string): Promise<number> {
  const p = partitionOf(Buffer.from(key), PARTITIONS);
  return eventually(`partition ${p} has a leader`, async () => {
    const l = (await clients[0]!.clusterInfo()).partitions[p]!.leader;
    if (l === 0) throw new Error("no leader yet");
    return l;
  });
}

function spansInOrder(t: RequestTrace): void {
  let last = 0;
  for (const s of t.spans) {
    assert.ok(s.startUs >= 0 && s.durationUs >= 0, JSON.stringify(s));
    assert.ok(s.startUs >= last, `in order: ${JSON.stringify(t.spans)}`);
    last = s.startUs;
  }
}

describe("request tracing in a cluster", () => {
  it("a traced put names its partition, index, term, the fsyncs that covered it and the commit", async () => {
    const key = "traced:1";
    const p = partitionOf(Buffer.from(key), PARTITIONS);
    const leader = await leaderOf(key);
    const c = clients[leader - 1]!;
    await eventually("the leader takes the write", () => c.put(key, "v", { trace: true }));
    const t = c.lastTrace!;
    spansInOrder(t);
    assert.equal(t.node, `member ${leader}`);
    const stage = (name: string) => t.spans.filter((s) => s.stage === name);
    assert.match(stage("routed")[0]!.detail, new RegExp(`^put to partition ${p}$`));
    const proposed = stage("proposed")[0]!;
    const m = new RegExp(`^leader of partition ${p}, index (\\d+), term (\\d+)$`).exec(proposed.detail);
    assert.ok(m !== null, proposed.detail);
    assert.equal(proposed.where, `member ${leader}`);
    assert.equal(stage("appended")[0]!.where, `member ${leader}`);
    // The commit needs a majority: the leader's own write and at least one follower's.
    const fsynced = stage("fsynced");
    assert.ok(fsynced.length >= 1, JSON.stringify(t.spans));
    for (const f of fsynced) {
      assert.notEqual(f.where, `member ${leader}`);
      assert.match(f.where, /^member [123]$/);
      assert.match(f.detail, new RegExp(`acknowledged index >= ${m[1]}: in its log, fsynced`));
    }
    assert.match(stage("committed")[0]!.detail, new RegExp(`a majority holds index ${m[1]}`));
    assert.equal(stage("applied").length, 1);
    assert.equal(t.spans.at(-1)!.stage, "encoded");
  });

  it("sent to a member that does not lead the partition, the trace shows the forward, then the leader's stages", async () => {
    const key = "traced:2";
    const leader = await leaderOf(key);
    const other = [1, 2, 3].find((x) => x !== leader)!;
    const c = clients[other - 1]!;
    await eventually("the write is forwarded", () => c.put(key, "v", { trace: true }));
    const t = c.lastTrace!;
    spansInOrder(t);
    assert.equal(t.node, `member ${other}`);
    const fwd = t.spans.filter((s) => s.stage === "forwarded").at(-1)!;
    assert.equal(fwd.where, `member ${other}`);
    assert.equal(fwd.detail, `to member ${leader}`);
    const proposed = t.spans.find((s) => s.stage === "proposed")!;
    assert.equal(proposed.where, `member ${leader}`);
    // The leader's stages lie within the forward's round trip.
    assert.ok(proposed.startUs >= fwd.startUs && proposed.startUs <= fwd.startUs + fwd.durationUs);
    assert.ok(t.spans.some((s) => s.stage === "committed"));

    // A traced read: the leader confirms its leadership (ReadIndex), then reads.
    const e = await c.get(key, { trace: true });
    assert.equal(e?.value.toString(), "v");
    const r = c.lastTrace!;
    spansInOrder(r);
    assert.ok(r.spans.some((s) => s.stage === "read index" && s.where === `member ${leader}`));
  });
});
