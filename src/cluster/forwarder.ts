/**
 * The request path of a cluster member: runs a command on its partition's
 * leader, wherever that is, and serves what other members forward here.
 *
 *   - This member leads the partition: its group host serves the command
 *     (a write proposed and answered once applied; a read after ReadIndex).
 *   - Another member leads it (or is believed to): the command is forwarded,
 *     whole, over the peer network, and the leader's answer comes back
 *     (decision 0183). Any member serves any key, on every protocol, because
 *     forwarding happens below the protocols, at the shard-command level.
 *   - No leader is known (an election): the command waits a tick and tries
 *     again, until CLUSTER_REQUEST_DEADLINE_MS (src/cluster/deadlines.ts).
 *
 * The rule that matters most: **a write is never sent twice.** A forward
 * that could not be sent (no connection) may go elsewhere; one that was
 * sent and got no answer may have been proposed, and may still commit, so a
 * second copy could apply it twice (a put's version bumped twice, a
 * compare-and-swap answered "failed" because its own first copy succeeded:
 * bug 7 in docs/cluster.md). Such a write answers TIMEOUT, "possibly
 * applied" (src/outcomes.ts). A read is safe to send again and is.
 *
 * Answers: the shard's encoded Result, or UNAVAILABLE when no leader was
 * reached in time (nothing was proposed: safe to retry), SHUTTING_DOWN when
 * this member stops first, TIMEOUT when a write's outcome is unknown.
 *
 * Time and the network are passed in (src/cluster/clock.ts,
 * src/cluster/peer-network.ts), so the simulator runs this code as it is.
 */
import { ErrorCode } from "../errors.js";
import { type Clock, sleep } from "./clock.js";
import { CLUSTER_REQUEST_DEADLINE_MS, FORWARD_READ_RETRY_MS } from "./deadlines.js";
import { errorResult, ServeMode } from "./group-host.js";
import type { Membership } from "./membership.js";
import { encodeForward, encodeForwardReply, type ForwardOutcome } from "./peer-codec.js";
import type { PeerNetwork } from "./peer-network.js";
import type { Router } from "./router.js";

import { traceClock } from "../io/trace.js";
import { isTracedCommand, type Stamp, shiftStamps, stampsOf, withStamps } from "./trace-stamps.js";

/** A forwarded command that was sent and got no answer (see forward()). */
const LOST = "lost" as const;

interface Waiting {
  to: number;
  done: (o: ForwardOutcome | null) => void;
}

export class Forwarder {
  /** Commands this member forwarded to another (cluster info's `forwarded`). */
  forwarded = 0;
  private closed = false;
  private nextId = 1;
  /** Forwards sent and not answered yet, by id. */
  private readonly waiting = new Map<number, Waiting>();
  /** Commands other members forwarded here that are being served (see drain()). */
  private serving = 0;
  /** Members that said they are leaving (stopping): nothing more is forwarded to them (see leaving()). */
  private readonly leavers = new Set<number>();

  constructor(
    private readonly self: number,
    /** Raft's tick: how long a request waits before trying again when no leader is known. */
    private readonly tickMs: number,
    private readonly clock: Clock,
    private readonly net: PeerNetwork,
    private readonly router: Router,
    private readonly membership: Membership,
  ) {}

  /** Runs a command on the partition's leader, wherever it is; resolves with the encoded Result. */
  async execute(group: number, command: Uint8Array, write: boolean): Promise<Uint8Array> {
    if (isTracedCommand(command)) return this.executeTraced(group, command, write);
    return this.executeUntraced(group, command, write);
  }

