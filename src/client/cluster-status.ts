/**
 * The whole cluster from the members' own answers: each partition as its
 * leader sees it (only a leader knows its followers' lag), each member with
 * whether it answered. Pure: the CLI (`piccolo cluster status`, over fresh
 * connections) and the gateway (GET /v1/cluster, over its links) each ask
 * the members their own way and merge the answers here.
 */
import type { ClusterStats, PartitionInfo } from "../protocol/cluster-info.js";
import type { ClusterInfo } from "./client.js";

export interface MemberStatus {
  id: number;
  name: string;
  peerAddress: string;
  clientAddress: string;
  /** The first member asked has a live peer connection to it. */
  connected: boolean;
  /** It answered this round's cluster-info request. */
  answered: boolean;
  /** Its own counters, when it answered. */
  stats: ClusterStats | null;
}

export interface ClusterStatus {
  /** The member asked first. */
  self: number;
  members: MemberStatus[];
  /** Each partition as its leader sees it (or, when the leader did not answer, as `self` does). */
  partitions: (PartitionInfo & { seenBy: number })[];
  /** `self`'s counters (kept at the top for scripts written against older versions). */
  stats: ClusterStats;
}

/** `mine`: the first member's answer; `views`: every answer, by member id (mine among them). */
export function mergeStatus(mine: ClusterInfo, views: ReadonlyMap<number, ClusterInfo>): ClusterStatus {
  return {
    self: mine.self,
    members: mine.members.map((m) => ({
      id: m.id,
      name: m.name,
      peerAddress: m.peerAddress,
      clientAddress: m.clientAddress,
      connected: m.connected,
      answered: views.has(m.id),
      stats: views.get(m.id)?.stats ?? null,
    })),
    partitions: mine.partitions.map((p) => {
      // The leader's own answer, if it still claims the partition.
      const lv = views.get(p.leader)?.partitions[p.partition];
      return lv !== undefined && lv.leader === p.leader ? { ...lv, seenBy: p.leader } : { ...p, seenBy: mine.self };
    }),
    stats: mine.stats,
  };
}
