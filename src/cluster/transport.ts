/**
 * The peer transport: Raft traffic between members, over one TCP connection
 * per member pair (decision 0181).
 *
 * - The member with the lower id dials; the other accepts. Both directions
 *   use the one connection. The dialer reconnects with exponential backoff
 *   (PEER_BACKOFF_MIN_MS doubling to PEER_BACKOFF_MAX_MS) for as long as the
 *   transport runs.
 * - With --tls-cluster (`tls`), the connection is mutual TLS: the listener
 *   and the dialer both present a certificate and take only one the
 *   cluster's CA signed, and the member at the other end must be named by
 *   it (its CN or a DNS name): the dialer checks the accepting member's
 *   certificate before sending anything; the acceptor checks the dialer's
 *   against the member its hello claims. Addresses are not checked (member
 *   lists hold IPs as often as names): the identity that matters is the
 *   member's. No plaintext is accepted on a TLS peer port.
 * - Each side's first frame is a challenge: the authentication step
 *   (src/cluster/peer-handshake.ts, decision 0262), where both sides prove
 *   they hold the cluster secret, when there is one, without sending it.
 *   Frames are limited to PEER_MAX_AUTH_STEP_FRAME_BYTES until it is passed.
 * - Then a hello from each side (the dialer first; the acceptor answers once
 *   it has checked it) with the cluster id (a hash of the member list and
 *   partition count) and its member id. A peer configured differently, or
 *   claiming to be someone it is not (another member than it proved, or its
 *   certificate names), is refused: the connection is closed and the refusal
 *   logged and counted.
 * - Sends never block. A frame for a peer that is not connected (down, or
 *   not yet greeted) is dropped at once, and counted (stats().dropped); a
 *   connected peer has a bounded send queue (PEER_MAX_QUEUED_BYTES), and
 *   frames that do not fit while it is slow (or paused) are dropped and
 *   counted too. That is Raft's contract with its network: messages may be
 *   lost, and the protocol retransmits (heartbeats, probes, appends from the
 *   match index), so a dead or slow peer costs bounded memory and never
 *   holds up the others. etcd's rafthttp makes the same choice. Queuing for
 *   a dead peer instead (as this transport once did) stores stale traffic
 *   and delivers it all at once when the peer returns: a member restarted
 *   after ten seconds received thousands of stale heartbeats per group in
 *   one burst, and answered them all.
 * - Receiving decodes each frame strictly (src/cluster/peer-codec.ts); a
 *   malformed frame closes that connection (and only it).
 * - Until a connection's hello is verified, its frames may be at most
 *   PEER_MAX_HELLO_FRAME_BYTES (a hello is under 1 KiB): anyone can reach
 *   the peer port, and must not make us buffer a PEER_MAX_FRAME_BYTES frame
 *   before saying who it is. A bigger frame closes the connection from its
 *   header alone; like every limit hit, it is logged (rate-limited), and so
 *   are refusals in the authentication step and TLS handshakes that fail
 *   (a stranger in a loop must not flood the log).
 *
 * - A member joined after bootstrap (`--joined`) may be unknown to members
 *   started before it. It *announces* itself: every PEER_ANNOUNCE_EVERY_MS,
 *   to each lower-id member that has not connected to it, it opens a
 *   connection, passes the authentication step as a dialer, and says hello
 *   with its name and peer address. A member that
 *   does not know it asks `onJoin` (which checks and records it), adds it,
 *   closes the announcing connection and dials it, as the rule says.
 *
 * - A member forgotten for good (`piccolo cluster forget`) is dropped: never
 *   dialed again, and refused when it connects, after the authentication
 *   step: the refusing member answers with its own hello, whose forgotten
 *   list names it, then closes. Every hello carries that list, so members
 *   that were down when the operator forgot someone learn it from the
 *   first peer they greet (`onForgotten`), and a forgotten member that
 *   comes back learns that it is one (`onSelfForgotten`: it stops).
 *   Decision 0214.
 *
 * This is the node's PeerNetwork (src/cluster/peer-network.ts). The chaos
 * harness's fault injection is not here: it is a decorator over that
 * interface (src/chaos/peer-faults.ts), installed only in tests.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import {
  createSecureContext,
  type SecureContext,
  type TLSSocket,
  type TlsOptions,
  connect as tlsConnect,
  createServer as tlsCreateServer,
} from "node:tls";
import type { Logger } from "pino";
import { LimitLog } from "../limit-log.js";
import {
  PEER_CLOSE_MAX_MS,
  PEER_MAX_AUTH_STEP_FRAME_BYTES,
  PEER_MAX_FRAME_BYTES,
  PEER_MAX_HELLO_FRAME_BYTES,
  PEER_MAX_UNAUTHENTICATED_CONNECTIONS,
} from "../limits.js";
import { FrameReader } from "../protocol/framing.js";
import type { PeerRole } from "../security/peer-auth.js";
import { certificateNames } from "../security/tls-files.js";
import { listenFailure } from "../start-failure.js";
import {
  type DecodedFrame,
  decodePeerFrame,
  encodeHello,
  isRaftFrame,
  encodeRaftFrames,
  type GroupMessage,
  PeerProtocolError,
} from "./peer-codec.js";
import { Handshake, PeerRefused } from "./peer-handshake.js";
import type { PeerNetwork } from "./peer-network.js";
import { type ForgottenMember, isForgotten, type Member } from "./placement.js";

/** Bytes queued for one peer before new frames are dropped. */
export const PEER_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
export const PEER_BACKOFF_MIN_MS = 50;
export const PEER_BACKOFF_MAX_MS = 2_000;
/** How long a connection may take to say hello before it is closed. */
export const PEER_HELLO_TIMEOUT_MS = 5_000;
/** How often a joined member announces itself to lower-id members not connected to it. */
export const PEER_ANNOUNCE_EVERY_MS = 1_000;

