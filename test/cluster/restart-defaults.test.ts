// Members that stop and come back, with the flags users get: 64 partitions,
// one group worker per core, the default tick. A member that missed thousands
// of writes across every partition must rejoin, catch up and keep running,
// whether it was killed (-9), stopped cleanly (SIGTERM) or paused (SIGSTOP)
// for longer than a request's deadline. (With --partitions 8, as other tests
// run, the catch-up round is too small to show the bug this guards against:
// a restarted member used to stop itself on "N messages in one frame; the
// limit is 4096".)
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient } from "../../src/client/client.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

let root: string;
let list: string;
const nodes: (RunningNode | null)[] = [null, null, null];
/**
 * Per key, the values a read may return: the last acknowledged write, and any
 * write after it whose outcome is unknown (it failed, and may have applied).
 * Writes to one key never overlap here (each batch has distinct keys).
 */
const possible = new Map<string, Set<string>>();
let round = 0;

async function start(i: number): Promise<RunningNode> {
  const n = await startMember(list, root, i);
  nodes[i] = n;
  return n;
}

/**
 * Puts through member `via` for `ms` (at least one batch), 500 in flight at
 * a time, over 5,000 keys; records what was acknowledged. Writes in flight
 * when a member dies may fail: only the acknowledged ones must survive.
 * Returns how many were acknowledged and how many were sent.
 */
async function load(via: number, ms: number): Promise<{ ok: number; sent: number }> {
  const c = await nodes[via]!.client({ timeoutMs: 15_000 });
  const tag = round++;
  const end = Date.now() + ms;
  let ok = 0;
  let from = 0;
  try {
    for (; from === 0 || Date.now() < end; from += 500) {
      const batch = Array.from({ length: 500 }, (_, j) => {
        const key = `k${(from + j) % 5000}`;
        const value = `r${tag}-${from + j}-${"x".repeat(48)}`;
        return c.put(key, value).then(
          () => {
            possible.set(key, new Set([value]));
            ok++;
          },
          () => {
            const s = possible.get(key) ?? new Set<string>();
            possible.set(key, s.add(value));
          },
        );
      });
      await Promise.all(batch);
    }
  } finally {
    await c.close();
  }
  return { ok, sent: from };
}

/**
 * Most writes were acknowledged: a few in flight when a member stopped may
 * not be, and while a member is paused, writes forwarded to it before its
 * partitions' leadership moved wait out their deadline (outcome unknown).
 */
function mostlyAcknowledged(r: { ok: number; sent: number }, share = 0.9): void {
  assert.ok(r.ok >= r.sent * share, `${r.ok} of ${r.sent} writes acknowledged`);
}

type Status = {
  partitions: { partition: number; leader: number; followers: { member: number; lag: number }[] }[];
};

/** Every partition has a leader, and member `id` (1-based) lags nowhere. */
async function caughtUp(via: number, id: number): Promise<void> {
  await eventually(
    `member ${id} catches up on every partition`,
    async () => {
      const c = await nodes[via]!.client({ timeoutMs: 5_000 });
      try {
        const s = (await c.clusterInfo()) as unknown as Status;
        const leaderless = s.partitions.filter((p) => p.leader === 0).length;
        if (leaderless > 0) throw new Error(`${leaderless} partitions without a leader`);
        const behind = s.partitions.flatMap((p) => p.followers.filter((f) => f.member === id && f.lag > 0));
        if (behind.length > 0) throw new Error(`${behind.length} partitions where it lags`);
      } finally {
        await c.close();
      }
    },
    90_000,
    250,
  );
}

function assertRunning(i: number): void {
  const n = nodes[i]!;
  assert.equal(n.process.exitCode, null, `n${i + 1} is still running; its log:\n${n.stderr().slice(-2000)}`);
  assert.doesNotMatch(n.stderr(), /stopping this member/, `n${i + 1} did not decide to stop`);
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-restart-"));
  list = await memberList();
  await Promise.all([0, 1, 2].map(start));
});
after(async () => {
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("members restarted with the default 64 partitions", () => {
  it("a member killed (-9) while thousands of writes go on rejoins, catches up and stays up", async () => {
    await eventually("the cluster serves writes", async () => mostlyAcknowledged(await load(0, 0)), 30_000, 200);
    nodes[2]!.process.kill("SIGKILL");
    await new Promise((r) => nodes[2]!.process.once("exit", r));
    // Down long enough for the leaders to have a great deal to tell it on its return.
    mostlyAcknowledged(await load(0, 12_000));
    await start(2);
    await caughtUp(0, 3);
    await sleep(2_000);
    assertRunning(2);
  });

  it("a member stopped cleanly (SIGTERM) while writes go on rejoins and stays up", async () => {
    assert.equal(await nodes[1]!.stop(), 0, "a clean stop exits 0");
    mostlyAcknowledged(await load(0, 8_000));
    await start(1);
    await caughtUp(0, 2);
    await sleep(2_000);
    assertRunning(1);
  });

  it("a member paused (SIGSTOP) for 8 s while writes go on resumes and stays up", async () => {
    nodes[2]!.process.kill("SIGSTOP");
    const loaded = load(0, 8_000);
    await sleep(8_000);
    nodes[2]!.process.kill("SIGCONT");
    mostlyAcknowledged(await loaded, 0.5);
    await caughtUp(0, 3);
    await sleep(2_000);
    assertRunning(2);
  });

  it("every acknowledged write is there, through every member", async () => {
    for (let i = 0; i < 3; i++) assertRunning(i);
    for (const n of nodes) {
      const c: PiccoloClient = await n!.client({ timeoutMs: 10_000 });
      try {
        const keys = [...possible.keys()];
        assert.ok(keys.length >= 4_000, "most keys were written");
        for (let from = 0; from < keys.length; from += 1000) {
          const slice = keys.slice(from, from + 1000);
          const got = await c.mget(slice);
          slice.forEach((k, j) => {
            const v = got[j]?.value.toString() ?? "(absent)";
            assert.ok(possible.get(k)!.has(v), `${k}: read ${v}, expected one of ${[...possible.get(k)!]}`);
          });
        }
      } finally {
        await c.close();
      }
    }
  });
});
