// 50 concurrent clients doing random operations against one node, every
// reply checked against an in-memory model; then all 50 race on shared
// counters with CAS retry loops, and no increment may be lost.
//
// Exact by construction: each client owns a disjoint set of keys, so its own
// view of them is sequential and every reply has exactly one right answer
// (values, versions, conditions, TTL signs), while the node serves all 50
// clients interleaved. TTLs are an hour long, so nothing expires under us.
//
// Seeded: a failure names the seed, the client and its last operations.
// Replay with PICCOLO_SEED=<seed>.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Entry, type PiccoloClient, VersionMismatchError } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";
import { mulberry32 } from "../support/random.js";

interface Model {
  value: string;
  version: number;
  hasTtl: boolean;
}

const CLIENTS = 50;
const OPS_PER_CLIENT = 200;
const KEYS_PER_CLIENT = 8;
const SEED = Number(process.env.PICCOLO_SEED ?? 20261124);
const LONG_TTL_MS = 3_600_000;
const TRACE_LENGTH = 8;

/** What one client knows: its keys' current state, and the highest version each key ever had (across deletes). */
class ClientModel {
  readonly live = new Map<string, Model>();
  readonly lastVersion = new Map<string, number>();
  readonly trace: string[] = [];

  constructor(readonly id: number) {}

  note(step: string): void {
    this.trace.push(step);
    if (this.trace.length > TRACE_LENGTH) this.trace.shift();
  }

  /** A successful write: its version must be above every version the key had before (no reuse, even after delete). */
  wrote(key: string, value: string, version: number, hasTtl: boolean): void {
    const last = this.lastVersion.get(key) ?? 0;
    assert.ok(version > last, `${key}: version ${version} not above the key's last version ${last}`);
    this.lastVersion.set(key, version);
    this.live.set(key, { value, version, hasTtl });
  }

  /** A reply about a key must match the model: value, version, and whether it has a TTL. */
  matches(key: string, e: Entry | null): void {
    const m = this.live.get(key);
    if (m === undefined) {
      assert.equal(e, null, `${key}: absent in the model`);
      return;
    }
    assert.ok(e !== null, `${key}: present in the model`);
    assert.equal(e.value.toString(), m.value, `${key}: value`);
    assert.equal(e.version, m.version, `${key}: version`);
    assert.equal(e.expireAtMs > 0, m.hasTtl, `${key}: has a TTL`);
  }
}

/** Resolves with the call's error code (0 on success); anything but a PiccoloError is a test failure. */
async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (e) {
    if (e instanceof PiccoloError) return e.code;
    throw e;
  }
}