export interface TransportOptions {
  self: Member;
  members: readonly Member[];
  clusterId: bigint;
  /** host:port this member's clients connect to, sent in every hello ("" when unknown). */
  clientAddress?: () => string;
  /** This member joined after bootstrap: announce it to lower-id members that do not dial it. */
  announce?: boolean;
  /**
   * A hello from a member not in our list, with our cluster id: true adds it
   * (the caller checked it and recorded it durably), false refuses it.
   */
  onJoin?: (m: Member) => boolean;
  /** Called with every batch received from a peer, in order. */
  onMessages: (from: number, messages: GroupMessage[]) => void;
  /**
   * When set, Raft frames are handed over undecoded (the caller decodes them
   * elsewhere, e.g. on a group worker, and calls reject() if one is bad);
   * onMessages then sees none.
   */
  onRaftFrame?: (from: number, frame: Uint8Array) => void;
  /** Called when a peer's connection is lost (pending requests to it will not be answered). */
  onPeerDown?: (peer: number) => void;
  /** Members forgotten for good: listed in every hello, refused when they connect (decision 0214). */
  forgotten?: () => readonly ForgottenMember[];
  /** A peer's hello names a member not in `forgotten()`: forget it too. */
  onForgotten?: (m: ForgottenMember, from: number) => void;
  /** A peer of this cluster says this member is forgotten: it is no longer a member. */
  onSelfForgotten?: (by: number, forgotten: readonly ForgottenMember[]) => void;
  /** Called with every other frame (forwarded requests and their replies). */
  onFrame?: (from: number, frame: Exclude<DecodedFrame, { kind: "hello" | "raft" }>) => void;
  logger?: Logger;
  maxQueuedBytes?: number;
  /** Mutual TLS on the peer port (src/security/tls-files.ts, peerOptions); absent or null: plaintext. */
  tls?: TlsOptions | null;
  /** The cluster secret each side proves it holds (src/cluster/peer-handshake.ts); absent or null: none. */
  secret?: string | null;
}

export interface PeerStats {
  member: number;
  connected: boolean;
  queuedBytes: number;
  sentFrames: number;
  receivedFrames: number;
  dropped: number;
  refused: number;
  reconnects: number;
  /** host:port the peer's clients connect to, from its last hello ("" until it said). */
  clientAddress: string;
}

class Peer {
  socket: Socket | null = null;
  /** Hello received on the current socket: traffic may flow. */
  ready = false;
  queue: Uint8Array[] = [];
  queuedBytes = 0;
  backoffMs = PEER_BACKOFF_MIN_MS;
  timer: NodeJS.Timeout | null = null;
  /** When a frame last arrived from the peer (ms; 0: never), and when one was last queued for it. */
  heardAt = 0;
  sentAt = 0;
  /** A flush is queued for the end of this event-loop turn. */
  flushQueued = false;
  stats: PeerStats;
  constructor(readonly member: Member) {
    this.stats = {
      member: member.id,
      connected: false,
      queuedBytes: 0,
      sentFrames: 0,
      receivedFrames: 0,
      dropped: 0,
      refused: 0,
      reconnects: 0,
      clientAddress: "",
    };
  }
}

