// A malformed Raft frame from a peer closes that peer's connection and
// nothing else: the member keeps serving. So does a frame bigger than a
// hello from a connection that has not said hello yet (anyone can reach the
// peer port: it may not make a member buffer a 256 MiB frame). Checked for both places a Raft
// frame is decoded: on the IO thread (--shards 0, and members with several
// group workers) and on the group worker itself (--shards 1 passes frames
// through undecoded; decision 0189).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import { encodeChallenge, encodeHello } from "../../src/cluster/peer-codec.js";
import { parseMemberLists } from "../../src/cluster/placement.js";
import { clusterIdOf } from "../../src/cluster/transport.js";
import { hash32, initHash } from "../../src/hash.js";
import { PeerFrame } from "../../src/protocol/gen/piccolo.js";
import { eventually } from "../support/eventually.js";
import { freePort, startNode } from "../support/node.js";

let root: string;
before(async () => {
  await initHash();
  root = await mkdtemp(join(tmpdir(), "piccolo-badframe-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** A Raft batch whose packed small messages are not a whole number of 64-byte records. */
function malformedRaftFrame(): Uint8Array {
  const m = new capnp.Message();
  m.initRoot(PeerFrame)._initRaft()._initSmall(65);
  return new Uint8Array(m.toArrayBuffer());
}

describe("a malformed Raft frame from a peer", () => {
  for (const shards of ["0", "1"]) {
    it(`closes that peer's connection, and the member goes on serving (--shards ${shards})`, async () => {
      const [fakePeer, realPeer] = await Promise.all([freePort(), freePort()]);
      // We play n1; n2 is real. A member accepts connections from lower ids, so n2 takes ours.
      const list = `n1=127.0.0.1:${fakePeer},n2=127.0.0.1:${realPeer}`;
      const n2 = await startNode(
        ["--node-id", "n2", "--cluster", list, "--data-dir", join(root, `n2-${shards}`)].concat([
          "--partitions",
          "4",
          "--shards",
          shards,
          "--log-level",
          "warn",
        ]),
      );
      try {
        const id = clusterIdOf(parseMemberLists(list).bootstrap, 4, hash32);
        const s = connect({ host: "127.0.0.1", port: realPeer });
        const closed = new Promise<void>((resolve) => s.once("close", () => resolve()));
        s.on("error", () => {});
        s.on("data", () => {}); // n2's hello and Raft traffic
        await new Promise<void>((resolve) => s.once("connect", () => resolve()));
        // The authentication step without a cluster secret (a challenge), then the hello.
        s.write(encodeChallenge(new Uint8Array(32), false));
        s.write(encodeHello(id, 1, "", "n1", `127.0.0.1:${fakePeer}`));
        // An empty batch is a valid keep-alive: the connection stays up after it.
        const empty = new capnp.Message();
        empty.initRoot(PeerFrame)._initRaft();
        s.write(new Uint8Array(empty.toArrayBuffer()));
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(s.destroyed, false, "a well-formed frame keeps the connection");
        s.write(malformedRaftFrame());
        await Promise.race([
          closed,
          new Promise((_, reject) => setTimeout(() => reject(new Error("connection still open after 5 s")), 5000)),
        ]);
        // The log line may reach stderr a moment after the close (the logger writes asynchronously).
        await eventually(
          "the member logs why it closed the connection",
          async () => {
            assert.match(n2.stderr(), /bad peer frame; closing that connection/);
            assert.match(n2.stderr(), /not a whole number of records/);
          },
          5000,
        );
        // Still serving clients.
        const c = await n2.client({ timeoutMs: 3000 });
        assert.equal((await c.clusterInfo()).self, 2);
        await c.close();
      } finally {
        await n2.stop();
      }
    });
  }
});

/** A one-segment frame header claiming `bytes` in all. */
function claim(bytes: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(0, 0);
  b.writeUInt32LE((bytes - 8) / 8, 4);
  return b;
}

describe("a big frame on the peer port", () => {
  it("before a hello: refused from its header, logged, and the member goes on serving; after a hello: waited for", async () => {
    const [fakePeer, realPeer] = await Promise.all([freePort(), freePort()]);
    const list = `n1=127.0.0.1:${fakePeer},n2=127.0.0.1:${realPeer}`;
    const n2 = await startNode(["--node-id", "n2", "--cluster", list, "--data-dir", join(root, "n2-big")]);
    try {
      const open = async () => {
        const s = connect({ host: "127.0.0.1", port: realPeer });
        s.on("error", () => {});
        s.on("data", () => {});
        const closed = new Promise<void>((resolve) => s.once("close", () => resolve()));
        await new Promise<void>((resolve) => s.once("connect", () => resolve()));
        return { s, closed };
      };
      // A stranger: a header claiming 1 MiB (over PEER_MAX_HELLO_FRAME_BYTES), and some of it.
      const stranger = await open();
      stranger.s.write(Buffer.concat([claim(1024 * 1024), Buffer.alloc(4096)]));
      await Promise.race([
        stranger.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error("still open after 5 s")), 5000)),
      ]);
      await eventually(
        "the member logs the limit",
        async () => assert.match(n2.stderr(), /"limit":"peer-hello-frame-size"/),
        5000,
      );
      // The member: after its hello, frames up to PEER_MAX_FRAME_BYTES are waited for, not refused.
      const id = clusterIdOf(parseMemberLists(list).bootstrap, 64, hash32);
      const peer = await open();
      peer.s.write(encodeChallenge(new Uint8Array(32), false));
      peer.s.write(encodeHello(id, 1, "", "n1", `127.0.0.1:${fakePeer}`));
      peer.s.write(Buffer.concat([claim(1024 * 1024), Buffer.alloc(4096)]));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(peer.s.destroyed, false, "a greeted peer may send a big frame");
      peer.s.destroy();
      // Still serving clients.
      const c = await n2.client({ timeoutMs: 3000 });
      assert.equal((await c.clusterInfo()).self, 2);
      await c.close();
    } finally {
      await n2.stop();
    }
  });
});