/** One client's life: random operations on its own keys, each reply checked against its model. */
async function clientRun(c: PiccoloClient, model: ClientModel): Promise<void> {
  const rand = mulberry32(SEED * 1000 + model.id);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  const chance = (p: number) => rand() < p;
  const keys = Array.from({ length: KEYS_PER_CLIENT }, (_, i) => `c${model.id}:k${i}`);
  const some = (p: number) => keys.filter(() => chance(p));
  for (let n = 0; n < OPS_PER_CLIENT; n++) {
    const key = pick(keys);
    const cur = model.live.get(key);
    const value = `v${n}-${Math.floor(rand() * 1e6)}`;
    const ttl = chance(0.2) ? { ttlMs: LONG_TTL_MS } : {};
    const withTtl = ttl.ttlMs !== undefined;
    const op = Math.floor(rand() * 13);
    model.note(`#${n} op ${op} on ${key} (model: ${cur ? `v${cur.version}${cur.hasTtl ? " ttl" : ""}` : "absent"})`);
    switch (op) {
      case 0:
        model.matches(key, await c.get(key));
        break;
      case 1: {
        // put overwrites; without keepTtl it clears the TTL (as Redis SET), with it it keeps it.
        const keepTtl = !withTtl && chance(0.3);
        const v = await c.put(key, value, keepTtl ? { keepTtl } : ttl);
        model.wrote(key, value, v, keepTtl ? (cur?.hasTtl ?? false) : withTtl);
        break;
      }
      case 2: {
        const code = await codeOf(c.insert(key, value, ttl).then((v) => model.wrote(key, value, v, withTtl)));
        assert.equal(code, cur ? ErrorCode.ALREADY_EXISTS : 0, "insert succeeds only when absent");
        break;
      }
      case 3: {
        const keepTtl = !withTtl && chance(0.3);
        const code = await codeOf(
          c
            .update(key, value, keepTtl ? { keepTtl } : ttl)
            .then((v) => model.wrote(key, value, v, keepTtl ? (cur?.hasTtl ?? false) : withTtl)),
        );
        assert.equal(code, cur ? 0 : ErrorCode.NOT_FOUND, "update succeeds only when present");
        break;
      }
      case 4: {
        const right = cur !== undefined && chance(0.7);
        const expected = right
          ? cur.version
          : pick([1, (cur?.version ?? 0) + 1, (model.lastVersion.get(key) ?? 2) - 1]);
        try {
          const v = await c.cas(key, value, expected, ttl);
          assert.ok(cur !== undefined && expected === cur.version, `cas at ${expected} succeeded`);
          model.wrote(key, value, v, withTtl);
        } catch (e) {
          if (!(e instanceof VersionMismatchError)) throw e;
          assert.ok(cur === undefined || expected !== cur.version, `cas at the current version ${expected} refused`);
          assert.equal(e.currentVersion, cur?.version ?? 0, "the refusal carries the current version");
        }
        break;
      }
      case 5: {
        // Unconditional, at the right version, at a wrong one; on present and absent keys.
        const kind = pick(["plain", "right", "wrong"] as const);
        const ifVersion =
          kind === "plain"
            ? 0
            : kind === "right"
              ? (cur?.version ?? 1)
              : (cur?.version ?? 0) + 1 + Math.floor(rand() * 5);
        try {
          const deleted = await c.delete(key, { ifVersion });
          assert.equal(deleted, cur !== undefined, "deleted exactly when present");
          assert.ok(cur === undefined || kind !== "wrong", "a delete at a wrong version succeeded");
          model.live.delete(key);
        } catch (e) {
          if (!(e instanceof VersionMismatchError)) throw e;
          assert.ok(cur !== undefined && kind === "wrong", `delete at ${ifVersion} refused`);
          assert.equal(e.currentVersion, cur.version);
        }
        break;
      }
      case 6:
        assert.equal(await c.exists(key), cur !== undefined, "exists");
        break;
      case 7: {
        const ks = some(0.5);
        if (ks.length === 0) break;
        const got = await c.mget(ks);
        assert.equal(got.length, ks.length);
        for (const [i, k] of ks.entries()) model.matches(k, got[i]!);
        break;
      }
      case 8: {
        const ks = some(0.3);
        if (ks.length === 0) break;
        const versions = await c.mput(
          ks.map((k) => [k, `${value}-${k}`]),
          ttl,
        );
        assert.equal(versions.length, ks.length);
        for (const [i, k] of ks.entries()) model.wrote(k, `${value}-${k}`, versions[i]!, withTtl);
        break;
      }
      case 9: {
        const ks = some(0.2);
        if (ks.length === 0) break;
        const removed = await c.mdel(ks);
        assert.equal(removed, ks.filter((k) => model.live.has(k)).length, `mdel ${ks.join(",")}`);
        for (const k of ks) model.live.delete(k);
        break;
      }
      case 10: {
        // expire sets the TTL, and is not a write of the value: the version stays.
        assert.equal(await c.expire(key, LONG_TTL_MS), cur !== undefined, "expire: true when present");
        if (cur) cur.hasTtl = true;
        break;
      }
      case 11: {
        assert.equal(await c.persist(key), cur?.hasTtl === true, "persist: true when present with a TTL");
        if (cur) cur.hasTtl = false;
        break;
      }
      default: {
        const t = await c.ttl(key);
        if (!cur) assert.equal(t, -2, "ttl of an absent key");
        else if (!cur.hasTtl) assert.equal(t, -1, "ttl of a key without TTL");
        else assert.ok(t > 0 && t <= LONG_TTL_MS, `ttl ${t} within (0, ${LONG_TTL_MS}]`);
      }
    }
  }
}