  /**
   * execute(), traced (docs/tracing.md, "In a cluster"): each forward is a
   * stamp (to whom, how long until its answer), and the leader's own stamps,
   * which its answer carries, are moved onto this member's clock.
   */
  private async executeTraced(group: number, command: Uint8Array, write: boolean): Promise<Uint8Array> {
    const hops: Stamp[] = [];
    let last: { sentAt: number; answeredAt: number } | null = null;
    const result = await this.executeUntraced(group, command, write, (to, sentAt, answeredAt, outcome) => {
      hops.push({
        stage: "forwarded",
        where: `member ${this.self}`,
        from: sentAt,
        to: answeredAt,
        detail: `to member ${to}${outcome === "" ? "" : `: ${outcome}`}`,
      });
      last = outcome === "" ? { sentAt, answeredAt } : null;
    });
    const served = stampsOf(result);
    const hop = last as { sentAt: number; answeredAt: number } | null;
    if (hops.length === 0) return result; // served here: the stamps are this member's own already
    const stamps =
      served === null || hop === null ? hops : [...hops, ...shiftStamps(served, hop.sentAt, hop.answeredAt)];
    const from = hops[0]!.from;
    return withStamps(result, { stamps, servedFrom: from, servedTo: traceClock() });
  }

  private async executeUntraced(
    group: number,
    command: Uint8Array,
    write: boolean,
    /** A traced command: each forward, when it left and when its outcome came ("" for an answer). */
    onHop?: (to: number, sentAt: number, answeredAt: number, outcome: string) => void,
  ): Promise<Uint8Array> {
    const deadline = this.clock.now() + CLUSTER_REQUEST_DEADLINE_MS;
    const mode = write ? ServeMode.Write : ServeMode.Read;
    while (this.clock.now() < deadline && !this.closed) {
      const route = this.router.route(group);
      let leader: number;
      if (route.replica && route.leader === this.self) {
        const o = await this.router.hostOf(group).serve(group, mode, command);
        if (o.kind === "result") return o.result;
        // Not the leader after all, or a leadership transfer is under way.
        leader = o.leader;
      } else {
        leader = route.replica ? route.leader : (this.router.hint(group) ?? this.preferred(group));
      }
      if (leader === 0 || leader === this.self) {
        await this.pause();
        continue;
      }
      this.forwarded++;
      const sentAt = onHop === undefined ? 0 : traceClock();
      const outcome = await this.forward(leader, group, command, write, deadline);
      if (onHop !== undefined)
        onHop(
          leader,
          sentAt,
          traceClock(),
          outcome === null
            ? "not sent (no connection)"
            : outcome === LOST
              ? "no answer"
              : outcome.kind === "result"
                ? ""
                : outcome.kind === "failed"
                  ? "failed"
                  : `not the leader (it named member ${outcome.leader || "none"})`,
        );
      if (outcome === null) {
        // Never sent (no connection to that member): safe to send elsewhere, and that is where the
        // next try goes (a hint naming a member that is down would otherwise hold every try).
        if (!route.replica) this.router.forgetHint(group);
        await this.pause();
        continue;
      }
      if (outcome === LOST) {
        // Sent, and no answer came (the member went down, or a partition ate the reply). A read is
        // safe to retry; a write may have been proposed there, and may still commit: sending it again
        // could apply it twice. Its outcome is unknown, and the caller is told so.
        if (write) return errorResult(ErrorCode.TIMEOUT);
        await this.pause();
        continue;
      }
      if (outcome.kind === "result") return outcome.result;
      if (outcome.kind === "failed") return errorResult(ErrorCode.TIMEOUT);
      this.router.learnHint(group, outcome.leader);
      if (outcome.leader === 0 || outcome.leader === leader) await this.pause();
    }
    // Every path that may have proposed the command returned above: this one certainly did not.
    return errorResult(this.closed ? ErrorCode.SHUTTING_DOWN : ErrorCode.UNAVAILABLE);
  }

  /** A peer forwarded us a command: serve it if we lead, or say who does. */
  async serve(from: number, id: number, group: number, write: boolean, command: Uint8Array): Promise<void> {
    let outcome: ForwardOutcome;
    const route = this.router.isPartition(group) ? this.router.route(group) : null;
    if (route === null || !route.replica) outcome = { kind: "notLeader", leader: 0 };
    else if (route.leader !== this.self) outcome = { kind: "notLeader", leader: route.leader };
    else {
      this.serving++;
      try {
        const o = await this.router.hostOf(group).serve(group, write ? ServeMode.Write : ServeMode.Read, command);
        outcome = o.kind === "result" ? o : { kind: "notLeader", leader: o.leader };
      } finally {
        this.serving--;
      }
    }
    this.net.sendFrame(from, encodeForwardReply(id, outcome));
  }

