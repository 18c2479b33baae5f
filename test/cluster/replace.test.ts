// Replacing a dead member: three members bootstrap the cluster. n2 is killed
// for good; n4 starts empty with `--joined n4=...` (the others were started
// without it: n4 introduces itself and they learn it); `piccolo cluster
// replace n2 n4` moves n2's replicas to n4 through Raft membership changes
// (learner, catch-up by log or snapshot, voter, then n2 removed). The proof
// that n4 really holds the data and votes: kill n1 too, and every
// acknowledged write is still served by n3 and n4 alone; and n3, restarted
// with its old flags, still knows n4 (it recorded it).
//
// Then `piccolo cluster forget n2` (decision 0214): refused for n3, which still
// holds replicas; with n3 stopped, n1 and n4 forget n2 at once and n3 learns it
// from their hellos when it is back; twice is fine; n2, started again with its
// old data and flags, is refused and stops (exit 72), and cannot start again
// (71); n3, restarted with the --cluster list that names n2, still has it
// forgotten.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, freePort, type RunningNode, startNode, stopAll } from "../support/node.js";
import { eventually } from "../support/eventually.js";

/** Longer windows here: members restart and catch up by snapshot. */
const within = <T>(what: string, f: () => Promise<T>) => eventually(what, f, 15_000);

let root: string;
let bootstrap: string;
let joined: string;
const nodes: (RunningNode | null)[] = [null, null, null, null];

function memberArgs(i: number): string[] {
  return [
    "--node-id",
    `n${i + 1}`,
    "--cluster",
    bootstrap,
    // Only the newcomer is started with --joined.
    ...(i === 3 ? ["--joined", joined] : []),
    "--data-dir",
    join(root, `n${i + 1}`),
    "--partitions",
    "8",
    "--tick-ms",
    "20",
    // Small, so some partitions' logs are compacted and n4 must catch up by snapshot.
    "--compact-entries",
    "15",
  ];
}

async function startMember(i: number): Promise<RunningNode> {
  const n = await startNode(memberArgs(i));
  nodes[i] = n;
  return n;
}

/** Runs member i's server until it exits by itself (within 30 s): its exit code and its log. */
async function runUntilExit(i: number): Promise<{ code: number | null; stderr: string }> {
  const resp = await freePort();
  const child = spawn(
    process.execPath,
    [CLI, "server", "--host", "127.0.0.1", "--port", "0", "--resp-port", String(resp), ...memberArgs(i)],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stderr };
}

