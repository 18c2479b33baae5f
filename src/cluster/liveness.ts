/**
 * Which peers are alive, and where leaders belong: two periodic jobs of a
 * member that look at its connections and tell its group hosts.
 *
 * Member liveness, for quiescence (src/raft/raft.ts, wake(); decision 0190).
 * Quiet groups send nothing, so every tick a member pings each peer it has
 * sent nothing to for a heartbeat interval (an empty Raft frame), and judges
 * a peer alive while something arrived from it within an election timeout. A
 * peer that stops being alive (killed, paused, cut off, one way or both), or
 * becomes alive again, wakes every quiet group it is in: its followers'
 * election clocks run again, and its leaders' heartbeats (and check-quorum)
 * resume. One ping per peer stands in for a heartbeat per group: what an
 * idle cluster costs no longer grows with its partitions.
 *
 * A lost connection. A peer whose connection closes (its process ended: the
 * kernel closed its sockets; or the network failed) is told to the hosts at
 * once, not after an election timeout of silence: the groups it leads
 * campaign within a few ticks (decision 0110). So the election timeout can
 * be long enough to ride out a living member's stalls while a dead one is
 * replaced as fast as before.
 *
 * Rebalancing. Leaders drift to whoever won the last election; after a
 * member returns, it leads nothing. Every REBALANCE_EVERY_TICKS ticks this
 * member tells its hosts which members have been connected and alive for
 * REBALANCE_SETTLE_MS (settled); each host hands the partitions it leads by
 * election but should not (placement's preferred leader) to a settled
 * preferred member (src/cluster/group-host.ts, rebalance).
 */
import type { Clock, Timer } from "./clock.js";
import type { HostLink } from "./host-link.js";
import type { Membership } from "./membership.js";
import { encodeRaftBatch } from "./peer-codec.js";
import type { PeerNetwork } from "./peer-network.js";

/** How often (in ticks) a member hands partitions back to their preferred leaders. */
export const REBALANCE_EVERY_TICKS = 50;
/** How long a preferred leader must have been connected before it gets its partitions back. */
export const REBALANCE_SETTLE_MS = 2_000;
/** The keep-alive ping: a Raft frame with no messages. */
const PING = encodeRaftBatch([]);

export interface LivenessOptions {
  self: number;
  tickMs: number;
  heartbeatTicks: number;
  electionTicks: number;
}

export class Liveness {
  /** Peers this member last judged alive. */
  private readonly alive = new Set<number>();
  /** Peers connected at the last check. */
  private readonly connected = new Set<number>();
  /**
   * Since when each peer has been connected and alive without a break (for rebalancing only to
   * members that are settled). A paused process keeps its connections open: connected alone would
   * hand it partitions it cannot lead, each transfer refusing writes until abandoned.
   */
  private readonly settledSince = new Map<number, number>();
  private checker: Timer | null = null;
  private rebalancer: Timer | null = null;

  constructor(
    private readonly o: LivenessOptions,
    private readonly clock: Clock,
    private readonly net: PeerNetwork,
    private readonly membership: Membership,
    private readonly hosts: readonly HostLink[],
    /** A peer that said it is leaving (stopping) gets no partition back (decision 0298). */
    private readonly isLeaving: (member: number) => boolean = () => false,
  ) {}

  start(): void {
    this.rebalancer = this.clock.setInterval(() => this.rebalance(), REBALANCE_EVERY_TICKS * this.o.tickMs);
    this.checker = this.clock.setInterval(() => this.check(), this.o.tickMs);
  }

  stop(): void {
    if (this.rebalancer !== null) this.clock.clearInterval(this.rebalancer);
    if (this.checker !== null) this.clock.clearInterval(this.checker);
  }

  /**
   * Pings the peers it has been silent to, tells the hosts of connections
   * that closed, and wakes the quiet groups of peers whose liveness changed.
   */
  check(): void {
    const quietMs = this.o.heartbeatTicks * this.o.tickMs;
    const within = this.o.electionTicks * this.o.tickMs;
    for (const m of this.membership.all()) {
      if (m.id === this.o.self) continue;
      const connected = this.net.isConnected(m.id);
      if (connected) this.connected.add(m.id);
      else if (this.connected.delete(m.id)) for (const h of this.hosts) h.wake(m.id, true);
      if (connected && !this.net.sentWithin(m.id, quietMs)) this.net.sendFrame(m.id, PING);
      const now = this.net.heardWithin(m.id, within);
      if (now === this.alive.has(m.id)) continue;
      if (now) this.alive.add(m.id);
      else this.alive.delete(m.id);
      for (const h of this.hosts) h.wake(m.id);
    }
  }

  /** Tells the hosts which peers have been connected and alive long enough to get their partitions back. */
  rebalance(): void {
    const now = this.clock.now();
    const settled: number[] = [];
    for (const m of this.membership.all()) {
      if (m.id === this.o.self) continue;
      if (!this.net.isConnected(m.id) || !this.alive.has(m.id)) this.settledSince.delete(m.id);
      else if (!this.settledSince.has(m.id)) this.settledSince.set(m.id, now);
      const since = this.settledSince.get(m.id);
      if (since !== undefined && now - since >= REBALANCE_SETTLE_MS && !this.isLeaving(m.id)) settled.push(m.id);
    }
    if (settled.length > 0) for (const h of this.hosts) h.rebalance(settled);
  }
}
