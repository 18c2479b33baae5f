// A write forwarded to the leader is proposed there once, even when the
// leader's answer never comes back. Found by the 10-minute chaos run (seed
// 4242): a member that forwarded a compare-and-swap and heard nothing within
// a second sent it again; both copies committed, the first swapped, the
// second found the version moved and "failed", and the client was told the
// swap failed although its value was in place. A write whose forward got no
// answer now has an unknown outcome (TIMEOUT), never a second copy.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { PiccoloClient } from "../../src/client/client.js";
import { partitionOf } from "../../src/cluster/placement.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { initHash } from "../../src/hash.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

const PARTITIONS = 8;
let root: string;
const nodes: RunningNode[] = [];
const clients: PiccoloClient[] = [];
const faultFile = (i: number) => join(root, `faults-n${i + 1}`);

before(async () => {
  await initHash();
  root = await mkdtemp(join(tmpdir(), "piccolo-forward-once-"));
  const list = await memberList();
  for (let i = 0; i < 3; i++) await writeFile(faultFile(i), "");
  const args = ["--partitions", String(PARTITIONS), "--tick-ms", "20"];
  // allSettled: if one member cannot start, the others are still stopped by after() (they would
  // otherwise keep this file's process alive until its timeout).
  const started = await Promise.allSettled(
    [0, 1, 2].map((i) => startMember(list, root, i, args, { PICCOLO_TEST_FAULT_FILE: faultFile(i) })),
  );
  for (const s of started) if (s.status === "fulfilled") nodes.push(s.value);
  const failed = started.find((s) => s.status === "rejected");
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  for (const n of nodes) clients.push(await n.client({ timeoutMs: 10_000 }));
});
after(async () => {
  for (const c of clients) await c.close();
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

describe("a forwarded write whose answer is lost", () => {
  it("is applied once: the forwarding member reports an unknown outcome instead of sending it again", async () => {
    const key = "forward-once";
    const v0 = await eventually("the first put", () => clients[0]!.put(key, "v0"));
    const info = await clients[0]!.clusterInfo();
    const leader = info.partitions[partitionOf(Buffer.from(key), PARTITIONS)]!.leader;
    assert.ok(leader > 0, "the key's partition has a leader");
    const via = leader % 3; // the index of another member (ids are 1-based)
    const viaId = via + 1;
    // The leader serves what `via` forwards, and replicates as usual (so nobody campaigns), but its
    // answers to `via` are dropped: the forwarded write commits, and `via` never hears so.
    await writeFile(faultFile(leader - 1), `mute-replies ${viaId}\n`);
    await sleep(300); // members reread their fault file every 50 ms
    try {
      await assert.rejects(
        clients[via]!.put(key, "v1"),
        (e: unknown) => e instanceof PiccoloError && e.code === ErrorCode.TIMEOUT,
        "a write forwarded into silence has an unknown outcome",
      );
    } finally {
      await writeFile(faultFile(leader - 1), "");
    }
    // It was applied, and exactly once: the version moved by one, not by one per resend.
    const e = await clients[leader - 1]!.get(key);
    assert.equal(e?.value.toString(), "v1");
    assert.equal(e!.version, v0 + 1, `applied once (version ${v0} -> ${e!.version})`);
  });
});
