/**
 * The cluster over HTTP, for the web console's Cluster view and for scripts:
 *
 *   GET  /v1/cluster                      members (up or not) and every partition as its leader sees it
 *   POST /v1/cluster/transfer-leader      {partition, member}: hand a partition's leadership to a member
 *   POST /v1/cluster/replace              {old, new, partitions?}: one step of moving old's replicas to new
 *   POST /v1/cluster/drain                {member}: one step of handing every partition it leads to a follower
 *   POST /v1/cluster/forget               {member}: every member drops a member that holds nothing, for good
 *
 * What `piccolo cluster status`, `transfer-leader` and `replace` do, asked
 * through the gateway's own links to the members (the CLI opens connections
 * of its own), as the caller: the node decides what the caller may do, so
 * the two admin actions need a user with admin permission (403 otherwise),
 * exactly as on the native and Redis ports (docs/security.md).
 *
 * Replace is a loop of idempotent steps that each must commit before the
 * next (src/cli/cluster-replace.ts). An HTTP request should not hold on for
 * the minute that can take, so each POST takes one step for every partition
 * not yet moved and answers at once; the caller posts again (with the
 * `partitions` the first answer named) until `pending` is empty. The state
 * lives in the groups' logs, as for the CLI: a console closed mid-way loses
 * nothing, and posting again goes on where it was. Drain is the same: each
 * POST asks, for every partition the member leads, its least-behind voter to
 * take over, and answers which it led when asked; the caller posts again
 * until none (as `piccolo cluster drain` asks every 200 ms).
 *
 * Forget changes every member's address book for good, so it first checks,
 * as `piccolo cluster forget` does (src/cli/cluster-forget.ts), that no
 * partition's configuration lists the member; refused, nothing changes.
 */
import type { FastifyInstance } from "fastify";
import type { ClusterInfo } from "../../client/client.js";
import { type ClusterStatus, mergeStatus } from "../../client/cluster-status.js";
import type { Gateway } from "../context.js";
import type { Caller } from "../pool.js";
import { Problem, problemFromError } from "../problems.js";
import { within } from "../within.js";

/** How long GET /v1/cluster waits for a member's answer before showing it as not answering. */
export const CLUSTER_STATUS_ASK_MS = 1_000;

const problemRef = { $ref: "problem#" };
/** What an admin action may answer besides its result: bad input, no credentials or permission, no cluster, a node's failure. */
/** The body of the admin actions on one member (drain, forget). */
const MEMBER_BODY = {
  type: "object",
  required: ["member"],
  additionalProperties: false,
  properties: { member: { type: "integer", minimum: 1 } },
} as const;

const ADMIN_ACTION_PROBLEMS = {
  400: problemRef,
  401: problemRef,
  403: problemRef,
  501: problemRef,
  502: problemRef,
  503: problemRef,
  504: problemRef,
};
const ids = { type: "array", items: { type: "integer" } };
const memberSchema = {
  type: "object",
  properties: {
    id: { type: "integer" },
    name: { type: "string" },
    peerAddress: { type: "string" },
    clientAddress: { type: "string" },
    connected: { type: "boolean", description: "the member whose view this is has a live peer connection to it" },
    answered: { type: "boolean", description: "it answered the gateway for this request (false: down or cut off)" },
    asked: {
      type: "boolean",
      description:
        "the gateway has a link to it and asked it (false: it holds no replica yet, so the gateway does not)",
    },
    stats: { type: ["object", "null"], additionalProperties: true },
  },
};
const partitionSchema = {
  type: "object",
  properties: {
    partition: { type: "integer" },
    leader: { type: "integer", description: "member id; 0 when no leader is known" },
    term: { type: "integer" },
    commit: { type: "integer" },
    applied: { type: "integer" },
    lastIndex: { type: "integer" },
    hosted: { type: "boolean" },
    leaderChanges: { type: "integer" },
    replicas: ids,
    learners: ids,
    seenBy: { type: "integer", description: "the member whose answer this row is (its leader's when it answered)" },
    followers: {
      type: "array",
      items: {
        type: "object",
        properties: {
          member: { type: "integer" },
          match: { type: "integer" },
          lag: { type: "integer", description: "entries the follower has yet to receive" },
          state: { type: "string" },
          active: { type: "boolean" },
          learner: { type: "boolean" },
        },
      },
    },
  },
};

