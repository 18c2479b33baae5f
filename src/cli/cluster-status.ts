/**
 * `piccolo cluster status`: the whole cluster, gathered from every member.
 *
 * A member knows its own replicas (term, commit, applied) but only a leader
 * knows how far behind each follower is. So the command asks the member in
 * --server first, learns every other member's client address from it (each
 * member announces its own in the peer hello), asks them too, and shows each
 * partition as its leader sees it. A member that does not answer is shown as
 * unreachable; partitions it leads fall back to the asked member's view,
 * without follower lag.
 */
import type { ClusterInfo, PiccoloClient } from "../client/client.js";
import { type ClusterStatus, mergeStatus } from "../client/cluster-status.js";

export type { ClusterStatus, MemberStatus } from "../client/cluster-status.js";

/** Asks `first`, then every member it knows the client address of. */
export async function gatherStatus(
  first: PiccoloClient,
  connect: (address: string) => PiccoloClient,
): Promise<ClusterStatus> {
  const mine = await first.clusterInfo();
  const views = new Map<number, ClusterInfo>([[mine.self, mine]]);
  await Promise.all(
    mine.members
      .filter((m) => m.id !== mine.self && m.clientAddress !== "")
      .map(async (m) => {
        const c = connect(m.clientAddress);
        try {
          const info = await c.clusterInfo();
          if (info.self === m.id) views.set(m.id, info);
        } catch {
          // Unreachable: shown as such.
        } finally {
          await c.close().catch(() => {});
        }
      }),
  );
  return mergeStatus(mine, views);
}

/** The status as text for a terminal. */
export function renderStatus(s: ClusterStatus): string[] {
  const name = (id: number) => s.members.find((m) => m.id === id)?.name ?? (id === 0 ? "-" : String(id));
  const ms = (us: number) => (us / 1000).toFixed(1);
  const out = [`as seen by ${name(s.self)}`, "members:"];
  for (const m of s.members) {
    const state = m.id === s.self ? "self" : m.answered ? "up" : m.connected ? "up (did not answer)" : "unreachable";
    out.push(
      `  ${m.name.padEnd(8)} peer ${m.peerAddress.padEnd(22)} client ${(m.clientAddress || "?").padEnd(22)} ${state}`,
    );
  }
  for (const m of s.members) {
    const st = m.stats;
    if (st === null) continue;
    out.push(
      `${m.name}: ${st.proposals} writes led (p50 ${ms(st.proposalP50Us)} ms, p99 ${ms(st.proposalP99Us)} ms), ` +
        `${st.walWrites} WAL rounds (p50 ${ms(st.walP50Us)} ms, p99 ${ms(st.walP99Us)} ms), ` +
        `${st.forwarded} forwarded, ${st.elections} elections started, ${st.leaderChanges} leader changes seen, ` +
        `${st.snapshotsInstalled} snapshots installed, ${st.quiescedGroups} groups quiet`,
    );
  }
  out.push("partition  leader    term      commit    applied   replicas        follower lag (entries)");
  for (const p of s.partitions) {
    const cols = p.hosted ? [String(p.term), String(p.commit), String(p.applied)] : ["", "", ""];
    const reps = [...p.replicas.map(name), ...p.learners.map((l) => `${name(l)}(learner)`)].join(",");
    const lag =
      p.followers.length === 0
        ? p.seenBy === p.leader
          ? ""
          : "(leader did not answer)"
        : p.followers
            .map(
              (f) =>
                `${name(f.member)}:${f.lag}${f.state === "replicate" ? "" : ` ${f.state}`}${f.active ? "" : " silent"}`,
            )
            .join("  ");
    out.push(
      `  ${String(p.partition).padEnd(9)}${name(p.leader).padEnd(10)}${cols.map((x) => x.padEnd(10)).join("")}${reps.padEnd(16)}${lag}`,
    );
  }
  return out;
}
