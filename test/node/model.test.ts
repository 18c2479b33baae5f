// 50 concurrent clients doing random operations against one node, every
// reply checked against an in-memory model; then all 50 race on shared
// counters with CAS retry loops, and no increment may be lost.
// Seeded: a failure names its seed.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type PiccoloClient, VersionMismatchError } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";
import { mulberry32 } from "../support/random.js";

interface Entry {
  value: string;
  version: number;
  ttl: boolean;
}

const CLIENTS = 50;
const OPS = 200;
const SEED = 20261124;
const LONG_TTL_MS = 3_600_000;

async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (e) {
    if (e instanceof PiccoloError) return e.code;
    throw e;
  }
}

/** One client's life: random operations on its own keys, each reply checked. */
async function clientRun(c: PiccoloClient, id: number, model: Map<string, Entry>): Promise<void> {
  const rand = mulberry32(SEED + id);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  const keys = Array.from({ length: 8 }, (_, i) => `c${id}:k${i}`);
  const ctx = (op: string, key: string) => `seed ${SEED}, client ${id}, ${op} ${key}`;
  for (let n = 0; n < OPS; n++) {
    const key = pick(keys);
    const cur = model.get(key);
    const value = `v${n}-${Math.floor(rand() * 1e6)}`;
    const checkWrite = (v: number) => {
      assert.ok(cur === undefined || v > cur.version, `${ctx("write", key)}: version grows`);
      model.set(key, { value, version: v, ttl: false });
    };
    switch (Math.floor(rand() * 12)) {
      case 0: {
        const e = await c.get(key);
        assert.equal(e?.value.toString() ?? null, cur?.value ?? null, ctx("get", key));
        if (cur) assert.equal(e!.version, cur.version, ctx("get version", key));
        break;
      }
      case 1:
        checkWrite(await c.put(key, value));
        break;
      case 2: {
        const code = await codeOf(c.insert(key, value).then(checkWrite));
        assert.equal(code, cur ? ErrorCode.ALREADY_EXISTS : 0, ctx("insert", key));
        break;
      }
      case 3: {
        const code = await codeOf(c.update(key, value).then(checkWrite));
        assert.equal(code, cur ? 0 : ErrorCode.NOT_FOUND, ctx("update", key));
        break;
      }
      case 4: {
        const expected = cur && rand() < 0.7 ? cur.version : (cur?.version ?? 0) + 1;
        const code = await codeOf(c.cas(key, value, expected).then(checkWrite));
        assert.equal(code, cur && expected === cur.version ? 0 : ErrorCode.VERSION_MISMATCH, ctx("cas", key));
        break;
      }
      case 5: {
        const ifVersion = cur && rand() < 0.5 ? (rand() < 0.5 ? cur.version : cur.version + 1) : 0;
        const r = await c.delete(key, { ifVersion }).then(
          (d) => ({ d, code: 0 }),
          (e: PiccoloError) => ({ d: false, code: e.code }),
        );
        if (ifVersion !== 0 && cur && ifVersion !== cur.version) {
          assert.equal(r.code, ErrorCode.VERSION_MISMATCH, ctx("delete ifVersion", key));
        } else {
          assert.equal(r.d, cur !== undefined, ctx("delete", key));
          model.delete(key);
        }
        break;
      }
      case 6:
        assert.equal(await c.exists(key), cur !== undefined, ctx("exists", key));
        break;
      case 7: {
        const some = keys.filter(() => rand() < 0.5);
        if (some.length === 0) break;
        const got = await c.mget(some);
        for (const [i, k] of some.entries())
          assert.equal(got[i]?.value.toString() ?? null, model.get(k)?.value ?? null, ctx("mget", k));
        break;
      }
      case 8: {
        const some = keys.filter(() => rand() < 0.3);
        if (some.length === 0) break;
        const versions = await c.mput(some.map((k) => [k, `${value}-${k}`]));
        for (const [i, k] of some.entries())
          model.set(k, { value: `${value}-${k}`, version: versions[i]!, ttl: false });
        break;
      }
      case 9: {
        const some = keys.filter(() => rand() < 0.2);
        if (some.length === 0) break;
        const removed = await c.mdel(some);
        assert.equal(removed, new Set(some.filter((k) => model.has(k))).size, ctx("mdel", some.join(",")));
        for (const k of some) model.delete(k);
        break;
      }
      case 10: {
        const ok = await c.expire(key, LONG_TTL_MS);
        assert.equal(ok, cur !== undefined, ctx("expire", key));
        if (cur) cur.ttl = true;
        break;
      }
      default: {
        const t = await c.ttl(key);
        if (!cur) assert.equal(t, -2, ctx("ttl absent", key));
        else if (!cur.ttl) assert.equal(t, -1, ctx("ttl none", key));
        else assert.ok(t > 0 && t <= LONG_TTL_MS, ctx("ttl set", key));
        if (cur?.ttl && rand() < 0.5) {
          assert.equal(await c.persist(key), true, ctx("persist", key));
          cur.ttl = false;
        }
      }
    }
  }
}

for (const layout of LAYOUTS) {
  describe(`50 concurrent clients against a model, ${layout.name}`, () => {
    let node: RunningNode;
    let clients: PiccoloClient[];
    before(async () => {
      node = await startNode(layout.args);
      clients = await Promise.all(Array.from({ length: CLIENTS }, () => node.client({ timeoutMs: 30_000 })));
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      assert.equal(await node.stop(), 0);
    });

    it("every reply matches the model, and the node's contents equal the union of the models", async () => {
      const models = clients.map(() => new Map<string, Entry>());
      await Promise.all(clients.map((c, i) => clientRun(c, i, models[i]!)));
      const expected = new Map<string, string>();
      for (const m of models) for (const [k, e] of m) expected.set(k, e.value);
      const actual = (await clients[0]!.keys("c")).map((k) => k.toString()).sort();
      assert.deepEqual(actual, [...expected.keys()].sort(), `seed ${SEED}: key sets differ`);
      const values = await clients[0]!.mget(actual);
      for (const [i, k] of actual.entries())
        assert.equal(values[i]!.value.toString(), expected.get(k), `seed ${SEED}: ${k}`);
    });

    it("CAS retry loops on shared counters lose no increment", async () => {
      const counters = ["shared:0", "shared:1", "shared:2"];
      for (const k of counters) await clients[0]!.put(k, "0");
      const each = 10;
      await Promise.all(
        clients.map(async (c, i) => {
          for (let n = 0; n < each; n++) {
            const key = counters[(i + n) % counters.length]!;
            for (;;) {
              const e = (await c.get(key))!;
              try {
                await c.cas(key, String(Number(e.value.toString()) + 1), e.version);
                break;
              } catch (err) {
                if (!(err instanceof VersionMismatchError)) throw err;
              }
            }
          }
        }),
      );
      const total = (await clients[0]!.mget(counters)).reduce((s, e) => s + Number(e!.value.toString()), 0);
      assert.equal(total, CLIENTS * each);
    });
  });
}
