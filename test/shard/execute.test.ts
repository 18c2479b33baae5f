// The shard's state machine (ShardCore) on its own: commands in, results out.
// A seeded random stream of commands is checked against a tiny model, and
// replayed into a second core, which must end in the same state: the
// property that lets a Raft log of these commands rebuild a replica.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ErrorCode } from "../../src/errors.js";
import {
  type CommandFields,
  CommandView,
  commandBytes,
  EXPIRE_GT,
  EXPIRE_NX,
  encodeCommand,
  FLAG_KEEP_TTL,
  FLAG_RETURN_OLD,
  Op,
  Result,
  unpackKeys,
} from "../../src/shard/command.js";
import { ShardCore } from "../../src/shard/execute.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

type Cmd = Partial<Omit<CommandFields, "key">> & { op: Op; key: string | Uint8Array };

function run(core: ShardCore, c: Cmd): Result {
  const fields: CommandFields = {
    flags: 0,
    tag: 7,
    nowMs: 1_000_000,
    expireAtMs: 0,
    arg0: 0,
    arg1: 0,
    value: null,
    ...c,
    key: typeof c.key === "string" ? enc.encode(c.key) : c.key,
  };
  const bytes = new Uint8Array(commandBytes(fields.key.length, fields.value?.length ?? 0));
  encodeCommand(bytes, 0, fields);
  const view = new CommandView();
  assert.ok(view.wrap(bytes));
  const r = new Result().reset(view.tag);
  core.execute(view, r);
  if (r.value !== null) r.value = r.value.slice(); // the store's view dies at the next command
  return r;
}

const v = (s: string) => enc.encode(s);

