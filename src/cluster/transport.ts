/**
 * The peer transport: Raft traffic between members, over one TCP connection
 * per member pair (decision 0181).
 *
 * - The member with the lower id dials; the other accepts. Both directions
 *   use the one connection. The dialer reconnects with exponential backoff
 *   (PEER_BACKOFF_MIN_MS doubling to PEER_BACKOFF_MAX_MS) for as long as the
 *   transport runs.
 * - Each side's first frame is a hello with the cluster id (a hash of the
 *   member list and partition count) and its member id. A peer configured
 *   differently, or claiming to be someone it is not, is refused: the
 *   connection is closed and the refusal logged and counted.
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
 *   header alone; like every limit hit, it is logged (rate-limited).
 *
 * - A member joined after bootstrap (`--joined`) may be unknown to members
 *   started before it. It *announces* itself: every PEER_ANNOUNCE_EVERY_MS,
 *   to each lower-id member that has not connected to it, it opens a
 *   connection and says hello with its name and peer address. A member that
 *   does not know it asks `onJoin` (which checks and records it), adds it,
 *   closes the announcing connection and dials it, as the rule says.
 *
 * This is the node's PeerNetwork (src/cluster/peer-network.ts). The chaos
 * harness's fault injection is not here: it is a decorator over that
 * interface (src/chaos/peer-faults.ts), installed only in tests.
 */
import { createServer, type Server, type Socket, connect } from "node:net";
import type { Logger } from "pino";
import { LimitLog } from "../limit-log.js";
import { PEER_MAX_FRAME_BYTES, PEER_MAX_HELLO_FRAME_BYTES } from "../limits.js";
import { FrameReader } from "../protocol/framing.js";
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
import type { PeerNetwork } from "./peer-network.js";
import type { Member } from "./placement.js";

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
  /** Called with every other frame (forwarded requests and their replies). */
  onFrame?: (from: number, frame: Exclude<DecodedFrame, { kind: "hello" | "raft" }>) => void;
  logger?: Logger;
  maxQueuedBytes?: number;
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

  constructor(private readonly o: TransportOptions) {
    this.maxQueuedBytes = o.maxQueuedBytes ?? PEER_MAX_QUEUED_BYTES;
    this.limits = new LimitLog((level, message, detail) => o.logger?.[level](detail, message));
    for (const m of o.members) if (m.id !== o.self.id) this.peers.set(m.id, new Peer(m));
  }

  /** Listens on the member's own address and dials the peers it should dial. Resolves with the port. */
  async start(): Promise<number> {
    this.server = createServer((s) => this.accept(s));
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

  /** A one-shot connection that says hello and expects to be closed (see the file comment). */
  private announceTo(p: Peer): void {
    if (this.stopped) return;
    const s = connect({ host: p.member.host, port: p.member.port, noDelay: true });
    s.on("error", () => {});
    s.on("data", () => {});
    s.once("connect", () => s.write(this.hello()));
    const timer = setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS);
    s.once("close", () => clearTimeout(timer));
  }

  private hello(): Uint8Array {
    return encodeHello(
      this.o.clusterId,
      this.o.self.id,
      this.o.clientAddress?.() ?? "",
      this.o.self.name,
      `${this.o.self.host}:${this.o.self.port}`,
    );
  }

  /** A hello from a member not in our list: learn it if it fits, then dial it. */
  private learn(f: Extract<DecodedFrame, { kind: "hello" }>): boolean {
    if (this.o.onJoin === undefined || f.name === "" || f.peerAddress === "" || f.member === this.o.self.id)
      return false;
    const a = /^(.+):(\d+)$/.exec(f.peerAddress)!;
    const m: Member = { name: f.name, id: f.member, host: a[1]!, port: Number(a[2]) };
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

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.announceTimer !== null) clearInterval(this.announceTimer);
    for (const p of this.peers.values()) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.socket?.destroy();
    }
    for (const s of this.pending) s.destroy();
    await new Promise<void>((resolve) => (this.server === null ? resolve() : this.server.close(() => resolve())));
  }

  private dial(p: Peer): void {
    if (this.stopped) return;
    const s = connect({ host: p.member.host, port: p.member.port, noDelay: true });
    s.once("connect", () => {
      p.backoffMs = PEER_BACKOFF_MIN_MS;
      this.attach(s, p);
    });
    s.once("error", () => {});
    s.once("close", () => {
      if (p.socket === s || p.socket === null) this.detach(p, s);
      this.redial(p);
    });
  }

  private redial(p: Peer): void {
    if (this.stopped || p.timer !== null) return;
    p.stats.reconnects++;
    p.timer = setTimeout(() => {
      p.timer = null;
      this.dial(p);
    }, p.backoffMs);
    p.backoffMs = Math.min(p.backoffMs * 2, PEER_BACKOFF_MAX_MS);
  }

  /** An incoming connection: who it is, we learn from its hello. */
  private accept(s: Socket): void {
    s.setNoDelay(true);
    this.pending.add(s);
    s.on("error", () => {});
    s.once("close", () => this.pending.delete(s));
    const timer = setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS);
    s.once("close", () => clearTimeout(timer));
    this.readFrames(s, null, timer);
  }

  /** A dialed connection is ours for `p`: say hello, then read. */
  private attach(s: Socket, p: Peer): void {
    s.on("error", () => {});
    p.socket?.destroy();
    p.socket = s;
    p.ready = false;
    s.write(this.hello());
    const timer = setTimeout(() => s.destroy(), PEER_HELLO_TIMEOUT_MS);
    s.once("close", () => clearTimeout(timer));
    this.readFrames(s, p, timer);
  }

  private readFrames(s: Socket, dialed: Peer | null, helloTimer: NodeJS.Timeout): void {
    // Small frames only until the hello is verified (see the file comment).
    const reader = new FrameReader(PEER_MAX_HELLO_FRAME_BYTES);
    let peer: Peer | null = null;
    s.on("data", (chunk: Buffer) => {
      reader.push(chunk, (frame) => {
        if (s.destroyed) return;
        try {
          // A Raft frame for a caller that decodes them elsewhere is passed on whole (null here).
          const passThrough = peer !== null && this.o.onRaftFrame !== undefined && isRaftFrame(frame);
          const f = passThrough ? null : decodePeerFrame(frame);
          if (f?.kind === "hello") {
            if (peer !== null) throw new PeerProtocolError("a second hello on one connection");
            const claimed = this.peers.get(f.member);
            const refuse = (why: string) => {
              if (claimed) claimed.stats.refused++;
              this.o.logger?.warn({ from: f.member, why }, "peer refused");
              s.destroy();
            };
            if (f.clusterId !== this.o.clusterId) return refuse("cluster id differs (another member list?)");
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
            return;
          }
          if (peer === null) throw new PeerProtocolError("Raft traffic before hello");
          peer.stats.receivedFrames++;
          peer.heardAt = Date.now();
          if (f === null) this.o.onRaftFrame!(peer.member.id, new Uint8Array(frame));
          else if (f.kind === "raft") this.o.onMessages(peer.member.id, f.messages);
          else this.o.onFrame?.(peer.member.id, f);
        } catch (err) {
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
        else
          this.o.logger?.warn({ from: peer?.member.id, message: e.message }, "bad peer frame; closing that connection");
        s.destroy();
      }
    });
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
