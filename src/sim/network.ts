/**
 * The simulated network between cluster members: a PeerNetwork
 * (src/cluster/peer-network.ts) per member incarnation, with the promises
 * the node's TCP transport makes and the faults it meets.
 *
 *   - A pair of members has one connection, up once both have started and
 *     one has dialled the other (a random delay, as the transport's dial and
 *     backoff take). A member killed drops its connections at once, and its
 *     peers are told (onPeerDown), as a reset TCP connection tells them; a
 *     paused member's connections stay up, and what is sent to it waits.
 *   - On a connection, frames arrive in the order sent, each at most once,
 *     after a random latency (TCP does not reorder or duplicate). Frames on a
 *     connection that drops are lost.
 *   - A frame may be lost although its connection is up: a partition that
 *     drops one direction or both (as the chaos harness's firewall rules do,
 *     src/chaos/peer-faults.ts), or a send queue that overflowed
 *     (`lossRate`). The sender learns nothing; sendFrame returns false only
 *     when the connection is down, as the transport's does.
 *
 * Frames travel as bytes and are decoded on arrival with the node's codec
 * (src/cluster/peer-codec.ts), so the encoding is part of what runs. A frame
 * that does not decode, or a peer rejected, is a failure of the run: the
 * code under test produced it.
 */
import type { PeerHandlers, PeerNetwork } from "../cluster/peer-network.js";
import { decodePeerFrame, isRaftFrame } from "../cluster/peer-codec.js";
import type { Prng } from "./prng.js";
import type { Scheduler, SimClock } from "./time.js";

export interface SimNetworkOptions {
  /** Chance that a frame sent on an up connection is lost anyway (a send queue that overflowed). */
  lossRate: number;
  /** Chance that a frame takes a slow path (10-60 ms instead of 0.1-2 ms). */
  slowRate: number;
}

interface Endpoint {
  id: number;
  clock: SimClock;
  handlers: PeerHandlers;
  alive: boolean;
  started: boolean;
  /** Per peer, this member's local time when a frame last arrived from it / was queued for it. */
  heardAt: Map<number, number>;
  sentAt: Map<number, number>;
}

interface Connection {
  up: boolean;
  /** Bumped whenever the connection goes up or down: frames of an older epoch are lost. */
  epoch: number;
  dialing: boolean;
  /** Per direction ("a>b"), when the last frame sent that way arrives (frames keep their order). */
  lastAt: Map<string, number>;
}

export interface NetworkCounts {
  sent: number;
  delivered: number;
  /** Dropped at once (connection down): the sender was told. */
  refused: number;
  /** Lost silently (partition, overflow, a connection that dropped with the frame on it). */
  lost: number;
}

export class SimNetwork {
  /** Directed pairs "a>b" whose frames are dropped: a partition, one way or both. */
  readonly blocked = new Set<string>();
  readonly counts: NetworkCounts = { sent: 0, delivered: 0, refused: 0, lost: 0 };
  /** The first thing the code under test did wrong on the network (a frame that did not decode). */
  failure: string | null = null;
  private readonly endpoints = new Map<number, Endpoint>();
  private readonly connections = new Map<string, Connection>();

  constructor(
    private readonly sched: Scheduler,
    private readonly rng: Prng,
    private readonly o: SimNetworkOptions,
  ) {}

  /** The network of a member incarnation that has just been started (a new process). */
  attach(id: number, clock: SimClock, handlers: PeerHandlers): PeerNetwork {
    const old = this.endpoints.get(id);
    if (old?.alive) this.crash(id);
    const ep: Endpoint = { id, clock, handlers, alive: true, started: false, heardAt: new Map(), sentAt: new Map() };
    this.endpoints.set(id, ep);
    return {
      sendFrame: (to, frame) => this.send(ep, to, frame),
      isConnected: (peer) => ep.alive && this.connection(id, peer).up,
      heardWithin: (peer, ms) =>
        ep.alive && this.connection(id, peer).up && ep.clock.now() - (ep.heardAt.get(peer) ?? -Infinity) < ms,
      sentWithin: (peer, ms) => ep.clock.now() - (ep.sentAt.get(peer) ?? -Infinity) < ms,
      reject: (peer, why) => {
        this.failure ??= `member ${id} rejected a frame from member ${peer}: ${why}`;
      },
      // The simulator's members are never forgotten (its nemesis does not run `cluster forget`).
      forget: () => {},
      stats: () =>
        [...this.endpoints.keys()]
          .filter((m) => m !== id)
          .map((m) => ({ member: m, connected: this.connection(id, m).up, clientAddress: "" })),
      start: async () => {
        ep.started = true;
        for (const other of this.endpoints.values()) if (other !== ep) this.dial(ep, other);
        return 0;
      },
      stop: async () => this.crash(id),
    };
  }

