/**
 * A peer connection's authentication step, before its hello (decision 0262).
 * A pure state machine: the transport (src/cluster/transport.ts) feeds it the
 * connection's frames until it is `through`, and writes what it returns.
 *
 * Both sides, at once on connecting (after the TLS handshake, with
 * --tls-cluster):
 *
 *   challenge   a fresh nonce, and whether this member holds a cluster secret
 *
 * Then, on the peer's challenge:
 * - if the two disagree about holding a secret, the connection is refused
 *   (on both sides, each logging it): a cluster with the secret on some
 *   members only is a configuration error, and saying so beats timing out;
 * - without a secret, the step is passed: the hello comes next;
 * - with one, each side sends its proof (src/security/peer-auth.ts) for the
 *   member id and cluster id it claims, and the step is passed once the
 *   peer's proof checks out. The hello that follows must then be from the
 *   member proven (the transport checks).
 *
 * Until the step is passed, frames may be at most PEER_MAX_AUTH_STEP_FRAME_BYTES
 * (1 KiB), and nothing is decoded but these two kinds: a stranger without the
 * secret costs a socket, a nonce and a small buffer, and never reaches the
 * hello's decoding, let alone Raft or forwarding. The two nonces make every
 * proof good for one connection only (replay); the role in the MAC keeps a
 * member's own proof from being reflected back to it.
 */
import { otherRole, type PeerRole, peerNonce, peerProof, proofMatches } from "../security/peer-auth.js";
import { type AuthFrame, decodeAuthFrame, encodeChallenge, encodeProof, PeerProtocolError } from "./peer-codec.js";

/**
 * A peer refused during the authentication step. `reason` names a class of
 * refusal (for rate-limited logging: a stranger in a loop must not flood the
 * log); `member` is the member the peer claimed, when it said.
 */
export class PeerRefused extends Error {
  override name = "PeerRefused";
  constructor(
    message: string,
    readonly reason: "secret" | "mixed" | "protocol" | "tls",
    readonly member: number | null = null,
  ) {
    super(message);
  }
}

export interface HandshakeOptions {
  role: PeerRole;
  /** This member's id and the cluster id, as its proof claims them. */
  self: number;
  clusterId: bigint;
  /** The cluster secret's bytes; null: this member has none. */
  secret: Uint8Array | null;
}

export class Handshake {
  private readonly nonce = peerNonce();
  private peerNonce: Uint8Array | null = null;
  /** The step is passed: the next frame is the hello. */
  through = false;
  /** The member the peer proved to be (with a secret), once through; null without a secret. */
  proven: number | null = null;

  constructor(private readonly o: HandshakeOptions) {}

  /** The first frame this side sends. */
  challenge(): Uint8Array {
    return encodeChallenge(this.nonce, this.o.secret !== null);
  }

  /**
   * Takes the peer's next frame while not through; returns the frame to send
   * back (this side's proof) or null. Throws PeerRefused.
   */
  take(frame: Uint8Array): Uint8Array | null {
    let f: AuthFrame;
    try {
      f = decodeAuthFrame(frame);
    } catch (err) {
      if (err instanceof PeerProtocolError) throw new PeerRefused(err.message, "protocol");
      throw err;
    }
    if (this.peerNonce === null) return this.onChallenge(f);
    return this.onProof(f);
  }

  private onChallenge(f: AuthFrame): Uint8Array | null {
    if (f.kind !== "challenge") throw new PeerRefused("a proof before its challenge", "protocol");
    const secret = this.o.secret;
    if (f.hasSecret && secret === null)
      throw new PeerRefused(
        "the peer proves a cluster secret and this member has none: give every member the same --cluster-secret-file, or none",
        "mixed",
      );
    if (!f.hasSecret && secret !== null)
      throw new PeerRefused(
        "the peer has no cluster secret and this member has one: give every member the same --cluster-secret-file, or none",
        "mixed",
      );
    this.peerNonce = f.nonce;
    if (secret === null) {
      this.through = true;
      return null;
    }
    const proof = peerProof(secret, this.o.role, this.nonce, f.nonce, this.o.self, this.o.clusterId);
    return encodeProof(this.o.self, this.o.clusterId, proof);
  }

  private onProof(f: AuthFrame): null {
    if (f.kind !== "proof") throw new PeerRefused("a second challenge", "protocol");
    const expected = peerProof(
      this.o.secret!,
      otherRole(this.o.role),
      this.peerNonce!,
      this.nonce,
      f.member,
      f.clusterId,
    );
    if (!proofMatches(expected, f.proof)) throw new PeerRefused("failed the cluster secret check", "secret", f.member);
    // Only after the proof: a stranger learns nothing from which check failed.
    if (f.clusterId !== this.o.clusterId)
      throw new PeerRefused("cluster id differs (another member list?)", "protocol", f.member);
    this.proven = f.member;
    this.through = true;
    return null;
  }
}
