// The peer transport over real loopback sockets: batches arrive in order,
// a peer that is down is reached once it comes up (reconnect with backoff),
// a misconfigured peer is refused, a dead peer costs bounded memory, and a
// forgotten peer is told, refused and never dialed again, the fact spreading by hello. (The
// test-only fault injection is a decorator over the transport: test/chaos/peer-faults.test.ts.)
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type ForgottenMember, type Member, parseMembers } from "../../src/cluster/placement.js";
import { encodeChallenge, encodeHello, type GroupMessage } from "../../src/cluster/peer-codec.js";
import { clusterIdOf, PeerTransport } from "../../src/cluster/transport.js";
import { hash32, initHash } from "../../src/hash.js";
import { message } from "../../src/raft/messages.js";
import { freePort } from "../support/node.js";

async function cluster(n: number): Promise<Member[]> {
  await initHash();
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  return parseMembers(ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(","));
}

function msg(group: number, from: number, to: number, term: number): GroupMessage {
  return { group, message: message({ type: 7, from, to, term }) };
}

async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(10);
  }
}

/** A transport with a forgotten list kept as a member keeps it (src/cluster/member.ts). */
function startForgetting(members: Member[], id: number) {
  const forgotten: ForgottenMember[] = [];
  const toldBy: number[] = [];
  const learned: { member: string; from: number }[] = [];
  const t: PeerTransport = new PeerTransport({
    self: members[id - 1]!,
    members,
    clusterId: clusterIdOf(members, 64, hash32),
    onMessages: () => {},
    forgotten: () => forgotten,
    onForgotten: (m, from) => {
      forgotten.push(m);
      learned.push({ member: m.name, from });
      t.forget(m.id);
    },
    onSelfForgotten: (by) => toldBy.push(by),
  });
  return { t, forgotten, toldBy, learned, ready: t.start() };
}

function start(members: Member[], id: number, opts: { clusterId?: bigint } = {}) {
  const got: { from: number; messages: GroupMessage[] }[] = [];
  const t = new PeerTransport({
    self: members[id - 1]!,
    members,
    clusterId: opts.clusterId ?? clusterIdOf(members, 64, hash32),
    onMessages: (from, messages) => got.push({ from, messages }),
  });
  return { t, got, ready: t.start() };
}

