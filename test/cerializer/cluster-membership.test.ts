// A cluster gateway's members follow the cluster's, and /readyz means "can
// serve" (issue #14: it answered 503 while one member was down although every
// key was served, and forever after a `cluster replace`, since --nodes still
// named the dead member). Three real members with the defaults users get (64
// partitions, default shards); the gateway is given ONE of them as its seed:
//   - it learns the other two from the cluster;
//   - one member killed: /readyz stays 200 throughout, and every key is served;
//   - the dead member replaced by a new one: the gateway drops it and uses the
//     new one; then its only seed is killed too, and it still serves every key
//     through the two members it learned;
//   - a quorum lost: 503 once no partition has a leader; every member down: 503.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { CLI, freePort, type RunningNode, startNode, stopAll } from "../support/node.js";

interface Ready {
  status: number;
  body: {
    detail?: string;
    cluster: { members: { node: string; member: number; up: boolean; answered: boolean }[]; withoutLeader: number[] };
  };
}

let root: string;
let bootstrap: string;
let joined: string;
const members: (RunningNode | null)[] = [null, null, null, null];
let gw: RunningGateway;
const keys = Array.from({ length: 40 }, (_, i) => `member-key-${i}`);

async function startMember(i: number): Promise<RunningNode> {
  const n = await startNode([
    "--node-id",
    `n${i + 1}`,
    "--cluster",
    bootstrap,
    ...(i === 3 ? ["--joined", joined] : []),
    "--data-dir",
    join(root, `n${i + 1}`),
  ]);
  members[i] = n;
  return n;
}

async function kill(i: number): Promise<void> {
  members[i]!.process.kill("SIGKILL");
  await members[i]!.stop();
  members[i] = null;
}

async function readyz(): Promise<Ready> {
  const r = await gw.fetch("/readyz");
  return { status: r.status, body: (await r.json()) as Ready["body"] };
}

/** Every key read through the gateway, each on the first try. */
async function readAll(): Promise<void> {
  for (const k of keys) {
    const r = await gw.fetch(`/v1/kv/${k}`);
    assert.equal(r.status, 200, `GET ${k}: ${r.status} ${await r.clone().text()}`);
    assert.equal(await r.text(), `v-${k}`);
  }
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-gw-members-"));
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  bootstrap = ports
    .slice(0, 3)
    .map((p, i) => `n${i + 1}=127.0.0.1:${p}`)
    .join(",");
  joined = `n4=127.0.0.1:${ports[3]}`;
  await Promise.all([0, 1, 2].map(startMember));
  // One seed only: n1.
  gw = await startGateway([members[0]!.port], ["--cluster", "true"]);
});
after(async () => {
  await gw?.stop();
  await stopAll(members);
  await rm(root, { recursive: true, force: true });
});

describe("a cluster gateway's members and readiness", () => {
  it("learns every member from one seed, and is ready", async () => {
    await eventually(
      "the gateway knows three members, all answering, and is ready",
      async () => {
        const r = await readyz();
        assert.equal(r.status, 200, r.body.detail);
        assert.deepEqual(r.body.cluster.members.map((m) => [m.member, m.answered]).sort(), [
          [1, true],
          [2, true],
          [3, true],
        ]);
      },
      20_000,
    );
    for (const k of keys)
      await eventually(`PUT ${k}`, async () => {
        const r = await gw.fetch(`/v1/kv/${k}`, { method: "PUT", body: `v-${k}` });
        assert.ok(r.status === 201 || r.status === 200, `${r.status} ${await r.text()}`);
      });
    await readAll();
  });

  it("one member killed: /readyz stays 200 throughout, and every key is still served", async () => {
    await kill(1);
    // Longer than the refresh, the election and the leaderless grace together.
    const end = Date.now() + 8_000;
    let samples = 0;
    while (Date.now() < end) {
      const r = await readyz();
      assert.equal(r.status, 200, `readiness while n2 is down: ${r.body.detail}`);
      samples++;
      await sleep(100);
    }
    assert.ok(samples > 10);
    const r = await readyz();
    const n2 = r.body.cluster.members.find((m) => m.member === 2);
    assert.ok(n2 !== undefined && !n2.answered, "n2 is still a member (it holds replicas), not answering");
    await readAll();
    const w = await gw.fetch("/v1/kv/after-kill", { method: "PUT", body: "yes" });
    assert.equal(w.status, 201, await w.text());
  });

  it("n2 replaced by n4: the gateway drops n2 and uses n4, even once its only seed is gone", async () => {
    await startMember(3);
    // n4 introduces itself; n1 learns it before it can be named in a replace.
    await eventually(
      "n1 knows n4",
      async () => {
        const c = await members[0]!.client();
        try {
          assert.ok((await c.clusterInfo()).members.some((m) => m.name === "n4" && m.connected));
        } finally {
          await c.close();
        }
      },
      20_000,
    );
    const cli = spawnSync(
      process.execPath,
      [CLI, "cluster", "replace", "n2", "n4", "--server", `127.0.0.1:${members[0]!.port}`],
      { encoding: "utf8", timeout: 180_000 },
    );
    assert.equal(cli.status, 0, `${cli.stdout}\n${cli.stderr}`);
    await eventually(
      "the gateway's members become n1, n3, n4, all answering",
      async () => {
        const r = await readyz();
        assert.equal(r.status, 200, r.body.detail);
        assert.deepEqual(r.body.cluster.members.map((m) => [m.member, m.answered]).sort(), [
          [1, true],
          [3, true],
          [4, true],
        ]);
        assert.ok(!r.body.cluster.members.some((m) => m.node === `127.0.0.1:${members[1]?.port ?? -1}`));
      },
      20_000,
    );
    // The seed goes away: only the members learned from the cluster are left.
    await kill(0);
    await eventually(
      "every key served through n3 and n4",
      async () => {
        await readAll();
      },
      20_000,
    );
    const r = await readyz();
    assert.equal(r.status, 200, r.body.detail);
    const w = await gw.fetch("/v1/kv/after-replace", { method: "PUT", body: "yes" });
    assert.equal(w.status, 201, await w.text());
  });

  it("a quorum lost: 503 saying partitions have no leader; every member down: 503; /healthz stays 200", async () => {
    await kill(2); // n4 alone: no partition has a quorum
    await eventually(
      "503: partitions without a leader",
      async () => {
        const r = await readyz();
        assert.equal(r.status, 503);
        assert.match(r.body.detail ?? "", /64 of 64 partitions have had no reachable leader/);
        assert.equal(r.body.cluster.withoutLeader.length, 64);
      },
      20_000,
    );
    await kill(3);
    await eventually("503: no member answers", async () => {
      const r = await readyz();
      assert.equal(r.status, 503);
      assert.match(r.body.detail ?? "", /no cluster member answers/, JSON.stringify(r.body.cluster.members));
    });
    assert.equal((await gw.fetch("/healthz")).status, 200);
  });
});
