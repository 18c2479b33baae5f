/**
 * `piccolo cerializer`: flags, environment, config file (--config, as the
 * server's: src/node/config-file.ts) and defaults for the gateway, and
 * its process life (one line on stdout when listening; SIGINT/SIGTERM close
 * it gracefully: in-flight requests finish, new ones get 503; a port taken
 * is one line and exit 71; an uncaught error, a fatal log line and exit 70;
 * SIGHUP reads the HTTPS certificate and key again).
 */
import type { ConnectionOptions } from "node:tls";
import { pino } from "pino";
import { CERIALIZER_MAX_CALLERS } from "../cerializer/callers.js";
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
import { ConfigError } from "../config-error.js";
import { installCrashPolicy } from "../node/fatal.js";
import { attribute, configPath, type FlagValues, layered, readConfigFile } from "../node/config-file.js";
import { readSecretFile } from "../security/secrets.js";
import { readPem, type TlsFiles, tlsFilesFromFlags } from "../security/tls-files.js";
import { THROTTLE_DEFAULTS } from "../cerializer/throttle.js";
import { DEFAULT_TOKEN_TTL_SECONDS } from "../cerializer/tokens.js";

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
  user: {
    env: "PICCOLO_USER",
    help: "the gateway's own user on the nodes, for its own traffic only (probes, cluster polling); never lent to callers",
    default: "default",
  },
  "password-file": {
    env: "PICCOLO_PASSWORD_FILE",
    help: "file holding the gateway's own password (or env PICCOLO_PASSWORD)",
    default: "",
  },
  password: {
    env: "PICCOLO_PASSWORD",
    help: "the gateway's own password (visible in ps as a flag: prefer --password-file or the env)",
    default: "",
  },
  "tls-cert-file": {
    env: "PICCOLO_HTTP_TLS_CERT_FILE",
    help: "certificate (PEM): the HTTP port speaks HTTPS only",
    default: "",
  },
  "tls-key-file": { env: "PICCOLO_HTTP_TLS_KEY_FILE", help: "private key (PEM) of --tls-cert-file", default: "" },
  "tls-ca-cert-file": {
    env: "PICCOLO_HTTP_TLS_CA_CERT_FILE",
    help: "CA (PEM) that signs HTTPS client certificates",
    default: "",
  },
  "tls-auth-clients": {
    env: "PICCOLO_HTTP_TLS_AUTH_CLIENTS",
    help: "yes|no|optional: whether HTTPS clients must present a certificate signed by --tls-ca-cert-file",
    default: "no",
  },
  "node-tls-ca-cert-file": {
    env: "PICCOLO_NODE_TLS_CA_CERT_FILE",
    help: "CA (PEM) to trust for the nodes' certificates: every connection to a node speaks TLS",
    default: "",
  },
  "node-tls-cert-file": {
    env: "PICCOLO_NODE_TLS_CERT_FILE",
    help: "client certificate (PEM) for nodes run with --tls-auth-clients yes",
    default: "",
  },
  "node-tls-key-file": { env: "PICCOLO_NODE_TLS_KEY_FILE", help: "private key of --node-tls-cert-file", default: "" },
  "token-ttl-seconds": {
    env: "PICCOLO_TOKEN_TTL_SECONDS",
    help: "lifetime of a bearer token from POST /v1/auth/token",
    default: String(DEFAULT_TOKEN_TTL_SECONDS),
  },
  "protected-mode": {
    env: "PICCOLO_HTTP_PROTECTED_MODE",
    help: "yes: bound to a non-loopback host, refuse requests without credentials from other machines",
    default: "yes",
  },
  "max-callers": {
    env: "PICCOLO_MAX_CALLERS",
    help: "credential sets kept with node connections of their own (least recently used evicted)",
    default: String(CERIALIZER_MAX_CALLERS),
  },
  "auth-failure-delay-ms": {
    env: "PICCOLO_AUTH_FAILURE_DELAY_MS",
    help: `delay before a first failed authentication's 401, doubled per failure from the same address (to ${THROTTLE_DEFAULTS.maxDelayMs} ms or this)`,
    default: String(THROTTLE_DEFAULTS.baseDelayMs),
  },
  cluster: {
    env: "PICCOLO_GATEWAY_CLUSTER",
    help: "true: the nodes are members of one cluster (any serves any key; the gateway follows its membership)",
    default: "false",
  },
  "log-level": { env: "PICCOLO_LOG_LEVEL", help: "fatal|error|warn|info|debug", default: "warn" },
} as const;

/**
 * Where `piccolo cerializer` looks for its config file when --config is not
 * given. Not the server's PICCOLO_CONFIG: a gateway started in a node's
 * environment would read the node's file and refuse its keys.
 */
export const CERIALIZER_CONFIG_ENV = "PICCOLO_CERIALIZER_CONFIG";

function bool(name: string, raw: string): boolean {
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0") return false;
  throw new ConfigError(`--${name} must be true or false, got "${raw}"`);
}

function yesNo(name: string, raw: string): boolean {
  if (raw !== "yes" && raw !== "no") throw new ConfigError(`--${name} must be yes or no, got "${raw}"`);
  return raw === "yes";
}

/** --tls-*: HTTPS on the gateway's port (null: plain HTTP). The files are read now, so a bad one fails the start. */
function httpsFiles(pick: (name: keyof typeof CERIALIZER_FLAGS) => string): TlsFiles | null {
  return tlsFilesFromFlags(
    pick("tls-cert-file"),
    pick("tls-key-file"),
    pick("tls-ca-cert-file"),
    pick("tls-auth-clients"),
  );
}

