// Membership change (one replica at a time, with learners) and leadership
// transfer, one story per test.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfChangeType, decodeConfig, encodeConfig } from "../../src/raft/config.js";
import { MessageType, Role } from "../../src/raft/messages.js";
import { enc, Net } from "./net.js";

function commitAll(net: Net, leader: number, cmds: string[]): void {
  for (const c of cmds) assert.ok(net.node(leader).propose(enc.encode(c)).ok, `proposed ${c}`);
  net.settle();
  net.tickAll(2);
}

describe("Raft membership change", () => {
  it("a configuration entry round-trips through its encoding", () => {
    const c = { voters: [1, 2, 3], learners: [9] };
    assert.deepEqual(decodeConfig(encodeConfig(c)), c);
  });

  it("adds a learner, which catches up without voting, then promotes it to voter", () => {
    const net = new Net(3);
    net.elect(1);
    commitAll(net, 1, ["a", "b"]);
    net.join(4);
    const add = net.node(1).proposeConfChange({ type: ConfChangeType.AddLearner, replica: 4 });
    assert.ok(add.ok, JSON.stringify(add));
    net.settle();
    net.tickAll(2);
    assert.deepEqual(net.node(4).config, { voters: [1, 2, 3], learners: [4] });
    assert.deepEqual(net.applied.get(4), ["a", "b"], "the learner has the whole log");
    // A learner never campaigns.
    net.tick(4, 50);
    net.collect();
    assert.equal(net.node(4).role, Role.Follower);
    assert.equal(net.pending.filter((m) => m.from === 4).length, 0, "it asked nobody for votes");
    const promote = net.node(1).proposeConfChange({ type: ConfChangeType.AddVoter, replica: 4 });
    assert.ok(promote.ok);
    net.settle();
    net.tickAll(2);
    for (const id of [1, 2, 3, 4]) assert.deepEqual(net.node(id).config.voters, [1, 2, 3, 4], `node ${id}`);
    // Now commits need 3 of 4: with two voters down nothing commits.
    net.down.add(3);
    net.down.add(4);
    net.node(1).propose(enc.encode("c"));
    net.tickAll(2);
    assert.ok(!net.applied.get(1)!.includes("c"), "2 of 4 is no majority");
    net.down.delete(4);
    net.tickAll(3);
    assert.ok(net.applied.get(1)!.includes("c"), "3 of 4 is");
  });

  it("refuses a second change while the first is uncommitted, and before the leader's term has a commit", () => {
    const net = new Net(3);
    net.node(1).campaign();
    // Deliver the votes but not the appends of the election's empty entry.
    net.collect();
    for (let i = 0; i < 4 && net.node(1).role !== Role.Leader; i++) {
      const batch = net.pending.filter((m) => m.type !== MessageType.App);
      net.pending = [];
      for (const m of batch) net.node(m.to).step(m);
      net.collect();
    }
    assert.equal(net.node(1).role, Role.Leader);
    const early = net.node(1).proposeConfChange({ type: ConfChangeType.AddLearner, replica: 4 });
    assert.deepEqual(early, { ok: false, leader: 1, reason: "not-ready" });
    net.settle();
    net.tickAll(1);
    assert.ok(net.node(1).proposeConfChange({ type: ConfChangeType.AddLearner, replica: 4 }).ok);
    const second = net.node(1).proposeConfChange({ type: ConfChangeType.AddLearner, replica: 5 });
    assert.deepEqual(second, { ok: false, leader: 1, reason: "conf-change-pending" });
  });

  it("refuses invalid changes with a reason", () => {
    const net = new Net(1);
    net.elect(1);
    net.tickAll(1);
    const r = net.node(1).proposeConfChange({ type: ConfChangeType.Remove, replica: 1 });
    assert.deepEqual(r, { ok: false, leader: 1, reason: "invalid", detail: "a group cannot remove its last voter" });
    const r2 = net.node(1).proposeConfChange({ type: ConfChangeType.Remove, replica: 7 });
    assert.equal(r2.ok, false);
  });

  it("removes a follower: the rest commit without it", () => {
    const net = new Net(3);
    net.elect(1);
    assert.ok(net.node(1).proposeConfChange({ type: ConfChangeType.Remove, replica: 3 }).ok);
    net.settle();
    net.tickAll(2);
    assert.deepEqual(net.node(1).config.voters, [1, 2]);
    net.down.add(3);
    commitAll(net, 1, ["after"]);
    assert.deepEqual(net.applied.get(2), ["after"]);
  });

  it("removes the leader: it commits its own removal, steps down, and the others elect a leader", () => {
    const net = new Net(3);
    net.elect(1);
    net.tickAll(1);
    assert.ok(net.node(1).proposeConfChange({ type: ConfChangeType.Remove, replica: 1 }).ok);
    net.settle();
    net.tickAll(3);
    assert.equal(net.node(1).role, Role.Follower, "the removed leader stepped down");
    net.tickAll(40);
    const leaders = net.leaders();
    assert.equal(leaders.length, 1);
    assert.ok(leaders[0] === 2 || leaders[0] === 3, `new leader ${leaders[0]}`);
    commitAll(net, leaders[0]!, ["x"]);
    assert.ok(net.applied.get(2)!.includes("x") && net.applied.get(3)!.includes("x"));
  });

  it("a configuration entry that is truncated away is undone", () => {
    const net = new Net(3);
    net.elect(1);
    net.tickAll(1);
    // Leader 1 appends a change that reaches nobody, then loses leadership.
    net.down.add(1);
    assert.ok(net.node(1).proposeConfChange({ type: ConfChangeType.Remove, replica: 3 }).ok);
    assert.deepEqual(net.node(1).config.voters, [1, 2], "in force as soon as it is in the log");
    net.collect();
    net.pending = [];
    net.expireLease(2, 3);
    net.elect(2);
    commitAll(net, 2, ["y"]);
    net.down.delete(1);
    net.tickAll(3);
    assert.equal(net.node(1).role, Role.Follower);
    assert.deepEqual(net.node(1).config.voters, [1, 2, 3], "the uncommitted change was overwritten and undone");
  });
});

