// Watches in a cluster (issue #16): three real members with the default 64
// partitions. A prefix watch spans every partition; events come from
// committed entries, in each key's order; a watcher whose member dies
// resumes on another member from its position with nothing missed and
// nothing repeated (positions are log positions, the same on every replica).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { eventually } from "../support/eventually.js";
import { take } from "../support/watch.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

let root: string;
let list: string;
const nodes: (RunningNode | null)[] = [null, null, null];

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-cluster-watch-"));
  list = await memberList();
  await Promise.all(
    [0, 1, 2].map(async (i) => {
      nodes[i] = await startMember(list, root, i);
    }),
  );
});
after(async () => {
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("watches in a three-member cluster (64 partitions)", () => {
  it("a prefix watch on one member sees writes made through another, in each key's order", async () => {
    const watcherClient = await nodes[0]!.client({ timeoutMs: 8000 });
    const writer = await nodes[1]!.client({ timeoutMs: 8000 });
    await eventually("the cluster serves", () => writer.put("warm", "up"));
    const w = await watcherClient.watch("w1:", { prefix: true });
    for (let i = 0; i < 30; i++) await writer.put(`w1:${i % 6}`, `v${i}`);
    await writer.delete("w1:0");
    const events = await take(w, 31, 20_000);
    for (let k = 0; k < 6; k++) {
      const puts = events
        .filter((e) => e.key.toString() === `w1:${k}` && e.kind === "put")
        .map((e) => e.value!.toString());
      assert.deepEqual(
        puts,
        Array.from({ length: 30 }, (_, i) => i)
          .filter((i) => i % 6 === k)
          .map((i) => `v${i}`),
      );
    }
    // Per key in order (across partitions there is no order: another key's put may come after it).
    const w0 = events.filter((e) => e.key.toString() === "w1:0");
    assert.equal(w0[w0.length - 1]!.kind, "delete", "w1:0's delete comes after its puts");
    await w.cancel();
    await watcherClient.close();
    await writer.close();
  });

  it("a watcher whose member is killed resumes on another member from its position: nothing missed, nothing twice", async () => {
    const writer = await nodes[1]!.client({ timeoutMs: 8000 });
    const first = await nodes[0]!.client({ timeoutMs: 8000 });
    const w = await first.watch("w2:", { prefix: true });
    for (let i = 0; i < 10; i++) await writer.put(`w2:${i}`, `a${i}`);
    await take(w, 10, 20_000);
    const position = w.position;
    nodes[0]!.process.kill("SIGKILL");
    await nodes[0]!.stop();
    nodes[0] = null;
    for (let i = 0; i < 10; i++) await eventually(`put w2:${i}`, () => writer.put(`w2:${i}`, `b${i}`));
    const second = await nodes[2]!.client({ timeoutMs: 8000 });
    const resumed = await second.watch("w2:", { prefix: true, from: position });
    const missed = await take(resumed, 10, 20_000);
    assert.deepEqual(
      missed.map((e) => `${e.key.toString()}=${e.value!.toString()}`).sort(),
      Array.from({ length: 10 }, (_, i) => `w2:${i}=b${i}`).sort(),
      "exactly the writes made while the watcher was away",
    );
    await writer.put("w2:live", "x");
    const [live] = await take(resumed, 1, 20_000);
    assert.equal(live!.key.toString(), "w2:live");
    await resumed.cancel();
    await second.close();
    await writer.close();
    first.close().catch(() => {});
  });
});
