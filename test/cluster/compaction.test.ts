// Log compaction in a real cluster: with a small --compact-entries, members
// snapshot their partitions and drop the log behind them; a member that was
// down meanwhile catches up by InstallSnapshot; restarts recover from
// snapshot + tail.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { freePort, type RunningNode, startNode, stopAll } from "../support/node.js";
import { eventually } from "../support/eventually.js";

/** Longer windows here: members restart and catch up by snapshot. */
const within = <T>(what: string, f: () => Promise<T>) => eventually(what, f, 15_000);

const started: RunningNode[] = [];
let root = "";
after(async () => {
  await stopAll(started);
  if (root) await rm(root, { recursive: true, force: true });
});

describe("log compaction in a cluster", () => {
  it("snapshots logs, and a member that missed them catches up by snapshot", async () => {
    root = await mkdtemp(join(tmpdir(), "piccolo-compact-"));
    const peers = await Promise.all([freePort(), freePort(), freePort()]);
    const list = peers.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
    const start = async (i: number) => {
      const n = await startNode(
        ["--node-id", `n${i + 1}`, "--cluster", list, "--data-dir", join(root, `n${i + 1}`)].concat([
          "--partitions",
          "2",
          "--compact-entries",
          "20",
        ]),
      );
      started.push(n);
      return n;
    };
    const [n1] = [await start(0), await start(1), await start(2)];
    const n3 = started[2]!;
    // n3 goes away before the writes: it will miss everything the others compact.
    n3.process.kill("SIGKILL");
    await n3.stop();
    const c = await n1!.client({ timeoutMs: 8000 });
    for (let i = 0; i < 200; i++) await within(`put ${i}`, () => c.put(`ck-${i}`, `v${i}`));
    await c.close();
    // The others snapshot (checked every 25 ticks of 20 ms).
    await within("n1 has snapshot files", async () => {
      const snaps = (await readdir(join(root, "n1"))).filter((f) => f.endsWith(".snap"));
      if (snaps.length === 0) throw new Error("no snapshot yet");
      return snaps;
    });
    // n3 comes back and must take snapshots from the leaders: its log is behind what they kept.
    const back = await start(2);
    const d = await back.client({ timeoutMs: 8000 });
    for (let i = 0; i < 200; i++)
      assert.equal((await within(`get ${i} via n3`, () => d.get(`ck-${i}`)))?.value.toString(), `v${i}`);
    await d.close();
    const n3snaps = (await readdir(join(root, "n3"))).filter((f) => f.endsWith(".snap"));
    // The leaders compacted past where n3 stopped, so it could only have caught up by InstallSnapshot.
    assert.ok(n3snaps.length > 0, "n3 holds snapshots");
  });
});
