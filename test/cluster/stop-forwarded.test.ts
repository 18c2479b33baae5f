// A member that stops while other members forward it writes answers every
// one of them (decision 0298), on a real three-member cluster with the
// defaults users get (64 partitions). Found in the rolling restart: a write
// the stopping member had proposed just before it handed its leadership
// over, or one still in the air when it closed its peer connections,
// reached the member that forwarded it as "no answer": TIMEOUT, outcome
// unknown, for a write that had succeeded (or had never been read). Now the
// stopping member says it is leaving before anything else, each peer
// forwards nothing more to it and acknowledges on the same connection, and
// at the end it answers what it was serving and closes its connections
// with a FIN after the last answer.
//
// The link from n1 to n2 is slow (300 ms, the test fault file's `delay`),
// so n1's forwards to n2 are always in the air for a while, as on a loaded
// machine or a long link. Writers on one client connected to n1 only keep
// 64 writes in flight over every partition (n1 forwards those n2 and n3
// lead) while n2 is stopped with SIGTERM. Every write must succeed: n1
// sends a write that was certainly not carried out (NOT_LEADER, never
// sent) to the new leader, and anything else would be an unknown outcome.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient } from "../../src/client/client.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

let root: string;
let list: string;
const nodes: RunningNode[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-stop-forwarded-"));
  list = await memberList(3);
  const faults = join(root, "faults-n1");
  await writeFile(faults, "delay 2 300\n");
  nodes.push(
    ...(await Promise.all(
      [0, 1, 2].map((i) => startMember(list, root, i, [], i === 0 ? { PICCOLO_TEST_FAULT_FILE: faults } : {})),
    )),
  );
});

after(async () => {
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("a member stopping while others forward it writes", { timeout: 120_000 }, () => {
  it("answers every forwarded write: none fails or times out on n1 while n2 stops", async () => {
    const c: PiccoloClient = await nodes[0]!.client({ timeoutMs: 10_000 });
    await eventually(
      "every partition has a leader, n2 leads some, and writes go through",
      async () => {
        const info = await c.clusterInfo();
        assert.ok(
          info.partitions.every((p) => p.leader !== 0),
          "every partition led",
        );
        assert.ok(
          info.partitions.some((p) => p.leader === 2),
          "n2 leads some partitions (rebalancing gives them back after a start)",
        );
        await c.put("stop-forwarded:probe", "x");
      },
      60_000,
    );
    const failures: string[] = [];
    const acknowledged = new Map<string, number>();
    let writes = 0;
    let running = true;
    const writers = Array.from({ length: 64 }, async (_, w) => {
      for (let i = 0; running; i++) {
        const key = `stop-forwarded:${w}:${i % 16}`;
        try {
          await c.put(key, String(i));
          acknowledged.set(key, i);
          writes++;
        } catch (err) {
          failures.push(`put ${key}: ${(err as Error).message}`);
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1_000));
    // A failed step ends the load too: its loops would otherwise run (and fail) until the file's timeout.
    try {
      const before = writes;
      assert.equal(await nodes[1]!.stop(), 0, "n2 exits 0");
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(writes > before, "writes went on while n2 stopped");
    } finally {
      running = false;
    }
    await Promise.all(writers);
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${writes + failures.length} writes failed`);
    for (const [key, i] of acknowledged) assert.equal((await c.get(key))?.value.toString(), String(i), key);
    await c.close();
  });
});
