/**
 * A node's own metrics and health over HTTP (`--metrics-port`, off by
 * default: docs/metrics.md, decision 0273):
 *
 *   GET /metrics   Prometheus text (prom-client, a registry of this node's own)
 *   GET /healthz   200 while the process runs
 *   GET /readyz    200 when the node serves: a single node once it has
 *                  recovered and listens; a cluster member when every
 *                  partition has a leader it knows of. Else 503, JSON reason.
 *
 * Anything else is 404. Nothing here shows a key or a value: only counts.
 *
 * The numbers are gathered on each scrape, never in between: the shards'
 * STATS (one command per shard through the dispatcher, as the native STATS
 * does) and, on a cluster member, its cluster info. One gathering serves
 * every metric of a scrape. The shards' and the member's counters are their
 * own cumulative figures since the process started: they are exposed as
 * prom-client Counters whose collect() sets the current value (reset, then
 * inc by it), so their type is "counter" and rate() works; they restart at 0
 * with the process, as any counter does.
 *
 * The names are the gateway's (src/cerializer/metrics.ts) without its
 * `node_` part and `node` label: there the gateway reports on the nodes it
 * talks to, here a node reports on itself (Prometheus adds `instance`).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Logger } from "pino";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { ErrorCode } from "../errors.js";
import { type Dispatcher, InFlight, type RequestOwner } from "../io/dispatch.js";
import { statsRow } from "../io/native.js";
import type { PiccoloNode } from "../io/server.js";
import type { ClusterInfo } from "../io/shards.js";
import type { ShardStatsRow } from "../protocol/codec.js";
import { clientPortOptions, type TlsFiles } from "../security/tls-files.js";
import { Op, type Result } from "../shard/command.js";
import { listenFailure } from "../start-failure.js";

/** How long one scrape waits for the shards or the cluster info before leaving them out. */
export const METRICS_GATHER_TIMEOUT_MS = 2_000;

const EMPTY = new Uint8Array(0);

/** Nobody reads this request's answer: the rows go to a promise. */
const NO_OWNER: RequestOwner = { requestDone() {}, charge() {}, gone: false };

/** One STATS command per shard; settles once every shard answered. */
class StatsGather extends InFlight {
  private readonly rows: (ShardStatsRow | null)[];
  private answered = 0;

  constructor(
    private readonly shards: number,
    private readonly done: (rows: ShardStatsRow[]) => void,
  ) {
    super(NO_OWNER);
    this.rows = new Array<ShardStatsRow | null>(shards).fill(null);
  }

  onResult(part: number, r: Result, _d: Dispatcher): void {
    // A shard that could not answer (a partition unavailable here) is left out, not shown as zero.
    if (r.status === ErrorCode.OK && r.value !== null) this.rows[part] = statsRow(part, r.value);
    if (++this.answered === this.shards) {
      this.finish(EMPTY);
      this.done(this.rows.filter((x): x is ShardStatsRow => x !== null));
    }
  }
}

/**
 * Every shard's STATS row, as the native STATS gathers it. (An inline shard
 * answers inside send(), so completion counts answers, not `remaining`.)
 */
