/**
 * Group membership: who votes, who only listens, and how a change is written
 * into the log.
 *
 * Piccolo changes membership one replica at a time (Ongaro's dissertation,
 * §4.1), not with joint consensus: any majority of the old voters and any
 * majority of the new ones share a replica when the two sets differ by one,
 * so no moment exists at which two disjoint majorities could each elect a
 * leader. Decision 0104 explains the choice and what it costs.
 *
 * A configuration takes effect on a replica as soon as its entry is in the
 * replica's log, committed or not (the dissertation's rule, not etcd's
 * apply-time rule), and is undone if that entry is truncated away. So the
 * configuration is always a function of the log: the newest ConfChange
 * entry, or the snapshot's configuration, or the bootstrap list.
 *
 * A ConfChange entry carries the *whole* new configuration, not a delta. A
 * replica that joins later, with an empty log, then learns the full member
 * list from the first such entry it receives; with deltas it would also need
 * the bootstrap list, which is in no log.
 *
 * Learners receive the log but neither vote nor count toward a majority. A
 * new replica joins as a learner, catches up, and is then promoted: adding an
 * empty voter directly would make the group wait on it for every commit
 * (with 2 of 3 old voters up, a fourth, empty voter means no majority until
 * it has caught up).
 */
import { assert } from "../assert.js";
import type { ReplicaId } from "./types.js";

export interface Config {
  readonly voters: readonly ReplicaId[];
  readonly learners: readonly ReplicaId[];
}

export const ConfChangeType = {
  /** Adds a voter, or promotes a learner to voter. */
  AddVoter: 0,
  /** Adds a learner (a non-voting replica catching up). */
  AddLearner: 1,
  /** Removes a voter or a learner. */
  Remove: 2,
} as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

export interface ConfChange {
  type: ConfChangeType;
  replica: ReplicaId;
}

/** Groups are small (3 or 5 replicas; 7 at most in practice). The bound keeps a decoded entry small. */
export const MAX_GROUP_MEMBERS = 64;

export function quorum(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

export function isVoter(c: Config, id: ReplicaId): boolean {
  return c.voters.includes(id);
}

export function members(c: Config): ReplicaId[] {
  return [...c.voters, ...c.learners];
}

export function sameConfig(a: Config, b: Config): boolean {
  return a.voters.join() === b.voters.join() && a.learners.join() === b.learners.join();
}

/**
 * The configuration after `cc`, or a reason it is refused. A refused change
 * never reaches the log. One step at a time means the voter sets differ by at
 * most one replica, which this function guarantees by construction.
 */
export function changeConfig(c: Config, cc: ConfChange): Config | string {
  if (!(cc.replica > 0)) return `replica id ${cc.replica} is not a positive integer`;
  const voters = c.voters.filter((v) => v !== cc.replica);
  const learners = c.learners.filter((l) => l !== cc.replica);
  if (cc.type === ConfChangeType.AddVoter) voters.push(cc.replica);
  else if (cc.type === ConfChangeType.AddLearner) {
    if (c.voters.includes(cc.replica))
      return `replica ${cc.replica} is a voter; remove it before adding it as a learner`;
    learners.push(cc.replica);
  } else if (!c.voters.includes(cc.replica) && !c.learners.includes(cc.replica)) {
    return `replica ${cc.replica} is not a member`;
  }
  if (voters.length === 0) return "a group cannot remove its last voter";
  if (voters.length + learners.length > MAX_GROUP_MEMBERS) return `a group has at most ${MAX_GROUP_MEMBERS} members`;
  const next = { voters: voters.sort((a, b) => a - b), learners: learners.sort((a, b) => a - b) };
  return next;
}

// ---- encoding: u16 voters, u16 learners, then u32 ids, little endian ------

export function encodeConfig(c: Config): Uint8Array {
  const out = new Uint8Array(4 + 4 * (c.voters.length + c.learners.length));
  const v = new DataView(out.buffer);
  v.setUint16(0, c.voters.length, true);
  v.setUint16(2, c.learners.length, true);
  let at = 4;
  for (const id of [...c.voters, ...c.learners]) {
    v.setUint32(at, id, true);
    at += 4;
  }
  return out;
}

export function decodeConfig(data: Uint8Array): Config {
  assert(data.length >= 4, "a configuration entry has its header");
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const nv = v.getUint16(0, true);
  const nl = v.getUint16(2, true);
  assert(data.length === 4 + 4 * (nv + nl), "a configuration entry has exactly its ids");
  assert(nv + nl <= MAX_GROUP_MEMBERS, "a configuration is within the member limit");
  const ids: number[] = [];
  for (let i = 0; i < nv + nl; i++) ids.push(v.getUint32(4 + 4 * i, true));
  return { voters: ids.slice(0, nv), learners: ids.slice(nv) };
}
