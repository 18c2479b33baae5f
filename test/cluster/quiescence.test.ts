// Quiescence on three real members (decision 0190): an idle cluster's groups
// go quiet; a write wakes its group and is served; a quiet partition whose
// leader is paused (SIGSTOP: connections stay open, only the member-liveness
// ping notices) or killed gets a new leader and takes writes again; and with
// --quiesce-ticks 0 nothing ever goes quiet.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient } from "../../src/client/client.js";
import { initRouting, shardOf } from "../../src/io/route.js";
import { freePort, memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";
import { eventually } from "../support/eventually.js";

const PARTITIONS = 8;
let root: string;
let list: string;
const nodes: (RunningNode | null)[] = [null, null, null];

async function start(i: number): Promise<RunningNode> {
  const n = await startMember(list, root, i, ["--partitions", String(PARTITIONS), "--tick-ms", "20", "--shards", "1"]);
  nodes[i] = n;
  return n;
}

async function quietGroups(n: RunningNode): Promise<number> {
  const c = await n.client({ timeoutMs: 3000 });
  try {
    return (await c.clusterInfo()).stats.quiescedGroups;
  } finally {
    await c.close();
  }
}

/** A key of the partition, found by trying names (the partition function is xxHash32 mod P). */
function keyIn(partition: number, tag: string): string {
  for (let i = 0; ; i++) {
    const k = `${tag}-${i}`;
    if (shardOf(Buffer.from(k), PARTITIONS) === partition) return k;
  }
}

before(async () => {
  await initRouting();
  root = await mkdtemp(join(tmpdir(), "piccolo-quiet-"));
  list = await memberList();
  await Promise.all([0, 1, 2].map(start));
});
after(async () => {
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("quiescence", () => {
  it("an idle cluster goes quiet: every member's groups stop their clocks", async () => {
    // Every replica of every partition: 8 groups on each of the 3 members.
    for (const n of nodes)
      await eventually("all groups quiet", async () => assert.equal(await quietGroups(n!), PARTITIONS));
  });

  it("a write wakes its group and is answered; the group goes quiet again", async () => {
    const c = await nodes[1]!.client({ timeoutMs: 8000 });
    await c.put("wake-me", "v1");
    assert.equal((await c.get("wake-me"))?.value.toString(), "v1");
    await c.close();
    for (const n of nodes) await eventually("quiet again", async () => assert.equal(await quietGroups(n!), PARTITIONS));
  });

  /** The member leading `partition`, as a member's cluster info says, and a client of another member. */
  async function leaderAndOther(partition: number): Promise<{ leader: number; other: PiccoloClient }> {
    const c = await nodes[0]!.client({ timeoutMs: 3000 });
    const leader = await eventually("a leader", async () => {
      const l = (await c.clusterInfo()).partitions[partition]!.leader;
      assert.ok(l > 0);
      return l;
    });
    await c.close();
    const otherIndex = [0, 1, 2].find((i) => i + 1 !== leader && nodes[i] !== null)!;
    return { leader, other: await nodes[otherIndex]!.client({ timeoutMs: 8000 }) };
  }

  it("a paused leader of a quiet partition is replaced: the liveness ping notices what TCP does not", async () => {
    const partition = 3;
    const key = keyIn(partition, "paused");
    for (const n of nodes)
      await eventually("all groups quiet", async () => assert.equal(await quietGroups(n!), PARTITIONS));
    const { leader, other } = await leaderAndOther(partition);
    const paused = nodes[leader - 1]!;
    paused.process.kill("SIGSTOP");
    try {
      // Served by a new leader, through a member that is not the paused one.
      await eventually("a write to the paused leader's partition", () => other.put(key, "after-pause"), 15_000);
      assert.equal((await other.get(key))?.value.toString(), "after-pause");
    } finally {
      paused.process.kill("SIGCONT");
      await other.close();
    }
  });

  it("a killed leader of a quiet partition is replaced, and nothing acknowledged is lost", async () => {
    const partition = 5;
    const key = keyIn(partition, "killed");
    const c0 = await nodes[0]!.client({ timeoutMs: 8000 });
    await eventually("write before", () => c0.put(key, "before-kill"));
    await c0.close();
    for (const n of nodes)
      await eventually("all groups quiet", async () => assert.equal(await quietGroups(n!), PARTITIONS));
    const { leader, other } = await leaderAndOther(partition);
    nodes[leader - 1]!.process.kill("SIGKILL");
    await nodes[leader - 1]!.stop();
    nodes[leader - 1] = null;
    try {
      assert.equal((await eventually("read", () => other.get(key), 15_000))?.value.toString(), "before-kill");
      await eventually("a write after the kill", () => other.put(key, "after-kill"), 15_000);
    } finally {
      await other.close();
    }
    await start(leader - 1);
  });

  it("--quiesce-ticks 0: nothing goes quiet", async () => {
    const n = await startNode(
      ["--node-id", "solo", "--cluster", `solo=127.0.0.1:${await freePort()}`].concat([
        "--data-dir",
        join(root, "solo"),
        "--partitions",
        "4",
        "--quiesce-ticks",
        "0",
      ]),
    );
    try {
      const c = await n.client({ timeoutMs: 3000 });
      await c.put("k", "v"); // the groups have leaders and a committed entry
      await new Promise((r) => setTimeout(r, 1000)); // 50 ticks: ample time to go quiet, were it allowed
      assert.equal((await c.clusterInfo()).stats.quiescedGroups, 0);
      await c.close();
    } finally {
      await n.kill(); // a lone member's stop would wait out its leadership hand-off: see stopAll()
    }
  });
});
