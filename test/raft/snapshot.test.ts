// Log compaction and InstallSnapshot, one story per test.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageType, message, Role } from "../../src/raft/messages.js";
import { Raft } from "../../src/raft/raft.js";
import { enc, Net } from "./net.js";

function proposeAll(net: Net, leader: number, cmds: string[]): void {
  for (const c of cmds) assert.ok(net.node(leader).propose(enc.encode(c)).ok, `proposed ${c}`);
  net.settle();
  net.tickAll(2);
}

describe("Raft snapshots", () => {
  it("compaction drops applied entries; the snapshot records index, term and configuration", () => {
    const net = new Net(3);
    net.elect(1);
    proposeAll(net, 1, ["a", "b", "c"]);
    const index = net.compact(1);
    const r = net.node(1);
    assert.equal(r.log.firstIndex(), index + 1);
    assert.equal(r.log.term(index), r.term, "the snapshot's last term is still known");
    assert.equal(r.log.term(index - 1), -1, "entries before it are gone");
    assert.throws(() => r.compact(r.log.applied + 1, new Uint8Array()), /covers applied entries only/);
  });

  it("a follower that missed compacted entries catches up by InstallSnapshot, then by appends", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(3);
    proposeAll(net, 1, ["a", "b", "c", "d"]);
    net.compact(1);
    net.down.delete(3);
    net.tickAll(3);
    assert.ok(
      net.delivered.some((m) => m.type === MessageType.Snap && m.to === 3),
      "the leader sent a snapshot to the lagging follower",
    );
    assert.deepEqual(net.applied.get(3), ["a", "b", "c", "d"], "state restored from the snapshot");
    proposeAll(net, 1, ["e"]);
    assert.deepEqual(net.applied.get(3), ["a", "b", "c", "d", "e"], "and entries after it applied on top");
    assert.equal(net.node(3).log.committed, net.node(1).log.committed);
  });

  it("a lost snapshot is sent again once the follower is seen stuck", () => {
    const net = new Net(3);
    net.elect(1);
    net.down.add(3);
    proposeAll(net, 1, ["a", "b"]);
    net.compact(1);
    net.down.delete(3);
    // Lose exactly the first snapshot on its way.
    let sent = 0;
    net.lose = (m) => m.type === MessageType.Snap && sent++ === 0;
    net.tickAll(30);
    assert.ok(sent >= 2, "a second snapshot was sent after the first was lost");
    assert.deepEqual(net.applied.get(3), ["a", "b"]);
  });

  it("a snapshot the follower already holds only advances its commit index", () => {
    const net = new Net(3);
    net.elect(1);
    proposeAll(net, 1, ["a"]);
    const f = net.node(2);
    const before = f.log.lastIndex();
    const snap = net.node(1).compact(net.node(1).log.applied, enc.encode("[]"));
    f.step(message({ type: MessageType.Snap, from: 1, to: 2, term: net.node(1).term, snapshot: snap }));
    assert.equal(f.log.lastIndex(), before, "nothing was replaced");
    assert.equal(f.hasReady() && f.ready().snapshot, null, "nothing to install");
  });

  it("restarts from a snapshot plus the entries after it", () => {
    const net = new Net(3);
    net.elect(1);
    proposeAll(net, 1, ["a", "b"]);
    const old = net.node(2);
    net.compact(2);
    const snapIndex = old.log.snapshotIndex();
    proposeAll(net, 1, ["c"]);
    const snap = old.compact(snapIndex, enc.encode(JSON.stringify(["a", "b"])));
    const restarted = new Raft({
      id: 2,
      peers: [],
      rand: () => 0.5,
      restore: {
        snapshot: snap,
        hardState: { term: old.term, vote: old.vote, commit: old.log.committed },
        entries: old.log.slice(old.log.firstIndex(), old.log.lastIndex()),
      },
    });
    assert.deepEqual(restarted.config.voters, [1, 2, 3], "the configuration comes from the snapshot");
    assert.equal(restarted.log.lastIndex(), old.log.lastIndex());
    assert.equal(restarted.log.firstIndex(), snapIndex + 1);
    assert.equal(restarted.role, Role.Follower);
  });
});