export class PeerTransport implements PeerNetwork {
  private readonly peers = new Map<number, Peer>();
  private server: Server | null = null;
  private stopped = false;
  private readonly maxQueuedBytes: number;
  /** Connections accepted whose hello has not arrived yet. */
  private readonly pending = new Set<Socket>();
  private announceTimer: NodeJS.Timeout | null = null;
  private readonly limits: LimitLog;
  private readonly tls: TlsOptions | null;
  /** With TLS: the dialer's certificate, key and CA, made once for every connection this member opens. */
  private readonly dialContext: SecureContext | null;
  private readonly secret: Uint8Array | null;

  constructor(private readonly o: TransportOptions) {
    this.maxQueuedBytes = o.maxQueuedBytes ?? PEER_MAX_QUEUED_BYTES;
    this.tls = o.tls ?? null;
    this.dialContext = this.tls === null ? null : createSecureContext(this.tls);
    this.secret = o.secret === undefined || o.secret === null ? null : new TextEncoder().encode(o.secret);
    this.limits = new LimitLog((level, message, detail) => o.logger?.[level](detail, message));
    for (const m of o.members) if (m.id !== o.self.id) this.peers.set(m.id, new Peer(m));
  }

  /** Listens on the member's own address and dials the peers it should dial. Resolves with the port. */
  async start(): Promise<number> {
    if (this.tls === null) this.server = createServer((s) => this.accept(s));
    else {
      // "secureConnection": the handshake is done and the dialer's certificate checked against the CA.
      const server = tlsCreateServer(this.tls, (s) => this.accept(s));
      server.on("tlsClientError", (err, s) => this.tlsFailed(err, `${s.remoteAddress}:${s.remotePort}`, null));
      this.server = server;
    }
    await new Promise<void>((resolve, reject) => {
      const { host, port, name } = this.o.self;
      this.server!.once("error", (err) =>
        reject(listenFailure(err, `${host}:${port}`, `member ${name}'s peer port, from --cluster`)),
      );
      this.server!.listen(port, host, () => resolve());
    });
    for (const p of this.peers.values()) if (this.o.self.id < p.member.id) this.dial(p);
    if (this.o.announce) {
      this.announceTimer = setInterval(() => {
        for (const p of this.peers.values()) if (p.member.id < this.o.self.id && !p.ready) this.announceTo(p);
      }, PEER_ANNOUNCE_EVERY_MS);
      this.announceTimer.unref();
    }
    return (this.server.address() as { port: number }).port;
  }

  /** Members known so far (the list given at start, and those learned since). */
  members(): Member[] {
    return [...this.peers.values()].map((p) => p.member);
  }

