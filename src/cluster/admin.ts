/**
 * The operator's requests to a member (`piccolo cluster status`,
 * `transfer-leader`, `replace`) and the admin frames peers send for them:
 * each goes to the partition's leader, here or over the peer network.
 */
import type { ClusterInfo } from "../io/shards.js";
import type { LogLevel } from "./member.js";
import type { HostStatus } from "./group-host.js";
import type { Membership } from "./membership.js";
import { encodeReplace, encodeTransfer } from "./peer-codec.js";
import type { PeerNetwork } from "./peer-network.js";
import type { Router } from "./router.js";

/** How often handOffLeadership() looks again at what this member still leads. */
const DRAIN_STEP_MS = 100;

export class Admin {
  constructor(
    private readonly self: number,
    private readonly router: Router,
    private readonly membership: Membership,
    private readonly net: PeerNetwork,
    /** Commands this member forwarded so far (src/cluster/forwarder.ts). */
    private readonly forwarded: () => number,
    /** The address this member's clients connect to ("" before the listener is up). */
    private readonly clientAddress: () => string,
    private readonly log: (level: LogLevel, message: string, detail: object) => void,
  ) {}

  async transferLeader(partition: number, member: number): Promise<string | null> {
    const r = this.router;
    if (!r.isPartition(partition)) return `no partition ${partition} (there are ${r.partitions})`;
    const voters = await this.votersOf(partition);
    if (!voters.includes(member)) return `member ${member} holds no voting replica of partition ${partition}`;
    const leader = r.leaderOf(partition);
    if (leader === member) return null;
    if (leader === this.self) return r.hostOf(partition).transfer(partition, member);
    if (leader === 0) return `partition ${partition} has no known leader right now`;
    if (!this.net.sendFrame(leader, encodeTransfer(partition, member))) return `leader ${leader} is unreachable`;
    return null;
  }

  /**
   * Moving a partition's replica from member `remove` to member `add`
   * (`piccolo cluster replace`): asks the partition's leader for the next
   * step (src/cluster/group-host.ts, stepReplace).
   */
  async replaceReplica(partition: number, remove: number, add: number): Promise<string | null> {
    const r = this.router;
    if (!r.isPartition(partition)) return `no partition ${partition} (there are ${r.partitions})`;
    if (!this.membership.has(remove)) return `no member ${remove}`;
    if (!this.membership.has(add))
      return `no member ${add} (a new member is started with --joined and introduces itself)`;
    if (remove === add) return "the member to remove and the one to add are the same";
    const leader = r.leaderOf(partition);
    if (leader === this.self) return r.hostOf(partition).stepReplace(partition, remove, add);
    if (leader === 0) return `partition ${partition} has no known leader right now`;
    if (!this.net.sendFrame(leader, encodeReplace(partition, remove, add))) return `leader ${leader} is unreachable`;
    return null;
  }

  /**
   * Forgets member `id` for good (`piccolo cluster forget`; decision 0214):
   * refused while a partition this member holds lists it as a voter or a
   * learner (it would take a copy with it: `piccolo cluster replace` moves
   * it first), and for this member itself. Otherwise recorded durably,
   * dropped from the address book, and dropped by the network (refused from
   * now on, named in every hello so the other members learn it too).
   * Idempotent: a member already forgotten is null (done). Only this
   * member's replicas are checked here: `piccolo cluster forget` checks
   * every partition's leader before asking any member.
   */
  async forgetMember(id: number): Promise<string | null> {
    if (id === this.self) return "a member cannot forget itself: ask another member";
    const m = this.membership.get(id);
    if (m === undefined) return this.membership.forgotten().some((f) => f.id === id) ? null : `no member ${id}`;
    const statuses = await Promise.all(this.router.hosts.map((h) => h.status()));
    const held = statuses
      .flatMap((s) => s.groups)
      .filter((g) => g.replica && (g.voters.includes(id) || g.learners.includes(id)))
      .map((g) => g.group)
      .sort((a, b) => a - b);
    if (held.length > 0)
      return (
        `member ${m.name} still holds a replica or learner of partitions ${held.join(",")}: ` +
        `move them first with \`piccolo cluster replace ${m.name} <new member>\``
      );
    try {
      this.membership.forget(m);
    } catch (err) {
      return `could not record it: ${(err as Error).message}`;
    }
    this.net.forget(id);
    this.log("info", "forgot a member (piccolo cluster forget)", { member: m.name, id });
    return null;
  }

  /** A peer asks this member, as the partition's leader, to hand leadership to `to`. */
  onTransfer(group: number, to: number): void {
    if (this.router.isPartition(group)) void this.router.hostOf(group).transfer(group, to);
  }

  /** A peer asks this member, as the partition's leader, for the next step of a replacement. */
  onReplace(group: number, remove: number, add: number): void {
    if (!this.router.isPartition(group)) return;
    void this.router
      .hostOf(group)
      .stepReplace(group, remove, add)
      .then((why) => {
        if (why !== null) this.log("debug", "replace step not taken", { partition: group, why });
      });
  }