export function shardStats(node: PiccoloNode): Promise<ShardStatsRow[]> {
  if (node.stopping) return Promise.reject(new Error("the node is stopping"));
  const d = node.dispatcher;
  const n = d.shardCount;
  return new Promise((resolve) => {
    const req = new StatsGather(n, resolve);
    const now = Date.now();
    for (let s = 0; s < n; s++) {
      d.begin(Op.STATS, now);
      d.send(s, req, s, EMPTY);
    }
    // The node publishes the rings at the end of the turn (the hook a result handler's sends use).
    d.onSentLater();
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** What one scrape gathers once for all its metrics (null: not available this time). */
interface Scrape {
  shards: ShardStatsRow[] | null;
  cluster: ClusterInfo | null;
}

/** The node's registry: process metrics, connections, per-shard figures, and a member's Raft figures. */
export function nodeRegistry(node: PiccoloNode, options: { cluster: boolean; durable: boolean }): Registry {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const gatherErrors = new Counter({
    name: "piccolo_metrics_gather_errors_total",
    help: "Scrapes that could not gather the shards' STATS or the cluster info (those metrics were left out)",
    labelNames: ["source"],
    registers,
  });
  // One gathering per scrape, shared by every collect() of that scrape.
  let current: Promise<Scrape> | null = null;
  const scrape = (): Promise<Scrape> => {
    current ??= Promise.all([
      within(shardStats(node), METRICS_GATHER_TIMEOUT_MS, "STATS").catch(() => {
        gatherErrors.inc({ source: "stats" });
        return null;
      }),
      options.cluster
        ? within(node.dispatcher.clusterInfo(), METRICS_GATHER_TIMEOUT_MS, "cluster info").catch(() => {
            gatherErrors.inc({ source: "cluster" });
            return null;
          })
        : Promise.resolve(null),
    ])
      .then(([shards, cluster]) => ({ shards, cluster }))
      .finally(() => setTimeout(() => (current = null), 0));
    return current;
  };

  new Gauge({
    name: "piccolo_connections",
    help: "Open client connections, all ports together",
    registers,
    collect() {
      this.set(node.dispatcher.connections);
    },
  });

  // Per shard (a cluster member: per partition, this member's replica of it).
  type Field = "keys" | "memoryBytes" | "reads" | "writes" | "expired";
  const shardFields: [string, Field, string, "gauge" | "counter"][] = [
    ["piccolo_keys", "keys", "Live keys per shard", "gauge"],
    ["piccolo_memory_bytes", "memoryBytes", "Bytes the shard's map uses", "gauge"],
    ["piccolo_reads_total", "reads", "Reads the shard has served", "counter"],
    ["piccolo_writes_total", "writes", "Writes the shard has applied", "counter"],
    ["piccolo_expired_total", "expired", "Keys the shard has expired", "counter"],
  ];
  for (const [name, field, help, type] of shardFields)
    metric(type, name, help, ["shard"], registers, async (set) => {
      for (const s of (await scrape()).shards ?? []) set({ shard: String(s.shard) }, s[field]);
    });

  if (options.durable) {
    type P = keyof NonNullable<ShardStatsRow["persistence"]>;
    const journal: [string, P, string, "gauge" | "counter", number][] = [
      ["piccolo_fsyncs_total", "fsyncs", "fsyncs of the shard's log", "counter", 1],
      ["piccolo_fsync_seconds_total", "fsyncTotalMs", "Time spent in fsync of the shard's log", "counter", 1e-3],
      ["piccolo_fsync_max_seconds", "fsyncMaxMs", "Longest fsync of the shard's log since start", "gauge", 1e-3],
      ["piccolo_log_bytes", "logBytes", "Bytes in the shard's log since its last snapshot", "gauge", 1],
      ["piccolo_snapshot_bytes", "snapshotBytes", "Bytes of the shard's newest snapshot", "gauge", 1],
      ["piccolo_refusing_writes", "refusingWrites", "1 while the shard's log cannot be written", "gauge", 1],
    ];
    for (const [name, field, help, type, scale] of journal)
      metric(type, name, help, ["shard"], registers, async (set) => {
        for (const s of (await scrape()).shards ?? []) {
          const v = s.persistence?.[field];
          if (v !== undefined) set({ shard: String(s.shard) }, typeof v === "boolean" ? Number(v) : v * scale);
        }
      });
  }

  if (options.cluster) {
    type S = keyof ClusterInfo["stats"];
    const stats: [string, S, string, "gauge" | "counter", number][] = [
      ["piccolo_cluster_proposals_total", "proposals", "Writes this member led to commit and apply", "counter", 1],
      ["piccolo_cluster_elections_total", "elections", "Elections this member's replicas started", "counter", 1],
      ["piccolo_cluster_leader_changes_total", "leaderChanges", "Leader changes this member has seen", "counter", 1],
      ["piccolo_cluster_proposal_p50_seconds", "proposalP50Us", "Proposal to applied, median", "gauge", 1e-6],
      ["piccolo_cluster_proposal_p99_seconds", "proposalP99Us", "Proposal to applied, 99th percentile", "gauge", 1e-6],
      ["piccolo_cluster_wal_rounds_total", "walWrites", "WAL write rounds (one fsync each when needed)", "counter", 1],
      ["piccolo_cluster_wal_p50_seconds", "walP50Us", "WAL round latency (write and fsync), median", "gauge", 1e-6],
      ["piccolo_cluster_wal_p99_seconds", "walP99Us", "WAL round latency, 99th percentile", "gauge", 1e-6],
      ["piccolo_cluster_forwarded_total", "forwarded", "Commands forwarded to a partition's leader", "counter", 1],
      [
        "piccolo_cluster_snapshots_installed_total",
        "snapshotsInstalled",
        "Snapshots from a leader installed here",
        "counter",
        1,
      ],
      ["piccolo_cluster_quiesced_groups", "quiescedGroups", "Hosted Raft groups quiet right now (idle)", "gauge", 1],
    ];
    for (const [name, field, help, type, scale] of stats)
      metric(type, name, help, [], registers, async (set) => {
        const c = (await scrape()).cluster;
        if (c !== null) set({}, c.stats[field] * scale);
      });
    const partitions: [string, string, (p: ClusterInfo["partitions"][number], self: number) => number][] = [
      ["piccolo_partition_commit_index", "Highest log index known committed, this member's replica", (p) => p.commit],
      ["piccolo_partition_applied_index", "Highest log index applied to this member's replica", (p) => p.applied],
      ["piccolo_partition_is_leader", "1 when this member leads the partition", (p, self) => Number(p.leader === self)],
    ];
    for (const [name, help, value] of partitions)
      metric("gauge", name, help, ["partition"], registers, async (set) => {
        const c = (await scrape()).cluster;
        for (const p of c?.partitions ?? []) if (p.hosted) set({ partition: String(p.partition) }, value(p, c!.self));
      });
    metric(
      "gauge",
      "piccolo_partition_follower_lag",
      "Log entries a follower has yet to receive, as this member (the partition's leader) sees it",
      ["partition", "follower"],
      registers,
      async (set) => {
        const c = (await scrape()).cluster;
        if (c === null) return;
        const names = new Map(c.members.map((m) => [m.id, m.name]));
        for (const p of c.partitions)
          for (const f of p.followers)
            set({ partition: String(p.partition), follower: names.get(f.member) ?? String(f.member) }, f.lag);
      },
    );
  }
  return registry;
}

type Setter = (labels: Record<string, string>, value: number) => void;

/** A Gauge, or a Counter set to the node's own cumulative figure, filled anew on each scrape. */
function metric(
  type: "gauge" | "counter",
  name: string,
  help: string,
  labelNames: string[],
  registers: Registry[],
  fill: (set: Setter) => Promise<void>,
): void {
  if (type === "gauge")
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        this.reset();
        await fill((labels, v) => this.set(labels, v));
      },
    });
  else
    new Counter({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        this.reset();
        await fill((labels, v) => this.inc(labels, Math.max(0, v)));
      },
    });
}

