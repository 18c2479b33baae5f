// Backup and restore (docs/backup.md), with real processes: `piccolo server`
// nodes with their default flags, `piccolo backup` and `piccolo restore` run
// as a user runs them, and the restored directory started as a node.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, describe, it } from "node:test";
import { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, type PiccoloError } from "../../src/errors.js";
import { sealFrame } from "../../src/wal/record.js";
import { killAll, removeDir, startDurable, tempRoot } from "../support/durable.js";
import { eventually } from "../support/eventually.js";
import { CLI, memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";

const roots: string[] = [];
function root(): string {
  const r = tempRoot("piccolo-backup-");
  roots.push(r);
  return r;
}

/** Cluster members the tests started (startDurable's nodes are killAll's): killed in after() should a test fail. */
const members: RunningNode[] = [];

after(async () => {
  await killAll();
  await stopAll(members);
  for (const r of roots) removeDir(r);
});

/** Runs the CLI; resolves with its exit code and output (never rejects on a non-zero exit). */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function backup(port: number, file: string, extra: string[] = []): Promise<string> {
  const r = await cli(["backup", file, "--server", `127.0.0.1:${port}`, ...extra]);
  assert.equal(r.code, 0, `piccolo backup failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function restore(file: string, dir: string, extra: string[] = []): Promise<string> {
  const r = await cli(["restore", file, "--data-dir", dir, ...extra]);
  assert.equal(r.code, 0, `piccolo restore failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * SET key(i) value(i) for i < n through the Redis port, pipelined as
 * `redis-cli --pipe` does: the RESP commands written with the socket's
 * backpressure, the +OK answers counted.
 */
function pipeSets(port: number, n: number, key: (i: number) => string, value: (i: number) => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    let answered = 0;
    let tail = "";
    s.on("data", (d: Buffer) => {
      const text = tail + d.toString("latin1");
      const lines = text.split("\r\n");
      tail = lines.pop()!;
      for (const l of lines) {
        if (l !== "+OK") return reject(new Error(`SET answered ${l}`));
        answered++;
      }
      if (answered === n) {
        s.end();
        resolve();
      }
    });
    s.on("error", reject);
    let i = 0;
    const write = (): void => {
      while (i < n) {
        let chunk = "";
        for (const end = Math.min(i + 2000, n); i < end; i++) {
          const k = key(i);
          const v = value(i);
          chunk += `*3\r\n$3\r\nSET\r\n$${k.length}\r\n${k}\r\n$${v.length}\r\n${v}\r\n`;
        }
        if (!s.write(chunk)) return void s.once("drain", write);
      }
    };
    s.once("connect", write);
  });
}

/** mput in batches of 1,000, 8 batches in flight; returns each key's version. */
async function load(c: PiccoloClient, keys: string[], value: (k: string) => string): Promise<Map<string, number>> {
  const versions = new Map<string, number>();
  for (let i = 0; i < keys.length; i += 8000) {
    const rounds: Promise<void>[] = [];
    for (let j = i; j < Math.min(i + 8000, keys.length); j += 1000) {
      const batch = keys.slice(j, Math.min(j + 1000, keys.length));
      rounds.push(
        c.mput(batch.map((k) => [k, value(k)] as [string, string])).then((vs) => {
          for (const [n, k] of batch.entries()) versions.set(k, vs[n]!);
        }),
      );
    }
    await Promise.all(rounds);
  }
  return versions;
}

describe("backup and restore of a single node", () => {
  it("restores every key with its value, version and expiry, as of one point, while writes go on during the backup", async () => {
    const r = root();
    const node = await startDurable(join(r, "data"));
    const c = await node.client({ timeoutMs: 15_000 });
    const keys = Array.from({ length: 20_000 }, (_, i) => `base:${i}`);
    const versions = await load(c, keys, (k) => `value of ${k}`);
    // Versions above 1: overwrite a few, so a restored version is not just "1".
    for (let i = 0; i < 50; i++) versions.set(`base:${i}`, await c.put(`base:${i}`, `new value of base:${i}`));
    const expireAt = Date.now() + 3_600_000;
    await c.put("ttl:long", "stays", { expireAtMs: expireAt });
    const shortUntil = Date.now() + 5000;
    await c.put("ttl:short", "goes", { expireAtMs: shortUntil });
    await c.delete("base:19999");
    versions.delete("base:19999");

    // A writer that goes on during the backup: seq:1, seq:2, ... one after another, each acknowledged before the
    // next is sent; the keys land on every shard. The backup must hold a prefix of them (one point in time).
    let acked = 0;
    let writing = true;
    const writer = (async () => {
      const w = await node.client({ timeoutMs: 15_000 });
      while (writing) {
        await w.put(`seq:${acked + 1}`, String(acked + 1));
        acked++;
      }
      await w.close();
    })();
    while (acked < 200) await sleep(5);
    const ackedBefore = acked;
    const file = join(r, "node.pbk");
    const out = await backup(node.port, file);
    const ackedAfter = acked;
    writing = false;
    await writer;
    assert.match(out, /backup of a node \(\d+ shards\) written to/);
    assert.match(out, /every shard at one point/);
    assert.ok(ackedAfter > ackedBefore, "the writer kept writing during the backup");

    const checked = await cli(["restore", file, "--check"]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /a whole backup \(format 1/);

    await sleep(Math.max(0, shortUntil + 100 - Date.now())); // ttl:short runs out before the restore
    const restoredDir = join(r, "restored");
    const said = await restore(file, restoredDir);
    assert.match(said, /restored \d+ keys into/);
    assert.match(said, /1 keys whose TTL had run out were left out/);
    await c.close();
    await node.stop();

    const back = await startDurable(restoredDir);
    const b = await back.client({ timeoutMs: 15_000 });
    // Every base key, value and version.
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const got = await b.mget(batch);
      for (const [n, k] of batch.entries()) {
        const e = got[n];
        if (k === "base:19999") {
          assert.equal(e, null, "a key deleted before the backup stays deleted");
          continue;
        }
        assert.ok(e !== null && e !== undefined, `${k} restored`);
        assert.equal(e.value.toString(), i + n < 50 ? `new value of ${k}` : `value of ${k}`);
        assert.equal(e.version, versions.get(k), `${k}'s version`);
      }
    }
    // Absolute expiry kept to the millisecond; a run-out TTL gone.
    const long = await b.get("ttl:long");
    assert.equal(long?.value.toString(), "stays");
    assert.equal(long?.expireAtMs, expireAt);
    assert.equal(await b.get("ttl:short"), null);
    // One point: the sequence is a prefix 1..m, with m at least what was acknowledged before the backup started.
    let m = 0;
    while ((await b.get(`seq:${m + 1}`)) !== null) m++;
    assert.ok(
      m >= ackedBefore,
      `the backup holds seq up to ${m}, fewer than the ${ackedBefore} acknowledged before it`,
    );
    assert.ok(m <= ackedAfter + 1, `the backup holds seq up to ${m}, more than were written (${ackedAfter} + 1)`);
    const after = await b.mget(Array.from({ length: 50 }, (_, j) => `seq:${m + 1 + j}`));
    assert.ok(
      after.every((e) => e === null),
      "no write after the backup's point is in it (the sequence has no hole)",
    );
    // Versions are never handed out twice: a compare-and-swap at the restored version works, and a new write
    // gets a version above every restored one.
    const v = versions.get("base:100")!;
    const next = await b.cas("base:100", "swapped", v);
    assert.ok(next > Math.max(...versions.values()), "a new version is above every restored one");
    await assert.rejects(b.cas("base:101", "stale", v - 1), (e: PiccoloError) => e.code === ErrorCode.VERSION_MISMATCH);
    await b.close();
    await back.stop();
  });

  it("backs up a node in memory and one running its map on the IO thread (--shards 0)", async () => {
    for (const args of [["--in-memory"], ["--shards", "0"]]) {
      const r = root();
      const node: RunningNode = await startNode(args);
      const c = await node.client();
      const versions = await load(
        c,
        Array.from({ length: 3000 }, (_, i) => `k${i}`),
        (k) => `v-${k}`,
      );
      const file = join(r, "b.pbk");
      await backup(node.port, file);
      await c.close();
      await node.stop();
      await restore(file, join(r, "data"), ["--shards", "3"]);
      const back = await startDurable(join(r, "data"));
      assert.equal(back.recoveredKeys, 3000, `${args.join(" ")}: every key restored`);
      assert.match(back.stdout(), /shards: 3/, "laid out for the shard count asked");
      const b = await back.client();
      const e = await b.get("k1234");
      assert.equal(e?.value.toString(), "v-k1234");
      assert.equal(e?.version, versions.get("k1234"));
      await b.close();
      await back.stop();
    }
  });

  it("refuses damaged, incomplete and foreign files, and a directory that is not empty", async () => {
    const r = root();
    const node = await startNode([]);
    const c = await node.client();
    await load(
      c,
      Array.from({ length: 2000 }, (_, i) => `k${i}`),
      (k) => `value-${k}`.repeat(4),
    );
    const file = join(r, "good.pbk");
    await backup(node.port, file);
    await c.close();
    await node.stop();
    const good = readFileSync(file);

    const flipped = Buffer.from(good);
    flipped[Math.floor(flipped.length / 2)]! ^= 0x40;
    writeFileSync(join(r, "flipped.pbk"), flipped);
    writeFileSync(join(r, "cut.pbk"), good.subarray(0, good.length - 30));
    writeFileSync(join(r, "foreign.pbk"), "not a backup at all, just some text\n".repeat(10));
    for (const [name, why] of [
      ["flipped.pbk", /refused: at byte \d+: a record fails its checksum: the file is damaged/],
      ["cut.pbk", /refused: at byte \d+: the file ends (inside a record|before its END record): it is incomplete/],
      ["foreign.pbk", /refused: at byte 0: /],
    ] as const) {
      for (const args of [["--check"], ["--data-dir", join(r, `from-${name}`)]]) {
        const res = await cli(["restore", join(r, name), ...args]);
        assert.equal(res.code, 7, `${name} ${args[0]}: exit 7, got ${res.code}: ${res.stderr}`);
        assert.match(res.stderr, why);
      }
      assert.throws(() => statSync(join(r, `from-${name}`)), "nothing written from a refused file");
    }
    // A change that keeps every record's own CRC valid (a digit of the head's time, the record resealed) is
    // still caught: by the SHA-256 of the whole file.
    const tampered = Buffer.from(good);
    const head = tampered.subarray(0, 9 + tampered.readUInt32LE(0));
    const at = 9 + head.subarray(9).toString("latin1").indexOf('"createdAtMs":') + 15;
    head[at] = head[at] === 0x31 ? 0x32 : 0x31;
    sealFrame(head, head[8]!, head.length);
    writeFileSync(join(r, "tampered.pbk"), tampered);
    const sha = await cli(["restore", join(r, "tampered.pbk"), "--check"]);
    assert.equal(sha.code, 7, sha.stderr);
    assert.match(sha.stderr, /the SHA-256 of the file does not match/);
    const nonEmpty = join(r, "busy-dir");
    mkdirSync(nonEmpty);
    writeFileSync(join(nonEmpty, "something"), "x");
    const res = await cli(["restore", file, "--data-dir", nonEmpty]);
    assert.equal(res.code, 5, res.stderr);
    assert.match(res.stderr, /exists and is not empty/);
    assert.equal(readFileSync(join(nonEmpty, "something"), "utf8"), "x");
  });

  it("runs one backup at a time (BUSY), lets a client that reads slowly hold it, frees it when the client goes, and needs admin", async () => {
    const node = await startNode([]);
    const c = await node.client();
    await load(
      c,
      Array.from({ length: 30_000 }, (_, i) => `k${i}`),
      () => "v".repeat(200),
    );
    // A backup whose reader takes its time: the node waits for it (backpressure), holding the one backup slot.
    const slow = await node.client({ timeoutMs: 60_000 });
    let got = 0;
    const slowRun = slow.backup(async (chunk) => {
      got += chunk.length;
      await sleep(300);
    });
    slowRun.catch(() => {});
    await eventually("the slow backup has started streaming", async () => {
      if (got === 0) throw new Error("nothing yet");
    });
    const other = await node.client();
    await assert.rejects(
      other.backup(() => {}),
      (e: PiccoloError) => e.code === ErrorCode.BUSY && /a backup is already running/.test(e.message),
    );
    // The slow client leaves: its backup ends, and the next one runs.
    await slow.close();
    await assert.rejects(slowRun);
    await eventually(
      "a backup runs once the slow client has gone",
      async () => {
        let bytes = 0;
        await other.backup((chunk) => {
          bytes += chunk.length;
        });
        assert.ok(bytes > 30_000 * 200, "the whole keyspace was sent");
      },
      10_000,
      200,
    );
    // A user without admin may not back up (every key and value, whatever its key patterns).
    const redis = await import("ioredis");
    const r = new redis.Redis({ host: "127.0.0.1", port: node.respPort });
    await r.call("ACL", "SETUSER", "reader", "on", ">pw-reader", "~*", "+@read", "+@write");
    r.disconnect();
    const reader = await PiccoloClient.connect({
      host: "127.0.0.1",
      port: node.port,
      user: "reader",
      password: "pw-reader",
    });
    await assert.rejects(
      reader.backup(() => {}),
      (e: PiccoloError) => e.code === ErrorCode.NOPERM,
    );
    await reader.close();
    await other.close();
    await c.close();
    await node.stop();
  });

  it("round-trips 1M keys (16-byte keys, 64-byte values) with the default flags", async () => {
    const r = root();
    const node = await startDurable(join(r, "data"));
    const c = await node.client({ timeoutMs: 30_000 });
    const key = (i: number) => `key:${String(i).padStart(12, "0")}`; // 16 bytes
    const value = (i: number) => `${String(i).padStart(12, "0")}${"v".repeat(52)}`; // 64 bytes
    const N = 1_000_000;
    await pipeSets(node.respPort, N, key, value); // as redis-cli --pipe loads a node
    const sample = Array.from({ length: 1000 }, (_, n) => (n * 7919) % N);
    const before = await c.mget(sample.map(key));
    const versions = new Map(sample.map((i, n) => [i, before[n]!.version]));
    const sevenVersion = await c.put(key(7), "overwritten");
    const file = join(r, "1m.pbk");
    const t0 = performance.now();
    await backup(node.port, file, ["--timeout", "30000"]);
    const backupMs = performance.now() - t0;
    await c.close();
    await node.stop();
    const t1 = performance.now();
    await restore(file, join(r, "restored"));
    const restoreMs = performance.now() - t1;
    const back = await startDurable(join(r, "restored"));
    assert.equal(back.recoveredKeys, N, "every key restored");
    const b = await back.client({ timeoutMs: 30_000 });
    const got = await b.mget(sample.map(key));
    for (const [n, i] of sample.entries()) {
      if (i === 7) continue;
      assert.equal(got[n]?.value.toString(), value(i), `key ${i}`);
      assert.equal(got[n]?.version, versions.get(i), `key ${i}'s version`);
    }
    const seven = await b.get(key(7));
    assert.equal(seven?.value.toString(), "overwritten");
    assert.equal(seven?.version, sevenVersion);
    console.log(
      `# 1M keys: backup ${(backupMs / 1000).toFixed(2)} s, ${(statSync(file).size / 1048576).toFixed(1)} MiB; restore ${(restoreMs / 1000).toFixed(2)} s (timings for information: benchmarks are in npm run bench:backup)`,
    );
    await b.close();
    await back.stop();
  });
});

describe("backup of a cluster", () => {
  it("backs up all 64 partitions through any member, each at a linearizable point, with a member down", async () => {
    const r = root();
    const list = await memberList(3);
    const first = await Promise.all([0, 1, 2].map((i) => startMember(list, r, i)));
    members.push(...first);
    const c = await first[0]!.client({ timeoutMs: 15_000 });
    const versions = new Map<string, number>();
    await eventually(
      "the cluster takes writes",
      async () => {
        versions.set("probe", await c.put("probe", "p"));
      },
      30_000,
      200,
    );
    for (let i = 0; i < 3000; i += 500) {
      const batch = Array.from({ length: 500 }, (_, j) => `ck${i + j}`);
      await Promise.all(
        batch.map(async (k) => {
          versions.set(k, await c.put(k, `value-${k}`));
        }),
      );
    }
    await c.put("ttl", "t", { expireAtMs: Date.now() + 3_600_000 });
    await c.close();
    // One member down: every partition still has a leader among the other two.
    await first[2]!.stop();
    const file = join(r, "cluster.pbk");
    const out = await eventually(
      "a backup through member 2",
      async () => {
        const res = await cli(["backup", file, "--server", `127.0.0.1:${first[1]!.port}`, "--timeout", "15000"]);
        if (res.code !== 0) throw new Error(res.stderr);
        return res.stdout;
      },
      30_000,
      500,
    );
    assert.match(out, /backup of a cluster \(64 partitions\)/);
    assert.match(out, /each partition at its own linearizable point/);
    await restore(file, join(r, "single"), ["--shards", "2"]);
    const single = await startDurable(join(r, "single"));
    assert.equal(single.recoveredKeys, 3002);
    const s = await single.client();
    const got = await s.mget(["ck0", "ck1234", "ck2999", "probe"]);
    for (const [n, k] of ["ck0", "ck1234", "ck2999", "probe"].entries()) {
      assert.equal(got[n]?.value.toString(), k === "probe" ? "p" : `value-${k}`);
      assert.equal(got[n]?.version, versions.get(k), `${k}'s version`);
    }
    await s.close();
    await single.stop();
    // Done with the first cluster: killed rather than stopped (a last member's stop waits for a leadership
    // hand-off that has nowhere to go).
    for (const m of first.slice(0, 2)) m.process.kill("SIGKILL");

    // ...and into a new cluster, through one of its members, versions and expiry kept.
    const r2 = root();
    const list2 = await memberList(3);
    const fresh = await Promise.all([0, 1, 2].map((i) => startMember(list2, r2, i)));
    members.push(...fresh);
    let attempts = 0;
    const into = await eventually(
      "the new cluster takes a restore",
      async () => {
        // A restore cut short (the new cluster still electing) leaves some keys restored: run again
        // (docs/backup.md), with --force, or it would refuse the keys it wrote itself.
        const again = attempts++ > 0 ? ["--force"] : [];
        const res = await cli([
          "restore",
          file,
          "--server",
          `127.0.0.1:${fresh[2]!.port}`,
          "--timeout",
          "15000",
          ...again,
        ]);
        if (res.code !== 0) throw new Error(res.stderr);
        return res.stdout;
      },
      30_000,
      500,
    );
    assert.match(into, /restored 3002 keys in .* with their versions and expiry/);
    const f = await fresh[0]!.client({ timeoutMs: 15_000 });
    const again = await f.mget(["ck0", "ck1234", "ck2999", "probe", "ttl"]);
    for (const [n, k] of ["ck0", "ck1234", "ck2999", "probe"].entries()) {
      assert.equal(again[n]?.value.toString(), k === "probe" ? "p" : `value-${k}`);
      assert.equal(again[n]?.version, versions.get(k), `${k}'s version in the new cluster`);
    }
    assert.ok((again[4]?.expireAtMs ?? 0) > Date.now(), "the expiry came along");
    // The partition's counter was raised: a compare-and-swap at the restored version succeeds, above it.
    const v = versions.get("ck1234")!;
    assert.ok((await f.cas("ck1234", "next", v)) > v);
    // Not into a cluster that holds keys, unless asked.
    const refused = await cli(["restore", file, "--server", `127.0.0.1:${fresh[1]!.port}`]);
    assert.equal(refused.code, 5, refused.stderr);
    assert.match(refused.stderr, /already holds keys/);
    await f.close();
    for (const m of fresh) m.process.kill("SIGKILL");
  });
});
