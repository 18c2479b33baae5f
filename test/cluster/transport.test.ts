// The peer transport over real loopback sockets: batches arrive in order,
// a peer that is down is reached once it comes up (reconnect with backoff),
// a misconfigured peer is refused, and a dead peer costs bounded memory. (The
// test-only fault injection is a decorator over the transport: test/chaos/peer-faults.test.ts.)
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Member, parseMembers } from "../../src/cluster/placement.js";
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
});
