// Members prove they hold the cluster secret (decision 0262), with real
// member processes on loopback: a cluster with --cluster-secret-file serves
// as one without; a stranger on the peer port (garbage, a hello without the
// step, a forged proof, no secret at all) is cut off and logged while the
// cluster goes on serving; a member started with another secret cannot join
// (its peers log why) and every request through it fails, never succeeds;
// and a member list off loopback with neither a secret nor TLS does not start.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  decodeAuthFrame,
  encodeChallenge,
  encodeHello,
  encodeProof,
  PEER_AUTH_FRAME_BYTES,
} from "../../src/cluster/peer-codec.js";
import { checkPeerProtection } from "../../src/cluster/backend.js";
import { parseMemberLists } from "../../src/cluster/placement.js";
import { clusterIdOf } from "../../src/cluster/transport.js";
import { hash32, initHash } from "../../src/hash.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { PEER_MAX_UNAUTHENTICATED_CONNECTIONS } from "../../src/limits.js";
import { peerNonce } from "../../src/security/peer-auth.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";
import { closedWithin, logged, peerPort, serves } from "./peer-security-support.js";

let root: string;
before(async () => {
  await initHash();
  root = await mkdtemp(join(tmpdir(), "piccolo-peer-security-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** A secret file readable by its owner alone, as docs/security.md says to make it. */
function secretFile(name: string, value: string): string {
  const path = join(root, name);
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return path;
}

/** A raw connection to a peer port, reading frames as a member would (auth-sized first). */
async function raw(port: number): Promise<{ s: Socket; frames: Uint8Array[]; closed: Promise<void> }> {
  const s = connect({ host: "127.0.0.1", port });
  s.on("error", () => {});
  const frames: Uint8Array[] = [];
  const reader = new FrameReader(1 << 20);
  s.on("data", (c: Buffer) => reader.push(c, (f) => frames.push(new Uint8Array(f))));
  const closed = new Promise<void>((resolve) => s.once("close", () => resolve()));
  await new Promise<void>((resolve) => s.once("connect", () => resolve()));
  return { s, frames, closed };
}

describe("a cluster with a secret", () => {
  let list: string;
  const nodes: RunningNode[] = [];
  before(async () => {
    list = await memberList(3);
    const secret = secretFile("secret", "a cluster secret of more than sixteen bytes");
    nodes.push(
      ...(await Promise.all(
        [0, 1, 2].map((i) =>
          startMember(list, root, i, ["--cluster-secret-file", secret, "--tick-ms", "20", "--log-level", "warn"]),
        ),
      )),
    );
  });
  after(async () => {
    await stopAll(nodes);
  });

  it("serves with the default 64 partitions: written through one member, read through another", {
    timeout: 60_000,
  }, async () => {
    await serves(nodes[0]!, nodes[1]!, "with-a-secret");
    await serves(nodes[2]!, nodes[0]!, "and-again");
    for (const n of nodes) assert.doesNotMatch(n.stderr(), /peer refused/, "members refuse nobody of their own");
  });

  it("cuts off a stranger on the peer port, logs why, and goes on serving", { timeout: 60_000 }, async () => {
    const port = peerPort(list, "n2");
    const id = clusterIdOf(parseMemberLists(list).bootstrap, 64, hash32);

    // Garbage: not even a frame.
    const garbage = await raw(port);
    garbage.s.write("GET / HTTP/1.1\r\nHost: piccolo\r\n\r\n");
    await closedWithin(garbage.closed, 5_000, "garbage");
    await logged(nodes[1]!, /bad peer frame; closing that connection/);

    // A hello straight away, as a member of an older version (or a stranger who read the schema) would.
    const hello = await raw(port);
    hello.s.write(encodeHello(id, 1, "", "n1", "127.0.0.1:1"));
    await closedWithin(hello.closed, 5_000, "a hello first");
    await logged(nodes[1]!, /peer refused: a hello without the authentication step first/);

    // The step, with a forged proof claiming to be n1.
    const forged = await raw(port);
    forged.s.write(encodeChallenge(peerNonce(), true));
    await eventually("the member's challenge and proof", async () => assert.ok(forged.frames.length >= 2));
    const challenge = decodeAuthFrame(forged.frames[0]!);
    assert.equal(challenge.kind, "challenge");
    assert.equal((challenge as { hasSecret: boolean }).hasSecret, true);
    assert.ok(forged.frames[0]!.length <= PEER_AUTH_FRAME_BYTES);
    assert.equal(decodeAuthFrame(forged.frames[1]!).kind, "proof", "a proof answers a challenge");
    forged.s.write(encodeProof(1, id, new Uint8Array(32).fill(7)));
    forged.s.write(encodeHello(id, 1, "", "n1", "127.0.0.1:1")); // never read
    await closedWithin(forged.closed, 5_000, "a forged proof");
    await logged(nodes[1]!, /"claims":1,"msg":"peer refused: failed the cluster secret check"/);
    assert.equal(forged.frames.length, 2, "nothing but the step's frames reached the stranger: no hello");

    // No secret at all.
    const none = await raw(port);
    none.s.write(encodeChallenge(peerNonce(), false));
    await closedWithin(none.closed, 5_000, "no secret");
    await logged(nodes[1]!, /peer refused: the peer has no cluster secret and this member has one/);

    // A frame bigger than the step's, before it: refused from its header.
    const big = await raw(port);
    const header = Buffer.alloc(8);
    header.writeUInt32LE(0, 0);
    header.writeUInt32LE(1024, 4); // one segment of 1,024 words: 8 KiB, over PEER_MAX_AUTH_STEP_FRAME_BYTES
    big.s.write(header);
    await closedWithin(big.closed, 5_000, "a big frame before the step");
    await logged(nodes[1]!, /"limit":"peer-hello-frame-size"/);

    // Connections that never say who they are, more than PEER_MAX_UNAUTHENTICATED_CONNECTIONS:
    // the ones over the cap are closed at once; the members still reach each other.
    const silent = await Promise.all(
      Array.from({ length: PEER_MAX_UNAUTHENTICATED_CONNECTIONS + 20 }, () => raw(port)),
    );
    let closed = 0;
    for (const c of silent) void c.closed.then(() => closed++);
    await eventually("connections over the cap closed", async () => assert.ok(closed >= 20, `${closed} closed`));
    await logged(nodes[1]!, /peer refused: too many connections that have not said who they are/);
    await serves(nodes[0]!, nodes[1]!, "while-strangers-wait");
    for (const c of silent) c.s.destroy();

    await serves(nodes[0]!, nodes[1]!, "after-the-strangers");
    await serves(nodes[1]!, nodes[2]!, "after-the-strangers-2");
  });
});

describe("a member with another secret", () => {
  it("cannot join: its peers log the failed check, the two others serve, requests through it fail", {
    timeout: 90_000,
  }, async () => {
    const list = await memberList(3);
    const good = secretFile("good", "the cluster's own secret, 16+ bytes");
    const bad = secretFile("bad", "somebody else's secret, 16+ bytes");
    const dir = join(root, "wrong");
    const args = ["--partitions", "8", "--tick-ms", "20", "--log-level", "warn"];
    const nodes = await Promise.all([
      startMember(list, dir, 0, ["--cluster-secret-file", good, ...args]),
      startMember(list, dir, 1, ["--cluster-secret-file", good, ...args]),
      startMember(list, dir, 2, ["--cluster-secret-file", bad, ...args]),
    ]);
    const [n1, n2, n3] = nodes as [RunningNode, RunningNode, RunningNode];
    try {
      await serves(n1, n2, "two-of-three");
      // n1 and n2 dial n3 (lower ids dial): both check its proof, and it checks theirs.
      await logged(n1, /peer refused: failed the cluster secret check/);
      await logged(n2, /peer refused: failed the cluster secret check/);
      await logged(n3, /peer refused: failed the cluster secret check/);
      const c = await n3.client({ timeoutMs: 15_000 });
      try {
        // All at once: each waits out the request deadline (CLUSTER_REQUEST_DEADLINE_MS, 5 s) before it fails.
        await Promise.all(
          ["through-n3", "two-of-three"].flatMap((key) => [
            assert.rejects(c.put(key, "must not be acknowledged"), `a write of ${key} through n3 fails`),
            assert.rejects(c.get(key), `a read of ${key} through n3 fails`),
          ]),
        );
      } finally {
        await c.close();
      }
      await serves(n2, n1, "still-two-of-three");
    } finally {
      await stopAll(nodes);
    }
  });
});

describe("a member list off loopback", () => {
  it("does not start without a secret or TLS, and says which flags fix it; a secret or TLS lets it", {
    timeout: 60_000,
  }, async () => {
    const list = (await memberList(2)).replace(/n2=127\.0\.0\.1:/, "n2=192.0.2.1:"); // TEST-NET-1: nobody there
    await assert.rejects(
      startMember(list, join(root, "off-loopback"), 0),
      (err: Error) =>
        /exited with 71/.test(err.message) &&
        /member n2 is at 192\.0\.2\.1:\d+, off this machine's loopback/.test(err.message) &&
        /--cluster-secret-file/.test(err.message) &&
        /--tls-cert-file/.test(err.message),
    );
    // Started for real it would dial 192.0.2.1 (the tests reach no address but 127.0.0.1): the rule that
    // lets it start, with a secret or with TLS, is checked as the function the member runs at start.
    const members = parseMemberLists(list).all;
    assert.doesNotThrow(() => checkPeerProtection({ peerTls: null, clusterSecret: "a secret of 16+ bytes" }, members));
    assert.doesNotThrow(() => checkPeerProtection({ peerTls: {}, clusterSecret: null }, members));
    assert.doesNotThrow(() =>
      checkPeerProtection({ peerTls: null, clusterSecret: null, allowUnauthenticatedPeers: true }, members),
    );
    assert.throws(() => checkPeerProtection({ peerTls: null, clusterSecret: null }, members), /192\.0\.2\.1/);
  });
});
