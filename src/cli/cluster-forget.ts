/**
 * `piccolo cluster forget <member>`: every member drops a member that holds
 * nothing any more (after `piccolo cluster replace`) from its address book,
 * for good (decision 0214).
 *
 * First the check, before anything changes: the member must be in no
 * partition's configuration, as voter or learner, going by each partition's
 * own configuration as its leader reports it (the same view `cluster
 * replace` works from: src/cli/cluster-status.ts, gatherStatus). A partition
 * whose configuration nobody who holds it reported (no leader answered, and
 * the asked member holds no replica) counts as a refusal too: we cannot know.
 *
 * Then the member in --server is asked, and, once it has forgotten (it
 * checks its own replicas again, and records it durably), every other member
 * it knows, in parallel; each answers for itself. A member that cannot be
 * reached is reported: it learns the fact from the first member it greets
 * when it is back (every hello carries the forgotten list), or from this
 * command run again. Running it again is safe: a member that has already
 * forgotten answers OK.
 */
import type { PiccoloClient } from "../client/client.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import { type ClusterStatus, gatherStatus } from "./cluster-status.js";

export interface ForgetReport {
  /** Partitions whose configuration still lists the member (voter or learner): nothing was changed. */
  holds: number[];
  /** Partitions whose configuration could not be read from a member holding them: nothing was changed. */
  unknown: number[];
  /** Members that have forgotten it (now or before). */
  told: string[];
  /** Members that refused, with their reason. */
  refused: { member: string; why: string }[];
  /** Members that could not be reached (they learn it from their peers' hellos when back). */
  unreached: string[];
}

/** The partitions whose configuration lists `id`, and those whose configuration is not known. */
export function configurationsListing(status: ClusterStatus, id: number): { holds: number[]; unknown: number[] } {
  const holds: number[] = [];
  const unknown: number[] = [];
  for (const p of status.partitions) {
    if (p.replicas.includes(id) || p.learners.includes(id)) holds.push(p.partition);
    // Neither its leader's view nor a replica's: the placement computed at bootstrap, not a configuration.
    else if (p.seenBy !== p.leader && !p.hosted) unknown.push(p.partition);
  }
  return { holds, unknown };
}

export async function forgetMember(
  first: PiccoloClient,
  connect: (address: string) => PiccoloClient,
  id: number,
): Promise<ForgetReport> {
  const status = await gatherStatus(first, connect);
  const { holds, unknown } = configurationsListing(status, id);
  const report: ForgetReport = { holds, unknown, told: [], refused: [], unreached: [] };
  if (holds.length > 0 || unknown.length > 0) return report;
  const self = status.members.find((m) => m.id === status.self)!;
  try {
    await first.forgetMember(id);
    report.told.push(self.name);
  } catch (err) {
    // The first refusal stops the command: no member has changed anything yet.
    report.refused.push({ member: self.name, why: (err as Error).message });
    return report;
  }
  const others = status.members.filter((m) => m.id !== status.self && m.id !== id);
  await Promise.all(
    others.map(async (m) => {
      if (m.clientAddress === "") {
        report.unreached.push(m.name);
        return;
      }
      const c = connect(m.clientAddress);
      try {
        await c.forgetMember(id);
        report.told.push(m.name);
      } catch (err) {
        const code = err instanceof PiccoloError ? err.code : -1;
        if (code === ErrorCode.CONNECTION_CLOSED || code === ErrorCode.TIMEOUT || code === ErrorCode.SHUTTING_DOWN)
          report.unreached.push(m.name);
        else report.refused.push({ member: m.name, why: (err as Error).message });
      } finally {
        await c.close().catch(() => {});
      }
    }),
  );
  report.told.sort();
  report.unreached.sort();
  return report;
}