export function clusterRoutes(app: FastifyInstance, g: Gateway): void {
  app.get(
    "/v1/cluster",
    {
      schema: {
        summary: "The cluster: members, and each partition's leader, term, commit, apply and follower lag",
        description:
          "Asks every member the gateway knows (as the caller) for its cluster info, within 1 s each, and merges " +
          "the answers as `piccolo cluster status` does. A member that did not answer has `answered: false`. " +
          "501 when the gateway is not in front of a cluster (--cluster true).",
        response: {
          200: {
            type: "object",
            properties: {
              self: { type: "integer" },
              members: { type: "array", items: memberSchema },
              partitions: { type: "array", items: partitionSchema },
            },
          },
          401: problemRef,
          403: problemRef,
          501: problemRef,
          503: problemRef,
          504: problemRef,
        },
      },
    },
    async (req) => {
      const s = await statusOf(g, req.caller);
      const asked = new Set(g.router.nodes.map((l) => l.address));
      return {
        self: s.self,
        members: s.members.map((m) => ({ ...m, asked: asked.has(m.clientAddress) })),
        partitions: s.partitions,
      };
    },
  );

  app.post(
    "/v1/cluster/transfer-leader",
    {
      schema: {
        summary: "Hand a partition's leadership to a member (admin)",
        description:
          "Passes the request to the partition's leader and answers once it has it; the handover itself takes a " +
          "round trip or two (GET /v1/cluster shows it). Needs a user with admin permission (403 otherwise).",
        body: {
          type: "object",
          required: ["partition", "member"],
          additionalProperties: false,
          properties: {
            partition: { type: "integer", minimum: 0 },
            member: { type: "integer", minimum: 1, description: "the member id (GET /v1/cluster lists them)" },
          },
        },
        response: {
          200: { type: "object", properties: { ok: { type: "boolean" } } },
          ...ADMIN_ACTION_PROBLEMS,
        },
      },
    },
    async (req) => {
      requireCluster(g);
      const { partition, member } = req.body as { partition: number; member: number };
      await g.router.anyNode().run(req.caller, (c) => c.transferLeader(partition, member));
      return { ok: true };
    },
  );

  app.post(
    "/v1/cluster/replace",
    {
      schema: {
        summary: "One step of moving every replica of member `old` to member `new` (admin)",
        description:
          "For each partition to move (`partitions`, or on the first call every partition `old` holds where `new` " +
          "does not vote yet), asks its leader for the next membership step: `new` joins as a learner, catches " +
          "up, votes, then `old` leaves. Post again with the `partitions` of the first answer until `pending` is " +
          "empty (about once a second; each step must commit first). Needs admin permission (403 otherwise).",
        body: {
          type: "object",
          required: ["old", "new"],
          additionalProperties: false,
          properties: {
            old: { type: "integer", minimum: 1 },
            new: { type: "integer", minimum: 1 },
            partitions: { type: "array", items: { type: "integer", minimum: 0 }, maxItems: 65536 },
          },
        },
        response: {
          200: {
            type: "object",
            properties: { partitions: ids, moved: ids, pending: ids, skipped: ids },
          },
          ...ADMIN_ACTION_PROBLEMS,
        },
      },
    },
    async (req) => {
      const body = req.body as { old: number; new: number; partitions?: number[] };
      if (body.old === body.new) throw new Problem("invalid-argument", "old and new are the same member");
      const s = await statusOf(g, req.caller);
      for (const id of [body.old, body.new])
        if (!s.members.some((m) => m.id === id))
          throw new Problem("invalid-argument", `no member with id ${id} (GET /v1/cluster lists them)`);
      type P = ClusterStatus["partitions"][number];
      const holds = (p: P, id: number) => p.replicas.includes(id) || p.learners.includes(id);
      const done = (p: P) => !holds(p, body.old) && p.replicas.includes(body.new);
      const skipped =
        body.partitions === undefined
          ? s.partitions.filter((p) => holds(p, body.old) && p.replicas.includes(body.new)).map((p) => p.partition)
          : [];
      const targets =
        body.partitions ??
        s.partitions.filter((p) => holds(p, body.old) && !p.replicas.includes(body.new)).map((p) => p.partition);
      const pending = s.partitions.filter((p) => targets.includes(p.partition) && !done(p));
      const link = g.router.anyNode();
      await Promise.all(
        pending.map((p) =>
          link
            .run(req.caller, (c) => c.replaceReplica(p.partition, body.old, body.new))
            .catch((err: unknown) => {
              // Refused for the caller: say so. Anything else (no leader now, a step still committing) is asked
              // again by the next post, as the CLI does.
              const status = problemFromError(err, true).status;
              if (status === 401 || status === 403) throw err;
            }),
        ),
      );
      const pendingIds = pending.map((p) => p.partition);
      return {
        partitions: targets,
        moved: targets.filter((t) => !pendingIds.includes(t)),
        pending: pendingIds,
        skipped,
      };
    },
  );

  drainAndForgetRoutes(app, g);
}