async function membersOf(i: number): Promise<{ members: string[]; forgotten: string[] }> {
  const c = await nodes[i]!.client();
  try {
    const info = await c.clusterInfo();
    return { members: info.members.map((m) => m.name), forgotten: info.forgotten.map((f) => `${f.name}:${f.id}`) };
  } finally {
    await c.close();
  }
}

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120_000 });
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-replace-"));
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  bootstrap = ports
    .slice(0, 3)
    .map((p, i) => `n${i + 1}=127.0.0.1:${p}`)
    .join(",");
  joined = `n4=127.0.0.1:${ports[3]}`;
  await Promise.all([0, 1, 2].map(startMember));
});
after(async () => {
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("replacing a dead member through membership change", () => {
  const acked = new Map<string, string>();

  it("the bootstrap members know only each other", async () => {
    const c = await nodes[0]!.client({ timeoutMs: 8000 });
    for (let i = 0; i < 120; i++) {
      await within(`put k${i}`, () => c.put(`k${i}`, `v${i}`));
      acked.set(`k${i}`, `v${i}`);
    }
    const info = await c.clusterInfo();
    await c.close();
    assert.deepEqual(
      info.members.map((m) => m.name),
      ["n1", "n2", "n3"],
    );
    assert.ok(info.partitions.every((p) => p.replicas.length === 3));
  });

  it("the CLI refuses members that do not exist or are the same", () => {
    const server = `127.0.0.1:${nodes[0]!.port}`;
    const unknown = cli("cluster", "replace", "n2", "n9", "--server", server);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.match(unknown.stderr, /no member n9/);
    const same = cli("cluster", "replace", "n2", "n2", "--server", server);
    assert.equal(same.status, 2, same.stderr);
  });

  it("kill -9 n2, start n4 empty, replace n2 by n4: every partition ends on n1, n3, n4", async () => {
    nodes[1]!.process.kill("SIGKILL");
    await nodes[1]!.stop();
    nodes[1] = null;
    await startMember(3);
    // n4 introduces itself; n1 and n3 learn it and connect to it.
    for (const i of [0, 2])
      await within(`n${i + 1} learns n4`, async () => {
        const c = await nodes[i]!.client();
        const m = (await c.clusterInfo()).members;
        await c.close();
        assert.deepEqual(
          m.map((x) => [x.name, x.id]),
          [
            ["n1", 1],
            ["n2", 2],
            ["n3", 3],
            ["n4", 4],
          ],
        );
        assert.ok(m[3]!.connected, `n${i + 1} is connected to n4`);
      });
    const r = cli("cluster", "replace", "n2", "n4", "--server", `127.0.0.1:${nodes[0]!.port}`);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /n2 replaced by n4 in 8 partitions/);
    const c = await nodes[2]!.client();
    const info = await c.clusterInfo();
    await c.close();
    for (const p of info.partitions) {
      assert.deepEqual([...p.replicas].sort(), [1, 3, 4], `partition ${p.partition}`);
      assert.deepEqual(p.learners, [], `partition ${p.partition}`);
    }
    // n4 hosts the replicas it was given (it was placed nowhere at bootstrap).
    const c4 = await nodes[3]!.client();
    const mine = await c4.clusterInfo();
    await c4.close();
    assert.ok(mine.partitions.every((p) => p.hosted && p.applied > 0));
    // The leaders had compacted their logs (--compact-entries 15), so n4 caught up by snapshot.
    assert.ok(mine.stats.snapshotsInstalled > 0, `snapshots installed on n4: ${mine.stats.snapshotsInstalled}`);
  });

  it("cluster forget refuses n3, which still holds replicas, and changes nothing", async () => {
    const r = cli("cluster", "forget", "n3", "--server", `127.0.0.1:${nodes[0]!.port}`);
    assert.equal(r.status, 5, `${r.stdout}\n${r.stderr}`);
    assert.match(
      r.stderr,
      /n3 still holds a replica or learner of partitions 0,1,2,3,4,5,6,7: move them first with `piccolo cluster replace n3 <new member>`; nothing was changed/,
    );
    // Asked directly, a member refuses too: its own replicas list n3.
    const c = await nodes[3]!.client();
    await assert.rejects(c.forgetMember(3), /member n3 still holds a replica or learner of partitions/);
    await c.close();
    for (const i of [0, 3]) assert.deepEqual((await membersOf(i)).members, ["n1", "n2", "n3", "n4"]);
  });

  it("forget n2 with n3 down: n1 and n4 at once, n3 from their hellos when back; twice is fine", async () => {
    await nodes[2]!.stop();
    nodes[2] = null;
    const server = `127.0.0.1:${nodes[0]!.port}`;
    const r = cli("cluster", "forget", "n2", "--server", server);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /n2 forgotten by n1, n4/);
    assert.match(r.stdout, /not reached: n3/);
    for (const i of [0, 3])
      assert.deepEqual(await membersOf(i), { members: ["n1", "n3", "n4"], forgotten: ["n2:2"] }, `n${i + 1}`);
    const again = cli("cluster", "forget", "n2", "--server", server);
    assert.equal(again.status, 0, `${again.stdout}\n${again.stderr}`);
    assert.match(again.stdout, /n2 forgotten by n1, n4/);
    await startMember(2);
    await within("n3 learns n2 is forgotten", async () =>
      assert.deepEqual(await membersOf(2), { members: ["n1", "n3", "n4"], forgotten: ["n2:2"] }),
    );
    for (const i of [0, 2, 3]) {
      const st = cli("cluster", "status", "--server", `127.0.0.1:${nodes[i]!.port}`);
      assert.equal(st.status, 0, st.stderr);
      assert.doesNotMatch(st.stdout, /^\s+n2\s/m, `status on n${i + 1}`);
    }
  });

  it("n2, started again with its old data and flags, is refused and stops (72); then cannot start (71)", async () => {
    const back = await runUntilExit(1);
    assert.equal(back.code, 72, back.stderr);
    assert.match(back.stderr, /this member was forgotten by the cluster \(piccolo cluster forget\)/);
    await within("n3 logs the refusal", async () =>
      assert.match(nodes[2]!.stderr(), /peer refused: a forgotten member \(piccolo cluster forget\) connected/),
    );
    const again = await runUntilExit(1);
    assert.equal(again.code, 71, again.stderr);
    assert.match(again.stderr, /cannot start: member n2 \(id 2\) was forgotten by the cluster/);
  });

  it("then kill -9 n1 as well: n3 and n4 alone serve every acknowledged write, and take new ones", async () => {
    nodes[0]!.process.kill("SIGKILL");
    await nodes[0]!.stop();
    nodes[0] = null;
    const c = await nodes[3]!.client({ timeoutMs: 8000 });
    for (const [k, v] of acked)
      assert.equal((await within(`get ${k}`, () => c.get(k)))?.value.toString(), v, `${k} after losing n1 and n2`);
    await within("a write with n1 and n2 gone", () => c.put("after", "both"));
    await c.close();
  });

  it("n4 restarted from its data directory still holds its replicas; n3 restarted with its old flags still knows n4", async () => {
    await nodes[3]!.stop();
    await startMember(3);
    await nodes[2]!.stop();
    await startMember(2); // no --joined: it knows n4 from its data directory
    // Its --cluster names n2; forgotten.json wins.
    assert.deepEqual(await membersOf(2), { members: ["n1", "n3", "n4"], forgotten: ["n2:2"] });
    const c = await nodes[2]!.client({ timeoutMs: 8000 });
    assert.equal((await within("get after n4 restarts", () => c.get("after")))?.value.toString(), "both");
    for (const [k, v] of acked) assert.equal((await c.get(k))?.value.toString(), v);
    await c.close();
  });
});
