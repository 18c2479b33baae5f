/**
 * `piccolo cluster drain <member>`: hands every partition <member> leads to
 * a caught-up follower, by Raft's leadership transfer, without stopping it:
 * what a member does by itself on SIGTERM before it stops (src/cluster/
 * admin.ts, handOffLeadership), for an operator who wants the member idle
 * first (to watch it, or to stop it with nothing to hand over).
 *
 * Like `cluster replace`, it trusts no single request: it asks, then looks
 * at the partitions as their leaders report them, every 200 ms, until the
 * member leads none or `timeoutMs` passes.
 */
import type { PiccoloClient } from "../client/client.js";
import { type ClusterStatus, gatherStatus } from "./cluster-status.js";

export interface DrainReport {
  /** Partitions the member led at the start. */
  led: number;
  /** Partitions it still leads at the deadline (no caught-up follower reachable). */
  left: number[];
}

/** The follower to hand `p` to: an active voter other than `id`, the least behind. */
function target(p: ClusterStatus["partitions"][number], id: number): number | undefined {
  return p.followers
    .filter((f) => f.member !== id && f.active && !f.learner && p.replicas.includes(f.member))
    .sort((a, b) => a.lag - b.lag)[0]?.member;
}

export async function drainMember(
  first: PiccoloClient,
  connect: (address: string) => PiccoloClient,
  id: number,
  timeoutMs: number,
  say: (line: string) => void,
): Promise<DrainReport> {
  const deadline = Date.now() + timeoutMs;
  let led = -1;
  let reported = -1;
  for (;;) {
    const status = await gatherStatus(first, connect);
    const mine = status.partitions.filter((p) => p.leader === id);
    if (led < 0) led = mine.length;
    if (mine.length !== reported) {
      say(`${led - mine.length}/${led} partitions handed over`);
      reported = mine.length;
    }
    if (mine.length === 0 || Date.now() > deadline) return { led, left: mine.map((p) => p.partition) };
    await Promise.all(
      mine.map((p) => {
        const to = target(p, id);
        // No caught-up follower right now, or the leader changed meanwhile: asked again shortly.
        return to === undefined ? undefined : first.transferLeader(p.partition, to).catch(() => {});
      }),
    );
    await new Promise((r) => setTimeout(r, 200));
  }
}
