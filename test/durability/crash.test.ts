// kill -9 under load: 8 native and 8 RESP connections pipeline SETs,
// overwrites and DELs (some with a TTL) on overlapping keys; the node is
// killed at a seeded random moment and started again on the same directory.
// Every acknowledged write must be there: per key, the state after the last
// acknowledged write, or after a write still in flight at the kill, but
// never anything a later acknowledged write replaced.
//
// What "later" means, from the clients' side only: write A was applied
// before write B when A and B went over the same connection in that order
// (a connection's commands run in order, and a key lives in one shard), or
// when A's answer arrived before B was sent. The recovered state of a key is
// the effect of one write W (its value is unique) or absent; it is wrong
// when some acknowledged write A on that key must have been applied after W.
// Native writes also give their version: the recovered version must be W's,
// and at least every acknowledged native write's on that key.
//
// Seeds: PICCOLO_CRASH_SEEDS=7,8,9 runs others; every failure names its seed.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { PiccoloClient } from "../../src/client/client.js";
import {
  type DurableNode,
  journalFiles,
  killAll,
  removeDir,
  shardDirs,
  startDurable,
  tempRoot,
} from "../support/durable.js";
import { mulberry32 } from "../support/random.js";

const SEEDS = (process.env.PICCOLO_CRASH_SEEDS ?? "1,2,3").split(",").map(Number);
/** Extra server flags for every case (PICCOLO_CRASH_ARGS="--shards 0" runs them on the IO thread). */
const EXTRA = (process.env.PICCOLO_CRASH_ARGS ?? "").split(" ").filter((a) => a !== "");
const NATIVE = 8;
const RESP = 8;
const KEYS = 120;
/** Commands each connection keeps in flight. */
const WINDOW = 24;
const LONG_TTL_MS = 600_000;

interface Op {
  conn: number;
  /** Order on its connection. */
  seq: number;
  key: string;
  kind: "set" | "del";
  value: string;
  ttlMs: number;
  sentAt: number;
  sentWall: number;
  /** performance.now() when the answer arrived; null: never acknowledged (in flight at the kill, or failed). */
  ackedAt: number | null;
  ackWall: number;
  /** A native write's version. */
  version: number | null;
}

/** Whether `a` was certainly applied before `b` (same connection in order, or `a` answered before `b` was sent). */
function before(a: Op, b: Op): boolean {
  if (a.conn === b.conn) return a.seq < b.seq;
  return a.ackedAt !== null && a.ackedAt < b.sentAt;
}

interface Run {
  ops: Op[];
  inFlightAtKill: number;
  killWall: number;
}

async function load(node: DurableNode, seed: number, killAfterMs: number): Promise<Run> {
  const natives: PiccoloClient[] = [];
  for (let i = 0; i < NATIVE; i++) natives.push(await node.client({ timeoutMs: 30_000 }));
  const redises = Array.from({ length: RESP }, () => node.redis({ maxRetriesPerRequest: 0 }));
  await Promise.all(redises.map((r) => r.ping()));
  const ops: Op[] = [];
  let stopped = false;
  let inFlight = 0;

  const writer = async (conn: number): Promise<void> => {
    const r = mulberry32(seed * 1000 + conn);
    let seq = 0;
    const one = async (): Promise<void> => {
      const key = `k:${Math.floor(r() * KEYS)}`;
      const kind = r() < 0.2 ? "del" : "set";
      const ttlMs = kind === "set" && r() < 0.25 ? LONG_TTL_MS : 0;
      const op: Op = {
        conn,
        seq: seq++,
        key,
        kind,
        value: `${conn}:${seq}:${"v".repeat(Math.floor(r() * 300))}`,
        ttlMs,
        sentAt: performance.now(),
        sentWall: Date.now(),
        ackedAt: null,
        ackWall: 0,
        version: null,
      };
      ops.push(op);
      inFlight++;
      try {
        if (conn < NATIVE) {
          const c = natives[conn]!;
          if (kind === "del") await c.delete(key);
          else op.version = await c.put(key, op.value, ttlMs > 0 ? { ttlMs } : {});
        } else {
          const c = redises[conn - NATIVE]!;
          if (kind === "del") await c.del(key);
          else if (ttlMs > 0) await c.set(key, op.value, "PX", ttlMs);
          else await c.set(key, op.value);
        }
        op.ackedAt = performance.now();
        op.ackWall = Date.now();
      } catch {
        // in flight at the kill: may or may not have been applied
      } finally {
        inFlight--;
      }
    };
    const lanes = Array.from({ length: WINDOW }, async () => {
      while (!stopped) await one();
    });
    await Promise.all(lanes);
  };

  const writers = Array.from({ length: NATIVE + RESP }, (_, conn) => writer(conn));
  await sleep(killAfterMs);
  stopped = true;
  const inFlightAtKill = inFlight;
  const killWall = Date.now();
  await node.kill9();
  await Promise.all(writers);
  for (const c of natives) await c.close();
  return { ops, inFlightAtKill, killWall };
}