describe("ShardCore", () => {
  it("echoes the tag and versions every write from one counter", () => {
    const core = new ShardCore();
    const a = run(core, { op: Op.PUT, key: "a", value: v("1") });
    const b = run(core, { op: Op.PUT, key: "b", value: v("2") });
    assert.equal(a.tag, 7);
    assert.equal(b.version, a.version + 1);
  });

  it("insert, update, cas and conditional delete follow their conditions", () => {
    const core = new ShardCore();
    assert.equal(run(core, { op: Op.UPDATE, key: "k", value: v("x") }).status, ErrorCode.NOT_FOUND);
    const w = run(core, { op: Op.INSERT, key: "k", value: v("x") });
    assert.equal(w.status, ErrorCode.OK);
    const again = run(core, { op: Op.INSERT, key: "k", value: v("y"), flags: FLAG_RETURN_OLD });
    assert.equal(again.status, ErrorCode.ALREADY_EXISTS);
    assert.equal(dec.decode(again.value!), "x");
    assert.equal(
      run(core, { op: Op.CAS, key: "k", value: v("z"), arg0: w.version + 5 }).status,
      ErrorCode.VERSION_MISMATCH,
    );
    const c = run(core, { op: Op.CAS, key: "k", value: v("z"), arg0: w.version });
    assert.equal(c.status, ErrorCode.OK);
    assert.equal(run(core, { op: Op.DELETE, key: "k", arg0: w.version }).status, ErrorCode.VERSION_MISMATCH);
    const d = run(core, { op: Op.DELETE, key: "k", arg0: c.version, flags: FLAG_RETURN_OLD });
    assert.equal(d.flag, 1);
    assert.equal(dec.decode(d.value!), "z");
  });

  it("decides expiry by the command's clock, never its own", () => {
    const core = new ShardCore();
    run(core, { op: Op.PUT, key: "t", value: v("1"), expireAtMs: 2000, nowMs: 1000 });
    assert.equal(run(core, { op: Op.GET, key: "t", nowMs: 1999 }).flag, 1);
    assert.equal(run(core, { op: Op.GET, key: "t", nowMs: 2000 }).flag, 0, "expired at exactly expireAtMs");
    assert.equal(core.store.size, 0, "the expired key met by a command is removed");
  });

  it("TTL, PERSIST, EXPIRE conditions and KEEPTTL", () => {
    const core = new ShardCore();
    run(core, { op: Op.PUT, key: "k", value: v("1"), nowMs: 0, expireAtMs: 5000 });
    assert.equal(run(core, { op: Op.TTL, key: "k", nowMs: 1000 }).num, 4000);
    assert.equal(run(core, { op: Op.EXPIRE, key: "k", nowMs: 1000, expireAtMs: 9000, arg1: EXPIRE_NX }).flag, 0);
    assert.equal(run(core, { op: Op.EXPIRE, key: "k", nowMs: 1000, expireAtMs: 3000, arg1: EXPIRE_GT }).flag, 0);
    assert.equal(run(core, { op: Op.EXPIRE, key: "k", nowMs: 1000, expireAtMs: 9000, arg1: EXPIRE_GT }).flag, 1);
    run(core, { op: Op.PUT, key: "k", value: v("2"), nowMs: 1000, flags: FLAG_KEEP_TTL });
    assert.equal(run(core, { op: Op.TTL, key: "k", nowMs: 1000 }).num, 8000);
    assert.equal(run(core, { op: Op.PERSIST, key: "k", nowMs: 1000 }).flag, 1);
    assert.equal(run(core, { op: Op.TTL, key: "k", nowMs: 1000 }).num, -1);
    assert.equal(run(core, { op: Op.TTL, key: "absent" }).num, -2);
    assert.equal(run(core, { op: Op.EXPIRE, key: "k", nowMs: 1000, expireAtMs: 1000 }).flag, 1);
    assert.equal(core.store.size, 0, "an expiry at or before now deletes");
  });

  it("INCRBY is exact to 64 bits and refuses overflow and non-integers", () => {
    const core = new ShardCore();
    const r = run(core, { op: Op.INCRBY, key: "n", value: v("9223372036854775806") });
    assert.equal(dec.decode(r.value!), "9223372036854775806");
    assert.equal(dec.decode(run(core, { op: Op.INCRBY, key: "n", value: v("1") }).value!), "9223372036854775807");
    assert.equal(run(core, { op: Op.INCRBY, key: "n", value: v("1") }).status, ErrorCode.OVERFLOW);
    run(core, { op: Op.PUT, key: "s", value: v("abc") });
    assert.equal(run(core, { op: Op.INCRBY, key: "s", value: v("1") }).status, ErrorCode.NOT_AN_INTEGER);
    assert.equal(run(core, { op: Op.INCRBY, key: "m", value: v("01") }).status, ErrorCode.NOT_AN_INTEGER);
    assert.equal(dec.decode(run(core, { op: Op.INCRBYFLOAT, key: "f", value: v("10.5") }).value!), "10.5");
    assert.equal(dec.decode(run(core, { op: Op.INCRBYFLOAT, key: "f", value: v("0.1") }).value!), "10.6");
  });

  it("APPEND and SETRANGE respect the value limit", () => {
    const core = new ShardCore();
    assert.equal(run(core, { op: Op.APPEND, key: "a", value: v("he"), arg1: 5 }).num, 2);
    assert.equal(run(core, { op: Op.APPEND, key: "a", value: v("llo"), arg1: 5 }).num, 5);
    assert.equal(run(core, { op: Op.APPEND, key: "a", value: v("!"), arg1: 5 }).status, ErrorCode.VALUE_TOO_LARGE);
    assert.equal(run(core, { op: Op.SETRANGE, key: "r", value: v("x"), arg0: 3, arg1: 100 }).num, 4);
    assert.deepEqual([...run(core, { op: Op.GET, key: "r" }).value!], [0, 0, 0, 120]);
  });

  it("random command streams agree with a model and replay to the same state", () => {
    const keys = ["a", "b", "c", "d", "e"];
    const commandArb = fc.record({
      op: fc.constantFrom(Op.GET, Op.PUT, Op.INSERT, Op.UPDATE, Op.DELETE, Op.EXISTS, Op.EXPIRE, Op.PERSIST, Op.CAS),
      key: fc.constantFrom(...keys),
      value: fc.string({ maxLength: 8 }),
      ttl: fc.option(fc.integer({ min: 1, max: 50 }), { nil: 0 }),
      dt: fc.integer({ min: 0, max: 20 }),
      casDelta: fc.integer({ min: -1, max: 1 }),
    });
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 200 }), (cmds) => {
        const core = new ShardCore();
        const model = new Map<string, { value: string; version: number; exp: number }>();
        const log: Cmd[] = [];
        let now = 1000;
        let version = 0;
        const live = (k: string) => {
          const e = model.get(k);
          if (e && e.exp !== 0 && e.exp <= now) model.delete(k);
          return model.get(k);
        };
        for (const c of cmds) {
          now += c.dt;
          const cur = live(c.key);
          const cmd: Cmd = {
            op: c.op,
            key: c.key,
            nowMs: now,
            value: v(c.value),
            expireAtMs: c.ttl ? now + c.ttl : 0,
            arg0: c.op === Op.CAS ? (cur?.version ?? 0) + c.casDelta : 0,
          };
          log.push(cmd);
          const r = run(core, cmd);
          const write = () => {
            version++;
            model.set(c.key, { value: c.value, version, exp: cmd.expireAtMs! });
            assert.equal(r.version, version);
          };
          switch (c.op) {
            case Op.GET:
              assert.equal(r.flag, cur ? 1 : 0);
              if (cur) assert.equal(dec.decode(r.value!), cur.value);
              break;
            case Op.PUT:
              write();
              break;
            case Op.INSERT:
              if (cur) assert.equal(r.status, ErrorCode.ALREADY_EXISTS);
              else write();
              break;
            case Op.UPDATE:
              if (!cur) assert.equal(r.status, ErrorCode.NOT_FOUND);
              else write();
              break;
            case Op.CAS:
              if (!cur || cmd.arg0 !== cur.version) assert.equal(r.status, ErrorCode.VERSION_MISMATCH);
              else write();
              break;
            case Op.DELETE:
              assert.equal(r.flag, cur ? 1 : 0);
              model.delete(c.key);
              break;
            case Op.EXISTS:
              assert.equal(r.flag, cur ? 1 : 0);
              break;
            case Op.EXPIRE:
              assert.equal(r.flag, cur ? 1 : 0);
              if (cur) {
                if (cmd.expireAtMs === 0) model.delete(c.key);
                else cur.exp = cmd.expireAtMs!;
              }
              break;
            case Op.PERSIST:
              assert.equal(r.flag, cur && cur.exp !== 0 ? 1 : 0);
              if (cur) cur.exp = 0;
              break;
          }
        }
        // Replay the log into a fresh core: same results, same final contents.
        const replica = new ShardCore();
        for (const cmd of log) run(replica, cmd);
        const contents = (x: ShardCore) => {
          const scan = run(x, { op: Op.SCAN, key: new Uint8Array(0), nowMs: now, arg0: 0, arg1: 10_000 });
          return unpackKeys(scan.value!)
            .map((k) => {
              const g = run(x, { op: Op.GET, key: k, nowMs: now });
              return `${dec.decode(k)}=${dec.decode(g.value!)}@${g.version}/${g.expireAtMs}`;
            })
            .sort();
        };
        assert.deepEqual(contents(replica), contents(core));
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});