/** The follower to hand `p` to: an active voter other than `id`, the least behind (as src/cli/cluster-drain.ts). */
function drainTarget(p: ClusterStatus["partitions"][number], id: number): number | undefined {
  return p.followers
    .filter((f) => f.member !== id && f.active && !f.learner && p.replicas.includes(f.member))
    .sort((a, b) => a.lag - b.lag)[0]?.member;
}

/**
 * 403 unless the caller has admin permission, asked of a node (the native whoami). Drain and forget may
 * answer without an admin request reaching a node (nothing to hand over; a member that still holds
 * replicas), and a read-only user must be refused those too, not told the outcome.
 */
async function requireAdmin(g: Gateway, caller: Caller): Promise<void> {
  const w = await g.router.anyNode().run(caller, (c) => c.whoami());
  if (!w.admin) throw new Problem("forbidden", `${w.user} does not have admin permission`, { code: "NOPERM" });
}

function memberOf(s: ClusterStatus, id: number) {
  const m = s.members.find((x) => x.id === id);
  if (m === undefined) throw new Problem("invalid-argument", `no member with id ${id} (GET /v1/cluster lists them)`);
  return m;
}

/** POST /v1/cluster/drain and /v1/cluster/forget. */
function drainAndForgetRoutes(app: FastifyInstance, g: Gateway): void {
  app.post(
    "/v1/cluster/drain",
    {
      schema: {
        summary: "One step of handing every partition a member leads to a caught-up follower (admin)",
        description:
          "Asks, for each partition `member` leads, its leader to hand over to the least-behind active voter, and " +
          "answers the partitions it led when asked (`led`) and how many were asked (`asked`; a partition with no " +
          "caught-up follower now is not). The member keeps running. Post again, a few times a second, until `led` " +
          "is empty, as `piccolo cluster drain` does. Needs admin permission (403 otherwise).",
        body: MEMBER_BODY,
        response: {
          200: { type: "object", properties: { led: ids, asked: { type: "integer" } } },
          ...ADMIN_ACTION_PROBLEMS,
        },
      },
    },
    async (req) => {
      const { member } = req.body as { member: number };
      requireCluster(g);
      await requireAdmin(g, req.caller);
      const s = await statusOf(g, req.caller);
      memberOf(s, member);
      const led = s.partitions.filter((p) => p.leader === member);
      const link = g.router.anyNode();
      let asked = 0;
      await Promise.all(
        led.map((p) => {
          const to = drainTarget(p, member);
          if (to === undefined) return Promise.resolve();
          asked++;
          return link
            .run(req.caller, (c) => c.transferLeader(p.partition, to))
            .catch((err: unknown) => {
              // Refused for the caller: say so. Anything else (the leader changed meanwhile) is asked again next post.
              const status = problemFromError(err, true).status;
              if (status === 401 || status === 403) throw err;
            });
        }),
      );
      return { led: led.map((p) => p.partition), asked };
    },
  );

  app.post(
    "/v1/cluster/forget",
    {
      schema: {
        summary: "Every member drops a member that holds no replica, for good (admin)",
        description:
          "Refused, with nothing changed, while a partition's configuration lists `member` as voter or learner " +
          "(`holds`: move them first with POST /v1/cluster/replace) or a partition's configuration could not be " +
          "read (`unknown`). Otherwise asks each member the gateway has a link to, in parallel, to forget it: " +
          "`told` forgot it (now or before), `refused` said no with a reason, `unreached` could not be asked (each " +
          "learns it from the first peer it greets). The forgotten member stops. Needs admin permission.",
        body: MEMBER_BODY,
        response: {
          200: {
            type: "object",
            properties: {
              holds: ids,
              unknown: ids,
              told: { type: "array", items: { type: "string" } },
              refused: {
                type: "array",
                items: { type: "object", properties: { member: { type: "string" }, why: { type: "string" } } },
              },
              unreached: { type: "array", items: { type: "string" } },
            },
          },
          ...ADMIN_ACTION_PROBLEMS,
        },
      },
    },
    async (req) => {
      const { member } = req.body as { member: number };
      requireCluster(g);
      await requireAdmin(g, req.caller);
      const s = await statusOf(g, req.caller);
      const gone = memberOf(s, member);
      const report = {
        holds: [] as number[],
        unknown: [] as number[],
        told: [] as string[],
        refused: [] as { member: string; why: string }[],
        unreached: [] as string[],
      };
      // The same check as src/cli/cluster-forget.ts's configurationsListing, on the same merged view.
      for (const p of s.partitions) {
        if (p.replicas.includes(member) || p.learners.includes(member)) report.holds.push(p.partition);
        else if (p.seenBy !== p.leader && !p.hosted) report.unknown.push(p.partition);
      }
      if (report.holds.length > 0 || report.unknown.length > 0) return report;
      const links = new Map(g.router.nodes.map((l) => [l.address, l]));
      await Promise.all(
        s.members
          .filter((m) => m.id !== gone.id)
          .map(async (m) => {
            const link = links.get(m.clientAddress);
            // The gateway links only to members it routes to; one it has no link to learns it from its peers.
            if (link === undefined) return void report.unreached.push(m.name);
            try {
              await within(
                link.run(req.caller, (c) => c.forgetMember(member)),
                CLUSTER_STATUS_ASK_MS * 5,
              );
              report.told.push(m.name);
            } catch (err) {
              const p = problemFromError(err, true);
              if (p.status === 401 || p.status === 403) throw err;
              if (p.status >= 500) report.unreached.push(m.name);
              else report.refused.push({ member: m.name, why: (err as Error).message });
            }
          }),
      );
      report.told.sort();
      report.unreached.sort();
      return report;
    },
  );
}

