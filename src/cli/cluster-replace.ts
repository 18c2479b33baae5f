/**
 * `piccolo cluster replace <old> <new>`: moves every replica member <old>
 * holds to member <new>, by Raft membership changes (decision 0186).
 *
 * For each partition with a replica on <old>, the partition's leader takes
 * one step per request (src/cluster/group-host.ts, stepReplace): <new> joins as
 * a learner and catches up from the log or a snapshot, is promoted to voter,
 * then <old> leaves. Each step must commit before the next is accepted, and
 * leaders change under faults, so this command does not trust any single
 * request: it asks again every 200 ms and watches the partitions'
 * configurations (as their leaders report them) until every one is done,
 * or gives up after `timeoutMs` and says which are not.
 *
 * The command is safe to interrupt and run again: every step is idempotent
 * and the state lives in the groups' logs, not here.
 */
import type { PiccoloClient } from "../client/client.js";
import { type ClusterStatus, gatherStatus } from "./cluster-status.js";

export interface ReplaceReport {
  /** Partitions moved from <old> to <new>. */
  moved: number[];
  /** Partitions where <new> already voted: <old>'s replica is left there (moving it would lose a copy). */
  skipped: number[];
  /** Partitions not finished before the deadline, with their last configuration. */
  unfinished: { partition: number; replicas: number[]; learners: number[] }[];
}

export async function replaceMember(
  first: PiccoloClient,
  connect: (address: string) => PiccoloClient,
  oldId: number,
  newId: number,
  timeoutMs: number,
  say: (line: string) => void,
): Promise<ReplaceReport> {
  const holds = (p: ClusterStatus["partitions"][number], id: number) =>
    p.replicas.includes(id) || p.learners.includes(id);
  let status = await gatherStatus(first, connect);
  const skipped = status.partitions
    .filter((p) => holds(p, oldId) && p.replicas.includes(newId))
    .map((p) => p.partition);
  const targets = new Set(
    status.partitions.filter((p) => holds(p, oldId) && !p.replicas.includes(newId)).map((p) => p.partition),
  );
  say(
    `${targets.size} partitions to move${skipped.length > 0 ? `, ${skipped.length} skipped (the new member already votes there)` : ""}`,
  );
  const done = (p: ClusterStatus["partitions"][number]) => !holds(p, oldId) && p.replicas.includes(newId);
  const deadline = Date.now() + timeoutMs;
  let reported = -1;
  for (;;) {
    const pending = status.partitions.filter((p) => targets.has(p.partition) && !done(p));
    const finished = targets.size - pending.length;
    if (finished !== reported) {
      say(`${finished}/${targets.size} partitions moved`);
      reported = finished;
    }
    if (pending.length === 0 || Date.now() > deadline)
      return {
        moved: [...targets].filter((t) => !pending.some((p) => p.partition === t)).sort((a, b) => a - b),
        skipped,
        unfinished: pending.map((p) => ({ partition: p.partition, replicas: p.replicas, learners: p.learners })),
      };
    await Promise.all(
      pending.map((p) =>
        first.replaceReplica(p.partition, oldId, newId).catch(() => {
          // No leader right now, or a step refused while the last one commits: asked again shortly.
        }),
      ),
    );
    await new Promise((r) => setTimeout(r, 200));
    status = await gatherStatus(first, connect);
  }
}
