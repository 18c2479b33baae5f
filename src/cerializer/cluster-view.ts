/**
 * A cluster gateway's view of the cluster: which members it talks to, which
 * member leads each partition, and whether it can serve (GET /readyz).
 *
 * `--nodes` are only seeds. Every CLUSTER_MAP_REFRESH_MS the gateway asks
 * each member it knows for its cluster info, and from the answers it learns:
 *
 *  - the members that hold a replica (voter or learner) of some partition,
 *    and the client address each announced: a member added by `cluster
 *    replace` is connected to and used, and a member that holds nothing any
 *    more (the one replaced) is dropped and its connections closed. So the
 *    gateway's member list follows the cluster's, not its command line.
 *  - each partition's leader, so a key goes straight to the member that
 *    leads its partition (saving the forwarding hop; members forward a
 *    request sent elsewhere, so a stale map costs only that hop).
 *  - whether each partition has a leader its members can reach.
 *
 * Ready means the gateway can serve every key: at least one member answers it
 * (any member serves any key, forwarding to the leader),
 * and no partition has been without a reachable leader for longer than
 * CLUSTER_LEADERLESS_GRACE_MS. One member down is not "unready": the others
 * serve its keys once its partitions have elected new leaders, which the
 * grace covers. A cluster that lost a quorum of some partition, or a gateway
 * that reaches no member at all, is unready (503): it cannot serve every key.
 * docs/decisions/0197-gateway-ready-when-it-can-serve.md.
 *
 * When no member answers, the seeds are tried again too (the members may all
 * have come back on the addresses the operator gave).
 */
import type { ClusterInfo } from "../client/client.js";
import type { NodeLink } from "./pool.js";
import { within } from "./within.js";

/** How often a cluster gateway refreshes its view (members, leaders). */
export const CLUSTER_MAP_REFRESH_MS = 1_000;

/**
 * How long a partition may be without a reachable leader before the gateway
 * calls itself not ready: longer than an election after a member fails (a
 * few hundred ms at the default --tick-ms), as long as a request's default
 * deadline, so a normal failover never makes a load balancer drop the gateway.
 */
export const CLUSTER_LEADERLESS_GRACE_MS = 5_000;

/**
 * A member counts as answering the gateway while its link is up and its last
 * cluster-info answer is at most this old: a member that is slow for one
 * refresh (a busy machine) is not "gone", one paused or cut off is soon.
 */
export const CLUSTER_ANSWER_MAX_AGE_MS = 3 * CLUSTER_MAP_REFRESH_MS;

export interface MemberState {
  node: string;
  /** The member's id, once it answered or was named by one that did (0: not known). */
  member: number;
  up: boolean;
  /** Its link is up and it answered the gateway within CLUSTER_ANSWER_MAX_AGE_MS. */
  answered: boolean;
}

export interface Readiness {
  ready: boolean;
  /** Why not, for people (absent when ready). */
  reason?: string;
  members: MemberState[];
  partitions: number;
  /** Partitions without a reachable leader past the grace period. */
  withoutLeader: number[];
}

