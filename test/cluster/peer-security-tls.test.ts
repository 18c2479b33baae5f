// Mutual TLS on the peer port (--tls-cluster, decision 0262), with real
// member processes on loopback and certificates made by scripts/make-certs.sh:
// a three-member cluster over TLS serves; on the accepting side, a
// certificate from another CA is refused in the handshake, a valid
// certificate that names another member than the one claimed is refused
// after the hello, and plaintext is refused; on the dialing side, a member
// refuses a peer whose certificate does not name the member it dialed, or
// comes from another CA. Every refusal is logged.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect as tlsConnect, createServer as tlsCreateServer } from "node:tls";
import { encodeChallenge, encodeHello } from "../../src/cluster/peer-codec.js";
import { parseMemberLists } from "../../src/cluster/placement.js";
import { clusterIdOf } from "../../src/cluster/transport.js";
import { hash32, initHash } from "../../src/hash.js";
import { peerNonce } from "../../src/security/peer-auth.js";
import { type Certs, makeCerts, tlsFlags } from "../support/certs.js";
import { memberList, type RunningNode, startMember, stopAll } from "../support/node.js";
import { closedWithin, logged, peerPort, serves } from "./peer-security-support.js";

let root: string;
let certs: Certs;
/** Another CA, with a certificate named like a member: trusted by nobody in the cluster. */
let foreign: Certs;
before(async () => {
  await initHash();
  root = await mkdtemp(join(tmpdir(), "piccolo-peer-tls-"));
  certs = makeCerts("n1", "n2", "n3", "n9");
  foreign = makeCerts("n1", "n2");
});
after(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(certs.dir, { recursive: true, force: true });
  await rm(foreign.dir, { recursive: true, force: true });
});

/** node:tls options presenting `name`'s certificate from `from`, trusting our CA. */
function tlsAs(from: Certs, name: string) {
  const c = from.cert(name);
  return { cert: readFileSync(c.cert), key: readFileSync(c.key), ca: readFileSync(certs.ca) };
}

/** A native client's options for these nodes: their client ports speak TLS with the same files. */
const clientTls = () => ({ tls: tlsAs(certs, "n1") });

/** The socket closes within `ms` (at once when it already has). */
function socketClosedWithin(s: Socket, ms: number, what: string): Promise<void> {
  if (s.destroyed) return Promise.resolve();
  return closedWithin(new Promise<void>((resolve) => s.once("close", () => resolve())), ms, what);
}

describe("a cluster over mutual TLS", () => {
  let list: string;
  const nodes: RunningNode[] = [];
  before(async () => {
    list = await memberList(3);
    nodes.push(
      ...(await Promise.all(
        [0, 1, 2].map((i) =>
          startMember(list, root, i, [...tlsFlags(certs, `n${i + 1}`), "--tick-ms", "20", "--log-level", "warn"]),
        ),
      )),
    );
  });
  after(async () => {
    await stopAll(nodes);
  });

  it("serves: written through one member, read through another", { timeout: 60_000 }, async () => {
    await serves(nodes[0]!, nodes[2]!, "over-tls", clientTls());
    await serves(nodes[1]!, nodes[0]!, "over-tls-2", clientTls());
    for (const n of nodes) assert.doesNotMatch(n.stderr(), /peer refused/, "members refuse nobody of their own");
  });

  it("refuses a certificate from another CA during the handshake", { timeout: 30_000 }, async () => {
    const s = tlsConnect({ host: "127.0.0.1", port: peerPort(list, "n3"), ...tlsAs(foreign, "n1") });
    s.on("error", () => {});
    s.on("data", () => {}); // with TLS 1.3 the client may finish first; the member's alert and close follow
    await socketClosedWithin(s, 5_000, "another CA");
    await logged(nodes[2]!, /"limit":"peer-refused-tls-accept".*"msg":"peer refused: TLS handshake failed/);
  });

  it("refuses a valid certificate that names another member than the hello claims", { timeout: 30_000 }, async () => {
    // n2's own certificate, claiming to be n1 to n3 (n1 dials n3, so n3 would take n1's connection).
    const s = tlsConnect({ host: "127.0.0.1", port: peerPort(list, "n3"), ...tlsAs(certs, "n2") });
    s.on("error", () => {});
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    await new Promise<void>((resolve) => s.once("secureConnect", () => resolve()));
    const id = clusterIdOf(parseMemberLists(list).bootstrap, 64, hash32);
    s.write(encodeChallenge(peerNonce(), false));
    s.write(encodeHello(id, 1, "", "n1", `127.0.0.1:${peerPort(list, "n1")}`));
    await socketClosedWithin(s, 5_000, "a certificate naming n2, a hello saying n1");
    await logged(
      nodes[2]!,
      /"claims":1,"certificateNames":\["n2".*"msg":"peer refused: its certificate does not name member n1"/,
    );
    assert.equal(Buffer.concat(got).length <= 64, true, "n3 sent its challenge and no hello");
  });

  it("refuses plaintext on the TLS peer port", { timeout: 30_000 }, async () => {
    const s = connect({ host: "127.0.0.1", port: peerPort(list, "n2") });
    s.on("error", () => {});
    s.on("data", () => {});
    await new Promise<void>((resolve) => s.once("connect", () => resolve()));
    s.write(encodeChallenge(peerNonce(), false));
    await socketClosedWithin(s, 5_000, "plaintext");
    await logged(nodes[1]!, /peer refused: not TLS on a TLS peer port/);
  });

  it("still serves after all of them", { timeout: 60_000 }, async () => {
    await serves(nodes[2]!, nodes[1]!, "after-the-strangers", clientTls());
  });
});

describe("a member dialing over TLS", () => {
  it("refuses a peer whose certificate names another member, or comes from another CA", {
    timeout: 60_000,
  }, async () => {
    const list = await memberList(2);
    const port = peerPort(list, "n2");
    // n2 is an impostor in this process; n1 (lower id) dials it.
    const impostor = async (c: { cert: Buffer; key: Buffer; ca: Buffer }) => {
      const seen: Buffer[] = [];
      const server = tlsCreateServer({ ...c, requestCert: true, rejectUnauthorized: false }, (s) => {
        s.on("error", () => {});
        s.on("data", (d: Buffer) => seen.push(d));
      });
      server.on("tlsClientError", () => {});
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
      return { seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
    };
    let fake = await impostor(tlsAs(certs, "n9"));
    const n1 = await startMember(list, join(root, "dial"), 0, [...tlsFlags(certs, "n1"), "--log-level", "warn"]);
    try {
      await logged(
        n1,
        /"to":"n2".*"certificateNames":\["n9".*"msg":"peer refused: its certificate does not name member n2"/,
      );
      assert.equal(Buffer.concat(fake.seen).length, 0, "n1 sent nothing to a peer its certificate does not name");
      await fake.close();
      fake = await impostor(tlsAs(foreign, "n2"));
      await logged(n1, /"limit":"peer-refused-tls-dial","to":"n2".*"msg":"peer refused: TLS handshake failed/);
      assert.equal(Buffer.concat(fake.seen).length, 0, "nor to one with a certificate from another CA");
    } finally {
      await n1.stop();
      await fake.close();
    }
  });
});
