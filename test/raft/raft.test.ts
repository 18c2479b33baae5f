// The Raft core, one story per test, on a hand-driven network (./net.ts):
// messages are delivered only when the story says so, so each step is visible.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageType, Role } from "../../src/raft/messages.js";
import { Raft, UNREACHABLE_CAMPAIGN_SPREAD_TICKS } from "../../src/raft/raft.js";
import type { Entry } from "../../src/raft/types.js";
import { enc, Net } from "./net.js";

describe("Raft core", () => {
  it("elects a leader by timeout, and everyone learns it", () => {
    const net = new Net(3);
    net.tickAll(25);
    assert.deepEqual(net.leaders(), [1], "the replica with the shortest randomized timeout wins");
    for (const r of net.nodes.values()) assert.equal(r.leader, 1);
    assert.equal(net.node(2).term, net.node(1).term);
  });

  it("replicates and commits a proposal on a majority, then everyone applies it", () => {
    const net = new Net(3);
    net.elect(1);
    const res = net.node(1).propose(enc.encode("x=1"));
    assert.ok(res.ok);
    net.settle();
    net.tickAll(2); // a heartbeat carries the commit index to followers
    for (const id of [1, 2, 3]) assert.deepEqual(net.applied.get(id), ["x=1"], `node ${id}`);
  });

  it("a follower refuses proposals and names the leader", () => {
    const net = new Net(3);
    net.elect(1);
    assert.deepEqual(net.node(2).propose(enc.encode("x")), { ok: false, leader: 1, reason: "not-leader" });
  });

  it("commits with a majority even when one replica is down", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(3);
    net.node(1).propose(enc.encode("a"));
    net.settle();
    net.tickAll(2);
    assert.deepEqual(net.applied.get(1), ["a"]);
    assert.deepEqual(net.applied.get(3), []);
  });

  it("pre-vote: a replica cut off for long cannot depose a healthy leader when it returns", () => {
    const net = new Net(3);
    net.elect(1);
    const term = net.node(1).term;
    net.down.add(3);
    // Node 3, alone, times out again and again: with pre-vote it never raises its term.
    for (let i = 0; i < 100; i++) net.tick(3);
    net.collect();
    net.pending = net.pending.filter((m) => m.from !== 3);
    assert.equal(net.node(3).term, term, "pre-candidates do not bump terms");
    net.down.delete(3);
    net.tickAll(5);
    assert.deepEqual(net.leaders(), [1]);
    assert.equal(net.node(1).term, term, "the healthy leader kept its term");
  });

  it("check-quorum: a leader that loses its majority steps down", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(2);
    net.down.add(3);
    for (let i = 0; i < 25; i++) net.tick(1);
    assert.equal(net.node(1).role, Role.Follower);
  });

  it("a new leader overwrites a follower's conflicting uncommitted tail, with fast back-off", () => {
    const net = new Net(3);
    net.elect(1);
    // Node 1 appends entries only it has (2 and 3 are down), then loses leadership.
    net.down.add(2);
    net.down.add(3);
    for (let i = 0; i < 20; i++) net.node(1).propose(enc.encode(`lost-${i}`));
    net.collect();
    net.pending = [];
    assert.equal(net.node(1).log.lastIndex(), 21);
    net.down.clear();
    net.down.add(1);
    net.expireLease(3);
    net.elect(2);
    net.node(2).propose(enc.encode("kept"));
    net.settle();
    net.down.delete(1);
    net.tickAll(3);
    const log1 = net.node(1).log;
    const log2 = net.node(2).log;
    assert.equal(log1.lastIndex(), log2.lastIndex(), "node 1's log was repaired");
    for (let i = 1; i <= log2.lastIndex(); i++) assert.equal(log1.term(i), log2.term(i), `index ${i}`);
    assert.deepEqual(net.applied.get(1), ["kept"], "the lost entries were never applied");
  });

  it("commits entries of a past term only through an entry of the leader's own term (Figure 8)", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(3);
    net.node(1).propose(enc.encode("old"));
    net.collect();
    // Deliver only to node 2... but drop node 2's acknowledgement: not committed.
    net.pending = net.pending.filter((m) => m.to === 2);
    for (const m of net.pending) net.node(2).step(m);
    net.pending = [];
    net.collect();
    net.pending = [];
    assert.equal(net.node(1).log.committed, 1, "only the election's empty entry is committed");
    // Node 2 becomes leader in a later term. Its log holds "old" (term 1) on a
    // majority (1 and 2) the moment it starts, but it must not commit it by
    // counting: only once its own empty entry of the new term is replicated.
    net.down.clear();
    net.down.add(1);
    net.expireLease(3);
    net.node(2).campaign();
    net.collect();
    const votes = net.pending.filter((m) => m.type === MessageType.PreVote || m.type === MessageType.Vote);
    assert.ok(votes.length > 0);
    net.settle();
    assert.equal(net.node(2).role, Role.Leader);
    const log2 = net.node(2).log;
    assert.equal(log2.term(log2.lastIndex()), net.node(2).term, "the new leader appended an entry of its term");
    net.tickAll(2);
    assert.ok(log2.committed >= 3, "old entry committed together with the new term's entry");
    assert.deepEqual(net.applied.get(2), ["old"]);
  });

  it("ReadIndex: a leader confirms its leadership with a heartbeat round before answering", () => {
    const net = new Net(3);
    net.elect(1);
    net.node(1).propose(enc.encode("w"));
    net.settle();
    assert.equal(net.node(1).readIndex(42), true);
    net.collect();
    assert.equal(net.reads.length, 0, "no read state before the majority answers");
    net.settle();
    assert.deepEqual(net.reads, [{ node: 1, index: net.node(1).log.committed, context: 42 }]);
    assert.equal(net.node(2).readIndex(7), false, "followers do not serve read indexes themselves");
  });

  it("ReadIndex is refused by a cut-off leader: no majority answers, no read state", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(2);
    net.down.add(3);
    net.node(1).readIndex(9);
    net.settle();
    assert.equal(net.reads.length, 0);
  });

  it("restarts from its durable state: term, vote, log and commit survive", () => {
    const net = new Net(3);
    net.elect(1);
    net.node(1).propose(enc.encode("a"));
    net.settle();
    const old = net.node(2);
    const entries: Entry[] = old.log.slice(1, old.log.lastIndex());
    const restarted = new Raft({
      id: 2,
      peers: [1, 2, 3],
      rand: () => 0.5,
      restore: { hardState: { term: old.term, vote: old.vote, commit: old.log.committed }, entries },
    });
    assert.equal(restarted.term, old.term);
    assert.equal(restarted.vote, old.vote);
    assert.equal(restarted.log.lastIndex(), old.log.lastIndex());
  });

  it("a pipelined window with a gap sends the leader back to probing once, not once per rejected append", () => {
    const net = new Net(3);
    net.elect(1);
    const leader = net.node(1);
    // Five appends in flight to node 2, one per round, as under a pipelined load.
    for (let i = 0; i < 5; i++) {
      leader.propose(enc.encode(`w${i}`));
      net.collect();
    }
    const toTwo = net.pending.filter((m) => m.to === 2 && m.type === MessageType.App);
    assert.equal(toTwo.length, 5, "one append per round");
    net.pending = net.pending.filter((m) => m !== toTwo[0]); // the window's first append is lost
    const from = net.delivered.length;
    net.settle();
    const after = net.delivered.slice(from);
    const rejected = after.filter((m) => m.from === 2 && m.type === MessageType.AppResp && m.reject);
    assert.equal(rejected.length, 4, "each append after the gap is rejected");
    // The first rejection starts one probe; the other three answer appends sent before it and
    // change nothing. Every entry goes to node 2 again at most once: 5 lost or rejected, 5 resent.
    const resent = after.filter((m) => m.from === 1 && m.to === 2 && m.type === MessageType.App && !toTwo.includes(m));
    const entries = resent.reduce((n, m) => n + m.entries.length, 0);
    assert.equal(entries, 5, `entries sent to node 2 again: ${entries} in ${resent.length} appends`);
    assert.equal(net.node(2).log.lastIndex(), leader.log.lastIndex(), "node 2 caught up");
    assert.deepEqual(net.applied.get(2), ["w0", "w1", "w2", "w3", "w4"]);
  });

  it("a probe carries one entry at most; a follower far behind is caught up once one is accepted", () => {
    const net = new Net(3);
    net.elect(1); // node 3 holds the new leader's first entry
    net.down.add(3);
    for (let i = 0; i < 20; i++) net.node(1).propose(enc.encode(`w${i}`));
    net.settle();
    assert.equal(net.node(1).log.committed, 21, "committed by nodes 1 and 2");
    net.down.delete(3);
    const from = net.delivered.length;
    net.tickAll(1); // a heartbeat; its answer finds node 3 behind: an append, rejected, then the probe
    const after = net.delivered.slice(from);
    const accepted = after.findIndex((m) => m.from === 3 && m.type === MessageType.AppResp && !m.reject);
    assert.ok(accepted > 0, "a probe was accepted");
    const before = after.slice(0, accepted).filter((m) => m.to === 3 && m.type === MessageType.App);
    assert.ok(before.length >= 2, `appends before the match point was found: ${before.length}`);
    for (const p of before) assert.ok(p.entries.length <= 1, `an append with ${p.entries.length} entries`);
    const sent = after.filter((m) => m.to === 3 && m.type === MessageType.App);
    assert.equal(
      sent.reduce((n, m) => n + m.entries.length, 0),
      20,
      "each missing entry sent once: the probe's, then the rest streamed",
    );
    assert.equal(net.node(3).log.lastIndex(), 21);
    assert.equal(net.applied.get(3)!.length, 20);
  });

  it("a leader whose connection closed is replaced within a few ticks, not an election timeout (decision 0110)", () => {
    const net = new Net(3, { electionTicks: 50 });
    net.elect(1);
    const term = net.node(1).term;
    net.down.add(1); // its process ended: both followers' hosts saw the connection close
    net.node(2).leaderUnreachable(1);
    net.node(3).leaderUnreachable(1);
    let ticks = 0;
    while (net.leaders().length === 0 && ticks < 50) {
      net.tickAll(1);
      ticks++;
    }
    assert.ok(ticks <= UNREACHABLE_CAMPAIGN_SPREAD_TICKS, `a new leader after ${ticks} ticks`);
    assert.equal(net.leaders().length, 1);
    assert.ok(net.node(net.leaders()[0]!).term > term);
  });

  it("the first election uses the short timeout; once a leader is known, a silence must last the long one", () => {
    const net = new Net(3, { electionTicks: 50, initialElectionTicks: 10 });
    let ticks = 0;
    while (net.leaders().length === 0 && ticks < 100) {
      net.tickAll(1);
      ticks++;
    }
    assert.ok(ticks <= 20, `a first leader after ${ticks} ticks`);
    const leader = net.leaders()[0]!;
    net.down.add(leader); // silent, its connections open: only the timeout tells
    const before = ticks;
    while (net.leaders().length === 0 && ticks < before + 300) {
      net.tickAll(1);
      ticks++;
    }
    assert.ok(ticks - before >= 50, `the next leader after ${ticks - before} ticks of silence`);
    assert.equal(net.leaders().length, 1);
  });

  it("a follower that alone lost its connection to a living leader disturbs nothing: the other still hears it", () => {
    const net = new Net(3, { electionTicks: 50 });
    net.elect(1);
    const term = net.node(1).term;
    net.node(2).leaderUnreachable(1); // a connection that broke and came back
    net.tickAll(10);
    assert.deepEqual(net.leaders(), [1]);
    assert.equal(net.node(1).term, term, "no election won: node 3's lease refused node 2's pre-vote");
    assert.equal(net.node(2).leader, 1, "node 2 follows node 1 again, from its heartbeats");
    // A replica told about a member that is not its leader does nothing.
    net.node(3).leaderUnreachable(2);
    assert.equal(net.node(3).leader, 1);
  });

  it("asserts its invariants: a term never goes backwards", () => {
    const net = new Net(3);
    net.elect(1);
    const r = net.node(2) as unknown as { setTerm(t: number): void };
    assert.throws(() => r.setTerm(0), /the term never goes backwards/);
  });
});