  /**
   * A one-shot connection that passes the authentication step, says hello
   * and expects to be closed (see the file comment).
   */
  private announceTo(p: Peer): void {
    if (this.stopped) return;
    const s = this.connectTo(p);
    const timer = setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS);
    s.once("close", () => clearTimeout(timer));
    s.once(this.tls === null ? "connect" : "secureConnect", () => {
      if (!this.dialedIsNamed(s, p)) return;
      this.readFrames(s, p, timer, this.handshake(s, "dialer"), true);
    });
  }

  /**
   * A connection to `p`'s peer port: TCP, or TLS with our certificate. The
   * usual check of the server's name against the host dialed is replaced by
   * dialedIsNamed(): member lists hold IPs as often as names, and what must
   * match is the member. A dial that has not connected (and, with TLS,
   * finished its handshake) within PEER_HELLO_TIMEOUT_MS is given up and
   * retried. A TLS handshake that fails is logged (rate-limited): a
   * certificate from another CA is a configuration error someone must see.
   */
  private connectTo(p: Peer): Socket {
    const { host, port, name } = p.member;
    let s: Socket;
    if (this.tls === null) s = connect({ host, port, noDelay: true });
    else {
      s = tlsConnect({
        secureContext: this.dialContext!,
        host,
        port,
        servername: name,
        rejectUnauthorized: true,
        checkServerIdentity: () => undefined,
      });
      s.setNoDelay(true);
      let tcpUp = false;
      let secured = false;
      s.once("connect", () => {
        tcpUp = true;
      });
      s.once("secureConnect", () => {
        secured = true;
      });
      // A refused connection (the peer is down) is not worth a line; a handshake that fails is.
      s.on("error", (err) => {
        if (tcpUp && !secured) this.tlsFailed(err, `${host}:${port}`, name);
      });
    }
    s.on("error", () => {});
    s.setTimeout(PEER_HELLO_TIMEOUT_MS, () => s.destroy());
    s.once(this.tls === null ? "connect" : "secureConnect", () => s.setTimeout(0));
    return s;
  }

  /** With TLS: whether the certificate of the member dialed names it; when not, refused (logged) and closed. */
  private dialedIsNamed(s: Socket, p: Peer): boolean {
    if (this.tls === null) return true;
    const names = certificateNames(s as TLSSocket);
    if (names.includes(p.member.name)) return true;
    p.stats.refused++;
    this.limits.hit("peer-refused-tls-name", `peer refused: its certificate does not name member ${p.member.name}`, {
      to: p.member.name,
      address: `${p.member.host}:${p.member.port}`,
      certificateNames: names,
    });
    s.destroy();
    return false;
  }

  /** A TLS handshake on the peer port failed (either side): log it, rate-limited. */
  private tlsFailed(err: Error, address: string, member: string | null): void {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    // A plaintext dialer's first bytes are not a TLS record; OpenSSL says "wrong version number" or "http request".
    const plaintext = /WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL/.test(code);
    this.limits.hit(
      plaintext ? "peer-refused-plaintext" : member === null ? "peer-refused-tls-accept" : "peer-refused-tls-dial",
      plaintext
        ? "peer refused: not TLS on a TLS peer port (a member without --tls-cluster?)"
        : "peer refused: TLS handshake failed (a certificate the cluster's CA did not sign?)",
      member === null ? { from: address, code, err: err.message } : { to: member, address, code, err: err.message },
    );
  }

  /** The authentication step for a new connection, its challenge sent at once. */
  private handshake(s: Socket, role: PeerRole): Handshake {
    const hs = new Handshake({ role, self: this.o.self.id, clusterId: this.o.clusterId, secret: this.secret });
    s.write(hs.challenge());
    return hs;
  }

  private hello(): Uint8Array {
    return encodeHello(
      this.o.clusterId,
      this.o.self.id,
      this.o.clientAddress?.() ?? "",
      this.o.self.name,
      `${this.o.self.host}:${this.o.self.port}`,
      this.forgotten(),
    );
  }

  private forgotten(): readonly ForgottenMember[] {
    return this.o.forgotten?.() ?? [];
  }

  /** A hello (from a member proven to be of this cluster) names this member as forgotten. */
  private namesSelf(f: Extract<DecodedFrame, { kind: "hello" }>): boolean {
    return isForgotten(f.forgotten, this.o.self);
  }

  /** This member was forgotten, as peer `by` says: tell the member (it stops), close the connection. */
  private selfForgotten(s: Socket, f: Extract<DecodedFrame, { kind: "hello" }>): void {
    s.destroy();
    this.o.onSelfForgotten?.(f.member, f.forgotten);
  }

  /**
   * A forgotten member connected: it gets our hello, which names it, so it
   * learns why (and stops), then the connection closes. Logged,
   * rate-limited: a forgotten member left running would otherwise redial
   * into the log every two seconds.
   */
  private refuseForgotten(s: Socket, f: Extract<DecodedFrame, { kind: "hello" }>): void {
    this.limits.hit("peer-refused-forgotten", "peer refused: a forgotten member (piccolo cluster forget) connected", {
      from: `${s.remoteAddress}:${s.remotePort}`,
      member: f.member,
      name: f.name,
    });
    this.closeWith(s, this.hello());
  }

  /** Writes `frame`, then closes: gracefully (so the peer reads it), forcibly if it has not after a while. */
  private closeWith(s: Socket, frame: Uint8Array): void {
    s.end(frame);
    setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS).unref();
  }

  /** The members a peer's hello says it has forgotten and this member has not: forget them too. */
  private adoptForgotten(f: Extract<DecodedFrame, { kind: "hello" }>): void {
    if (this.o.onForgotten === undefined) return;
    const known = this.forgotten();
    for (const m of f.forgotten) {
      if (m.id === f.member) continue; // a member cannot have forgotten itself: nonsense, ignored
      if (known.some((k) => k.id === m.id && k.name === m.name)) continue;
      this.o.onForgotten(m, f.member);
    }
  }

  /**
   * Drops `peer` for good (see the file comment). On a live connection the
   * peer is told first: a last hello whose forgotten list names it (a
   * second hello is otherwise a protocol error; this one means "you were
   * forgotten"), then the connection is closed.
   */
  forget(peer: number): void {
    const p = this.peers.get(peer);
    if (p === undefined) return;
    this.peers.delete(peer);
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
    const s = p.socket;
    if (s === null) return;
    const live = p.ready && !s.destroyed;
    p.ready = false;
    p.queue = [];
    p.queuedBytes = 0;
    if (live) this.closeWith(s, this.hello());
    else s.destroy();
  }

  /** A hello from a member not in our list: learn it if it fits, then dial it. */
  private learn(f: Extract<DecodedFrame, { kind: "hello" }>): boolean {
    if (this.o.onJoin === undefined || f.name === "" || f.peerAddress === "" || f.member === this.o.self.id)
      return false;
    const a = /^(.+):(\d+)$/.exec(f.peerAddress)!;
    const m: Member = { name: f.name, id: f.member, host: a[1]!, port: Number(a[2]) };
    if (isForgotten(this.forgotten(), m)) return false;
    const all = [this.o.self, ...this.members()];
    if (all.some((x) => x.id === m.id || x.name === m.name || (x.host === m.host && x.port === m.port))) return false;
    if (!this.o.onJoin(m)) return false;
    const p = new Peer(m);
    this.peers.set(m.id, p);
    this.o.logger?.info({ member: m.name, id: m.id, address: f.peerAddress }, "learned a joined member");
    if (this.o.self.id < m.id) this.dial(p);
    return true;
  }

  /**
   * Queues `messages` for a peer, as one frame or several (encodeRaftFrames).
   * Returns false when a frame was dropped (queue full, unknown peer, not
   * connected): Raft resends what a lost frame carried.
   */
  send(to: number, messages: readonly GroupMessage[]): boolean {
    if (messages.length === 0) return false;
    let queued = true;
    for (const frame of encodeRaftFrames(messages)) queued = this.sendFrame(to, frame) && queued;
    return queued;
  }

  /** Queues one encoded frame for a peer; false when dropped (as send()). */
  sendFrame(to: number, frame: Uint8Array): boolean {
    const p = this.peers.get(to);
    if (p === undefined || this.stopped) return false;
    if (!p.ready) {
      // Not connected: whatever this frame says will be stale by the time the peer is back.
      p.stats.dropped++;
      return false;
    }
    // Bytes waiting: ours, and those the socket has taken but the peer has not read (a slow peer).
    // A frame larger than the whole limit (a big partition's snapshot) is taken when nothing waits,
    // so it goes out alone instead of never: the limit bounds the queue, not one message.
    const waiting = p.queuedBytes + (p.socket?.writableLength ?? 0);
    if (waiting > 0 && waiting + frame.length > this.maxQueuedBytes) {
      p.stats.dropped++;
      return false;
    }
    p.queue.push(frame);
    p.queuedBytes += frame.length;
    p.sentAt = Date.now();
    if (!p.flushQueued) {
      // One write (one syscall, one writev) per peer for every frame of this turn: with the groups
      // on workers, a turn delivers many small frames (each worker's record, each forwarded request).
      p.flushQueued = true;
      queueMicrotask(() => {
        p.flushQueued = false;
        this.flush(p);
      });
    }
    return true;
  }

  /**
   * Member liveness (src/cluster/liveness.ts): whether a frame of any kind
   * came from the peer, on a greeted connection, within the last `ms`.
   */
  heardWithin(peer: number, ms: number): boolean {
    const p = this.peers.get(peer);
    return p?.ready === true && Date.now() - p.heardAt < ms;
  }

  /**
   * Whether a frame was queued for the peer within the last `ms`: member
   * liveness (src/cluster/liveness.ts) pings the peers it has been silent to.
   */
  sentWithin(peer: number, ms: number): boolean {
    const p = this.peers.get(peer);
    return p !== undefined && Date.now() - p.sentAt < ms;
  }

  /** A peer sent a frame that could not be decoded (found out later, off this thread): drop its connection. */
  reject(peer: number, why: string): void {
    const p = this.peers.get(peer);
    if (p === undefined || p.socket === null) return;
    this.o.logger?.warn({ from: peer, why }, "bad peer frame; closing that connection");
    p.socket.destroy();
  }

  /** Whether a peer's connection is up and greeted (frames to it go out now, not later). */
  isConnected(peer: number): boolean {
    return this.peers.get(peer)?.ready ?? false;
  }

  stats(): PeerStats[] {
    return [...this.peers.values()].map((p) => ({ ...p.stats, connected: p.ready, queuedBytes: p.queuedBytes }));
  }

  /**
   * Closes every connection gently: what is queued is written, then a FIN
   * (the peer closes its side in turn), so the last answers to forwarded
   * requests arrive; a reset could drop them. At most PEER_CLOSE_MAX_MS.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.announceTimer !== null) clearInterval(this.announceTimer);
    // First no new connections: a peer that sees its connection end dials again at once, and the
    // listener's close waits for every connection it accepted.
    const listenerClosed = new Promise<void>((resolve) =>
      this.server === null ? resolve() : this.server.close(() => resolve()),
    );
    for (const s of this.pending) s.destroy();
    const closing: Promise<void>[] = [];
    for (const p of this.peers.values()) {
      if (p.timer !== null) clearTimeout(p.timer);
      this.flush(p);
      const s = p.socket;
      if (s !== null && !s.destroyed) closing.push(endGently(s, PEER_CLOSE_MAX_MS));
    }
    await Promise.all(closing);
    await listenerClosed;
  }

  /** Whether `p` is still a peer (not forgotten since: src/cluster/transport.ts, forget). */
  private current(p: Peer): boolean {
    return this.peers.get(p.member.id) === p;
  }

  private dial(p: Peer): void {
    if (this.stopped || !this.current(p)) return;
    const s = this.connectTo(p);
    // The backoff is reset when the peer is greeted, not on connect: a peer that refuses us (another
    // secret, another member list) would otherwise be redialled every PEER_BACKOFF_MIN_MS for ever.
    s.once(this.tls === null ? "connect" : "secureConnect", () => this.attach(s, p));
    s.once("close", () => {
      if (p.socket === s || p.socket === null) this.detach(p, s);
      this.redial(p);
    });
  }

  private redial(p: Peer): void {
    if (this.stopped || p.timer !== null || !this.current(p)) return;
    p.stats.reconnects++;
    p.timer = setTimeout(() => {
      p.timer = null;
      this.dial(p);
    }, p.backoffMs);
    p.backoffMs = Math.min(p.backoffMs * 2, PEER_BACKOFF_MAX_MS);
  }

  /** An incoming connection (with TLS: its handshake done): who it is, we learn from its proof and hello. */
  private accept(s: Socket): void {
    if (this.pending.size >= PEER_MAX_UNAUTHENTICATED_CONNECTIONS) {
      this.limits.hit(
        "peer-unauthenticated-connections",
        "peer refused: too many connections that have not said who they are",
        {
          from: `${s.remoteAddress}:${s.remotePort}`,
          max: PEER_MAX_UNAUTHENTICATED_CONNECTIONS,
        },
      );
      s.destroy();
      return;
    }
    s.setNoDelay(true);
    this.pending.add(s);
    s.on("error", () => {});
    s.once("close", () => this.pending.delete(s));
    const timer = setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS);
    s.once("close", () => clearTimeout(timer));
    this.readFrames(s, null, timer, this.handshake(s, "acceptor"), false);
  }

  /** A dialed connection is ours for `p`: check its certificate, send our challenge, then read. */
  private attach(s: Socket, p: Peer): void {
    p.socket?.destroy();
    p.socket = s;
    p.ready = false;
    if (!this.dialedIsNamed(s, p)) return;
    const timer = setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS);
    s.once("close", () => clearTimeout(timer));
    this.readFrames(s, p, timer, this.handshake(s, "dialer"), false);
  }

  /** A peer refused in the authentication step: logged (rate-limited per reason), counted, closed. */
  private refuseAuth(s: Socket, e: PeerRefused, dialed: Peer | null): void {
    const claimed = e.member === null ? dialed : (this.peers.get(e.member) ?? null);
    if (claimed !== null) claimed.stats.refused++;
    this.limits.hit(`peer-refused-${e.reason}`, `peer refused: ${e.message}`, {
      from: `${s.remoteAddress}:${s.remotePort}`,
      ...(dialed === null ? {} : { dialed: dialed.member.name }),
      ...(e.member === null ? {} : { claims: e.member }),
    });
    s.destroy();
  }

  /**
   * Reads a connection's frames: the authentication step (`hs`), the hello,
   * then traffic. `announce`: a one-shot announcing connection, which says
   * hello once through and reads nothing after.
   */
  private readFrames(
    s: Socket,
    dialed: Peer | null,
    helloTimer: NodeJS.Timeout,
    hs: Handshake,
    announce: boolean,
  ): void {
    // Tiny frames only until the authentication step is passed, small ones until the hello is verified
    // (see the file comment).
    const reader = new FrameReader(PEER_MAX_AUTH_STEP_FRAME_BYTES);
    let peer: Peer | null = null;
    s.on("data", (chunk: Buffer) => {
      reader.push(chunk, (frame) => {
        if (s.destroyed) return;
        try {
          if (!hs.through) {
            const reply = hs.take(new Uint8Array(frame));
            if (reply !== null) s.write(reply);
            if (hs.through) {
              reader.maxFrameBytes = PEER_MAX_HELLO_FRAME_BYTES;
              // The dialer says hello first, and only to a peer that passed: nothing about this member
              // (its id, its addresses) goes to one that did not.
              if (dialed !== null) s.write(this.hello());
            }
            return;
          }
          if (announce) {
            // The announced-to member closes this connection once it has read our hello; if it has
            // forgotten us, it says so in a hello first.
            const a = decodePeerFrame(frame);
            if (
              a.kind === "hello" &&
              a.clusterId === this.o.clusterId &&
              (hs.proven === null || hs.proven === a.member)
            )
              if (this.namesSelf(a)) this.selfForgotten(s, a);
            return;
          }
          // A Raft frame for a caller that decodes them elsewhere is passed on whole (null here).
          const passThrough = peer !== null && this.o.onRaftFrame !== undefined && isRaftFrame(frame);
          const f = passThrough ? null : decodePeerFrame(frame);
          if (f?.kind === "hello") {
            if (peer !== null) {
              // A peer that has just forgotten this member says so in a last hello (forget()).
              if (f.member === peer.member.id && this.namesSelf(f)) return this.selfForgotten(s, f);
              throw new PeerProtocolError("a second hello on one connection");
            }
            const claimed = this.peers.get(f.member);
            const refuse = (why: string) => {
              if (claimed) claimed.stats.refused++;
              this.o.logger?.warn({ from: f.member, why }, "peer refused");
              s.destroy();
            };
            if (f.clusterId !== this.o.clusterId) return refuse("cluster id differs (another member list?)");
            if (hs.proven !== null && hs.proven !== f.member)
              return refuse(`proved to be member ${hs.proven}, hello says ${f.member}`);
            // With TLS, the acceptor checks that the dialer's certificate names the member it says it is
            // (the dialer checked ours before its first byte, in dialedIsNamed).
            if (dialed === null && !this.acceptedIsNamed(s, claimed?.member.name ?? f.name, f.member)) return;
            // A proven member of this cluster says this member was forgotten: it is no longer one.
            if (this.namesSelf(f)) return this.selfForgotten(s, f);
            if (isForgotten(this.forgotten(), { id: f.member, name: f.name })) return this.refuseForgotten(s, f);
            if (claimed === undefined) {
              // A member joined after bootstrap introducing itself: learn it, then dial it as the rule says.
              if (dialed === null && this.learn(f)) return s.destroy();
              return refuse("not a member");
            }
            // An announcement from a member we already know and dial: nothing to refuse loudly.
            if (dialed === null && this.o.self.id < f.member && f.name !== "") return s.destroy();
            if (dialed !== null && claimed !== dialed)
              return refuse(`dialed ${dialed.member.id}, hello says ${f.member}`);
            if (dialed === null && this.o.self.id < f.member)
              return refuse("this member dials that one, not the reverse");
            clearTimeout(helloTimer);
            claimed.backoffMs = PEER_BACKOFF_MIN_MS;
            peer = claimed;
            reader.maxFrameBytes = PEER_MAX_FRAME_BYTES;
            claimed.stats.clientAddress = f.clientAddress;
            if (dialed === null) {
              this.pending.delete(s);
              claimed.socket?.destroy();
              claimed.socket = s;
              s.write(this.hello());
              s.once("close", () => this.detach(claimed, s));
            }
            claimed.ready = true;
            claimed.heardAt = Date.now();
            claimed.stats.connected = true;
            this.flush(claimed);
            // Last: forgetting a member may close connections (never this one: the sender is not forgotten).
            this.adoptForgotten(f);
            return;
          }
          if (peer === null) throw new PeerProtocolError("Raft traffic before hello");
          peer.stats.receivedFrames++;
          peer.heardAt = Date.now();
          if (f === null) this.o.onRaftFrame!(peer.member.id, new Uint8Array(frame));
          else if (f.kind === "raft") this.o.onMessages(peer.member.id, f.messages);
          else this.o.onFrame?.(peer.member.id, f);
        } catch (err) {
          if (err instanceof PeerRefused) return this.refuseAuth(s, err, dialed);
          this.o.logger?.warn({ err: (err as Error).message }, "bad peer frame; closing that connection");
          s.destroy();
        }
      });
      if (reader.error !== null && !s.destroyed) {
        const e = reader.error;
        if (e.code === "FRAME_TOO_LARGE")
          this.limits.hit(
            peer === null ? "peer-hello-frame-size" : "peer-frame-size",
            peer === null
              ? "closing a peer connection: a frame before its hello exceeds the limit"
              : "closing a peer connection: a frame exceeds the limit",
            { from: peer?.member.id ?? `${s.remoteAddress}:${s.remotePort}`, message: e.message },
          );
        else if (!hs.through && this.tls === null && chunk[0] === 0x16 && chunk[1] === 0x03)
          // A TLS record (a handshake, version 3.x) where a challenge was expected.
          this.limits.hit(
            "peer-refused-tls-on-plaintext",
            "peer refused: a TLS handshake on a plaintext peer port (--tls-cluster on that member only?)",
            { from: `${s.remoteAddress}:${s.remotePort}` },
          );
        else
          this.o.logger?.warn({ from: peer?.member.id, message: e.message }, "bad peer frame; closing that connection");
        s.destroy();
      }
    });
  }

  /**
   * With TLS, on an accepted connection: whether the dialer's certificate
   * names `name`, the member it says it is (`id`); when not, refused (logged)
   * and closed. Always true without TLS.
   */
  private acceptedIsNamed(s: Socket, name: string, id: number): boolean {
    if (this.tls === null) return true;
    const names = certificateNames(s as TLSSocket);
    if (names.includes(name)) return true;
    const claimed = this.peers.get(id);
    if (claimed) claimed.stats.refused++;
    this.limits.hit("peer-refused-tls-name", `peer refused: its certificate does not name member ${name}`, {
      from: `${s.remoteAddress}:${s.remotePort}`,
      claims: id,
      certificateNames: names,
    });
    s.destroy();
    return false;
  }

  private detach(p: Peer, s: Socket): void {
    if (p.socket !== s) return;
    p.socket = null;
    p.ready = false;
    p.stats.connected = false;
    this.o.onPeerDown?.(p.member.id);
  }

  private flush(p: Peer): void {
    const s = p.socket;
    if (s === null || !p.ready || s.destroyed || p.queue.length === 0) return;
    s.cork();
    for (const f of p.queue) {
      s.write(f);
      p.stats.sentFrames++;
    }
    s.uncork();
    p.queue = [];
    p.queuedBytes = 0;
  }
}

/** Writes what the socket holds, then a FIN; resolves once it is closed, destroying it after `maxMs`. */
function endGently(s: Socket, maxMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, maxMs);
    s.once("close", done);
    s.end();
  });
}

/** The cluster id: members (name, address, order) and the partition count, hashed. */
export function clusterIdOf(
  members: readonly Member[],
  partitions: number,
  hash: (b: Uint8Array, seed: number) => number,
): bigint {
  const text = `${partitions}|${members.map((m) => `${m.id}:${m.name}@${m.host}:${m.port}`).join(",")}`;
  const b = new TextEncoder().encode(text);
  return (BigInt(hash(b, 1)) << 32n) | BigInt(hash(b, 2));
}
