// The chaos harness's bank workload (src/chaos/bank.ts, issue #16).
//
// First, its judge, on an in-memory store of its own: honest transfers
// (compare the versions read) keep every audit whole; transfers that forget
// their compares lose updates, and the audits say so; an audit that sees
// half a transfer (no isolation) is caught too.
//
// Then a short run against the real thing: three members with the default
// flags (64 partitions) and a Cerializer, transfers and audits over native
// transactions, RESP WATCH/MULTI/EXEC and HTTP /v1/txn, with faults.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { accountKey, BankWorkload, INITIAL_BALANCE } from "../../src/chaos/bank.js";
import { runChaos } from "../../src/chaos/chaos.js";
import { FAULT_KINDS, LENGTH_CLASSES } from "../../src/chaos/nemesis.js";
import type { BankClient, ProtocolAdapter, StoreClient } from "../../src/chaos/protocol.js";
import { summary } from "../../src/chaos/report.js";

const tick = () => new Promise((r) => setTimeout(r, 0));

/** An in-memory bank: `blind` transfers skip their compare; `torn` audits read between a transfer's two writes. */
function fakeAdapter(
  store: Map<string, { value: string; version: number }>,
  bug: "none" | "blind" | "torn",
): ProtocolAdapter {
  let version = 0;
  const client: BankClient = {
    async audit(keys) {
      await tick();
      return { kind: "ok", values: keys.map((k) => store.get(k)?.value ?? null) };
    },
    async transfer(a, b, plan) {
      const ra = store.get(a);
      const rb = store.get(b);
      await tick();
      const next = plan(ra?.value ?? null, rb?.value ?? null);
      if (next === null) return { kind: "skipped" };
      await tick();
      if (bug !== "blind" && (store.get(a)?.version !== ra?.version || store.get(b)?.version !== rb?.version))
        return { kind: "conflict" };
      store.set(a, { value: next[0], version: ++version });
      if (bug === "torn") await tick(); // an audit may run here, between the two writes
      store.set(b, { value: next[1], version: ++version });
      return { kind: "committed" };
    },
    async close() {},
  };
  return {
    name: "native",
    kinds: [],
    open: () => ({}) as StoreClient,
    openBank: () => client,
  };
}

async function fakeRun(bug: "none" | "blind" | "torn"): Promise<BankWorkload> {
  const store = new Map<string, { value: string; version: number }>();
  for (let i = 0; i < 4; i++) store.set(accountKey(i), { value: String(INITIAL_BALANCE), version: 0 });
  const w = new BankWorkload({
    adapters: [fakeAdapter(store, bug)],
    clientsPerProtocol: 6,
    accounts: 4,
    members: 1,
    seed: 7,
    clock: () => performance.now(),
  });
  w.start();
  await new Promise((r) => setTimeout(r, 300));
  await w.stop();
  return w;
}

describe("the bank workload's judge", () => {
  it("honest optimistic transfers: every audit adds up", async () => {
    const w = await fakeRun("none");
    const s = w.stats.get("native")!;
    assert.deepEqual(w.problems, []);
    assert.ok(s.committed > 20 && s.conflicts > 0 && s.auditsOk > 10, JSON.stringify({ ...s, failures: undefined }));
  });

  it("transfers without their compare (lost updates): caught", async () => {
    const w = await fakeRun("blind");
    assert.ok(w.problems.length > 0, "no audit noticed the lost updates");
    assert.match(w.problems[0]!.detail, /add up to \d+, not 400/);
  });

  it("an audit that sees half a transfer: caught", async () => {
    const w = await fakeRun("torn");
    assert.ok(w.problems.length > 0, "no audit noticed a torn transfer");
  });

  it("a balance that is not a non-negative integer, or an account missing: caught", () => {
    const w = new BankWorkload({
      adapters: [],
      clientsPerProtocol: 0,
      accounts: 2,
      members: 1,
      seed: 1,
      clock: () => 0,
    });
    assert.equal(w.judgeAudit(["150", "50"]), null);
    assert.match(w.judgeAudit(["250", "-50"])!, /not a balance/);
    assert.match(w.judgeAudit(["200", null])!, /not a balance/);
    assert.match(w.judgeAudit(["100"])!, /1 balances for 2 accounts/);
    assert.match(w.judgeAudit(["100", "99"])!, /add up to 199, not 200/);
  });
});

describe("chaos: the bank workload", () => {
  it("transfers and audits over every protocol under faults: the total never changes", {
    timeout: 240_000,
  }, async () => {
    const seed = Number(process.env.PICCOLO_CHAOS_SEED ?? 20261216);
    const r = await runChaos({ seed, seconds: 15, workloads: ["bank"] });
    const report = `seed ${seed}:\n${summary(r).join("\n")}${r.historyFile === null ? "" : `\nhistory in ${r.historyFile}`}`;
    assert.ok(r.passed, report);
    const faults = FAULT_KINDS.reduce((n, k) => n + LENGTH_CLASSES.reduce((m, c) => m + r.faults[k][c], 0), 0);
    assert.ok(faults >= 1, `a fault happened\n${report}`);
    const b = r.bank!;
    assert.equal(b.finalAudits.ok, b.finalAudits.asked, report);
    for (const [name, s] of b.stats) {
      assert.ok(s.committed > 10, `${name} transfers committed (${s.committed})\n${report}`);
      assert.ok(s.auditsOk > 5, `${name} audits answered (${s.auditsOk})\n${report}`);
    }
  });
});
