// The chaos harness's network faults (src/chaos/peer-faults.ts): a decorator
// over the real peer transport, on real loopback sockets. It partitions
// members one way or both and heals, drops only the answers to a peer's
// forwarded commands when asked, hides a blocked peer from member liveness,
// and follows its fault file.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { PeerFaults } from "../../src/chaos/peer-faults.js";
import { encodeForward, encodeForwardReply, encodeRaftBatch, type GroupMessage } from "../../src/cluster/peer-codec.js";
import type { PeerFrame, PeerHandlers, PeerNetwork } from "../../src/cluster/peer-network.js";
import type { Member } from "../../src/cluster/placement.js";
import { clusterIdOf, PeerTransport } from "../../src/cluster/transport.js";
import { hash32 } from "../../src/hash.js";
import { message } from "../../src/raft/messages.js";
import { loopbackMembers, until } from "../support/members.js";

function raft(group: number, from: number, to: number, term: number): Uint8Array {
  const m: GroupMessage = { group, message: message({ type: 7, from, to, term }) };
  return encodeRaftBatch([m]);
}

const silent = pino({ level: "silent" });

function start(members: Member[], id: number, faultFile = "/nonexistent") {
  const got: { from: number; term: number }[] = [];
  const frames: { from: number; frame: PeerFrame }[] = [];
  const faults = new PeerFaults(faultFile, silent);
  const handlers: PeerHandlers = {
    onMessages: (from, messages) => {
      for (const m of messages) got.push({ from, term: m.message.term });
    },
    onFrame: (from, frame) => frames.push({ from, frame }),
    onPeerDown: () => {},
    onJoin: () => false,
    clientAddress: () => "",
    forgotten: () => [],
    onForgotten: () => {},
    onSelfForgotten: () => {},
  };
  const make = faults.wrap(
    (h) => new PeerTransport({ self: members[id - 1]!, members, clusterId: clusterIdOf(members, 64, hash32), ...h }),
  );
  const net: PeerNetwork = make(handlers);
  return { net, faults, got, frames, ready: net.start() };
}

describe("peer faults (test only)", () => {
  it("partition one way or both, and heal", async () => {
    const ms = await loopbackMembers(3);
    const nodes = [start(ms, 1), start(ms, 2), start(ms, 3)];
    await Promise.all(nodes.map((n) => n.ready));
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]];
    try {
      await until("all connected", () => nodes.every((n) => n.net.stats().every((s) => s.connected)));
      // One way: a drops what it would send to b; b -> a still flows.
      a.faults.apply("block 2 out\n");
      assert.equal(a.net.sendFrame(2, raft(1, 1, 2, 1)), false, "a send to a blocked peer is dropped");
      b.net.sendFrame(1, raft(1, 2, 1, 1));
      a.net.sendFrame(3, raft(1, 1, 3, 1));
      await until("a and c hear", () => a.got.length === 1 && c.got.length === 1);
      await sleep(100);
      assert.equal(b.got.length, 0, "nothing from a reached b");
      assert.ok(a.net.isConnected(2), "the connection stays up while blocked");
      a.faults.apply("");
      a.net.sendFrame(2, raft(1, 1, 2, 2));
      await until("healed", () => b.got.length === 1);
      // Both ways: and the blocked peer falls silent for member liveness.
      a.faults.apply("block 3");
      a.net.sendFrame(3, raft(1, 1, 3, 9));
      c.net.sendFrame(1, raft(1, 3, 1, 9));
      await sleep(150);
      assert.equal(c.got.length, 1, "nothing new reached c");
      assert.equal(a.got.length, 1, "a got b's message only, nothing from c");
      assert.equal(a.net.heardWithin(3, 60_000), false, "a blocked peer is not heard from");
      assert.equal(a.net.heardWithin(2, 60_000), true);
      a.faults.apply("");
    } finally {
      for (const n of nodes) await n.net.stop();
    }
  });

  it("mute-replies drops only the answers to what that peer forwarded", async () => {
    const ms = await loopbackMembers(2);
    const a = start(ms, 1);
    const b = start(ms, 2);
    await Promise.all([a.ready, b.ready]);
    try {
      await until("connected", () => a.net.isConnected(2) && b.net.isConnected(1));
      b.faults.apply("mute-replies 1\n");
      a.net.sendFrame(2, encodeForward({ id: 7, group: 0, write: true, command: new Uint8Array([1, 2, 3]) }));
      await until("the forward arrived", () => b.frames.length === 1);
      assert.equal(b.net.sendFrame(1, encodeForwardReply(7, { kind: "notLeader", leader: 3 })), false);
      b.net.sendFrame(1, raft(0, 2, 1, 5));
      await until("other traffic flows", () => a.got.length === 1);
      await sleep(100);
      assert.equal(a.frames.length, 0, "the answer never arrived");
      b.faults.apply("");
      b.net.sendFrame(1, encodeForwardReply(8, { kind: "notLeader", leader: 3 }));
      await until("answers flow again", () => a.frames.length === 1);
      assert.equal(a.frames[0]!.frame.kind, "forwardReply");
    } finally {
      await a.net.stop();
      await b.net.stop();
    }
  });

  it("follows its fault file once the network starts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "piccolo-peer-faults-"));
    const file = join(dir, "faults");
    await writeFile(file, "block 2 both\n");
    const ms = await loopbackMembers(2);
    const a = start(ms, 1, file);
    const b = start(ms, 2);
    await Promise.all([a.ready, b.ready]);
    try {
      await until("connected", () => a.net.isConnected(2));
      await until("the file is applied", () => !a.net.sendFrame(2, raft(0, 1, 2, 1)));
      await writeFile(file, "");
      await until("healed by the file", () => a.net.sendFrame(2, raft(0, 1, 2, 2)));
      await until("delivered", () => b.got.some((g) => g.term === 2));
    } finally {
      await a.net.stop();
      await b.net.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
