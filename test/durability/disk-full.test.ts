// A full disk under a real node. The journal's test-only file layer
// (budgetFs in src/journal/files.ts) is selected in a real process by
// PICCOLO_TEST_DISK_BUDGET_BYTES: each shard's log writes fail with ENOSPC
// once that many bytes were written (the crossing write short, as on a real
// full disk). Writes must then be refused on both ports with a clear error
// (STORAGE_FAILED natively, -MISCONF over RESP), reads go on, a refused
// write is not applied (not even in memory), and after a restart (without
// the budget) every acknowledged write is there and no refused one is.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { type DurableNode, killAll, removeDir, startDurable, tempRoot } from "../support/durable.js";

const roots: string[] = [];
afterEach(async () => {
  await killAll();
});
after(() => {
  for (const r of roots) removeDir(r);
});

interface Outcome {
  key: string;
  value: string;
  native: boolean;
  ok: boolean;
  error?: string;
  /** A native error's code. */
  code?: number;
}

function refused(o: Outcome): void {
  if (o.native) {
    assert.equal(o.code, ErrorCode.STORAGE_FAILED, `native: ${o.error}`);
    assert.match(
      o.error!,
      /cannot write its log \(disk full or failing\); the write was not applied; reads still work/,
    );
  } else assert.match(o.error!, /^MISCONF /, `RESP: ${o.error}`);
}

async function checkAll(node: DurableNode, outcomes: Outcome[], when: string): Promise<void> {
  const c = await node.client();
  const r = node.redis();
  for (const [i, o] of outcomes.entries()) {
    // Read over both protocols, alternately.
    const got = i % 2 === 0 ? ((await c.get(o.key))?.value.toString() ?? null) : await r.get(o.key);
    if (o.ok) assert.equal(got, o.value, `${when}: ${o.key} was acknowledged`);
    else assert.equal(got, null, `${when}: ${o.key} was refused (${o.error}), so it was not applied`);
  }
  await c.close();
}

/** A native put, its outcome recorded in `o`. */
async function write(natives: Awaited<ReturnType<DurableNode["client"]>>, o: Outcome): Promise<void> {
  try {
    await natives.put(o.key, o.value);
    o.ok = true;
  } catch (err) {
    if (!(err instanceof PiccoloError)) throw err;
    o.error = err.message;
    o.code = err.code;
  }
}

