/**
 * Starting and stopping a node process: logger, IO loop, signals.
 * SIGINT/SIGTERM stop accepting, finish what is in flight, exit 0.
 */
import { pino } from "pino";
import { PeerFaults } from "../chaos/peer-faults.js";
import { ClusterShards } from "../cluster/backend.js";
import { PlacementError, parseMemberLists } from "../cluster/placement.js";
import { PiccoloNode } from "../io/server.js";
import { startResp } from "../resp/listener.js";
import type { NodeConfig } from "./config.js";

export async function runNode(config: NodeConfig): Promise<PiccoloNode> {
  // Structured logs on stderr, quiet by default (warn): a store should not
  // chatter. `--log-level info` shows start-up, pinning and shutdown.
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination(2));
  const cluster = config.cluster;
  let backend: ConstructorParameters<typeof PiccoloNode>[0]["backend"];
  if (cluster !== null) {
    const { bootstrap, all: members } = parseMemberLists(cluster.members, cluster.joined);
    const self = members.find((m) => m.name === cluster.nodeId);
    if (self === undefined) throw new PlacementError(`--node-id ${cluster.nodeId} is not in --cluster or --joined`);
    const faultFile = process.env.PICCOLO_TEST_FAULT_FILE;
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
          electionTicks: 10,
          heartbeatTicks: 2,
          quiesceAfterTicks: cluster.quiesceTicks,
          logger,
          // TEST ONLY: the chaos harness's network faults (src/chaos/peer-faults.ts); never set in production.
          ...(faultFile === undefined ? {} : { wrapNetwork: (make) => new PeerFaults(faultFile, logger).wrap(make) }),
        },
        events,
      );
  }
  const node = new PiccoloNode({ ...config, logger, ...(backend === undefined ? {} : { backend }) });
  const port = await node.start();
  const resp = config.respPort === 0 ? 0 : await startResp(node, config.respPort, port, config.requirePass);
  // One line on stdout for people and scripts (tests wait for it).
  const respNote = resp === 0 ? "resp disabled" : `resp on ${config.host}:${resp}`;
  const mode =
    cluster === null
      ? `shards: ${config.shards}`
      : `cluster member ${cluster.nodeId}, partitions: ${cluster.partitions}`;
  process.stdout.write(`piccolo listening on ${config.host}:${port} (${mode}), ${respNote}\n`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    node.stop().then(
      () => process.exit(process.exitCode ?? 0),
      (err) => {
        logger.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  return node;
}