  /** The member's process died: its connections drop, and its peers hear of it. */
  crash(id: number): void {
    const ep = this.endpoints.get(id);
    if (ep === undefined || !ep.alive) return;
    ep.alive = false;
    for (const other of this.endpoints.values()) {
      if (other === ep) continue;
      const c = this.connection(id, other.id);
      if (!c.up) continue;
      c.up = false;
      c.epoch++;
      if (other.alive) other.clock.event(this.rng.next(), () => other.handlers.onPeerDown(id));
    }
  }

  /**
   * Connects two started members after a dial delay (the transport's dialer
   * retries for ever, with backoff: a restarted member is found again). The
   * dial connects whichever incarnations are current when it completes.
   */
  private dial(a: Endpoint, b: Endpoint): void {
    const c = this.connection(a.id, b.id);
    if (c.up || c.dialing || !a.alive || !b.alive || !a.started || !b.started) return;
    c.dialing = true;
    const delay = this.rng.chance(0.1) ? 50 + this.rng.int(2_000) : 1 + this.rng.int(60);
    this.sched.after(delay, () => {
      c.dialing = false;
      const x = this.endpoints.get(a.id);
      const y = this.endpoints.get(b.id);
      // Either may have died, or been replaced by a new incarnation, meanwhile.
      if (c.up || x === undefined || y === undefined || !x.alive || !y.alive || !x.started || !y.started) return;
      c.up = true;
      c.epoch++;
      c.lastAt.clear();
      // Each side's hello counts as hearing from the other.
      x.heardAt.set(y.id, x.clock.now());
      y.heardAt.set(x.id, y.clock.now());
    });
  }

  private send(from: Endpoint, to: number, frame: Uint8Array): boolean {
    const c = this.connection(from.id, to);
    const dest = this.endpoints.get(to);
    if (!from.alive || !c.up || dest === undefined || !dest.alive) {
      this.counts.refused++;
      return false;
    }
    this.counts.sent++;
    from.sentAt.set(to, from.clock.now());
    if (this.blocked.has(`${from.id}>${to}`) || this.rng.chance(this.o.lossRate)) {
      this.counts.lost++;
      return true;
    }
    const latency = this.rng.chance(this.o.slowRate) ? 10 + this.rng.next() * 50 : 0.1 + this.rng.next() * 2;
    const dir = `${from.id}>${to}`;
    const at = Math.max(this.sched.now + latency, c.lastAt.get(dir) ?? 0);
    c.lastAt.set(dir, at);
    const epoch = c.epoch;
    dest.clock.event(at - this.sched.now, () => {
      if (c.epoch !== epoch || !dest.alive) {
        this.counts.lost++;
        return;
      }
      this.counts.delivered++;
      this.deliver(dest, from.id, frame);
    });
    return true;
  }

  private deliver(dest: Endpoint, from: number, frame: Uint8Array): void {
    dest.heardAt.set(from, dest.clock.now());
    const h = dest.handlers;
    let f: ReturnType<typeof decodePeerFrame>;
    try {
      if (h.onRaftFrame !== undefined) {
        // As the transport does for a single group worker: Raft frames pass through undecoded.
        const whole = frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength;
        const bytes = whole ? frame : frame.slice();
        if (isRaftFrame(bytes.buffer as ArrayBuffer)) return h.onRaftFrame(from, bytes);
      }
      f = decodePeerFrame(frame);
      if (f.kind === "hello") throw new Error("a hello on an established connection");
    } catch (err) {
      this.failure ??= `a frame from member ${from} to member ${dest.id} did not decode: ${(err as Error).message}`;
      return;
    }
    if (f.kind === "raft") h.onMessages(from, f.messages);
    else h.onFrame(from, f);
  }

  private connection(a: number, b: number): Connection {
    const key = a < b ? `${a}-${b}` : `${b}-${a}`;
    let c = this.connections.get(key);
    if (c === undefined) this.connections.set(key, (c = { up: false, epoch: 0, dialing: false, lastAt: new Map() }));
    return c;
  }
}
