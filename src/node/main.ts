/**
 * Starting and stopping a node process: logger, IO loop, signals.
 * SIGINT/SIGTERM stop accepting, finish what is in flight, exit 0.
 */
import { pino } from "pino";
import { PiccoloNode } from "../io/server.js";
import { startResp } from "../resp/listener.js";
import type { NodeConfig } from "./config.js";

export async function runNode(config: NodeConfig): Promise<PiccoloNode> {
  // Structured logs on stderr, quiet by default (warn): a store should not
  // chatter. `--log-level info` shows start-up, pinning and shutdown.
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination(2));
  const node = new PiccoloNode({ ...config, logger });
  const port = await node.start();
  const resp = config.respPort === 0 ? 0 : await startResp(node, config.respPort, port, config.requirePass);
  // One line on stdout for people and scripts (tests wait for it).
  const respNote = resp === 0 ? "resp disabled" : `resp on ${config.host}:${resp}`;
  process.stdout.write(`piccolo listening on ${config.host}:${port} (shards: ${config.shards}), ${respNote}\n`);
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
