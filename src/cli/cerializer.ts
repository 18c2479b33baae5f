/**
 * `piccolo cerializer`: flags, environment and defaults for the gateway, and
 * its process life (one line on stdout when listening; SIGINT/SIGTERM close
 * it gracefully: in-flight requests finish, new ones get 503; a port taken
 * is one line and exit 71; an uncaught error, a fatal log line and exit 70).
 */
import { pino } from "pino";
import { startCerializer } from "../cerializer/server.js";
import {
  CERIALIZER_CONNECTIONS_PER_NODE,
  CERIALIZER_DEFAULT_BODY_BYTES,
  CERIALIZER_MAX_BATCH_OPS,
  CERIALIZER_MAX_CONNECTIONS,
  CERIALIZER_MAX_WATCHES,
  CERIALIZER_REQUEST_TIMEOUT_MS,
  CERIALIZER_WATCH_KEEPALIVE_MS,
  DEFAULT_CLIENT_TIMEOUT_MS,
  DEFAULT_MAX_VALUE_BYTES,
  MAX_KEY_BYTES,
} from "../limits.js";
import { ConfigError } from "../node/config.js";
import { installCrashPolicy } from "../node/fatal.js";

export const CERIALIZER_FLAGS = {
  nodes: {
    env: "PICCOLO_NODES",
    help: "nodes, host:port[,host:port...] (with --cluster true: seeds, the members are learned from them)",
    default: "127.0.0.1:7700",
  },
  host: { env: "PICCOLO_HTTP_HOST", help: "address to listen on", default: "127.0.0.1" },
  "http-port": { env: "PICCOLO_HTTP_PORT", help: "HTTP port (0: any free port)", default: "8700" },
  "max-key-bytes": { env: "PICCOLO_MAX_KEY_BYTES", help: "longest key", default: String(MAX_KEY_BYTES) },
  "max-value-bytes": {
    env: "PICCOLO_MAX_VALUE_BYTES",
    help: "largest value passed on",
    default: String(DEFAULT_MAX_VALUE_BYTES),
  },
  "max-body-bytes": {
    env: "PICCOLO_MAX_BODY_BYTES",
    help: "largest request body",
    default: String(CERIALIZER_DEFAULT_BODY_BYTES),
  },
  "max-batch-ops": {
    env: "PICCOLO_MAX_BATCH_OPS",
    help: "operations per batch",
    default: String(CERIALIZER_MAX_BATCH_OPS),
  },
  connections: {
    env: "PICCOLO_CONNECTIONS",
    help: "pipelined connections per node",
    default: String(CERIALIZER_CONNECTIONS_PER_NODE),
  },
  timeout: {
    env: "PICCOLO_TIMEOUT",
    help: "ms to wait for a node's answer (then 504)",
    default: String(DEFAULT_CLIENT_TIMEOUT_MS),
  },
  "max-connections": {
    env: "PICCOLO_HTTP_MAX_CONNECTIONS",
    help: "open HTTP connections; over it new ones are closed at once",
    default: String(CERIALIZER_MAX_CONNECTIONS),
  },
  "request-timeout-ms": {
    env: "PICCOLO_HTTP_REQUEST_TIMEOUT_MS",
    help: "ms a client has to send one whole request (then 408 and close)",
    default: String(CERIALIZER_REQUEST_TIMEOUT_MS),
  },
  "max-watches": {
    env: "PICCOLO_MAX_WATCHES",
    help: "open watch streams (GET /v1/watch), each with a node connection of its own; over it 503",
    default: String(CERIALIZER_MAX_WATCHES),
  },
  "watch-keepalive-ms": {
    env: "PICCOLO_WATCH_KEEPALIVE_MS",
    help: "ms between keepalive comments on an idle watch stream",
    default: String(CERIALIZER_WATCH_KEEPALIVE_MS),
  },
  password: { env: "PICCOLO_PASSWORD", help: "AUTH password for nodes run with --requirepass", default: "" },
  cluster: {
    env: "PICCOLO_GATEWAY_CLUSTER",
    help: "true: the nodes are members of one cluster (any serves any key; the gateway follows its membership)",
    default: "false",
  },
  "log-level": { env: "PICCOLO_LOG_LEVEL", help: "fatal|error|warn|info|debug", default: "warn" },
} as const;

function bool(name: string, raw: string): boolean {
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0") return false;
  throw new ConfigError(`--${name} must be true or false, got "${raw}"`);
}

function int(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ConfigError(`--${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  return n;
}

export async function runCerializer(flags: Record<string, string | boolean | undefined>, env = process.env) {
  const pick = (name: keyof typeof CERIALIZER_FLAGS): string => {
    const v = flags[name];
    if (typeof v === "string") return v;
    return env[CERIALIZER_FLAGS[name].env] ?? CERIALIZER_FLAGS[name].default;
  };
  const nodes = pick("nodes")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => {
      const m = /^(.+):(\d{1,5})$/.exec(s);
      if (m === null || Number(m[2]) > 65535) throw new ConfigError(`--nodes: "${s}" is not host:port`);
      return { host: m[1]!, port: Number(m[2]) };
    });
  if (nodes.length === 0) throw new ConfigError("--nodes: at least one node is needed");
  const password = pick("password");
  // An error nobody catches stops the gateway with 70, logged with its stack (src/node/fatal.ts).
  installCrashPolicy(pino({ base: { pid: process.pid, role: "cerializer" } }, pino.destination(2)));
  const gw = await startCerializer({
    nodes,
    host: pick("host"),
    httpPort: int("http-port", pick("http-port"), 0, 65535),
    limits: {
      maxKeyBytes: int("max-key-bytes", pick("max-key-bytes"), 1, MAX_KEY_BYTES),
      maxValueBytes: int("max-value-bytes", pick("max-value-bytes"), 0, 256 * 1024 * 1024),
      maxBodyBytes: int("max-body-bytes", pick("max-body-bytes"), 1024, 1024 * 1024 * 1024),
      maxBatchOps: int("max-batch-ops", pick("max-batch-ops"), 1, 100_000),
    },
    connectionsPerNode: int("connections", pick("connections"), 1, 64),
    timeoutMs: int("timeout", pick("timeout"), 1, 3_600_000),
    ...(password === "" ? {} : { password }),
    cluster: bool("cluster", pick("cluster")),
    maxConnections: int("max-connections", pick("max-connections"), 1, 1_000_000),
    requestTimeoutMs: int("request-timeout-ms", pick("request-timeout-ms"), 1_000, 3_600_000),
    maxWatches: int("max-watches", pick("max-watches"), 0, 1_000_000),
    watchKeepaliveMs: int("watch-keepalive-ms", pick("watch-keepalive-ms"), 10, 3_600_000),
    logLevel: pick("log-level"),
  });
  const list = nodes.map((n) => `${n.host}:${n.port}`).join(", ");
  process.stdout.write(`cerializer listening on http://${pick("host")}:${gw.port} (nodes: ${list})\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    gw.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