describe("kill -9 under pipelined writers on both protocols: nothing acknowledged is lost", () => {
  const roots: string[] = [];
  afterEach(async () => {
    await killAll();
  });
  after(() => {
    for (const r of roots) removeDir(r);
  });

  const CASES: { name: string; fsync: "always" | "everysec"; args: string[] }[] = [
    { name: "--fsync always", fsync: "always", args: [] },
    { name: "--fsync everysec", fsync: "everysec", args: [] },
    // Snapshots every 64 KiB of log: fuzzy snapshots walk the map under the writers, and the kill lands in or between them.
    {
      name: "--fsync everysec --snapshot-log-bytes 65536",
      fsync: "everysec",
      args: ["--snapshot-log-bytes", "65536"],
    },
  ];
  for (const { name, fsync, args } of CASES)
    for (const seed of args.length > 0 ? SEEDS.slice(0, 2) : SEEDS)
      it(`${name}, seed ${seed}`, async () => {
        const tag = `[${name}, seed ${seed}; rerun with PICCOLO_CRASH_SEEDS=${seed}]`;
        const root = tempRoot();
        roots.push(root);
        const dir = join(root, "data");
        const killAfterMs = 300 + Math.floor(mulberry32(seed ^ 0x5eed)() * 1200);
        const node = await startDurable(dir, ["--fsync", fsync, ...args, ...EXTRA]);
        const run = await load(node, seed, killAfterMs);
        const acked = run.ops.filter((o) => o.ackedAt !== null);
        // The run tested something: many writes answered, and some were in flight when the process died.
        assert.ok(acked.length >= 100, `${tag} only ${acked.length} writes were acknowledged before the kill`);
        assert.ok(run.inFlightAtKill > 0, `${tag} no write was in flight at the kill`);

        if (args.length > 0) {
          const snaps = shardDirs(dir).flatMap((d) => journalFiles(d).snapshots);
          assert.ok(snaps.length > 0, `${tag} no snapshot was taken during the run`);
        }
        const again = await startDurable(dir, ["--fsync", fsync, ...args, ...EXTRA]);
        const c = await again.client();
        const byValue = new Map(run.ops.filter((o) => o.kind === "set").map((o) => [o.value, o]));
        const byKey = new Map<string, Op[]>();
        for (const o of run.ops) {
          const list = byKey.get(o.key) ?? [];
          list.push(o);
          byKey.set(o.key, list);
        }
        let present = 0;
        let fromInFlight = 0;
        for (let i = 0; i < KEYS; i++) {
          const key = `k:${i}`;
          const ops = byKey.get(key) ?? [];
          const ackedHere = ops.filter((o) => o.ackedAt !== null);
          const e = await c.get(key);
          if (e === null) {
            const ackedSets = ackedHere.filter((o) => o.kind === "set");
            if (ackedSets.length === 0) continue; // never written for sure: absent is fine
            // Some DEL must explain the absence, with no acknowledged write certainly after it.
            const explained = ops.some(
              (d) => d.kind === "del" && !ackedHere.some((a) => a !== d && a.kind === "set" && before(d, a)),
            );
            const last = ackedSets.reduce((x, y) => (before(x, y) ? y : x));
            assert.ok(
              explained,
              `${tag} ${key} is absent after the restart, but "${last.value.slice(0, 20)}" was acknowledged and no DEL could have come after it`,
            );
            continue;
          }
          present++;
          const value = e.value.toString();
          const w = byValue.get(value);
          assert.ok(
            w !== undefined && w.key === key,
            `${tag} ${key} holds a value nobody wrote to it: ${value.slice(0, 40)}`,
          );
          if (w.ackedAt === null) fromInFlight++;
          const lost = ackedHere.find((a) => a !== w && before(w, a));
          assert.equal(
            lost,
            undefined,
            `${tag} ${key} came back as "${value.slice(0, 20)}" (${w.ackedAt === null ? "in flight" : "acknowledged"}), ` +
              `but the acknowledged ${lost?.kind} "${lost?.value.slice(0, 20)}" was applied after it: an acknowledged write was lost`,
          );
          if (w.version !== null)
            assert.equal(e.version, w.version, `${tag} ${key}: the version its write was answered with`);
          const maxAckedVersion = Math.max(0, ...ackedHere.map((a) => a.version ?? 0));
          assert.ok(
            e.version >= maxAckedVersion,
            `${tag} ${key}: version ${e.version} is older than the acknowledged version ${maxAckedVersion}`,
          );
          if (w.ttlMs === 0) assert.equal(e.expireAtMs, 0, `${tag} ${key} was written without a TTL`);
          else {
            const latest = (w.ackedAt === null ? run.killWall : w.ackWall) + w.ttlMs;
            assert.ok(
              e.expireAtMs >= w.sentWall + w.ttlMs - 5 && e.expireAtMs <= latest + 5,
              `${tag} ${key}: expiry ${e.expireAtMs} outside [${w.sentWall + w.ttlMs}, ${latest}]`,
            );
          }
        }
        assert.equal(again.recoveredKeys, present, `${tag} the node recovered keys nobody can read`);
        assert.ok(present > 0, `${tag} no key survived at all`);
        // Versions go on from where they were: a write after the restart never reuses one.
        for (let i = 0; i < KEYS; i += 7) {
          const key = `k:${i}`;
          const e = await c.get(key);
          const v = await c.put(key, "after");
          const seen = Math.max(e?.version ?? 0, ...(byKey.get(key) ?? []).map((o) => o.version ?? 0));
          assert.ok(
            v > seen,
            `${tag} ${key}: the first write after the restart got version ${v}, already used (${seen})`,
          );
        }
        await c.close();
        assert.equal(await again.stop(), 0);
        console.log(
          `${tag} killed after ${killAfterMs} ms: ${acked.length} acknowledged, ${run.inFlightAtKill} in flight, ${present} keys back (${fromInFlight} from in-flight writes)`,
        );
      });
});