/** --node-tls-*: TLS toward the nodes (null: plaintext). */
function nodeTls(pick: (name: keyof typeof CERIALIZER_FLAGS) => string): ConnectionOptions | null {
  const caFile = pick("node-tls-ca-cert-file");
  const certFile = pick("node-tls-cert-file");
  const keyFile = pick("node-tls-key-file");
  if ((certFile === "") !== (keyFile === ""))
    throw new ConfigError("--node-tls-cert-file and --node-tls-key-file go together: give both, or neither");
  if (caFile === "") {
    if (certFile !== "")
      throw new ConfigError(
        "--node-tls-cert-file needs --node-tls-ca-cert-file (TLS toward the nodes is off without it)",
      );
    return null;
  }
  return {
    ca: readPem(caFile, "node-tls-ca-cert-file"),
    ...(certFile === ""
      ? {}
      : { cert: readPem(certFile, "node-tls-cert-file"), key: readPem(keyFile, "node-tls-key-file") }),
    minVersion: "TLSv1.2",
  };
}

function int(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ConfigError(`--${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  return n;
}

/**
 * Every setting but the host and log level, validated: a bad one throws a
 * ConfigError naming its flag before anything is started.
 */
function resolveOptions(pick: (name: keyof typeof CERIALIZER_FLAGS) => string, flags: FlagValues) {
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
  const warnings: string[] = [];
  let password = "";
  if (pick("password-file") !== "") {
    const secret = readSecretFile(pick("password-file"), "password-file");
    if (secret.warning !== null) warnings.push(secret.warning);
    password = secret.value;
  } else {
    password = pick("password");
    if (typeof flags.password === "string" && flags.password !== "")
      warnings.push("--password shows the password to every user of this machine (ps): prefer --password-file");
  }
  return {
    nodes,
    warnings,
    password,
    user: pick("user"),
    tls: httpsFiles(pick),
    toNodes: nodeTls(pick),
    options: {
      httpPort: int("http-port", pick("http-port"), 0, 65535),
      limits: {
        maxKeyBytes: int("max-key-bytes", pick("max-key-bytes"), 1, MAX_KEY_BYTES),
        maxValueBytes: int("max-value-bytes", pick("max-value-bytes"), 0, 256 * 1024 * 1024),
        maxBodyBytes: int("max-body-bytes", pick("max-body-bytes"), 1024, 1024 * 1024 * 1024),
        maxBatchOps: int("max-batch-ops", pick("max-batch-ops"), 1, 100_000),
      },
      connectionsPerNode: int("connections", pick("connections"), 1, 64),
      timeoutMs: int("timeout", pick("timeout"), 1, 3_600_000),
      tokenTtlSeconds: int("token-ttl-seconds", pick("token-ttl-seconds"), 1, 30 * 24 * 3600),
      protectedMode: yesNo("protected-mode", pick("protected-mode")),
      maxCallers: int("max-callers", pick("max-callers"), 1, 100_000),
      authFailureDelayMs: int("auth-failure-delay-ms", pick("auth-failure-delay-ms"), 1, 60_000),
      cluster: bool("cluster", pick("cluster")),
      maxConnections: int("max-connections", pick("max-connections"), 1, 1_000_000),
      requestTimeoutMs: int("request-timeout-ms", pick("request-timeout-ms"), 1_000, 3_600_000),
      maxWatches: int("max-watches", pick("max-watches"), 0, 1_000_000),
      watchKeepaliveMs: int("watch-keepalive-ms", pick("watch-keepalive-ms"), 10, 3_600_000),
    },
  };
}

export async function runCerializer(flags: FlagValues, env = process.env) {
  const path = configPath(flags, env, CERIALIZER_CONFIG_ENV);
  const file =
    path === null
      ? null
      : readConfigFile(path, CERIALIZER_FLAGS, { command: "piccolo cerializer", inlineSecrets: ["password"] });
  const layers = layered(CERIALIZER_FLAGS, flags, env, file);
  const pick = (name: keyof typeof CERIALIZER_FLAGS): string => layers.pick(name);
  // A value refused names its flag and, from the file or the environment, where it was set.
  const resolved = attribute(CERIALIZER_FLAGS, layers, file, () => resolveOptions(pick, flags));
  const { nodes, password, user, tls, toNodes } = resolved;
  const log = pino({ base: { pid: process.pid, role: "cerializer" } }, pino.destination(2));
  for (const w of [...(file?.warnings ?? []), ...resolved.warnings]) log.warn(w);
  // An error nobody catches stops the gateway with 70, logged with its stack (src/node/fatal.ts).
  installCrashPolicy(log);
  const gw = await startCerializer({
    nodes,
    host: pick("host"),
    ...resolved.options,
    ...(password === "" ? {} : { password, ...(user === "" ? {} : { user }) }),
    ...(tls === null ? {} : { tls }),
    ...(toNodes === null ? {} : { nodeTls: toNodes }),
    logLevel: pick("log-level"),
  });
  const list = nodes.map((n) => `${n.host}:${n.port}`).join(", ");
  const toward = toNodes === null ? "" : " over TLS";
  process.stdout.write(`cerializer listening on ${gw.scheme}://${pick("host")}:${gw.port} (nodes${toward}: ${list})\n`);
  // SIGHUP: a renewed certificate is taken for new connections, without a restart; a bad file keeps the old one.
  process.on("SIGHUP", () => {
    try {
      gw.reloadTls();
      if (tls !== null) log.warn({ cert: tls.certFile }, "SIGHUP: reloaded the HTTPS certificate and key");
    } catch (err) {
      log.error({ err: (err as Error).message }, "SIGHUP: could not reload the HTTPS certificate; keeping the old one");
    }
  });
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
