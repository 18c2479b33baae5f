/**
 * Operating the gateway: /healthz (the process is alive), /readyz (it can
 * serve every key: take traffic; router.ts and cluster-view.ts say when),
 * /v1/stats (the gateway's and each node's numbers as JSON) and /metrics
 * (Prometheus text format).
 */
import type { FastifyInstance } from "fastify";
import type { Gateway } from "../context.js";
import { Problem, problemFromError } from "../problems.js";

export function opsRoutes(app: FastifyInstance, g: Gateway): void {
  const nodeStates = () =>
    g.router.nodes.map((n) => ({ node: n.address, up: n.up, inFlight: n.inFlight, error: n.lastError || undefined }));

  app.get(
    "/healthz",
    {
      schema: {
        summary: "Liveness: the gateway process answers",
        response: { 200: { type: "object", properties: { ok: { type: "boolean" } } } },
      },
    },
    async () => ({ ok: true }),
  );

  app.get(
    "/readyz",
    {
      schema: {
        summary: "Readiness: the gateway can serve every key",
        description:
          "200 when the gateway can serve every key, else 503 saying why, with each node's state. " +
          "Independent nodes: every node must be reachable. A cluster (--cluster true): some member " +
          "answers and every partition has a reachable leader (a failover shorter than 5 s does not count).",
        response: { 200: { type: "object", additionalProperties: true }, 503: { $ref: "problem#" } },
      },
    },
    async () => {
      const r = g.router.readiness();
      const nodes = nodeStates();
      const cluster = g.router.cluster
        ? { members: r.members, partitions: r.partitions, withoutLeader: r.withoutLeader }
        : undefined;
      if (r.ready) return { ready: true, nodes, ...(cluster === undefined ? {} : { cluster }) };
      throw new Problem(
        "node-unavailable",
        `not ready: ${r.reason}`,
        { nodes, ...(cluster === undefined ? {} : { cluster }) },
        { "retry-after": "1" },
      );
    },
  );

  app.get(
    "/v1/stats",
    {
      schema: {
        summary: "Gateway and node statistics",
        description:
          "gateway.lastSecond: the last whole wall-clock second's data requests (/v1/kv, /v1/batch, /v1/txn, " +
          "/v1/rpc) through this gateway: count, errors (5xx) and latency percentiles in ms. nodes: each node's " +
          "STATS, as the caller.",
        response: { 200: { type: "object", additionalProperties: true } },
      },
    },
    async (req) => {
      const nodes = await Promise.all(
        g.router.nodes.map(async (n) => {
          const base = { node: n.address, up: n.up, inFlight: n.inFlight };
          try {
            return { ...base, stats: await n.run(req.caller, (c) => c.stats()) };
          } catch (err) {
            return { ...base, stats: null, error: problemFromError(err).detail };
          }
        }),
      );
      return {
        gateway: { uptimeMs: Date.now() - g.startedAt, pid: process.pid, lastSecond: g.recent.lastSecond() },
        nodes,
      };
    },
  );

  app.get(
    "/v1/slowlog",
    {
      schema: {
        summary: "Each node's slow log",
        description:
          'Each node\'s slowest recent requests, newest first (docs/tracing.md, "Slow requests"): id, timeMs, ' +
          "durationUs, args (a RESP command's arguments as Redis 7 keeps them; a native request's kind and key), client, clientName, port, and spans (the timeline) " +
          "when the request was traced. ?count=N (default 10). Admin only, as the caller.",
        querystring: {
          type: "object",
          properties: {
            count: { type: "string", pattern: "^[0-9]{1,4}$", description: "entries per node (default 10)" },
          },
        },
        response: { 200: { type: "object", additionalProperties: true } },
      },
    },
    async (req) => {
      const raw = (req.query as Record<string, string | undefined>).count;
      const count = raw === undefined ? 10 : Number(raw);
      const nodes = await Promise.all(
        g.router.nodes.map(async (n) => {
          const base = { node: n.address, up: n.up };
          try {
            return { ...base, slowlog: await n.run(req.caller, (c) => c.slowlog({ count })) };
          } catch (err) {
            return { ...base, slowlog: null, error: problemFromError(err).detail };
          }
        }),
      );
      return { nodes };
    },
  );

  app.get(
    "/metrics",
    { schema: { summary: "Prometheus metrics (text format)", response: { 200: { type: "string" } } } },
    async (_req, reply) => {
      reply.type(g.metrics.registry.contentType);
      return g.metrics.registry.metrics();
    },
  );
}