  /**
   * Before this member closes its peer connections: waits until every
   * command forwarded here has its answer sent, at most `maxMs` (a host
   * answers each within HOST_REQUEST_DEADLINE_MS). A write proposed here
   * just before this member handed its leadership over commits under the
   * new leader a round trip later; closing the connection first would
   * leave the member that forwarded it with an unknown outcome (TIMEOUT)
   * for a write that succeeded.
   */
  async drain(maxMs: number): Promise<void> {
    const by = this.clock.now() + maxMs;
    while (this.serving > 0 && this.clock.now() < by) await sleep(this.clock, Math.min(5, this.tickMs));
  }

  /** The answer to forward `id` arrived. */
  answered(id: number, outcome: ForwardOutcome): void {
    const w = this.waiting.get(id);
    this.waiting.delete(id);
    w?.done(outcome);
  }

  /**
   * `peer` is stopping and asked for nothing more: from now on a command
   * for it is "never sent" (tried elsewhere, as for a member not
   * connected). What was already sent to it is still answered: it reads up
   * to the acknowledgement the caller sends next (member.ts).
   */
  leaving(peer: number): void {
    this.leavers.add(peer);
  }

  /** Whether `peer` said it is leaving (on its current connection). */
  isLeaving(peer: number): boolean {
    return this.leavers.has(peer);
  }

  /** A peer's connection went down: what we forwarded to it will not be answered; reads are retried elsewhere now. */
  peerDown(peer: number): void {
    // Its next connection is a new run of it, or one that stays (a stop that failed).
    this.leavers.delete(peer);
    for (const [id, w] of this.waiting)
      if (w.to === peer) {
        this.waiting.delete(id);
        w.done(null);
      }
  }

  /** This member stops: requests waiting for a leader answer SHUTTING_DOWN at their next try. */
  close(): void {
    this.closed = true;
  }

  private pause(): Promise<void> {
    return sleep(this.clock, this.tickMs);
  }

  /**
   * Sends a command to member `to` and waits for its answer: null when it
   * could not be sent (safe to send elsewhere), LOST when it was sent and no
   * answer came (the peer went down, or the deadline passed: a write may
   * have been proposed there). A read waits at most FORWARD_READ_RETRY_MS
   * before it is tried elsewhere; a write, which cannot be, waits for its
   * whole deadline.
   */
  private forward(
    to: number,
    group: number,
    command: Uint8Array,
    write: boolean,
    deadline: number,
  ): Promise<ForwardOutcome | typeof LOST | null> {
    const id = this.nextId++;
    // A peer we are not connected to cannot answer, and one that is leaving must not be asked: do not wait for it.
    if (!this.net.isConnected(to) || this.leavers.has(to)) return Promise.resolve(null);
    return new Promise((resolve) => {
      const left = deadline - this.clock.now();
      const timer = this.clock.setTimeout(
        () => {
          this.waiting.delete(id);
          resolve(LOST);
        },
        Math.max(1, write ? left : Math.min(left, FORWARD_READ_RETRY_MS)),
      );
      this.waiting.set(id, {
        to,
        done: (o) => {
          this.clock.clearTimeout(timer);
          resolve(o ?? LOST);
        },
      });
      if (!this.net.sendFrame(to, encodeForward({ id, group, write, command }))) {
        this.clock.clearTimeout(timer);
        this.waiting.delete(id);
        resolve(null);
      }
    });
  }

  /**
   * Where to send a command for a partition this member holds no replica of
   * and has no hint for: the placement's preferred leader if connected, else
   * any connected member (whoever it is answers with its own hint).
   */
  private preferred(group: number): number {
    const p = this.router.placement[group]!.preferredLeader;
    if (p !== this.self && this.net.isConnected(p)) return p;
    for (const m of this.membership.all()) if (m.id !== this.self && this.net.isConnected(m.id)) return m.id;
    return 0;
  }
}