describe("Raft leadership transfer", () => {
  it("hands leadership to an up-to-date follower at once", () => {
    const net = new Net(3);
    net.elect(1);
    commitAll(net, 1, ["a"]);
    const termBefore = net.node(1).term;
    assert.ok(net.node(1).transferLeadership(3).ok);
    net.settle();
    assert.deepEqual(net.leaders(), [3]);
    assert.equal(net.node(3).term, termBefore + 1);
    commitAll(net, 3, ["b"]);
    for (const id of [1, 2, 3]) assert.deepEqual(net.applied.get(id), ["a", "b"]);
  });

  it("catches a lagging transferee up first, and refuses proposals meanwhile", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(3);
    commitAll(net, 1, ["a", "b"]);
    net.down.delete(3);
    assert.ok(net.node(1).transferLeadership(3).ok);
    assert.deepEqual(net.node(1).propose(enc.encode("no")), { ok: false, leader: 1, reason: "transferring" });
    net.settle();
    net.tickAll(2);
    assert.deepEqual(net.leaders(), [3]);
    assert.deepEqual(net.applied.get(3), ["a", "b"]);
  });

  it("gives up after an election timeout when the transferee is unreachable", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(3);
    assert.ok(net.node(1).transferLeadership(3).ok);
    net.tickAll(12);
    assert.deepEqual(net.leaders(), [1]);
    assert.equal(net.node(1).leadTransferee, 0);
    assert.ok(net.node(1).propose(enc.encode("ok again")).ok);
  });

  it("marks a deliberate transfer's leadership as placed, a stopping leader's hand-off as drift", () => {
    const net = new Net(3);
    net.elect(1);
    commitAll(net, 1, ["a"]);
    assert.ok(net.node(1).transferLeadership(3).ok);
    net.settle();
    assert.deepEqual(net.leaders(), [3]);
    assert.equal(net.node(3).byTransfer, true, "an operator's transfer is a placement the host keeps");
    assert.ok(net.node(3).transferLeadership(2, true).ok);
    net.settle();
    assert.deepEqual(net.leaders(), [2]);
    assert.equal(net.node(2).byTransfer, false, "a hand-off counts as drift: the host may move it back");
    // The flag lives on the transfer, not on the leader: the next deliberate transfer is a placement again.
    assert.ok(net.node(2).transferLeadership(1).ok);
    net.settle();
    assert.equal(net.node(1).byTransfer, true);
  });

  it("refuses to transfer to a non-voter", () => {
    const net = new Net(3);
    net.elect(1);
    const r = net.node(1).transferLeadership(9);
    assert.equal(r.ok, false);
  });
});
