/**
 * The gateway's Prometheus metrics (GET /metrics), with prom-client: a
 * registry of its own (not the library's global one), so two gateways in one
 * process never mix their numbers.
 *
 *   piccolo_gateway_http_requests_total{method,route,status}
 *   piccolo_gateway_http_request_duration_seconds{method,route,status}  histogram
 *   piccolo_gateway_node_up{node}              1 up, 0 down
 *   piccolo_gateway_node_in_flight{node}       requests waiting on the node
 *   piccolo_gateway_node_state_changes_total{node,state}
 *   piccolo_node_keys{node,shard}, piccolo_node_memory_bytes{node,shard},
 *   piccolo_node_reads_total{node,shard}, piccolo_node_writes_total{node,shard},
 *   piccolo_node_expired_total{node,shard}    the nodes' own stats, read at scrape time
 *   plus prom-client's default process metrics (CPU, memory, event loop lag).
 *
 * Routes are labelled by their pattern (/v1/kv/:key), never by the URL, so
 * the number of series stays bounded whatever keys clients use.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { NodeLink } from "./pool.js";
import type { ClusterInfo, ClusterStats, ShardStats } from "../client/client.js";
import { within } from "./within.js";

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<"method" | "route" | "status">;
  readonly duration: Histogram<"method" | "route" | "status">;
  readonly stateChanges: Counter<"node" | "state">;

  /** `nodes()`: the links in use at scrape time (a cluster gateway's change as the cluster does). */
  constructor(nodes: () => readonly NodeLink[], scrapeTimeoutMs: number) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "piccolo_gateway_" });
    this.requests = new Counter({
      name: "piccolo_gateway_http_requests_total",
      help: "HTTP requests answered, by route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.duration = new Histogram({
      name: "piccolo_gateway_http_request_duration_seconds",
      help: "Time from request to response, by route pattern and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.stateChanges = new Counter({
      name: "piccolo_gateway_node_state_changes_total",
      help: "Times a node was marked down or up again",
      labelNames: ["node", "state"],
      registers,
    });
    new Gauge({
      name: "piccolo_gateway_node_up",
      help: "1 when the gateway can reach the node, 0 when it is marked down",
      labelNames: ["node"],
      registers,
      collect() {
        this.reset();
        for (const n of nodes()) this.set({ node: n.address }, n.up ? 1 : 0);
      },
    });
    new Gauge({
      name: "piccolo_gateway_node_in_flight",
      help: "Requests sent to the node and not yet answered",
      labelNames: ["node"],
      registers,
      collect() {
        this.reset();
        for (const n of nodes()) this.set({ node: n.address }, n.inFlight);
      },
    });
    // The nodes' own numbers, fetched once per scrape for all five gauges.
    let scrape: Promise<{ node: string; shards: Record<string, number>[] }[]> | null = null;
    const nodeStats = () => {
      scrape ??= Promise.all(
        nodes()
          .filter((n) => n.up)
          .map((n) =>
            within(
              n.run("gateway", (c) => c.stats()),
              scrapeTimeoutMs,
            ).then(
              (s) => ({ node: n.address, shards: s.shards as unknown as Record<string, number>[] }),
              () => ({ node: n.address, shards: [] }),
            ),
          ),
      ).finally(() => setTimeout(() => (scrape = null), 0));
      return scrape;
    };
    // Cluster members' own counters (cluster mode only; a single node has none).
    const clusterFields: [string, keyof ClusterStats, string][] = [
      ["piccolo_cluster_proposals_total", "proposals", "Writes this member led to commit and apply"],
      ["piccolo_cluster_proposal_p50_seconds", "proposalP50Us", "Proposal to applied, median"],
      ["piccolo_cluster_proposal_p99_seconds", "proposalP99Us", "Proposal to applied, 99th percentile"],
      ["piccolo_cluster_wal_rounds_total", "walWrites", "WAL write rounds (one fsync each when needed)"],
      ["piccolo_cluster_wal_p50_seconds", "walP50Us", "WAL round latency (write and fsync), median"],
      ["piccolo_cluster_wal_p99_seconds", "walP99Us", "WAL round latency (write and fsync), 99th percentile"],
      ["piccolo_cluster_forwarded_total", "forwarded", "Commands forwarded to a partition's leader"],
      ["piccolo_cluster_leader_changes_total", "leaderChanges", "Leader changes this member has seen"],
      ["piccolo_cluster_elections_total", "elections", "Elections this member's replicas started"],
      ["piccolo_cluster_snapshots_installed_total", "snapshotsInstalled", "Snapshots from a leader installed here"],
      ["piccolo_cluster_quiesced_groups", "quiescedGroups", "Hosted Raft groups quiet right now (idle)"],
    ];
    let clusterScrape: Promise<{ node: string; info: ClusterInfo }[]> | null = null;
    const clusterInfos = () => {
      clusterScrape ??= Promise.all(
        nodes()
          .filter((n) => n.up)
          .map((n) =>
            within(
              n.run("gateway", (c) => c.clusterInfo()),
              scrapeTimeoutMs,
            ).then(
              (info) => ({ node: n.address, info }),
              () => null,
            ),
          ),
      )
        .then((xs) => xs.filter((x): x is { node: string; info: ClusterInfo } => x !== null))
        .finally(() => setTimeout(() => (clusterScrape = null), 0));
      return clusterScrape;
    };
    for (const [name, field, help] of clusterFields)
      new Gauge({
        name,
        help,
        labelNames: ["node"],
        registers,
        async collect() {
          this.reset();
          for (const n of await clusterInfos()) {
            const v = n.info.stats[field];
            this.set({ node: n.node }, field.endsWith("Us") ? v / 1e6 : v);
          }
        },
      });
    new Gauge({
      name: "piccolo_cluster_follower_lag_entries",
      help: "Log entries a follower has yet to receive, as its partition's leader sees it",
      labelNames: ["node", "partition", "follower"],
      registers,
      async collect() {
        this.reset();
        for (const n of await clusterInfos())
          for (const p of n.info.partitions)
            for (const f of p.followers)
              this.set({ node: n.node, partition: String(p.partition), follower: String(f.member) }, f.lag);
      },
    });
    new Gauge({
      name: "piccolo_cluster_apply_lag_entries",
      help: "Entries committed but not yet applied on this member, per partition it holds",
      labelNames: ["node", "partition"],
      registers,
      async collect() {
        this.reset();
        for (const n of await clusterInfos())
          for (const p of n.info.partitions)
            if (p.hosted) this.set({ node: n.node, partition: String(p.partition) }, Math.max(0, p.commit - p.applied));
      },
    });
    const fields: [string, string, string][] = [
      ["piccolo_node_keys", "keys", "Live keys per shard"],
      ["piccolo_node_memory_bytes", "memoryBytes", "Bytes the shard's map uses"],
      ["piccolo_node_reads_total", "reads", "Reads the shard has served"],
      ["piccolo_node_writes_total", "writes", "Writes the shard has applied"],
      ["piccolo_node_expired_total", "expired", "Keys the shard has expired"],
    ];
    // A durable single node's journal, per shard (absent for in-memory nodes and cluster members).
    const journal: [string, keyof NonNullable<ShardStats["persistence"]>, string][] = [
      ["piccolo_node_log_bytes", "logBytes", "Bytes in the shard's log since its last snapshot"],
      ["piccolo_node_snapshot_bytes", "snapshotBytes", "Bytes of the shard's newest snapshot"],
      ["piccolo_node_last_save_timestamp_seconds", "lastSaveMs", "When the shard's last snapshot finished"],
      ["piccolo_node_fsyncs_total", "fsyncs", "fsyncs of the shard's log"],
      ["piccolo_node_fsync_seconds_total", "fsyncTotalMs", "Time spent in fsync of the shard's log"],
      ["piccolo_node_fsync_max_seconds", "fsyncMaxMs", "Longest fsync of the shard's log"],
      ["piccolo_node_refusing_writes", "refusingWrites", "1 while the shard's log cannot be written"],
    ];
    for (const [name, field, help] of journal)
      new Gauge({
        name,
        help,
        labelNames: ["node", "shard"],
        registers,
        async collect() {
          this.reset();
          for (const n of await nodeStats())
            for (const s of n.shards) {
              const p = (s as unknown as ShardStats).persistence;
              if (p === undefined) continue;
              const v = p[field];
              const seconds = field === "lastSaveMs" || field === "fsyncTotalMs" || field === "fsyncMaxMs";
              this.set(
                { node: n.node, shard: String(s.shard) },
                typeof v === "boolean" ? Number(v) : seconds ? v / 1000 : v,
              );
            }
        },
      });
    for (const [name, field, help] of fields)
      new Gauge({
        name,
        help,
        labelNames: ["node", "shard"],
        registers,
        async collect() {
          this.reset();
          for (const n of await nodeStats())
            for (const s of n.shards) this.set({ node: n.node, shard: String(s.shard) }, s[field] ?? 0);
        },
      });
  }
}
