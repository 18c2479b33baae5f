/**
 * The cluster secret's challenge-response (decision 0262): how a member
 * proves to a peer that it holds the secret without ever sending it.
 *
 * Each side of a peer connection sends a fresh random nonce; each then sends
 *
 *   HMAC-SHA256(secret, "piccolo-peer-v1" | role | sender's nonce | receiver's nonce | member id | cluster id)
 *
 * with every field of fixed length, so no two different inputs share bytes.
 * - Replay: the receiver's nonce is fresh for each connection, so a proof
 *   seen on one connection is worth nothing on the next.
 * - Reflection: the role ("dialer" or "acceptor") is in the MAC and the two
 *   nonces are in sender-then-receiver order, so a proof a member sent
 *   cannot be handed back to it as the peer's.
 * - Claims: the member id and cluster id the sender claims are in the MAC,
 *   so a proof for one member cannot vouch for another.
 * What it does not do: protect the frames after the handshake. An attacker
 * on the path can let the handshake pass and then change the stream; that is
 * what --tls-cluster is for (docs/security.md).
 *
 * Pure functions (node:crypto only), no IO: the transport decides when to
 * call them (src/cluster/peer-handshake.ts).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Bytes of each side's nonce: 256 bits, never repeated in practice. */
export const PEER_NONCE_BYTES = 32;
/** Bytes of a proof: one HMAC-SHA256. */
export const PEER_PROOF_BYTES = 32;
/** The label in every proof: another protocol's MAC under the same secret never passes for ours. */
export const PEER_AUTH_LABEL = "piccolo-peer-v1";

/** Who opened the connection: the lower member id dials, the other accepts (src/cluster/transport.ts). */
export type PeerRole = "dialer" | "acceptor";

export function otherRole(r: PeerRole): PeerRole {
  return r === "dialer" ? "acceptor" : "dialer";
}

/** A fresh nonce for one connection. */
export function peerNonce(): Uint8Array {
  return new Uint8Array(randomBytes(PEER_NONCE_BYTES));
}

/** The proof a `role` side sends for `member` in cluster `clusterId` (see the file comment). */
export function peerProof(
  secret: Uint8Array,
  role: PeerRole,
  senderNonce: Uint8Array,
  receiverNonce: Uint8Array,
  member: number,
  clusterId: bigint,
): Uint8Array {
  if (senderNonce.length !== PEER_NONCE_BYTES || receiverNonce.length !== PEER_NONCE_BYTES)
    throw new Error(`a peer nonce is ${PEER_NONCE_BYTES} bytes`);
  const ids = Buffer.alloc(12);
  ids.writeUInt32BE(member >>> 0, 0);
  ids.writeBigUInt64BE(BigInt.asUintN(64, clusterId), 4);
  return new Uint8Array(
    createHmac("sha256", secret)
      .update(PEER_AUTH_LABEL)
      .update(role === "dialer" ? "\x00dialer\x00\x00" : "\x00acceptor") // both 9 bytes
      .update(senderNonce)
      .update(receiverNonce)
      .update(ids)
      .digest(),
  );
}

/** Whether `got` is `expected`, in time that does not depend on where they differ. */
export function proofMatches(expected: Uint8Array, got: Uint8Array): boolean {
  return expected.length === got.length && timingSafeEqual(expected, got);
}

/**
 * Whether `host` (as written in the member list) is this machine's loopback:
 * traffic between loopback members never leaves the machine, so a cluster of
 * them may run without a secret (the tests, `npm run cluster`). Names other
 * than "localhost" are not resolved: a name could point anywhere.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "::1" || h.toLowerCase() === "localhost";
}