describe("a full disk", () => {
  it("--fsync always, one write at a time: refused on both ports with a clear error, reads go on, nothing acknowledged lost", async () => {
    const root = tempRoot();
    roots.push(root);
    const dir = join(root, "data");
    const node = await startDurable(dir, ["--fsync", "always"], { PICCOLO_TEST_DISK_BUDGET_BYTES: "16384" });
    const c = await node.client();
    const r = node.redis();
    const outcomes: Outcome[] = [];
    let failedInARow = 0;
    for (let i = 0; i < 1000 && failedInARow < 40; i++) {
      const o: Outcome = { key: `full:${i}`, value: `${i}-${"x".repeat(200)}`, native: i % 2 === 0, ok: false };
      if (o.native) await write(c, o);
      else
        try {
          await r.set(o.key, o.value); // one RESP connection for the whole run
          o.ok = true;
        } catch (err) {
          o.error = (err as Error).message;
        }
      outcomes.push(o);
      failedInARow = o.ok ? 0 : failedInARow + 1;
    }
    const ok = outcomes.filter((o) => o.ok);
    const bad = outcomes.filter((o) => !o.ok);
    assert.ok(ok.length >= 50, `writes were acknowledged before the disk filled: ${ok.length}`);
    assert.equal(failedInARow, 40, "every shard's disk filled up, and then every write was refused");
    for (const o of bad) refused(o);
    assert.ok(bad.some((o) => o.native) && bad.some((o) => !o.native), "refused on both ports");
    const sample = bad.find((o) => !o.native)!.error!;
    assert.match(sample, /MISCONF .*(log|disk)/i, `a Redis user is told why: ${sample}`);

    // Reads go on; refused writes were not applied, not even in memory.
    await checkAll(node, outcomes, "while refusing writes");
    // Other writes are refused too: DEL, INCR, EXPIRE, a native delete.
    await assert.rejects(r.del(ok[0]!.key), /^ReplyError: MISCONF|MISCONF/);
    await assert.rejects(r.incr("a-counter"), /MISCONF/);
    await assert.rejects(r.expire(ok[1]!.key, 10), /MISCONF/);
    await assert.rejects(
      c.delete(ok[2]!.key),
      (err: unknown) => (err as PiccoloError).code === ErrorCode.STORAGE_FAILED,
    );
    assert.equal(await r.get(ok[0]!.key), ok[0]!.value, "the refused DEL did nothing");
    assert.equal(await r.ttl(ok[1]!.key), -1, "the refused EXPIRE did nothing");

    const info = await r.info("persistence");
    assert.match(info, /aof_last_write_status:err/);
    const refusing = Number(/piccolo_shards_refusing_writes:(\d+)/.exec(info)![1]);
    const stats = await c.stats();
    assert.equal(refusing, stats.shards.length, "every shard says it refuses writes");
    assert.ok(stats.shards.every((s) => s.persistence?.refusingWrites === true));
    await c.close();

    assert.equal(await node.stop(), 0, `a node refusing writes still stops cleanly; ${node.stderr()}`);
    assert.match(node.stderr(), /cannot write the log: ENOSPC/, "the operator is told in the log");
    const again = await startDurable(dir, ["--fsync", "always"]);
    assert.equal(again.recoveredKeys, ok.length, "exactly the acknowledged writes come back");
    await checkAll(again, outcomes, "after the restart");
    const r2 = again.redis();
    assert.equal(await r2.set("writable-again", "1"), "OK", "with room on the disk, writes are accepted");
    await again.stop();
  });

  it("--fsync everysec, 8 native + 8 RESP connections pipelining, then kill -9: acknowledged kept, refused not applied", async () => {
    const root = tempRoot();
    roots.push(root);
    const dir = join(root, "data");
    const node = await startDurable(dir, [], { PICCOLO_TEST_DISK_BUDGET_BYTES: "65536" });
    const natives = await Promise.all(Array.from({ length: 8 }, () => node.client()));
    const resps = Array.from({ length: 8 }, () => node.redis());
    const outcomes: Outcome[] = [];
    // Rounds of pipelined writes on every connection until a whole round is refused.
    for (let round = 0; round < 60; round++) {
      const batch: Promise<void>[] = [];
      const these: Outcome[] = [];
      for (let conn = 0; conn < 16; conn++)
        for (let j = 0; j < 10; j++) {
          const o: Outcome = {
            key: `p:${round}:${conn}:${j}`,
            value: `${round}.${conn}.${j}-${"y".repeat(100)}`,
            native: conn < 8,
            ok: false,
          };
          these.push(o);
          batch.push(
            o.native
              ? write(natives[conn]!, o)
              : resps[conn - 8]!.set(o.key, o.value).then(
                  () => {
                    o.ok = true;
                  },
                  (err: Error) => {
                    o.error = err.message;
                  },
                ),
          );
        }
      await Promise.all(batch);
      outcomes.push(...these);
      if (these.every((o) => !o.ok)) break;
    }
    const ok = outcomes.filter((o) => o.ok);
    const bad = outcomes.filter((o) => !o.ok);
    assert.ok(ok.length >= 100, `acknowledged before the disk filled: ${ok.length}`);
    assert.ok(bad.length >= 160, `a whole round was refused: ${bad.length} refused`);
    for (const o of bad) refused(o);
    await checkAll(node, outcomes, "while refusing writes");
    for (const c of natives) await c.close();

    await node.kill9();
    const again = await startDurable(dir);
    assert.equal(again.recoveredKeys, ok.length, "exactly the acknowledged writes come back");
    await checkAll(again, outcomes, "after kill -9 and a restart");
    await again.stop();
  });
});
