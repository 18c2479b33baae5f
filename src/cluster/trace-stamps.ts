/**
 * A traced command in a cluster (docs/tracing.md, "In a cluster"; decision
 * 0322): what the partition's leader did with it, carried back in its
 * Result (src/shard/command.ts: flag 2 and a JSON trailer), so no trace ever
 * travels in a Raft message. The leader's group host stamps the proposal,
 * its own WAL write, each follower's acknowledgement of the entry's index (a
 * follower acknowledges only what it has appended and fsynced), the commit
 * and the apply; a member that forwarded the command adds the forward and
 * moves the leader's stamps onto its own clock.
 *
 * Only traced commands (the command's traced byte, set by the IO thread)
 * are stamped: one byte test per command when off.
 */
import { Result } from "../shard/command.js";

/** One stage, in absolute times on the stamping member's clock (src/io/trace.ts, traceClock). */
export interface Stamp {
  stage: string;
  where: string;
  from: number;
  to: number;
  detail: string;
}

export interface ClusterTrace {
  stamps: Stamp[];
  /** When the member that served the command received it and answered it (its clock). */
  servedFrom: number;
  servedTo: number;
}

/** Whether an encoded command asks to be traced (its header's byte 2). */
export function isTracedCommand(command: Uint8Array): boolean {
  return command[2] === 1;
}

/** The same encoded Result with `t` as its cluster trace. */
export function withStamps(result: Uint8Array, t: ClusterTrace): Uint8Array {
  const r = new Result();
  if (!r.decode(result)) return result;
  r.traced = false;
  r.clusterTrace = new TextEncoder().encode(JSON.stringify(t));
  const out = new Uint8Array(r.byteLength());
  r.encode(out, 0);
  return out;
}

/** The cluster trace an encoded Result carries, or null. */
export function stampsOf(result: Uint8Array): ClusterTrace | null {
  const r = new Result();
  if (!r.decode(result) || r.clusterTrace === null) return null;
  return parseStamps(r.clusterTrace);
}

export function parseStamps(json: Uint8Array): ClusterTrace | null {
  try {
    return JSON.parse(new TextDecoder().decode(json)) as ClusterTrace;
  } catch {
    return null;
  }
}

/**
 * The leader's stamps moved onto this member's clock: the forward left at
 * `sentAt` and its answer came back at `answeredAt` (this member's clock);
 * the leader served it from `servedFrom` to `servedTo` (its own). The
 * network is taken to be as long each way, so the leader's receipt is
 * placed half the difference after `sentAt`. Two processes on one machine
 * share a clock anyway; on two machines this is the best a one-way trip
 * allows.
 */
export function shiftStamps(t: ClusterTrace, sentAt: number, answeredAt: number): Stamp[] {
  const network = Math.max(0, answeredAt - sentAt - (t.servedTo - t.servedFrom));
  const offset = sentAt + network / 2 - t.servedFrom;
  return t.stamps.map((s) => ({ ...s, from: s.from + offset, to: s.to + offset }));
}
