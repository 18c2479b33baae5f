/**
 * The cluster-info answer: one member's view of the cluster (members, each
 * partition's replicas, leader and indexes, and, where it leads, each
 * follower's progress), and its counters. The node encodes it
 * (src/io/native.ts), the client decodes it (src/client/client.ts); the
 * `piccolo cluster status` command and the Cerializer's metrics read it.
 *
 * One definition of the shape, here beside the schema's generated code, so
 * the node, the client and the gateway cannot drift apart.
 */
import * as capnp from "capnp-es";
import { type ClusterInfo as ClusterInfoReader, Response } from "./gen/piccolo.js";

export interface FollowerInfo {
  member: number;
  /** Highest index known to be in its log. */
  match: number;
  /** The leader's last index minus match: entries it has yet to receive. */
  lag: number;
  state: string;
  /** Heard from within about one election timeout. */
  active: boolean;
  learner: boolean;
}

export interface PartitionInfo {
  partition: number;
  /** Voting replicas (member ids): the group's configuration where hosted, else the placement's. */
  replicas: number[];
  /** Replicas catching up that do not vote yet. */
  learners: number[];
  /** As the answering member knows it (0: unknown). */
  leader: number;
  /** The answering member's own; 0 when it holds no replica of the partition. */
  term: number;
  commit: number;
  applied: number;
  lastIndex: number;
  hosted: boolean;
  /** Times its leader changed, as seen by the answering member. */
  leaderChanges: number;
  /** Filled only when the answering member leads the partition. */
  followers: FollowerInfo[];
}

/** A member's cluster counters since it started (latencies in microseconds). */
export interface ClusterStats {
  proposals: number;
  proposalP50Us: number;
  proposalP99Us: number;
  walWrites: number;
  walP50Us: number;
  walP99Us: number;
  forwarded: number;
  leaderChanges: number;
  elections: number;
  /** Snapshots from a leader that replaced a replica's state here (a follower too far behind, or new). */
  snapshotsInstalled: number;
  /** Hosted groups quiet right now (idle, clocks stopped: src/raft/raft.ts, wake()). */
  quiescedGroups: number;
}

export interface ClusterMemberInfo {
  id: number;
  name: string;
  peerAddress: string;
  /** The answering member has a live connection to it (itself: true). */
  connected: boolean;
  /** host:port its clients connect to, as it last said ("" if never). */
  clientAddress: string;
}

export interface ClusterInfo {
  /** The answering member's id. */
  self: number;
  members: ClusterMemberInfo[];
  /** Members the answering member has forgotten (`piccolo cluster forget`): not in `members`. */
  forgotten: { id: number; name: string }[];
  partitions: PartitionInfo[];
  stats: ClusterStats;
}

const STAT_FIELDS = [
  "proposals",
  "proposalP50Us",
  "proposalP99Us",
  "walWrites",
  "walP50Us",
  "walP99Us",
  "forwarded",
  "leaderChanges",
  "elections",
  "snapshotsInstalled",
  "quiescedGroups",
] as const satisfies readonly (keyof ClusterStats)[];

/** The framed Response answering request `id` with `info`. */
export function encodeClusterInfo(id: bigint, info: ClusterInfo): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const c = r._initCluster();
  c.self = info.self;
  const ms = c._initMembers(info.members.length);
  info.members.forEach((x, i) => {
    const w = ms.get(i);
    w.id = x.id;
    w.name = x.name;
    w.peerAddress = x.peerAddress;
    w.connected = x.connected;
    w.clientAddress = x.clientAddress;
  });
  const fs = c._initForgotten(info.forgotten.length);
  info.forgotten.forEach((x, i) => {
    const w = fs.get(i);
    w.id = x.id;
    w.name = x.name;
  });
  const ps = c._initPartitions(info.partitions.length);
  info.partitions.forEach((x, i) => {
    const w = ps.get(i);
    w.partition = x.partition;
    const reps = w._initReplicas(x.replicas.length);
    for (const [j, id] of x.replicas.entries()) reps.set(j, id);
    const learners = w._initLearners(x.learners.length);
    for (const [j, id] of x.learners.entries()) learners.set(j, id);
    w.leader = x.leader;
    w.term = BigInt(x.term);
    w.commit = BigInt(x.commit);
    w.applied = BigInt(x.applied);
    w.lastIndex = BigInt(x.lastIndex);
    w.hosted = x.hosted;
    w.leaderChanges = BigInt(x.leaderChanges);
    const fs = w._initFollowers(x.followers.length);
    x.followers.forEach((f, j) => {
      const v = fs.get(j);
      v.member = f.member;
      v.match = BigInt(f.match);
      v.lag = BigInt(f.lag);
      v.state = f.state;
      v.active = f.active;
      v.learner = f.learner;
    });
  });
  const st = c._initStats();
  for (const k of STAT_FIELDS) st[k] = BigInt(info.stats[k]);
  return new Uint8Array(m.toArrayBuffer());
}

/** Plain objects from a decoded Response's cluster field. */
export function decodeClusterInfo(c: ClusterInfoReader): ClusterInfo {
  const stats = {} as ClusterStats;
  for (const k of STAT_FIELDS) stats[k] = Number(c.stats[k]);
  return {
    self: c.self,
    members: Array.from(c.members, (m) => ({
      id: m.id,
      name: m.name,
      peerAddress: m.peerAddress,
      connected: m.connected,
      clientAddress: m.clientAddress,
    })),
    forgotten: Array.from(c.forgotten, (m) => ({ id: m.id, name: m.name })),
    partitions: Array.from(c.partitions, (p) => ({
      partition: p.partition,
      replicas: Array.from(p.replicas),
      learners: Array.from(p.learners),
      leader: p.leader,
      term: Number(p.term),
      commit: Number(p.commit),
      applied: Number(p.applied),
      lastIndex: Number(p.lastIndex),
      hosted: p.hosted,
      leaderChanges: Number(p.leaderChanges),
      followers: Array.from(p.followers, (f) => ({
        member: f.member,
        match: Number(f.match),
        lag: Number(f.lag),
        state: f.state,
        active: f.active,
        learner: f.learner,
      })),
    })),
    stats,
  };
}