describe("peer transport", () => {
  it("delivers batches both ways over one connection, in order", async () => {
    const ms = await cluster(2);
    const a = start(ms, 1);
    const b = start(ms, 2);
    await Promise.all([a.ready, b.ready]);
    try {
      await until("connected", () => a.t.stats()[0]!.connected && b.t.stats()[0]!.connected);
      for (let i = 1; i <= 50; i++) assert.ok(a.t.send(2, [msg(i % 4, 1, 2, i), msg(99, 1, 2, i)]));
      for (let i = 1; i <= 50; i++) b.t.send(1, [msg(0, 2, 1, i)]);
      await until("all delivered", () => b.got.length === 50 && a.got.length === 50);
      assert.deepEqual(
        b.got.map((g) => g.messages[0]!.message.term),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      assert.equal(b.got[0]!.from, 1);
      assert.equal(b.got[7]!.messages[1]!.group, 99);
    } finally {
      await a.t.stop();
      await b.t.stop();
    }
  });

  it("reaches a peer that starts later, and again after it restarts", async () => {
    const ms = await cluster(2);
    const a = start(ms, 1);
    await a.ready;
    let b = start(ms, 2);
    await b.ready;
    try {
      await until("connected", () => a.t.stats()[0]!.connected);
      await b.t.stop();
      await until("a sees b gone", () => !a.t.stats()[0]!.connected);
      b = start(ms, 2);
      await b.ready;
      await until("reconnected", () => a.t.stats()[0]!.connected);
      a.t.send(2, [msg(1, 1, 2, 7)]);
      await until("delivered after restart", () => b.got.length === 1);
      assert.ok(a.t.stats()[0]!.reconnects >= 1);
    } finally {
      await a.t.stop();
      await b.t.stop();
    }
  });

  it("refuses a peer with another cluster id", async () => {
    const ms = await cluster(2);
    const a = start(ms, 1);
    const b = start(ms, 2, { clusterId: 12345n });
    await Promise.all([a.ready, b.ready]);
    try {
      await sleep(300);
      assert.equal(a.t.stats()[0]!.connected, false);
      assert.equal(b.t.stats()[0]!.connected, false);
      assert.equal(a.t.send(2, [msg(1, 1, 2, 1)]), false, "dropped: the peer is not connected");
      await sleep(100);
      assert.equal(b.got.length, 0);
    } finally {
      await a.t.stop();
      await b.t.stop();
    }
  });

  it("a dead peer costs nothing: frames for it are dropped and counted, not stored for its return", async () => {
    const ms = await cluster(2);
    const a = new PeerTransport({ self: ms[0]!, members: ms, clusterId: 1n, onMessages: () => {} });
    await a.start();
    try {
      for (let i = 0; i < 1000; i++) assert.equal(a.send(2, [msg(1, 1, 2, i)]), false);
      const s = a.stats()[0]!;
      assert.equal(s.dropped, 1000);
      assert.equal(s.queuedBytes, 0);
    } finally {
      await a.stop();
    }
  });

  it("a connected peer that does not read costs bounded memory: frames beyond the queue limit are dropped", async () => {
    const ms = await cluster(2);
    const clusterId = clusterIdOf(ms, 64, hash32);
    // Member 2 is a raw socket that greets as a peer without a cluster secret should (its challenge,
    // then its hello), then never reads.
    const sockets: Socket[] = [];
    const silent = createServer((s) => {
      sockets.push(s);
      s.write(encodeChallenge(new Uint8Array(32), false));
      s.write(encodeHello(clusterId, 2));
      s.pause();
    });
    await new Promise<void>((r) => silent.listen(ms[1]!.port, "127.0.0.1", r));
    const a = new PeerTransport({ self: ms[0]!, members: ms, clusterId, onMessages: () => {}, maxQueuedBytes: 10_000 });
    await a.start();
    try {
      await until("connected", () => a.isConnected(2));
      let accepted = 0;
      for (let i = 0; i < 1000; i++) if (a.send(2, [msg(1, 1, 2, i)])) accepted++;
      const s = a.stats()[0]!;
      assert.ok(accepted < 1000 && accepted > 0, `${accepted} accepted`);
      assert.equal(s.dropped, 1000 - accepted);
      assert.ok(s.queuedBytes <= 10_000);
    } finally {
      await a.stop();
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
  it("a forgotten peer is told on its live connection, never dialed again, refused, and the others learn it by hello", async () => {
    const ms = await cluster(3);
    const [a, b] = [startForgetting(ms, 1), startForgetting(ms, 2)];
    let c = startForgetting(ms, 3);
    await Promise.all([a.ready, b.ready, c.ready]);
    const up = (x: { t: PeerTransport }, peer: number) =>
      x.t.stats().find((p) => p.member === peer)?.connected === true;
    try {
      await until("all connected", () => up(a, 2) && up(a, 3) && up(b, 3));
      // n3 is down while n1 forgets n2.
      await c.t.stop();
      a.forgotten.push({ id: 2, name: "n2" });
      a.t.forget(2);
      // n2, connected to n1, gets n1's last hello naming it.
      await until("n2 told by n1", () => b.toldBy.includes(1));
      assert.deepEqual(
        a.t.stats().map((p) => p.member),
        [3],
      );
      // n3 comes back: n1's hello tells it.
      c = startForgetting(ms, 3);
      await c.ready;
      await until("n3 learns it from n1", () => c.learned.length > 0);
      assert.deepEqual(c.learned, [{ member: "n2", from: 1 }]);
      assert.ok(!c.t.stats().some((p) => p.member === 2));
      // n2 (still running here) dials n3, which refuses it with a hello naming it.
      await until("n2 told by n3", () => b.toldBy.includes(3));
      assert.ok(!up(a, 2) && !up(c, 2));
    } finally {
      await Promise.all([a.t.stop(), b.t.stop(), c.t.stop()]);
    }
  });
});
