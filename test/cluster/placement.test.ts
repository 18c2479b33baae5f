// Placement: parsing the static member list, keys to partitions,
// partitions to replicas and preferred leaders.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { initHash } from "../../src/hash.js";
import {
  type Member,
  PlacementError,
  parseMembers,
  partitionOf,
  place,
  shardOfPartition,
} from "../../src/cluster/placement.js";

before(async () => {
  await initHash();
});

const members = (n: number): Member[] =>
  parseMembers(Array.from({ length: n }, (_, i) => `n${i + 1}=127.0.0.1:${7701 + i}`).join(","));

describe("cluster placement", () => {
  it("parses the member list; ids are positions, identical on every node", () => {
    assert.deepEqual(parseMembers("n1=127.0.0.1:7701, n2=127.0.0.1:7702"), [
      { name: "n1", id: 1, host: "127.0.0.1", port: 7701 },
      { name: "n2", id: 2, host: "127.0.0.1", port: 7702 },
    ]);
    for (const bad of ["", "n1", "n1=127.0.0.1", "n1=127.0.0.1:0", "n1=h:1,n1=h:2", "n1=h:1,n2=h:1", "bad name=h:1"])
      assert.throws(() => parseMembers(bad), PlacementError, bad);
  });

  it("every partition gets R distinct replicas (all members when fewer), deterministically", () => {
    for (const [n, r] of [
      [1, 3],
      [3, 3],
      [5, 3],
      [7, 5],
    ] as const) {
      const a = place(members(n), 64, r);
      const b = place(members(n), 64, r);
      assert.deepEqual(a, b, "same inputs, same placement");
      for (const p of a) {
        assert.equal(p.replicas.length, Math.min(r, n));
        assert.equal(new Set(p.replicas).size, p.replicas.length);
        assert.ok(p.replicas.includes(p.preferredLeader));
      }
    }
  });

  it("spreads preferred leaders evenly, and replicas roughly evenly", () => {
    const three = place(members(3), 64, 3);
    const count = (ps: typeof three, f: (p: (typeof three)[number]) => number[]) => {
      const c = new Map<number, number>();
      for (const p of ps) for (const id of f(p)) c.set(id, (c.get(id) ?? 0) + 1);
      return [...c.values()];
    };
    const leaders = count(three, (p) => [p.preferredLeader]);
    assert.ok(Math.max(...leaders) - Math.min(...leaders) <= 1, `leaders ${leaders}`);
    const five = place(members(5), 200, 3);
    const l5 = count(five, (p) => [p.preferredLeader]);
    assert.ok(Math.max(...l5) - Math.min(...l5) <= 2, `leaders over 5 members ${l5}`);
    const r5 = count(five, (p) => p.replicas);
    assert.ok(Math.min(...r5) > 0.6 * (600 / 5), `replicas over 5 members ${r5}`);
  });

  it("removing a member moves only the replicas it held (rendezvous)", () => {
    const before = place(members(5), 256, 3);
    const after = place(
      members(5).filter((m) => m.id !== 3),
      256,
      3,
    );
    for (let p = 0; p < 256; p++) {
      const kept = before[p]!.replicas.filter((id) => id !== 3);
      for (const id of kept) assert.ok(after[p]!.replicas.includes(id), `partition ${p} kept its other replicas`);
    }
  });

  it("keys spread over partitions; a partition stays on one shard", () => {
    const counts = new Array(64).fill(0);
    for (let i = 0; i < 64_000; i++) counts[partitionOf(new TextEncoder().encode(`key-${i}`), 64)]++;
    assert.ok(
      Math.min(...counts) > 800 && Math.max(...counts) < 1200,
      `${Math.min(...counts)}..${Math.max(...counts)}`,
    );
    assert.equal(partitionOf(new Uint8Array([1, 2, 3]), 1), 0);
    assert.equal(shardOfPartition(17, 4), 1);
    assert.equal(shardOfPartition(17, 0), 0);
  });
});
