// SAVE, BGSAVE, LASTSAVE, INFO persistence and DEBUG RELOAD over RESP, as a
// Redis user would use them, on a real durable node; and the same figures in
// `piccolo stats` (the CLI) and the Cerializer's /metrics.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { startGateway } from "../support/cerializer.js";
import {
  type DurableNode,
  fileSize,
  journalFiles,
  killAll,
  removeDir,
  shardDirs,
  startDurable,
  tempRoot,
} from "../support/durable.js";
import { eventually } from "../support/eventually.js";
import { CLI, startNode } from "../support/node.js";

const roots: string[] = [];
function dataDir(): string {
  const root = tempRoot();
  roots.push(root);
  return join(root, "data");
}
afterEach(async () => {
  await killAll();
});
after(() => {
  for (const r of roots) removeDir(r);
});

/** INFO persistence as a field map. */
async function persistence(r: Redis): Promise<Record<string, string>> {
  const text = await r.info("persistence");
  assert.match(text, /^# Persistence\r\n/);
  const out: Record<string, string> = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

function diskBytes(dir: string): { log: number; snapshots: number } {
  let log = 0;
  let snapshots = 0;
  for (const d of shardDirs(dir)) {
    const f = journalFiles(d);
    for (const s of f.segments) log += fileSize(s);
    for (const s of f.snapshots) snapshots += fileSize(s);
  }
  return { log, snapshots };
}

describe("SAVE, BGSAVE, LASTSAVE, INFO persistence, DEBUG RELOAD", () => {
  it("INFO persistence before and after SAVE: changes, sizes, last save time; LASTSAVE matches and survives a restart", async () => {
    const dir = dataDir();
    let node = await startDurable(dir);
    const r = node.redis();
    let p = await persistence(r);
    assert.equal(p.aof_enabled, "1");
    assert.equal(p.piccolo_durable, "1");
    assert.equal(p.piccolo_data_dir, dir);
    assert.equal(p.piccolo_fsync, "everysec");
    assert.equal(p.aof_last_write_status, "ok");
    assert.equal(p.rdb_changes_since_last_save, "0");
    assert.equal(p.piccolo_snapshot_bytes, "0");
    // Never saved: as Redis, the start counts as the last save (LASTSAVE is never 0).
    const startedAt = Number(await r.lastsave());
    assert.ok(Math.abs(startedAt - Date.now() / 1000) < 60, `LASTSAVE before any save is the start time: ${startedAt}`);
    assert.equal(p.rdb_last_save_time, String(startedAt));

    for (let i = 0; i < 100; i++) await r.set(`k${i}`, "x".repeat(100));
    await r.del("k0");
    p = await persistence(r);
    assert.equal(p.rdb_changes_since_last_save, "101", "100 SETs and a DEL");
    const logBefore = Number(p.piccolo_log_bytes);
    assert.equal(Number(p.aof_current_size), logBefore);
    assert.ok(logBefore > 99 * 100, `the log holds the values: ${logBefore}`);
    assert.equal(logBefore, diskBytes(dir).log, "the log size INFO reports is the segments' size on disk");

    const t0 = Math.floor(Date.now() / 1000);
    assert.equal(await r.save(), "OK");
    const t1 = Math.ceil(Date.now() / 1000);
    // SAVE answered once every shard's snapshot is on disk.
    for (const d of shardDirs(dir)) assert.equal(journalFiles(d).snapshots.length, 1, `${d} has its snapshot`);
    p = await persistence(r);
    assert.equal(p.rdb_changes_since_last_save, "0");
    assert.equal(p.rdb_bgsave_in_progress, "0");
    assert.equal(p.rdb_last_bgsave_status, "ok");
    assert.equal(p.piccolo_log_bytes, "0", "the snapshot replaced the log");
    assert.equal(diskBytes(dir).log, 0, "and the old segments are deleted");
    const snapBytes = Number(p.piccolo_snapshot_bytes);
    assert.equal(snapBytes, diskBytes(dir).snapshots);
    assert.ok(snapBytes > 99 * 100 && snapBytes < logBefore, `a snapshot of 99 keys: ${snapBytes}`);
    const last = Number(p.rdb_last_save_time);
    assert.ok(last >= t0 && last <= t1, `rdb_last_save_time ${last} in [${t0}, ${t1}]`);
    assert.equal(await r.lastsave(), last, "LASTSAVE = rdb_last_save_time");

    await r.set("after-save", "1");
    assert.equal((await persistence(r)).rdb_changes_since_last_save, "1");
    assert.equal(await node.stop(), 0);
    node = await startDurable(dir);
    const r2 = node.redis();
    assert.equal(await r2.lastsave(), last, "LASTSAVE is the snapshot's, after a restart too");
    p = await persistence(r2);
    assert.equal(Number(p.piccolo_snapshot_bytes), snapBytes);
    assert.equal(await r2.dbsize(), 100);
    await node.stop();
  });

  it("BGSAVE answers at once; LASTSAVE moves when it is done; writes during it are kept (then a kill -9)", async () => {
    const dir = dataDir();
    const node = await startDurable(dir);
    const r = node.redis();
    const N = 30_000;
    for (let base = 0; base < N; base += 1000) {
      const p = r.pipeline();
      for (let i = base; i < base + 1000; i++) p.set(`b:${i}`, `first-${i}`);
      await p.exec();
    }
    const before = await r.lastsave();
    // LASTSAVE counts whole seconds (as Redis's), and before any save it is the start time: on a quick
    // machine the node can start, load and finish the BGSAVE within one second, and LASTSAVE could not move.
    while (Math.floor(Date.now() / 1000) <= before) await new Promise((res) => setTimeout(res, 50));
    assert.equal(await r.bgsave(), "Background saving started");
    // Overwrite and delete while the snapshot walks the map (it walks 4096 keys per step).
    const w = r.pipeline();
    for (let i = 0; i < N; i += 3) w.set(`b:${i}`, `second-${i}`);
    for (let i = 1; i < N; i += 7) w.del(`b:${i}`);
    const results = (await w.exec())!;
    assert.ok(results.every(([err]) => err === null));
    await eventually(
      "BGSAVE finishes",
      async () => {
        assert.ok((await r.lastsave()) > before);
        assert.equal((await persistence(r)).rdb_bgsave_in_progress, "0");
      },
      20_000,
    );
    for (const d of shardDirs(dir)) assert.equal(journalFiles(d).snapshots.length, 1, `${d} has its snapshot`);
    await node.kill9();
    const again = await startDurable(dir);
    const r2 = again.redis();
    const expected = (i: number) => (i % 7 === 1 ? null : i % 3 === 0 ? `second-${i}` : `first-${i}`);
    let count = 0;
    for (let base = 0; base < N; base += 1000) {
      const keys = Array.from({ length: 1000 }, (_, j) => `b:${base + j}`);
      const got = await r2.mget(...keys);
      for (let j = 0; j < 1000; j++) {
        assert.equal(got[j], expected(base + j), `b:${base + j} after BGSAVE and kill -9`);
        if (got[j] !== null) count++;
      }
    }
    assert.equal(again.recoveredKeys, count);
    await again.stop();
  });

  it("DEBUG RELOAD: the map rebuilt from the files is the same (values, TTLs, versions), and writes go on", async () => {
    const node = await startDurable(dataDir());
    const r = node.redis();
    const c = await node.client();
    const versions: number[] = [];
    for (let i = 0; i < 200; i++) versions.push(await c.put(`d:${i}`, `v${i}`, i % 4 === 0 ? { ttlMs: 600_000 } : {}));
    await r.del("d:5");
    const expireAt = (await c.get("d:8"))!.expireAtMs;
    assert.equal(await r.call("DEBUG", "RELOAD"), "OK");
    assert.equal(await r.dbsize(), 199);
    assert.equal(await r.get("d:5"), null);
    for (let i = 0; i < 200; i += 1) {
      if (i === 5) continue;
      const e = (await c.get(`d:${i}`))!;
      assert.equal(e.value.toString(), `v${i}`);
      assert.equal(e.version, versions[i], `d:${i}'s version`);
    }
    assert.equal((await c.get("d:8"))!.expireAtMs, expireAt, "absolute expiry");
    assert.equal(await r.ttl("d:9"), -1);
    const v = await c.put("d:1", "after");
    assert.ok(v > Math.max(...versions), "versions go on after the reload");
    await assert.rejects(r.call("DEBUG", "SLEEP", "0"), /ERR DEBUG: only DEBUG RELOAD is supported/);
    await c.close();
    await node.stop();
  });

  it("an in-memory node refuses SAVE/BGSAVE/LASTSAVE and says so in INFO", async () => {
    const node = await startNode(["--in-memory"]);
    const { redisClient } = await import("../resp/support.js");
    const r = redisClient({ port: node.respPort });
    try {
      await assert.rejects(r.save(), /ERR this node keeps nothing on disk/);
      await assert.rejects(r.bgsave(), /ERR this node keeps nothing on disk/);
      await assert.rejects(r.lastsave(), /ERR this node keeps nothing on disk/);
      const p = await persistence(r);
      assert.equal(p.aof_enabled, "0");
      assert.equal(p.piccolo_durable, "0");
    } finally {
      r.disconnect();
      await node.stop();
    }
  });
});

describe("fsync figures follow the policy", () => {
  for (const fsync of ["always", "everysec", "no"] as const)
    it(`--fsync ${fsync}`, async () => {
      const node = await startDurable(dataDir(), ["--fsync", fsync]);
      const r = node.redis();
      const t = Date.now();
      for (let i = 0; i < 60; i++) await r.set(`f:${i}`, "v"); // one at a time: 60 batches
      const p = await persistence(r);
      const fsyncs = Number(p.piccolo_fsyncs);
      assert.equal(p.piccolo_fsync, fsync);
      if (fsync === "always") assert.ok(fsyncs >= 60, `always: an fsync per batch, ${fsyncs}`);
      else {
        const seconds = Math.ceil((Date.now() - t) / 1000) + 1;
        assert.ok(fsyncs <= seconds * 2, `${fsync}: not an fsync per write: ${fsyncs} in ~${seconds} s`);
      }
      if (fsync === "everysec")
        await eventually("everysec fsyncs within about a second", async () => {
          const n = Number((await persistence(r)).piccolo_fsyncs);
          assert.ok(n >= 1, `fsyncs ${n}`);
        });
      if (fsync === "no") {
        await sleep(1500);
        assert.equal((await persistence(r)).piccolo_fsyncs, "0", "no: the OS flushes, the node never fsyncs the log");
      }
      const q = await persistence(r);
      if (Number(q.piccolo_fsyncs) > 0) {
        assert.ok(Number(q.piccolo_fsync_avg_ms) > 0, `avg ${q.piccolo_fsync_avg_ms}`);
        assert.ok(Number(q.piccolo_fsync_max_ms) >= Number(q.piccolo_fsync_avg_ms));
      }
      await node.stop();
    });
});

describe("piccolo stats and the Cerializer's /metrics", () => {
  let node: DurableNode;
  it("show log size, snapshot size, last save and fsync figures per shard, matching INFO", async () => {
    node = await startDurable(dataDir(), ["--fsync", "always"]);
    const r = node.redis();
    for (let i = 0; i < 300; i++) await r.set(`m:${i}`, "y".repeat(500));
    assert.equal(await r.save(), "OK");
    for (let i = 0; i < 300; i++) await r.set(`m:${i}`, "z".repeat(300)); // a log after the snapshot
    const info = await persistence(r);

    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args, "--server", `127.0.0.1:${node.port}`], { encoding: "utf8" });
    const json = cli("stats", "--json");
    assert.equal(json.status, 0, json.stderr);
    const s = JSON.parse(json.stdout) as {
      shards: {
        shard: number;
        persistence?: {
          logBytes: number;
          snapshotBytes: number;
          lastSaveMs: number;
          fsyncs: number;
          fsyncMaxMs: number;
          refusingWrites: boolean;
        };
      }[];
    };
    const ps = s.shards.map((t) => t.persistence!);
    assert.ok(
      ps.every((p) => p !== undefined),
      "every shard of a durable node reports its journal",
    );
    const sum = (f: (p: (typeof ps)[number]) => number) => ps.reduce((n, p) => n + f(p), 0);
    assert.equal(
      sum((p) => p.logBytes),
      Number(info.piccolo_log_bytes),
    );
    assert.ok(sum((p) => p.logBytes) > 300 * 300);
    assert.equal(
      sum((p) => p.snapshotBytes),
      Number(info.piccolo_snapshot_bytes),
    );
    assert.ok(sum((p) => p.fsyncs) >= 600, "always: 600 sequential writes, each fsynced");
    assert.equal(Math.floor(Math.min(...ps.map((p) => p.lastSaveMs)) / 1000), Number(info.rdb_last_save_time));
    assert.ok(ps.every((p) => !p.refusingWrites));

    const text = cli("stats");
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /shard {2}log {9}snapshot {4}last save {13}fsyncs {6}avg fsync {3}max fsync {3}writes/);
    const day = new Date(ps[0]!.lastSaveMs).toISOString().slice(0, 19);
    assert.ok(text.stdout.includes(day), `last save ${day} in:\n${text.stdout}`);
    assert.doesNotMatch(text.stdout, /never/);
    assert.match(text.stdout, /ms {3,}ok$/m);

    const gw = await startGateway([node.port]);
    try {
      const metrics = await (await gw.fetch("/metrics")).text();
      const metric = (name: string, shard: number): number => {
        const m = new RegExp(`^${name}\\{node="127\\.0\\.0\\.1:${node.port}",shard="${shard}"\\} (\\S+)$`, "m").exec(
          metrics,
        );
        assert.ok(m !== null, `${name} for shard ${shard} in /metrics`);
        return Number(m[1]);
      };
      for (const [i, p] of ps.entries()) {
        assert.equal(metric("piccolo_node_snapshot_bytes", i), p.snapshotBytes);
        assert.equal(metric("piccolo_node_last_save_timestamp_seconds", i), p.lastSaveMs / 1000);
        assert.equal(metric("piccolo_node_refusing_writes", i), 0);
        assert.ok(metric("piccolo_node_log_bytes", i) >= p.logBytes);
        assert.ok(metric("piccolo_node_fsyncs_total", i) >= p.fsyncs);
        assert.ok(metric("piccolo_node_fsync_seconds_total", i) > 0);
      }
    } finally {
      await gw.stop();
      await node.stop();
    }
  });
});
