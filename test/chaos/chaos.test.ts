// A short chaos run in the suite: a real three-member cluster with the
// defaults users get (64 partitions, default flags) and a Cerializer in
// front, clients over native, RESP and HTTP on the same keys, with short and
// long client timeouts, and 25 s of kill -9, SIGTERM restarts, pauses and
// partitions (one way and both ways), some shorter and some longer than
// every deadline. The merged history must be linearizable, no answer may
// look like success when it is not, and no process may exit by itself.
// `npm run chaos -- --time 600` runs long ones. The second run does the same
// with every port over TLS, members proving the cluster secret and every
// client authenticating (`npm run chaos -- --tls`).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runChaos } from "../../src/chaos/chaos.js";
import { FAULT_KINDS, type LengthClass } from "../../src/chaos/nemesis.js";
import { summary } from "../../src/chaos/report.js";

describe("chaos", () => {
  it("25 s of faults on every protocol: linearizable, no lies, no member stops by itself", {
    timeout: 240_000,
  }, async () => {
    const seed = Number(process.env.PICCOLO_CHAOS_SEED ?? 20261125);
    const r = await runChaos({ seed, seconds: 25 });
    const report = `seed ${seed}:\n${summary(r).join("\n")}${r.historyFile === null ? "" : `\nhistory in ${r.historyFile}`}`;
    assert.ok(r.passed, report);
    const count = (cls: LengthClass) => FAULT_KINDS.reduce((n, k) => n + r.faults[k][cls], 0);
    assert.ok(count("long") >= 1, `a fault longer than the node's deadline happened\n${report}`);
    assert.ok(count("short") + count("medium") >= 1, `a fault shorter than the node's deadline happened\n${report}`);
    for (const [name, s] of r.protocols) assert.ok(s.ok > 50, `${name} clients got answers (${s.ok})\n${report}`);
  });

  it("20 s of faults on a cluster secured as docs/security.md sets it up: TLS everywhere, a secret, a password", {
    timeout: 240_000,
  }, async () => {
    const seed = Number(process.env.PICCOLO_CHAOS_SEED ?? 20261203);
    const r = await runChaos({ seed, seconds: 20, secure: true });
    const report = `seed ${seed} (--tls):\n${summary(r).join("\n")}${r.historyFile === null ? "" : `\nhistory in ${r.historyFile}`}`;
    assert.ok(r.passed, report);
    const faults = FAULT_KINDS.reduce((n, k) => n + r.faults[k].short + r.faults[k].medium + r.faults[k].long, 0);
    assert.ok(faults >= 1, `a fault happened\n${report}`);
    for (const [name, s] of r.protocols)
      assert.ok(s.ok > 50, `${name} clients got answers over TLS (${s.ok})\n${report}`);
  });
});
