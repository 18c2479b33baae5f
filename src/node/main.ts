/**
 * Starting and stopping a node process: logger, crash policy, IO loop, signals.
 * SIGINT/SIGTERM stop accepting, finish what is in flight, exit 0.
 * A start that fails (a port taken, a data directory it cannot use) closes
 * whatever it had opened and rejects with a StartError: the CLI prints its
 * one line and exits 71 (src/start-failure.ts). An error nobody catches
 * later stops the process with 70 (src/node/fatal.ts).
 */
import { accessSync, constants, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { pino } from "pino";
import { HEARTBEAT_TICKS } from "../cluster/deadlines.js";
import { PlacementError, parseMemberLists } from "../cluster/placement.js";
import { startIdleTrim } from "../idle-trim.js";
import type { Durability } from "../io/shards.js";
import { PiccoloNode } from "../io/server.js";
import { type DataDir, DataDirError, openDataDir } from "../journal/data-dir.js";
import { startResp } from "../resp/listener.js";
import { peerOptions } from "../security/tls-files.js";
import { Users } from "../security/users.js";
import { StartError } from "../start-failure.js";
import type { NodeConfig } from "./config.js";
import { installCrashPolicy } from "./fatal.js";
import type { MetricsServer } from "./metrics.js";

export async function runNode(config: NodeConfig): Promise<PiccoloNode> {
  // Structured logs on stderr, quiet by default (warn): a store should not
  // chatter. `--log-level info` shows start-up, pinning and shutdown.
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination(2));
  installCrashPolicy(logger);
  const cluster = config.cluster;
  if (cluster !== null) checkDataDir(cluster.dataDir);
  let backend: ConstructorParameters<typeof PiccoloNode>[0]["backend"];
  if (cluster !== null) {
    const { bootstrap, all: members } = parseMemberLists(cluster.members, cluster.joined);
    const self = members.find((m) => m.name === cluster.nodeId);
    if (self === undefined) throw new PlacementError(`--node-id ${cluster.nodeId} is not in --cluster or --joined`);
    const faultFile = process.env.PICCOLO_TEST_FAULT_FILE;
    // Loaded only for a cluster member (and the metrics server only with --metrics-port, the test faults
    // only when set): a single node's process does not carry their code (docs/decisions/0282).
    const { ClusterShards } = await import("../cluster/backend.js");
    const { PeerFaults } = faultFile === undefined ? { PeerFaults: null } : await import("../chaos/peer-faults.js");
    backend = (events) =>
      ClusterShards.start(
        {
          self,
          members,
          bootstrap,
          partitions: cluster.partitions,
          replicas: cluster.replicas,
          dataDir: cluster.dataDir,
          shards: config.shards,
          tickMs: cluster.tickMs,
          compactEntries: cluster.compactEntries,
          electionTicks: cluster.electionTicks,
          heartbeatTicks: HEARTBEAT_TICKS,
          quiesceAfterTicks: cluster.quiesceTicks,
          logger,
          peerTls: config.tlsCluster && config.tls !== null ? peerOptions(config.tls) : null,
          clusterSecret: config.clusterSecret,
          // TEST ONLY: the chaos harness's network faults (src/chaos/peer-faults.ts); never set in production.
          ...(faultFile === undefined || PeerFaults === null
            ? {}
            : { wrapNetwork: (make) => new PeerFaults(faultFile, logger).wrap(make) }),
        },
        events,
      );
  }
  // A single node's data directory: locked for this process, its shard count adopted.
  let dataDir: DataDir | null = null;
  let durability: Durability | null = null;
  let shards = config.shards;
  if (config.durability !== null) {
    const d = config.durability;
    checkDataDir(d.dataDir);
    try {
      dataDir = openDataDir(d.dataDir, config.shards, config.shardsExplicit);
    } catch (err) {
      if (err instanceof DataDirError) throw new StartError(`cannot start: ${err.message}`);
      throw err;
    }
    // --shards 0 (the maps on the IO thread) is one shard on disk: a directory of one shard keeps the
    // layout asked for, 0 or 1; one of more shards is adopted.
    if (!config.shardsExplicit && dataDir.shards !== Math.max(1, config.shards)) {
      logger.info({ dataDir: d.dataDir, shards: dataDir.shards }, "the data directory's shard count is adopted");
      shards = dataDir.shards;
    }
    durability = { shardDir: dataDir.shardDir, fsync: d.fsync, snapshotLogBytes: d.snapshotLogBytes };
  }
  for (const w of config.warnings) logger.warn(w);
  // Users: the file beside the data (or --aclfile), the default user's password from --requirepass and friends.
  let users: Users;
  try {
    if (config.aclFile !== null) mkdirSync(dirname(config.aclFile), { recursive: true });
    users = await Users.open(config.aclFile, config.requirePass);
  } catch (err) {
    dataDir?.release();
    throw new StartError(`cannot start: the users file ${config.aclFile} (--aclfile): ${(err as Error).message}`);
  }
  const node = new PiccoloNode({
    ...config,
    users,
    shards,
    logger,
    durability,
    ...(backend === undefined ? {} : { backend }),
  });
  let port: number;
  try {
    port = await node.start(); // cleans up after itself when it fails
  } catch (err) {
    dataDir?.release();
    throw err;
  }
  if (config.durability !== null) {
    const r = node.recovered ?? { keys: 0, ms: 0 };
    process.stdout.write(
      `piccolo data in ${config.durability.dataDir} (fsync ${config.durability.fsync}): recovered ${r.keys} keys in ${Math.round(r.ms)} ms\n`,
    );
    logger.info({ dataDir: config.durability.dataDir, keys: r.keys, ms: r.ms, shards }, "recovered");
  } else if (cluster === null) {
    process.stdout.write("piccolo data: in memory only (--in-memory): nothing survives a restart\n");
  }
  let resp = 0;
  // --metrics-port (off unless given): opened once the node has recovered and listens, so /readyz can say so.
  let metrics: MetricsServer | null = null;
  try {
    if (config.respPort !== 0) resp = await startResp(node, config.respPort, port, config.durability);
    if (config.metricsPort !== 0)
      metrics = await (await import("./metrics.js")).startMetricsServer(node, {
        host: config.host,
        port: config.metricsPort,
        tls: config.tls,
        cluster: cluster !== null,
        durable: config.durability !== null,
        logger,
      });
  } catch (err) {
    await node.stop();
    dataDir?.release();
    throw err;
  }
  if (metrics !== null)
    process.stdout.write(
      `piccolo metrics on ${config.tls === null ? "http" : "https"}://${config.host}:${metrics.port}/metrics (and /healthz, /readyz)\n`,
    );
  // One line on stdout for people and scripts (tests wait for it).
  const respNote = resp === 0 ? "resp disabled" : `resp on ${config.host}:${resp}`;
  const mode =
    cluster === null ? `shards: ${shards}` : `cluster member ${cluster.nodeId}, partitions: ${cluster.partitions}`;
  process.stdout.write(
    `piccolo listening on ${config.host}:${port} (${mode}${config.tls === null ? "" : ", TLS"}), ${respNote}\n`,
  );
  if (node.auth.protecting)
    logger.warn(
      { host: config.host },
      "protected mode: the default user has no password, so clients from other machines are refused; set one with --requirepass-file (or ACL SETUSER default on >password), or --protected-mode no if every client that can reach this address is trusted",
    );
  // Memory back from V8 once the node goes idle after a load (decision 0299).
  const trim = startIdleTrim((message) => logger.debug(message));
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    trim.stop();
    logger.info({ signal }, "stopping");
    node
      .handOffLeadership()
      .catch((err: unknown) => logger.warn({ err: (err as Error).message }, "handing leadership over failed"))
      .then(() => node.stop())
      .then(() => metrics?.close())
      .then(
        () => {
          dataDir?.release();
          process.exit(process.exitCode ?? 0);
        },
        (err) => {
          logger.error({ err }, "error while stopping");
          process.exit(1);
        },
      );
  };
  // SIGHUP: re-read the TLS files (a renewed certificate), as nginx and etcd do; open connections keep theirs.
  process.on("SIGHUP", () => {
    try {
      node.reloadTls();
      metrics?.reloadTls();
      logger.info("TLS certificate reloaded");
    } catch (err) {
      logger.error({ err: (err as Error).message }, "TLS certificate reload failed: the old one stays in use");
    }
  });
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  return node;
}

/**
 * The data directory exists (or can be made) and this process may read and
 * write it: checked before any group worker opens its WAL there, so a wrong
 * path or a read-only disk is one clear line, not a worker's stack.
 */
function checkDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new StartError(
      `cannot start: the data directory ${dir} (--data-dir) cannot be used: ${(err as Error).message}`,
    );
  }
}
