// The peer authentication step on its own (decision 0262): the state machine
// of src/cluster/peer-handshake.ts fed frame by frame, as two members would
// feed it, and as a stranger would try to: without the secret, with another
// one, replaying a proof seen on another connection, reflecting a member's
// own proof back to it. Then two real transports over loopback sockets.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  decodeAuthFrame,
  encodeChallenge,
  encodeHello,
  encodeProof,
  PEER_AUTH_FRAME_BYTES,
} from "../../src/cluster/peer-codec.js";
import { Handshake, PeerRefused } from "../../src/cluster/peer-handshake.js";
import type { Member } from "../../src/cluster/placement.js";
import { clusterIdOf, PeerTransport } from "../../src/cluster/transport.js";
import { hash32 } from "../../src/hash.js";
import { message } from "../../src/raft/messages.js";
import { isLoopbackHost, peerNonce } from "../../src/security/peer-auth.js";
import { loopbackMembers, until } from "../support/members.js";

const SECRET = new TextEncoder().encode("correct horse battery staple");
const OTHER = new TextEncoder().encode("another cluster's secret, 32 b.");
const CID = 0x1234_5678_9abc_def0n;

function pair(dialerSecret: Uint8Array | null, acceptorSecret: Uint8Array | null, acceptorCid = CID) {
  const d = new Handshake({ role: "dialer", self: 1, clusterId: CID, secret: dialerSecret });
  const a = new Handshake({ role: "acceptor", self: 2, clusterId: acceptorCid, secret: acceptorSecret });
  return { d, a };
}

/** Runs the step as the transport does (both challenges cross, then the proofs); returns what each side threw. */
function run(d: Handshake, a: Handshake): { dialer: PeerRefused | null; acceptor: PeerRefused | null } {
  const out = { dialer: null as PeerRefused | null, acceptor: null as PeerRefused | null };
  const step = (h: Handshake, frame: Uint8Array, who: "dialer" | "acceptor"): Uint8Array | null => {
    if (out[who] !== null) return null;
    try {
      return h.take(frame);
    } catch (err) {
      if (!(err instanceof PeerRefused)) throw err;
      out[who] = err;
      return null;
    }
  };
  const dProof = step(d, a.challenge(), "dialer");
  const aProof = step(a, d.challenge(), "acceptor");
  if (aProof !== null) step(d, aProof, "dialer");
  if (dProof !== null) step(a, dProof, "acceptor");
  return out;
}

function refusedWith(h: Handshake, frame: Uint8Array, reason: PeerRefused["reason"], text: RegExp): void {
  assert.throws(
    () => h.take(frame),
    (err: unknown) => err instanceof PeerRefused && err.reason === reason && text.test(err.message),
  );
}

