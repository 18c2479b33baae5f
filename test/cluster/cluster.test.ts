// Three real member processes on loopback, clustered from a static list:
// any member serves any key (forwarding to the partition's leader) on the
// native protocol and on the Redis port; kill -9 of a member leaves every key
// served and no acknowledged write lost; a restarted member (and a whole
// restarted cluster) recovers everything from its WAL.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { CLI, memberList, type RunningNode, startMember, stopAll } from "../support/node.js";
import { eventually } from "../support/eventually.js";

let root: string;
let list: string;
const nodes: (RunningNode | null)[] = [null, null, null];

async function start(i: number): Promise<RunningNode> {
  const n = await startMember(list, root, i, ["--partitions", "8", "--tick-ms", "20"]);
  nodes[i] = n;
  return n;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-cluster-"));
  list = await memberList();
  await Promise.all([0, 1, 2].map(start));
});
after(async () => {
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("a three-member cluster", () => {
  const acked = new Map<string, string>();

  it("any member serves any key: written through one, read through every other", async () => {
    const clients = await Promise.all(nodes.map((n) => n!.client({ timeoutMs: 8000 })));
    for (let i = 0; i < 30; i++) {
      const key = `key-${i}`;
      await eventually(`put ${key}`, () => clients[i % 3]!.put(key, `value-${i}`));
      acked.set(key, `value-${i}`);
    }
    for (const c of clients)
      for (const [k, v] of acked) assert.equal((await c.get(k))?.value.toString(), v, `${k} through every member`);
    // Conditional writes work through a non-leader too (they are forwarded whole).
    const v = (await clients[1]!.get("key-0"))!.version;
    await clients[2]!.cas("key-0", "swapped", v);
    acked.set("key-0", "swapped");
    await assert.rejects(clients[0]!.cas("key-0", "again", v), /VERSION_MISMATCH/);
    for (const c of clients) await c.close();
  });

  it("piccolo cluster status gathers every member: partitions as their leaders see them, with follower lag", async () => {
    type Status = {
      self: number;
      members: { id: number; name: string; connected: boolean; answered: boolean; clientAddress: string }[];
      partitions: {
        leader: number;
        seenBy: number;
        replicas: number[];
        hosted: boolean;
        commit: number;
        lastIndex: number;
        followers: { member: number; lag: number; state: string; active: boolean }[];
      }[];
      stats: { elections: number };
    };
    const status = (via: number) => {
      const r = spawnSync(
        process.execPath,
        [CLI, "cluster", "status", "--json", "--server", `127.0.0.1:${nodes[via]!.port}`],
        { encoding: "utf8" },
      );
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as Status;
    };
    const info = await eventually("every partition has a leader, and every follower has caught up", async () => {
      const i = status(1);
      assert.ok(i.partitions.every((p) => p.leader > 0 && p.seenBy === p.leader));
      assert.ok(i.partitions.every((p) => p.followers.length === 2 && p.followers.every((f) => f.lag === 0)));
      // Settled: every follower replicating and heard from (just after an election they probe first).
      assert.ok(i.partitions.every((p) => p.followers.every((f) => f.state === "replicate" && f.active)));
      return i;
    });
    assert.equal(info.self, 2);
    // Each member announced the address its clients use; the command asked each one.
    assert.deepEqual(
      info.members.map((m) => [m.name, m.connected, m.answered, m.clientAddress]),
      nodes.map((n, i) => [`n${i + 1}`, true, true, `127.0.0.1:${n!.port}`]),
    );
    assert.equal(info.partitions.length, 8);
    assert.ok(info.partitions.every((p) => p.replicas.length === 3 && p.hosted && p.commit > 0));
    // A member that started elections counts them (someone won each partition's first).
    const c = await nodes[1]!.client();
    const all = await Promise.all(
      nodes.map(async (n) => {
        const x = await n!.client();
        const e = (await x.clusterInfo()).stats.elections;
        await x.close();
        return e;
      }),
    );
    assert.ok(all.reduce((a, b) => a + b, 0) >= 1, `elections counted: ${all}`);
    const stats = (await c.clusterInfo()).stats;
    await c.close();
    assert.ok(stats.walWrites > 0 && stats.walP99Us > 0, "WAL rounds are counted and timed");
    const text = spawnSync(process.execPath, [CLI, "cluster", "status", "--server", `127.0.0.1:${nodes[0]!.port}`], {
      encoding: "utf8",
    });
    assert.match(text.stdout, /as seen by n1/);
    assert.match(text.stdout, /n2 +peer 127\.0\.0\.1:\d+ +client 127\.0\.0\.1:\d+ +up/);
    assert.match(text.stdout, /n1: \d+ writes led \(p50 [\d.]+ ms, p99 [\d.]+ ms\), \d+ WAL rounds/);
    assert.match(text.stdout, /n3: .* \d+ elections started/);
    assert.match(text.stdout, /partition\s+leader\s+term.*follower lag/);
    assert.match(text.stdout, /n\d:0 +n\d:0/);
  });

  it("piccolo cluster transfer-leader hands a partition to the member named", async () => {
    const c = await nodes[0]!.client();
    const before = (await c.clusterInfo()).partitions[3]!;
    await c.close();
    const target = before.replicas.find((id) => id !== before.leader)!;
    const r = spawnSync(
      process.execPath,
      [CLI, "cluster", "transfer-leader", "3", `n${target}`, "--server", `127.0.0.1:${nodes[2]!.port}`],
      { encoding: "utf8", timeout: 15_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`partition 3 is led by n${target}`));
    const bad = spawnSync(
      process.execPath,
      [CLI, "cluster", "transfer-leader", "99", "n1", "--server", `127.0.0.1:${nodes[0]!.port}`],
      {
        encoding: "utf8",
      },
    );
    assert.equal(bad.status, 5);
    assert.match(bad.stderr, /no partition 99/);
  });

  it("the cluster client, given one member, finds the others and sends each key to its partition's leader", async () => {
    const { PiccoloClusterClient } = await import("../../src/client/cluster-client.js");
    // One address is enough: the others are learned from the members' cluster info.
    const cc = await PiccoloClusterClient.connect({ members: [`127.0.0.1:${nodes[2]!.port}`] });
    const forwarded = async () => {
      let sum = 0;
      for (const n of nodes) {
        const c = await n!.client();
        sum += (await c.clusterInfo()).stats.forwarded;
        await c.close();
      }
      return sum;
    };
    // Leaders may still be moving (the rebalancer hands partitions back to their preferred members a
    // few seconds after start), and a forwarded request succeeds without telling the client its map
    // is stale; so measure in rounds of 30 requests until one is clean. A client that picked members
    // blindly would see about 20 of every 30 forwarded.
    let i = 0;
    let extra = 0;
    await eventually(
      "a round of 30 requests with at most 2 forwarded",
      async () => {
        await cc.refresh();
        const before = await forwarded();
        for (let j = 0; j < 15; j++, i++) {
          await eventually(`put cc-${i}`, () => cc.put(`cc-${i}`, `v${i}`));
          acked.set(`cc-${i}`, `v${i}`);
          assert.equal((await cc.get(`cc-${i}`))?.value.toString(), `v${i}`);
        }
        extra = (await forwarded()) - before;
        assert.ok(extra <= 2, `${extra} of 30 requests were forwarded`);
      },
      15_000,
    );
    await cc.close();
  });

  it("the Redis port of any member works too", async () => {
    const r = new Redis({ host: "127.0.0.1", port: nodes[2]!.respPort, lazyConnect: true, maxRetriesPerRequest: 0 });
    await r.connect();
    try {
      await eventually("SET via redis", () => r.set("redis-key", "hello"));
      acked.set("redis-key", "hello");
      const c = await nodes[0]!.client();
      assert.equal((await c.get("redis-key"))?.value.toString(), "hello");
      await c.close();
      assert.equal(await r.get("key-5"), "value-5");
    } finally {
      r.disconnect();
    }
  });

  it("a paused follower shows up as lagging, then catches up", async () => {
    // SIGSTOP n3: leaders go on with n1 and n2; writes pile up behind n3.
    const n3 = nodes[2]!;
    const leaderClient = await nodes[0]!.client({ timeoutMs: 8000 });
    const status = () => {
      const r = spawnSync(
        process.execPath,
        [CLI, "cluster", "status", "--json", "--timeout", "1000", "--server", `127.0.0.1:${nodes[0]!.port}`],
        { encoding: "utf8" },
      );
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as {
        members: { name: string; answered: boolean }[];
        partitions: { leader: number; followers: { member: number; lag: number; active: boolean }[] }[];
      };
    };
    n3.process.kill("SIGSTOP");
    try {
      for (let i = 0; i < 40; i++) {
        await eventually(`put lag-${i}`, () => leaderClient.put(`lag-${i}`, "x"));
        acked.set(`lag-${i}`, "x");
      }
      const behind = await eventually("n3 lags behind some leader", async () => {
        const s = status();
        const lags = s.partitions.flatMap((p) => p.followers.filter((f) => f.member === 3));
        assert.ok(
          lags.some((f) => f.lag > 0 && !f.active),
          `n3 as leaders see it: ${JSON.stringify(lags)}`,
        );
        return s;
      });
      assert.equal(behind.members.find((m) => m.name === "n3")?.answered, false, "a paused member does not answer");
    } finally {
      n3.process.kill("SIGCONT");
    }
    await eventually("n3 caught up", async () => {
      const s = status();
      const lags = s.partitions.flatMap((p) => p.followers.filter((f) => f.member === 3));
      assert.ok(lags.length > 0 && lags.every((f) => f.lag === 0), JSON.stringify(lags));
    });
    await leaderClient.close();
  });

  it("kill -9 of a member: writes go on through the others, nothing acknowledged is lost", async () => {
    nodes[0]!.process.kill("SIGKILL");
    await nodes[0]!.stop();
    nodes[0] = null;
    const c = await nodes[1]!.client({ timeoutMs: 8000 });
    for (let i = 0; i < 20; i++) {
      const key = `after-kill-${i}`;
      await eventually(`put ${key}`, () => c.put(key, `v${i}`));
      acked.set(key, `v${i}`);
    }
    const d = await nodes[2]!.client({ timeoutMs: 8000 });
    for (const [k, v] of acked) assert.equal((await eventually(`get ${k}`, () => d.get(k)))?.value.toString(), v);
    await c.close();
    await d.close();
  });

  it("a restarted member recovers from its WAL, catches up, and gets its partitions' leadership back", async () => {
    const n = await start(0);
    const c = await n.client({ timeoutMs: 8000 });
    for (const [k, v] of acked)
      assert.equal((await eventually(`get ${k} via restarted n1`, () => c.get(k)))?.value.toString(), v);
    // While n1 was down, n2 and n3 led everything; rebalancing hands n1 back the partitions it should lead.
    await eventually(
      "n1 leads again",
      async () => {
        const info = await c.clusterInfo();
        const led = info.partitions.filter((p) => p.leader === 1).length;
        if (led < 2) throw new Error(`n1 leads ${led} partitions`);
        return led;
      },
      15_000,
    );
    await c.close();
  });

  it("a whole-cluster restart loses no acknowledged write", async () => {
    for (const [i, n] of nodes.entries()) {
      await n!.stop();
      nodes[i] = null;
    }
    await Promise.all([0, 1, 2].map(start));
    const c = await nodes[1]!.client({ timeoutMs: 8000 });
    for (const [k, v] of acked) assert.equal((await eventually(`get ${k}`, () => c.get(k)))?.value.toString(), v);
    await c.close();
  });

  it("refuses a cluster configuration that cannot work, with a usage error", () => {
    for (const [args, msg] of [
      [["--cluster", list], /needs --node-id/],
      [["--cluster", list, "--node-id", "n9"], /not in --cluster/],
      [["--cluster", "n1=nowhere", "--node-id", "n1"], /not name=host:port/],
      // A replicated write is one WAL record: a value that cannot fit one would stop the member later.
      [
        ["--cluster", list, "--node-id", "n1", "--max-value-bytes", String(64 * 1024 * 1024)],
        /at most .* in cluster mode/,
      ],
    ] as [string[], RegExp][]) {
      const r = spawnSync(process.execPath, [CLI, "server", "--port", "0", "--resp-port", "0", ...args], {
        encoding: "utf8",
        timeout: 10_000,
      });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, msg);
    }
  });
});