export class ClusterView {
  /** Links in use, in the order they were added. */
  links: NodeLink[];
  /** Partition -> the link that reaches its leader (null: unknown or unreachable). */
  leaders: (NodeLink | null)[] = [];
  private readonly seeds: { host: string; port: number }[];
  private readonly memberOf = new Map<NodeLink, number>();
  /** When each link last answered a cluster-info request (late answers count too). */
  private readonly answeredAt = new Map<NodeLink, number>();
  /** Partition -> when it was first seen without a reachable leader (0: it has one). */
  private unservedSince: number[] = [];
  /** Links with a cluster-info request still out (a slow member is not asked again meanwhile). */
  private readonly asking = new Set<NodeLink>();
  private refreshing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    seeds: NodeLink[],
    /** A link to one more member (the gateway's link options and callbacks). */
    private readonly newLink: (host: string, port: number) => NodeLink,
    private readonly now: () => number = Date.now,
  ) {
    this.links = [...seeds];
    this.seeds = seeds.map((l) => split(l.address));
  }

  /** Learns the cluster now (as far as members answer) and keeps learning it. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), CLUSTER_MAP_REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
  }

  /** One refresh at a time; a caller during one waits for it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.readViews().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async readViews(): Promise<void> {
    const views: { link: NodeLink; info: ClusterInfo }[] = [];
    await Promise.all(
      this.links.map(async (link) => {
        if (!link.up || this.asking.has(link)) return;
        this.asking.add(link);
        const asked = link.run("gateway", (c) => c.clusterInfo());
        void asked.then(
          () => {
            this.asking.delete(link);
            this.answeredAt.set(link, this.now());
          },
          () => this.asking.delete(link),
        );
        try {
          views.push({ link, info: await within(asked, CLUSTER_MAP_REFRESH_MS) });
        } catch {
          // Down (the link marks itself and probes) or slow: it does not count as answering.
        }
      }),
    );
    if (this.stopped) return;
    if (views.length === 0) {
      this.reseed();
      this.markUnserved(this.unservedSince.length, () => false);
      return;
    }
    this.learn(views);
  }

  /** Members, links and leaders from the answers of one refresh. */
  private learn(views: { link: NodeLink; info: ClusterInfo }[]): void {
    const count = views[0]!.info.partitions.length;
    for (const v of views) this.memberOf.set(v.link, v.info.self);
    // Per partition, trust a member that hosts it (its replica knows the group's configuration
    // and term); among those, the highest term, so a member cut off and still believing in an
    // old leader does not win.
    const serving = new Set<number>();
    const leaderOf: number[] = [];
    const reachable: boolean[] = [];
    for (let p = 0; p < count; p++) {
      let best: { info: ClusterInfo; term: number } | null = null;
      for (const { info } of views) {
        const x = info.partitions[p];
        if (x === undefined) continue;
        if (x.hosted) for (const id of [...x.replicas, ...x.learners]) serving.add(id);
        if (x.leader !== 0 && (best === null || (x.hosted ? x.term : -1) > best.term))
          best = { info, term: x.hosted ? x.term : -1 };
      }
      const leader = best === null ? 0 : best.info.partitions[p]!.leader;
      leaderOf.push(leader);
      // The leader is reachable when a member that answered is connected to it (or is it).
      reachable.push(
        leader !== 0 && views.some(({ info }) => info.members.some((m) => m.id === leader && m.connected)),
      );
    }
    // No member hosts anything yet (all just started): fall back on the placement they report.
    if (serving.size === 0)
      for (const { info } of views) for (const x of info.partitions) for (const id of x.replicas) serving.add(id);

    // Links: one per serving member, reusing the link that reached it (or its address).
    const address = new Map<number, string>();
    for (const { info } of views)
      for (const m of info.members)
        if (m.clientAddress !== "" && !address.has(m.id)) address.set(m.id, m.clientAddress);
    const byMember = new Map<number, NodeLink>();
    for (const [link, id] of this.memberOf) if (serving.has(id) && this.links.includes(link)) byMember.set(id, link);
    for (const id of serving) {
      if (byMember.has(id)) continue;
      const a = address.get(id);
      if (a === undefined) continue;
      let link = this.links.find((l) => l.address === a);
      if (link === undefined) {
        const { host, port } = split(a);
        link = this.newLink(host, port);
        this.links.push(link);
        void link.start();
      }
      this.memberOf.set(link, id);
      byMember.set(id, link);
    }
    const keep = new Set(byMember.values());
    for (const link of this.links)
      if (!keep.has(link)) {
        // A member that holds no replica any more (replaced), or an address no member has.
        this.memberOf.delete(link);
        this.answeredAt.delete(link);
        void link.close();
      }
    this.links = this.links.filter((l) => keep.has(l));

    this.leaders = leaderOf.map((id) => byMember.get(id) ?? null);
    this.markUnserved(count, (p) => reachable[p]!);
  }

  private markUnserved(count: number, served: (p: number) => boolean): void {
    const now = this.now();
    const next: number[] = [];
    for (let p = 0; p < count; p++) next.push(served(p) ? 0 : this.unservedSince[p] || now);
    this.unservedSince = next;
  }

  /** No member answered: make sure the seed addresses are among the links, to find the cluster again. */
  private reseed(): void {
    for (const s of this.seeds) {
      const a = `${s.host}:${s.port}`;
      if (this.links.some((l) => l.address === a)) continue;
      const link = this.newLink(s.host, s.port);
      this.links.push(link);
      void link.start();
    }
  }

  readiness(): Readiness {
    const now = this.now();
    const withoutLeader: number[] = [];
    this.unservedSince.forEach((since, p) => {
      if (since !== 0 && now - since >= CLUSTER_LEADERLESS_GRACE_MS) withoutLeader.push(p);
    });
    const members = this.links.map((l) => ({
      node: l.address,
      member: this.memberOf.get(l) ?? 0,
      up: l.up,
      answered: l.up && now - (this.answeredAt.get(l) ?? -Infinity) <= CLUSTER_ANSWER_MAX_AGE_MS,
    }));
    const base = { members, partitions: this.unservedSince.length, withoutLeader };
    if (!members.some((m) => m.answered))
      return { ready: false, reason: "no cluster member answers the gateway", ...base };
    if (withoutLeader.length > 0)
      return {
        ready: false,
        reason: `${withoutLeader.length} of ${this.unservedSince.length} partitions have had no reachable leader for ${CLUSTER_LEADERLESS_GRACE_MS / 1000} s or more`,
        ...base,
      };
    return { ready: true, ...base };
  }
}

function split(address: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(address);
  if (m === null) throw new Error(`"${address}" is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}
