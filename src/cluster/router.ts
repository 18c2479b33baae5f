/**
 * Where a partition's requests go, as this member knows it: the group host
 * that owns the partition here (p mod hosts, decision 0189), whether this
 * member holds a replica of it, and who leads it. For hosted partitions the
 * hosts report their leader on every change (Route); for the others the
 * member keeps the hints that forwarded answers carry.
 */
import type { Route } from "./group-host.js";
import type { HostLink } from "./host-link.js";
import { type PartitionPlacement, place, type Member } from "./placement.js";

export class Router {
  readonly placement: PartitionPlacement[];
  /** This member's group hosts, filled once they are open. */
  readonly hosts: HostLink[] = [];
  /** Per partition: whether this member holds a replica, and who leads (as its host last said). */
  private readonly routes: Route[];
  /** Leader hints for partitions not hosted here, learned from forwarded replies. */
  private readonly hints = new Map<number, number>();

  constructor(
    private readonly self: number,
    bootstrap: readonly Member[],
    readonly partitions: number,
    replicas: number,
  ) {
    this.placement = place(bootstrap, partitions, replicas);
    this.routes = this.placement.map((p) => ({ group: p.partition, replica: false, leader: 0 }));
  }

  /** A partition number of this cluster (input from peers and clients is checked with it). */
  isPartition(group: number): boolean {
    return Number.isInteger(group) && group >= 0 && group < this.partitions;
  }

  /** The host that owns `group` on this member (whether or not it holds a replica). */
  hostOf(group: number): HostLink {
    return this.hosts[group % this.hosts.length]!;
  }

  route(group: number): Route {
    return this.routes[group]!;
  }

  /** A host says a hosted group's leader or membership changed. */
  setRoute(r: Route): void {
    this.routes[r.group] = r;
  }

  /** Who leads `group` if this member holds no replica of it (from forwarded answers), if known. */
  hint(group: number): number | undefined {
    return this.hints.get(group);
  }

  /**
   * A forwarded answer named `group`'s leader (0: the member asked does not
   * know either). Unknown is not remembered: a hint of 0 would send nothing
   * anywhere, and no answer would ever come to replace it.
   */
  learnHint(group: number, leader: number): void {
    if (this.routes[group]!.replica) return;
    if (leader === 0) this.hints.delete(group);
    else this.hints.set(group, leader);
  }

  /** The hinted leader of `group` cannot be reached: ask someone else next time. */
  forgetHint(group: number): void {
    this.hints.delete(group);
  }

  /** The partition's leader as far as this member knows (0: unknown). */
  leaderOf(group: number): number {
    const r = this.routes[group]!;
    return r.replica ? r.leader : (this.hints.get(group) ?? 0);
  }

  /** This member leads `group` (as its host last said). */
  leadsHere(group: number): boolean {
    const r = this.routes[group]!;
    return r.replica && r.leader === this.self;
  }
}
