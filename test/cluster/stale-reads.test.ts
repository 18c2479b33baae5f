// Stale reads on three real members. A read that asks for one is served by
// the member's own replica, on every protocol (the native client's
// { stale: true }, the cluster client, RESP after READONLY, the Cerializer's
// ?consistency=stale), without the partition's leader; the default read still
// goes to the leader. The members' forwarding counters tell which happened.
// Then a member cut off from the others (the transport's test fault file)
// shows what "stale" means: its stale reads answer at once with the value it
// last applied, older than a write the others acknowledged since, while a
// default read through it fails; reconnected, its stale reads catch up.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { PiccoloClient } from "../../src/client/client.js";
import { PiccoloClusterClient } from "../../src/client/cluster-client.js";
import { partitionOf } from "../../src/cluster/placement.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { initHash } from "../../src/hash.js";
import { redisClient } from "../resp/support.js";
import { startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

const PARTITIONS = 8;
let root: string;
const nodes: RunningNode[] = [];
/** One client per member, by index (member id = index + 1). */
const clients: PiccoloClient[] = [];
const faultFile = (i: number) => join(root, `faults-n${i + 1}`);

before(async () => {
  await initHash();
  root = await mkdtemp(join(tmpdir(), "piccolo-stale-"));
  const list = await memberList();
  for (let i = 0; i < 3; i++) await writeFile(faultFile(i), "");
  const args = ["--partitions", String(PARTITIONS), "--tick-ms", "20"];
  nodes.push(
    ...(await Promise.all(
      [0, 1, 2].map((i) => startMember(list, root, i, args, { PICCOLO_TEST_FAULT_FILE: faultFile(i) })),
    )),
  );
  for (const n of nodes) clients.push(await n.client({ timeoutMs: 8000 }));
});
after(async () => {
  for (const c of clients) await c.close();
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

/** Commands member `i` has forwarded to a leader since it started. */
const forwarded = async (i: number) => (await clients[i]!.clusterInfo()).stats.forwarded;
const allForwarded = async () => (await Promise.all([0, 1, 2].map(forwarded))).reduce((a, b) => a + b, 0);

/** The index of a member that does not lead `key`'s partition right now (leaders may still move). */
async function follower(key: string): Promise<number> {
  const info = await clients[0]!.clusterInfo();
  const leader = info.partitions[partitionOf(Buffer.from(key), PARTITIONS)]!.leader;
  assert.ok(leader > 0, "the partition has a leader");
  return leader % 3; // member leader + 1 (ids are 1-based, indexes 0-based), wrapping
}

const text = (e: { value: Buffer } | null) => e?.value.toString() ?? null;

describe("stale reads in a three-member cluster", () => {
  it("native: a follower serves { stale: true } from its replica, once replicated; the default read goes to the leader", async () => {
    await eventually("put s-1", () => clients[0]!.put("s-1", "one"));
    await eventually("stale reads not forwarded, the default one forwarded", async () => {
      const f = await follower("s-1");
      const c = clients[f]!;
      assert.equal(text(await c.get("s-1", { stale: true })), "one", "replicated to the follower");
      const before = await forwarded(f);
      for (let i = 0; i < 5; i++) assert.equal(text(await c.get("s-1", { stale: true })), "one");
      assert.equal(await c.exists("s-1", { stale: true }), true);
      assert.equal(await c.ttl("s-1", { stale: true }), -1);
      assert.deepEqual((await c.mget(["s-1", "s-absent"], { stale: true })).map(text), ["one", null]);
      const mid = await forwarded(f);
      assert.equal(mid - before, 0, "no stale read was forwarded");
      assert.equal(text(await c.get("s-1")), "one");
      assert.ok((await forwarded(f)) - mid >= 1, "the default read was forwarded to the leader");
    });
  });

  it("RESP: after READONLY a follower answers GET, MGET, EXISTS itself; after READWRITE they go to the leader", async () => {
    await eventually("put s-2", () => clients[0]!.put("s-2", "two"));
    const rs = nodes.map((n) => redisClient({ port: n.respPort }));
    try {
      await eventually("READONLY reads not forwarded, READWRITE ones forwarded", async () => {
        const f = await follower("s-2");
        const r = rs[f]!;
        assert.equal(await r.call("readonly"), "OK");
        assert.equal(await r.get("s-2"), "two", "replicated to the follower");
        const before = await forwarded(f);
        assert.equal(await r.get("s-2"), "two");
        assert.deepEqual(await r.mget("s-2", "s-absent"), ["two", null]);
        assert.equal(await r.exists("s-2"), 1);
        const mid = await forwarded(f);
        assert.equal(mid - before, 0, "no READONLY read was forwarded");
        assert.equal(await r.call("readwrite"), "OK");
        assert.equal(await r.get("s-2"), "two");
        assert.ok((await forwarded(f)) - mid >= 1, "after READWRITE the read was forwarded to the leader");
      });
    } finally {
      for (const r of rs) r.disconnect();
    }
  });

  it("the cluster client sends stale reads to replicas, which answer them: none is forwarded", async () => {
    const cc = await PiccoloClusterClient.connect({ members: [`127.0.0.1:${nodes[0]!.port}`], timeoutMs: 8000 });
    try {
      const keys = Array.from({ length: 16 }, (_, i) => `cc-${i}`);
      for (const k of keys) await eventually(`put ${k}`, () => cc.put(k, k));
      await eventually("every key read stale, none forwarded", async () => {
        const before = await allForwarded();
        for (const k of keys) assert.equal(text(await cc.get(k, { stale: true })), k);
        assert.equal(await cc.exists("cc-0", { stale: true }), true);
        assert.equal((await allForwarded()) - before, 0);
      });
    } finally {
      await cc.close();
    }
  });

  it("a member cut off from the others answers stale reads with what it has (older than acknowledged writes), fails default reads, and catches up once back", async () => {
    const key = "s-cut";
    const cut = 2; // n3, whatever it leads: cut off, it can apply nothing new
    await eventually("put v1", () => clients[0]!.put(key, "v1"));
    await eventually("n3 applied v1", async () =>
      assert.equal(text(await clients[cut]!.get(key, { stale: true })), "v1"),
    );
    const r = redisClient({ port: nodes[cut]!.respPort });
    const gw = await startGateway([nodes[cut]!.port], ["--timeout", "1000"]);
    const short = await nodes[cut]!.client({ timeoutMs: 1000 });
    try {
      await writeFile(faultFile(cut), "block 1 both\nblock 2 both\n");
      await sleep(300); // the member rereads its fault file every 50 ms
      // n1 and n2 are a majority: the write is acknowledged without n3.
      await eventually("put v2 without n3", () => clients[0]!.put(key, "v2"));
      assert.equal(text(await clients[1]!.get(key)), "v2", "a default read elsewhere sees v2");

      // Every protocol's stale read on n3: at once, and behind.
      assert.equal(text(await clients[cut]!.get(key, { stale: true })), "v1");
      assert.deepEqual((await clients[cut]!.mget([key], { stale: true })).map(text), ["v1"]);
      assert.equal(await r.call("readonly"), "OK");
      assert.equal(await r.get(key), "v1");
      const g = await gw.fetch(`/v1/kv/${key}?consistency=stale`);
      assert.equal(g.status, 200);
      assert.equal(await g.text(), "v1");
      const listing = (await (await gw.fetch(`/v1/kv?prefix=${key}&consistency=stale`)).json()) as {
        keys: { key: string }[];
      };
      assert.deepEqual(
        listing.keys.map((k) => k.key),
        [key],
      );

      // The default read through n3 must not answer from its copy: with no leader reachable it fails.
      await assert.rejects(
        short.get(key),
        (e: unknown) => e instanceof PiccoloError && (e.code === ErrorCode.TIMEOUT || e.code === ErrorCode.NOT_LEADER),
      );
      assert.equal((await gw.fetch(`/v1/kv/${key}`)).status, 504);
    } finally {
      await writeFile(faultFile(cut), "");
    }
    try {
      await eventually("n3 caught up: its stale read sees v2", async () =>
        assert.equal(text(await clients[cut]!.get(key, { stale: true })), "v2"),
      );
      assert.equal(await r.get(key), "v2");
    } finally {
      r.disconnect();
      await short.close();
      await gw.stop();
    }
  });
});
