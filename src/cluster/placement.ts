/**
 * Where data lives in a cluster: the static member list, the partitions,
 * and which members hold each partition's replicas (issue #7).
 *
 *   key -> partition     xxHash32(key) mod P, fixed at bootstrap
 *   partition -> replicas the R members with the highest rendezvous score
 *                         xxHash32(partition, seed = hash(member id))
 *   partition -> preferred leader
 *                         one of its replicas, chosen so leaders spread evenly
 *                         (the cluster transfers leadership back to it after a
 *                         member returns)
 *
 * Everything here is a pure function of (members, P, R): every node, and
 * every gateway, computes the same placement from the same list without
 * talking to anyone. Rendezvous (highest-random-weight) hashing moves only
 * the partitions a member held or wins when the list changes, unlike
 * hash-mod-N, which would move almost everything.
 *
 * On a node, a partition's replica lives on shard worker `partition mod
 * shards`, so one worker owns the partition's Raft group, its log and its map.
 */
import { assert } from "../assert.js";
import { hash32, placementHash } from "../hash.js";

/** Most members a static cluster may list (bounded like everything else). */
export const MAX_CLUSTER_MEMBERS = 64;
/** Default partitions (`--partitions`). */
export const DEFAULT_PARTITIONS = 64;
/** Most partitions. Over it: a configuration error at start-up. */
export const MAX_PARTITIONS = 4096;
/** Default replicas per partition (or all members, when fewer). */
export const DEFAULT_REPLICAS = 3;

export interface Member {
  /** The name given in --cluster (n1). */
  name: string;
  /** Raft's numeric id: 1-based position in the list, identical on every node. */
  id: number;
  host: string;
  port: number;
}

/**
 * A member forgotten for good (`piccolo cluster forget`): its id and name are
 * never used again by this cluster (docs/cluster.md, "Forgetting a member").
 */
export interface ForgottenMember {
  id: number;
  name: string;
}

/** Whether `m` is forgotten: by its id or by its name (either, reused, would be mistaken for it). */
export function isForgotten(forgotten: readonly ForgottenMember[], m: { id: number; name: string }): boolean {
  return forgotten.some((f) => f.id === m.id || f.name === m.name);
}

export class PlacementError extends Error {
  override name = "PlacementError";
}

/**
 * Parses `n1=127.0.0.1:7701,n2=127.0.0.1:7702,...`. Ids are 1-based positions,
 * starting at `firstId` (members joined after bootstrap number on from the
 * bootstrap list).
 */
export function parseMembers(spec: string, firstId = 1, flag = "--cluster"): Member[] {
  const parts = spec
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0 && firstId === 1) throw new PlacementError(`${flag}: no members`);
  if (firstId - 1 + parts.length > MAX_CLUSTER_MEMBERS)
    throw new PlacementError(`${flag}: ${firstId - 1 + parts.length} members; the limit is ${MAX_CLUSTER_MEMBERS}`);
  const seen = new Set<string>();
  const addresses = new Set<string>();
  return parts.map((p, i) => {
    const m = /^([A-Za-z0-9_-]{1,64})=(.+):(\d{1,5})$/.exec(p);
    if (m === null || Number(m[3]) < 1 || Number(m[3]) > 65535)
      throw new PlacementError(`${flag}: "${p}" is not name=host:port`);
    const [, name, host, port] = m;
    if (seen.has(name!)) throw new PlacementError(`${flag}: member ${name} is listed twice`);
    if (addresses.has(`${host}:${port}`)) throw new PlacementError(`${flag}: address ${host}:${port} is listed twice`);
    seen.add(name!);
    addresses.add(`${host}:${port}`);
    return { name: name!, id: firstId + i, host: host!, port: Number(port) };
  });
}

/**
 * The bootstrap list (`--cluster`: placement and the cluster id come from it,
 * and it never changes) and the members joined since (`--joined`: they hold
 * replicas only once a membership change adds them, e.g. by
 * `piccolo cluster replace`). Every member is given both lists.
 */
export function parseMemberLists(cluster: string, joined = ""): { bootstrap: Member[]; all: Member[] } {
  const bootstrap = parseMembers(cluster);
  const later = parseMembers(joined, bootstrap.length + 1, "--joined");
  const all = [...bootstrap, ...later];
  const names = new Set<string>();
  const addresses = new Set<string>();
  for (const m of all) {
    if (names.has(m.name)) throw new PlacementError(`member ${m.name} is in both --cluster and --joined`);
    if (addresses.has(`${m.host}:${m.port}`))
      throw new PlacementError(`address ${m.host}:${m.port} is in both --cluster and --joined`);
    names.add(m.name);
    addresses.add(`${m.host}:${m.port}`);
  }
  return { bootstrap, all };
}

const enc = new TextEncoder();

/**
 * The partition of a key. Needs initHash() (src/hash.ts) to have run. It is
 * exactly a single node's shard choice (src/io/route.ts) with P shards, so in
 * cluster mode the IO loop's dispatcher routes by partition unchanged: its
 * "shards" are the partitions.
 */
export function partitionOf(key: Uint8Array, partitions: number): number {
  return partitions <= 1 ? 0 : placementHash(key) % partitions;
}

export interface PartitionPlacement {
  partition: number;
  /** Member ids, highest rendezvous score first. */
  replicas: number[];
  /** The member that should lead when it is up. */
  preferredLeader: number;
}

/**
 * The replicas of every partition, and a preferred leader for each, spread
 * so that no member prefers-leads more than ceil(P / members) partitions
 * when every member holds a replica of everything (R = members), and as
 * evenly as the replica sets allow otherwise.
 */
export function place(
  members: readonly Member[],
  partitions: number,
  replicas = DEFAULT_REPLICAS,
): PartitionPlacement[] {
  assert(members.length > 0, "a cluster has members");
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS)
    throw new PlacementError(`--partitions must be an integer in [1, ${MAX_PARTITIONS}]`);
  const r = Math.min(replicas, members.length);
  const seeds = members.map((m) => hash32(enc.encode(m.name)));
  const leads = new Map<number, number>(members.map((m) => [m.id, 0]));
  const out: PartitionPlacement[] = [];
  const pbuf = new Uint8Array(4);
  for (let p = 0; p < partitions; p++) {
    new DataView(pbuf.buffer).setUint32(0, p, true);
    const scored = members.map((m, i) => ({ id: m.id, score: hash32(pbuf, seeds[i]!) }));
    scored.sort((a, b) => b.score - a.score || a.id - b.id);
    const ids = scored.slice(0, r).map((s) => s.id);
    // Greedy balance: the replica leading the fewest so far, ties to the highest score.
    let leader = ids[0]!;
    for (const id of ids) if (leads.get(id)! < leads.get(leader)!) leader = id;
    leads.set(leader, leads.get(leader)! + 1);
    out.push({ partition: p, replicas: ids, preferredLeader: leader });
  }
  return out;
}

/** The shard worker that hosts a partition's replica on a node with `shards` workers. */
export function shardOfPartition(partition: number, shards: number): number {
  return shards <= 1 ? 0 : partition % shards;
}