/** Runs a client and, on failure, says how to replay it. */
async function replayable(c: PiccoloClient, model: ClientModel): Promise<void> {
  try {
    await clientRun(c, model);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `seed ${SEED} (replay: PICCOLO_SEED=${SEED}), client ${model.id}: ${why}\nlast operations:\n  ${model.trace.join("\n  ")}`,
      { cause: e },
    );
  }
}

for (const layout of LAYOUTS) {
  describe(`${CLIENTS} concurrent clients against a model, ${layout.name}`, () => {
    let node: RunningNode;
    let clients: PiccoloClient[] = [];
    before(async () => {
      node = await startNode(layout.args);
      clients = await Promise.all(Array.from({ length: CLIENTS }, () => node.client({ timeoutMs: 30_000 })));
    });
    after(async () => {
      try {
        await Promise.all(clients.map((c) => c.close()));
      } finally {
        assert.equal(await node.stop(), 0);
      }
    });

    it("every reply matches the model, and the node's contents equal the union of the models", async () => {
      const models = clients.map((_, i) => new ClientModel(i));
      await Promise.all(clients.map((c, i) => replayable(c, models[i]!)));

      // The whole node, read back by a scan: exactly the union of the models.
      const expected = new Map<string, Model>();
      for (const m of models) for (const [k, e] of m.live) expected.set(k, e);
      const actual = (await clients[0]!.keys()).map((k) => k.toString()).sort();
      assert.deepEqual(actual, [...expected.keys()].sort(), `seed ${SEED}: the node's keys differ from the models'`);
      const entries = await clients[0]!.mget(actual);
      for (const [i, k] of actual.entries()) {
        const m = expected.get(k)!;
        assert.deepEqual(
          {
            value: entries[i]?.value.toString(),
            version: entries[i]?.version,
            hasTtl: (entries[i]?.expireAtMs ?? 0) > 0,
          },
          m,
          `seed ${SEED}: ${k}`,
        );
      }
    });

    it("CAS retry loops on shared counters lose no increment", async () => {
      const counters = ["shared:0", "shared:1", "shared:2"];
      const increments = 10;
      const want = counters.map(() => 0);
      for (let i = 0; i < CLIENTS; i++) for (let n = 0; n < increments; n++) want[(i + n) % counters.length]!++;
      const start = await Promise.all(counters.map((k) => clients[0]!.put(k, "0")));
      let retries = 0;
      await Promise.all(
        clients.map(async (c, i) => {
          for (let n = 0; n < increments; n++) {
            const key = counters[(i + n) % counters.length]!;
            for (;;) {
              const e = await c.get(key);
              assert.ok(e !== null, `${key} exists`);
              try {
                await c.cas(key, String(Number(e.value.toString()) + 1), e.version);
                break;
              } catch (err) {
                if (!(err instanceof VersionMismatchError)) throw err;
                assert.ok(err.currentVersion > e.version, "a refused CAS means someone else wrote since");
                retries++;
              }
            }
          }
        }),
      );
      const end = await clients[0]!.mget(counters);
      assert.deepEqual(
        end.map((e) => Number(e!.value.toString())),
        want,
        `each counter equals its increments (${retries} CAS retries)`,
      );
      for (const [i, e] of end.entries()) assert.ok(e!.version > start[i]!, "each counter's version grew");
    });
  });
}