  async clusterInfo(): Promise<ClusterInfo> {
    const hosts = this.router.hosts;
    const statuses = await Promise.all(hosts.map((h) => h.status()));
    const byGroup = new Map(statuses.flatMap((s) => s.groups.map((g) => [g.group, g] as const)));
    const peers = new Map(this.net.stats().map((s) => [s.member, s]));
    const sum = (f: (s: HostStatus) => number) => statuses.reduce((a, s) => a + f(s), 0);
    // Percentiles do not add up across hosts: report the worst host's.
    const worst = (f: (s: HostStatus) => number) => statuses.reduce((a, s) => Math.max(a, f(s)), 0);
    return {
      self: this.self,
      forgotten: this.membership.forgotten().map((f) => ({ id: f.id, name: f.name })),
      members: this.membership.all().map((m) => ({
        id: m.id,
        name: m.name,
        peerAddress: `${m.host}:${m.port}`,
        connected: m.id === this.self || (peers.get(m.id)?.connected ?? false),
        clientAddress: m.id === this.self ? this.clientAddress() : (peers.get(m.id)?.clientAddress ?? ""),
      })),
      partitions: this.router.placement.map((p) => {
        const g = byGroup.get(p.partition);
        const s = g?.replica ? g : null;
        return {
          partition: p.partition,
          replicas: s === null ? p.replicas : s.voters,
          learners: s === null ? [] : s.learners,
          leader: s?.leader ?? this.router.hint(p.partition) ?? 0,
          term: s?.term ?? 0,
          commit: s?.commit ?? 0,
          applied: s?.applied ?? 0,
          lastIndex: s?.lastIndex ?? 0,
          hosted: s !== null,
          leaderChanges: g?.leaderChanges ?? 0,
          followers: s?.followers ?? [],
        };
      }),
      stats: {
        proposals: sum((s) => s.proposals),
        proposalP50Us: worst((s) => s.proposalP50Us),
        proposalP99Us: worst((s) => s.proposalP99Us),
        walWrites: sum((s) => s.walWrites),
        walP50Us: worst((s) => s.walP50Us),
        walP99Us: worst((s) => s.walP99Us),
        forwarded: this.forwarded(),
        leaderChanges: statuses.reduce((a, s) => a + s.groups.reduce((b, g) => b + g.leaderChanges, 0), 0),
        elections: sum((s) => s.elections),
        snapshotsInstalled: sum((s) => s.snapshotsInstalled),
        quiescedGroups: sum((s) => s.quiescedGroups),
      },
    };
  }

  /**
   * Hands every partition this member leads to a follower that is caught up
   * (the smallest lag among the active voters), by Raft's leadership
   * transfer: each costs its partition one short pause of writes, not an
   * election timeout. Asks again every DRAIN_STEP_MS until this member leads
   * nothing or `timeoutMs` passes (a partition whose followers are all down
   * or behind stays: its writes must go on somewhere). Resolves with how
   * many partitions it led at the start and how many it still leads.
   */
  async handOffLeadership(timeoutMs: number): Promise<{ led: number; left: number }> {
    const deadline = Date.now() + timeoutMs;
    let led = -1;
    for (;;) {
      const mine = (await this.clusterInfo()).partitions.filter((p) => p.hosted && p.leader === this.self);
      if (led < 0) led = mine.length;
      if (mine.length === 0 || Date.now() >= deadline) return { led, left: mine.length };
      let movable = 0;
      // A quiet group's leader does not tick, so its followers' "recently active" flags go stale: a
      // follower also has to be connected now (a killed member's connection closes at once).
      const connected = new Set(
        this.net
          .stats()
          .filter((s) => s.connected)
          .map((s) => s.member),
      );
      for (const p of mine) {
        const target = p.followers
          .filter((f) => f.active && connected.has(f.member) && !f.learner && p.replicas.includes(f.member))
          .sort((a, b) => a.lag - b.lag)[0];
        if (target === undefined) continue;
        movable++;
        // A hand-off, not a placement: once this member is back, rebalancing returns its preferred partitions.
        this.router.hostOf(p.partition).transfer(p.partition, target.member, true);
      }
      // No partition left here has a follower up to take it (the rest of the cluster is down or stopping):
      // waiting out the bound would change nothing; they are left to an election after the stop.
      if (movable === 0) return { led, left: mine.length };
      await new Promise((r) => setTimeout(r, DRAIN_STEP_MS));
    }
  }

  /** The partition's voters as its replica here knows them, or its bootstrap placement. */
  private async votersOf(partition: number): Promise<number[]> {
    if (this.router.route(partition).replica) {
      const s = (await this.router.hostOf(partition).status()).groups.find((g) => g.group === partition);
      if (s !== undefined) return s.voters;
    }
    return this.router.placement[partition]!.replicas;
  }
}