describe("the peer authentication step", () => {
  it("passes both ways with the same secret, each side learning the member the other proved to be", () => {
    const { d, a } = pair(SECRET, SECRET);
    assert.deepEqual(run(d, a), { dialer: null, acceptor: null });
    assert.equal(d.through && a.through, true);
    assert.equal(d.proven, 2);
    assert.equal(a.proven, 1);
  });

  it("passes without a secret on either side, proving nobody", () => {
    const { d, a } = pair(null, null);
    assert.deepEqual(run(d, a), { dialer: null, acceptor: null });
    assert.equal(d.through && a.through, true);
    assert.equal(d.proven, null);
  });

  it("refuses another secret on both sides: failed the cluster secret check", () => {
    const { d, a } = pair(SECRET, OTHER);
    const r = run(d, a);
    assert.match(r.dialer?.message ?? "", /failed the cluster secret check/);
    assert.match(r.acceptor?.message ?? "", /failed the cluster secret check/);
    assert.equal(r.acceptor?.member, 1, "the refusal names the member claimed");
    assert.equal(d.through || a.through, false);
  });

  it("refuses a secret on one side only, on both sides, saying which has none", () => {
    const { d, a } = pair(SECRET, null);
    const r = run(d, a);
    assert.equal(r.dialer?.reason, "mixed");
    assert.match(r.dialer!.message, /the peer has no cluster secret and this member has one/);
    assert.equal(r.acceptor?.reason, "mixed");
    assert.match(r.acceptor!.message, /the peer proves a cluster secret and this member has none/);
  });

  it("checks the cluster id only after the proof, and refuses another", () => {
    const { d, a } = pair(SECRET, SECRET, 99n);
    const r = run(d, a);
    assert.match(r.acceptor?.message ?? "", /cluster id differs/);
  });

  it("refuses a proof replayed from another connection (each proof covers the receiver's fresh nonce)", () => {
    // A stranger watched a member dial (connection 1) and replays the dialer's frames on connection 2.
    const { d, a } = pair(SECRET, SECRET);
    const dProof = d.take(a.challenge())!;
    const replayTo = new Handshake({ role: "acceptor", self: 2, clusterId: CID, secret: SECRET });
    replayTo.challenge(); // a fresh nonce, which the recorded proof never saw
    assert.notEqual(replayTo.take(encodeChallenge(recordedNonce(d), true)), null, "it answers with its own proof");
    refusedWith(replayTo, dProof, "secret", /failed the cluster secret check/);
  });

  it("refuses a member's own proof reflected back to it", () => {
    // A stranger dials member 2, echoes its challenge back as its own, and returns its proof as the dialer's.
    const a = new Handshake({ role: "acceptor", self: 2, clusterId: CID, secret: SECRET });
    const nonce = decodeAuthFrame(a.challenge());
    assert.equal(nonce.kind, "challenge");
    const own = a.take(encodeChallenge((nonce as { nonce: Uint8Array }).nonce, true))!;
    refusedWith(a, own, "secret", /failed the cluster secret check/);
    // Even claiming to be member 1 with member 2's MAC: the role is in it.
    const p = decodeAuthFrame(own) as { proof: Uint8Array };
    const b = new Handshake({ role: "acceptor", self: 2, clusterId: CID, secret: SECRET });
    const n = decodeAuthFrame(b.challenge()) as { nonce: Uint8Array };
    b.take(encodeChallenge(n.nonce, true));
    refusedWith(b, encodeProof(1, CID, p.proof), "secret", /failed the cluster secret check/);
  });

  it("refuses what is not its step: a hello first (an older member), garbage, a proof first, a second challenge", () => {
    const fresh = () => new Handshake({ role: "acceptor", self: 2, clusterId: CID, secret: SECRET });
    refusedWith(fresh(), encodeHello(CID, 1, "", "n1", "127.0.0.1:1"), "protocol", /older version/);
    refusedWith(fresh(), new Uint8Array(40), "protocol", /not an authentication frame/);
    refusedWith(fresh(), encodeProof(1, CID, new Uint8Array(32)), "protocol", /a proof before its challenge/);
    const h = fresh();
    h.take(encodeChallenge(peerNonce(), true));
    refusedWith(h, encodeChallenge(peerNonce(), true), "protocol", /a second challenge/);
    // Another version of the step is named, not misread.
    const v2 = encodeChallenge(peerNonce(), true);
    v2[20] = 2;
    refusedWith(fresh(), v2, "protocol", /version 2; this member speaks version 1/);
  });

  it("frames are tiny and decode to what was encoded", () => {
    const nonce = peerNonce();
    const c = encodeChallenge(nonce, true);
    const p = encodeProof(7, CID, new Uint8Array(32).fill(9));
    assert.ok(c.length <= PEER_AUTH_FRAME_BYTES && p.length <= PEER_AUTH_FRAME_BYTES);
    assert.deepEqual(decodeAuthFrame(c), { kind: "challenge", nonce, hasSecret: true });
    assert.deepEqual(decodeAuthFrame(p), {
      kind: "proof",
      member: 7,
      clusterId: CID,
      proof: new Uint8Array(32).fill(9),
    });
  });

  it("knows loopback hosts (a cluster of them may run without a secret)", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
      assert.ok(isLoopbackHost(h), h);
    for (const h of ["10.0.0.1", "0.0.0.0", "128.0.0.1", "example.com", "127.0.0.1.example.com", "::"])
      assert.ok(!isLoopbackHost(h), h);
  });
});

/** The nonce a handshake sent in its challenge. */
function recordedNonce(h: Handshake): Uint8Array {
  return (decodeAuthFrame(h.challenge()) as { nonce: Uint8Array }).nonce;
}

describe("two transports with a cluster secret", () => {
  const start = (ms: Member[], id: number, secret: string) => {
    const got: number[] = [];
    const t = new PeerTransport({
      self: ms[id - 1]!,
      members: ms,
      clusterId: clusterIdOf(ms, 64, hash32),
      secret,
      onMessages: (from) => got.push(from),
    });
    return { t, got, ready: t.start() };
  };

  it("connect and carry traffic with the same secret", { timeout: 30_000 }, async () => {
    const ms = await loopbackMembers(2);
    const a = start(ms, 1, "the same secret, 16+ bytes");
    const b = start(ms, 2, "the same secret, 16+ bytes");
    await Promise.all([a.ready, b.ready]);
    try {
      await until("connected", () => a.t.isConnected(2) && b.t.isConnected(1));
      assert.ok(a.t.send(2, [{ group: 0, message: message({ type: 7, from: 1, to: 2, term: 1 }) }]));
      await until("delivered", () => b.got.length === 1);
    } finally {
      await a.t.stop();
      await b.t.stop();
    }
  });

  it("never connect with different secrets: nothing is delivered, refusals are counted, redials back off", {
    timeout: 30_000,
  }, async () => {
    const ms = await loopbackMembers(2);
    const a = start(ms, 1, "the first secret, 16+ bytes");
    const b = start(ms, 2, "the second secret, 16+ bytes");
    await Promise.all([a.ready, b.ready]);
    try {
      await until("refused both ways", () => a.t.stats()[0]!.refused > 0 && b.t.stats()[0]!.refused > 0);
      await sleep(1_000);
      assert.equal(a.t.isConnected(2) || b.t.isConnected(1), false);
      assert.equal(a.t.send(2, [{ group: 0, message: message({ type: 7, from: 1, to: 2, term: 1 }) }]), false);
      assert.equal(b.got.length, 0);
      // Backoff is not reset by a connection that is then refused: a handful of dials in a second, not 20.
      assert.ok(a.t.stats()[0]!.reconnects <= 8, `${a.t.stats()[0]!.reconnects} redials`);
    } finally {
      await a.t.stop();
      await b.t.stop();
    }
  });
});
