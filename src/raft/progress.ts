/**
 * What a leader knows about each follower's log, and how hard it may push.
 * Three states, as in etcd's raft (tracker/progress.go):
 *
 *   Probe      the leader does not know where the follower's log matches
 *              ours: one append at a time, of one entry at most, backing
 *              off on each rejection (decision 0109).
 *   Replicate  it matched: appends are pipelined, up to maxInflight unacked.
 *   Snapshot   what it needs is compacted away: one snapshot is on its way,
 *              nothing else is sent until it is acknowledged (or times out).
 *
 * Raft's own guarantees do not depend on any of this; it only decides what
 * to send when. It is a separate file so the core's logic stays readable.
 */
import type { ReplicaId } from "./types.js";

export const ProgressState = { Probe: 0, Replicate: 1, Snapshot: 2 } as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

export class Progress {
  /** Highest index known to be in the follower's log. */
  match = 0;
  /** Next index to send. */
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** Appends (or the snapshot) sent and not yet acknowledged. */
  inflight = 0;
  /** Index of the snapshot in flight (Snapshot state). */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = true;
  /** Leader tick at which this follower last answered anything (quiescence needs a recent answer). */
  heardTick = 0;
  /** Leader tick at which `match` last moved or the state last changed: how a stall is noticed. */
  sinceTick: number;

  constructor(
    readonly id: ReplicaId,
    next: number,
    tick: number,
  ) {
    this.next = next;
    this.sinceTick = tick;
  }

  /** True when nothing more may be sent to this follower for now. */
  paused(maxInflight: number): boolean {
    if (this.state === ProgressState.Probe) return this.inflight > 0;
    if (this.state === ProgressState.Replicate) return this.inflight >= maxInflight;
    return true;
  }

  becomeProbe(tick: number): void {
    this.state = ProgressState.Probe;
    this.next = this.match + 1;
    this.inflight = 0;
    this.pendingSnapshot = 0;
    this.sinceTick = tick;
  }

  becomeReplicate(tick: number): void {
    this.state = ProgressState.Replicate;
    this.next = this.match + 1;
    this.inflight = 0;
    this.sinceTick = tick;
  }

  becomeSnapshot(index: number, tick: number): void {
    this.state = ProgressState.Snapshot;
    this.pendingSnapshot = index;
    this.inflight = 1;
    this.sinceTick = tick;
  }

  /** An acknowledgement up to `index`. Returns true when it moved `match`. */
  acknowledge(index: number, tick: number): boolean {
    if (index <= this.match) return false;
    this.match = index;
    this.sinceTick = tick;
    if (this.next <= index) this.next = index + 1;
    return true;
  }
}