function requireCluster(g: Gateway): void {
  if (!g.router.cluster)
    throw new Problem(
      "not-implemented",
      "this gateway is not in front of a cluster (start it with --cluster true); a single node has no partitions",
    );
}

/** Every member the gateway has a link to, asked as `as`; merged as the CLI merges them. */
async function statusOf(g: Gateway, as: Caller): Promise<ClusterStatus> {
  requireCluster(g);
  const answers: { address: string; info: ClusterInfo }[] = [];
  let firstError: unknown = null;
  await Promise.all(
    g.router.nodes.map(async (link) => {
      try {
        answers.push({
          address: link.address,
          info: await within(
            link.run(as, (c) => c.clusterInfo()),
            CLUSTER_STATUS_ASK_MS,
          ),
        });
      } catch (err) {
        firstError ??= err;
      }
    }),
  );
  if (answers.length === 0) throw firstError ?? new Problem("node-unavailable", "no cluster member answered");
  // The first answer in the gateway's link order gives the member list, so it does not jump between requests.
  const order = g.router.nodes.map((l) => l.address);
  answers.sort((a, b) => order.indexOf(a.address) - order.indexOf(b.address));
  const views = new Map<number, ClusterInfo>();
  for (const a of answers) views.set(a.info.self, a.info);
  return mergeStatus(answers[0]!.info, views);
}