/** /readyz: null when the node serves, else why not. */
export async function notReady(node: PiccoloNode, cluster: boolean): Promise<object | null> {
  if (node.stopping) return { reason: "the node is stopping" };
  if (!cluster) return null; // Started (recovered, listening) and not stopping: runNode opens this port after both.
  let info: ClusterInfo | null;
  try {
    info = await within(node.dispatcher.clusterInfo(), METRICS_GATHER_TIMEOUT_MS, "cluster info");
  } catch (err) {
    return { reason: `no cluster info: ${(err as Error).message}` };
  }
  if (info === null) return { reason: "no cluster info" };
  const leaderless = info.partitions.filter((p) => p.leader === 0).map((p) => p.partition);
  if (leaderless.length > 0)
    return {
      reason: `${leaderless.length} of ${info.partitions.length} partitions have no known leader`,
      partitions: leaderless,
    };
  return null;
}

export interface MetricsServer {
  port: number;
  /** Re-reads the TLS files (SIGHUP), as the client ports do; a file that cannot be read throws. */
  reloadTls(): void;
  close(): Promise<void>;
}

/**
 * Opens the metrics port on `host` (HTTPS with the client ports' files when
 * TLS is on). A port that cannot be listened on rejects with a StartError.
 */
export async function startMetricsServer(
  node: PiccoloNode,
  options: { host: string; port: number; tls: TlsFiles | null; cluster: boolean; durable: boolean; logger: Logger },
): Promise<MetricsServer> {
  const registry = nodeRegistry(node, options);
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    const json = (status: number, body: object): void => send(status, "application/json", `${JSON.stringify(body)}\n`);
    if (path !== "/metrics" && path !== "/healthz" && path !== "/readyz")
      return json(404, { error: "not found: /metrics, /healthz and /readyz are served here" });
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      return json(405, { error: "method not allowed" });
    }
    if (path === "/healthz") return json(200, { status: "ok" });
    if (path === "/readyz") {
      notReady(node, options.cluster).then(
        (why) => (why === null ? json(200, { ready: true }) : json(503, { ready: false, ...why })),
        (err: unknown) => json(503, { ready: false, reason: (err as Error).message }),
      );
      return;
    }
    registry.metrics().then(
      (text) => send(200, registry.contentType, text),
      (err: unknown) => {
        options.logger.warn({ err: (err as Error).message }, "a metrics scrape failed");
        json(500, { error: "the metrics could not be gathered" });
      },
    );
  };
  const tls = options.tls;
  const https = tls === null ? null : createHttpsServer(clientPortOptions(tls), handle);
  const server: Server = https ?? createHttpServer(handle);
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void =>
      reject(listenFailure(err, `${options.host}:${options.port}`, "the metrics port, --metrics-port"));
    server.once("error", failed);
    server.listen(options.port, options.host, () => {
      server.off("error", failed);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  return {
    port,
    reloadTls: () => {
      if (https !== null && tls !== null) https.setSecureContext(clientPortOptions(tls));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
