/**
 * The node's configuration: flags, then environment variables, then the
 * config file if one is given (--config, src/node/config-file.ts), then the
 * embedded defaults. No file is needed: `piccolo server` alone starts a node
 * on 127.0.0.1:7700 with one shard per core.
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { CLUSTER_ELECTION_TICKS, CLUSTER_TICK_MS, HEARTBEAT_TICKS } from "../cluster/deadlines.js";
import { ConfigError } from "../config-error.js";
import { attribute, type ConfigFile, type FlagValues, layered, readConfigFile, type Source } from "./config-file.js";
import { FSYNC_POLICIES, type FsyncPolicy } from "../journal/journal.js";
import {
  DEFAULT_SNAPSHOT_LOG_BYTES,
  CLIENT_OUTPUT_STALL_MS,
  DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
  MAX_CONNECTIONS,
  MAX_VALUE_BYTES_CEILING,
  maxFrameBytes,
  DEFAULT_WATCH_HISTORY_BYTES,
  REPLICATED_MAX_VALUE_BYTES,
  SLOWLOG_DEFAULT_MAX_LEN,
  SLOWLOG_DEFAULT_SLOWER_THAN_US,
  SLOWLOG_MAX_LEN,
} from "../limits.js";
import { readSecretFile } from "../security/secrets.js";
import { type TlsFiles, tlsFilesFromFlags } from "../security/tls-files.js";

/** The shortest cluster secret accepted: 16 bytes, 128 bits if random. */
export const MIN_CLUSTER_SECRET_BYTES = 16;

export interface NodeConfig {
  host: string;
  port: number;
  shards: number;
  /** Whether --shards (or PICCOLO_SHARDS) was given: a data directory's own count is adopted only when not. */
  shardsExplicit: boolean;
  /** A single node's persistence (null: --in-memory, or cluster mode, whose log is Raft's). */
  durability: { dataDir: string; fsync: FsyncPolicy; snapshotLogBytes: number } | null;
  maxValueBytes: number;
  /** Open client connections, all ports together. */
  maxConnections: number;
  /** Bytes of answers one client connection may hold before it is closed. */
  clientOutputLimitBytes: number;
  /** Over the output soft limit with nothing read for this long, a connection is closed. */
  clientOutputStallMs: number;
  /** The slow log's threshold, µs (-1: off), and length (src/io/slowlog.ts). */
  slowlogSlowerThanUs: number;
  slowlogMaxLen: number;
  logLevel: string;
  pin: boolean;
  /** Bytes of change history each shard keeps for watchers (docs/watch.md). */
  watchHistoryBytes: number;
  /** Redis protocol port; 0 disables it. */
  respPort: number;
  /** HTTP port for /metrics, /healthz and /readyz (src/node/metrics.ts); 0: off, the default. */
  metricsPort: number;
  /** The default user's password (--requirepass, its file or env); null: the default user needs none. */
  requirePass: string | null;
  /** Where users are kept (ACL SETUSER saves there); null: in memory only (an in-memory node without --aclfile). */
  aclFile: string | null;
  /** Refuse clients from other machines while the default user has no password (Redis's protected mode). */
  protectedMode: boolean;
  /** TLS on the client ports (null: plaintext); with `tlsCluster`, on the peer port too. */
  tls: TlsFiles | null;
  /** Cluster mode: members speak mutual TLS with `tls`'s files. */
  tlsCluster: boolean;
  /** Cluster mode: the secret every member proves it holds in its hello (null: none). */
  clusterSecret: string | null;
  /** Warnings to log once the logger exists (a secret on the command line, a secret file others can read). */
  warnings: string[];
  /** Cluster mode (null: a single node). */
  cluster: {
    nodeId: string;
    members: string;
    /** Members added after bootstrap (`--joined`); "" when none. */
    joined: string;
    dataDir: string;
    partitions: number;
    replicas: number;
    tickMs: number;
    electionTicks: number;
    compactEntries: number;
    quiesceTicks: number;
  } | null;
}

export const SERVER_FLAGS = {
  host: { env: "PICCOLO_HOST", help: "address to listen on", default: "127.0.0.1" },
  port: { env: "PICCOLO_PORT", help: "native protocol port (0: any free port)", default: "7700" },
  shards: {
    env: "PICCOLO_SHARDS",
    help: "shard worker threads; 0 runs the maps on the IO thread; auto: 0 on up to 2 cores, else one per core but one; cores: one per core",
    default: "auto",
  },
  "resp-port": { env: "PICCOLO_RESP_PORT", help: "Redis protocol (RESP) port; 0 disables it", default: "6380" },
  "metrics-port": {
    env: "PICCOLO_METRICS_PORT",
    help: "HTTP port on --host serving /metrics (Prometheus), /healthz and /readyz; 0: off (no port opened)",
    default: "0",
  },
  requirepass: {
    env: "PICCOLO_REQUIREPASS",
    help: "the default user's password (visible in ps as a flag: prefer --requirepass-file or the env)",
    default: "",
  },
  "requirepass-file": {
    env: "PICCOLO_REQUIREPASS_FILE",
    help: "file holding the default user's password",
    default: "",
  },
  aclfile: {
    env: "PICCOLO_ACLFILE",
    help: "users file (Redis ACL lines); default <data-dir>/users.acl, none for --in-memory",
    default: "",
  },
  "protected-mode": {
    env: "PICCOLO_PROTECTED_MODE",
    help: "yes: while the default user has no password, refuse clients that are not on this machine",
    default: "yes",
  },
  "tls-cert-file": {
    env: "PICCOLO_TLS_CERT_FILE",
    help: "TLS certificate (PEM): every port speaks TLS only",
    default: "",
  },
  "tls-key-file": { env: "PICCOLO_TLS_KEY_FILE", help: "TLS private key (PEM)", default: "" },
  "tls-ca-cert-file": {
    env: "PICCOLO_TLS_CA_CERT_FILE",
    help: "CA (PEM) that signs client and member certificates",
    default: "",
  },
  "tls-auth-clients": {
    env: "PICCOLO_TLS_AUTH_CLIENTS",
    help: "yes|no|optional: whether clients must present a certificate signed by the CA",
    default: "no",
  },
  "tls-cluster": {
    env: "PICCOLO_TLS_CLUSTER",
    help: "yes|no: members speak mutual TLS on the peer port (default yes when TLS is on)",
    default: "yes",
  },
  "cluster-secret-file": {
    env: "PICCOLO_CLUSTER_SECRET_FILE",
    help: "cluster mode: file holding the secret every member proves it holds (or env PICCOLO_CLUSTER_SECRET)",
    default: "",
  },
  "max-value-bytes": {
    env: "PICCOLO_MAX_VALUE_BYTES",
    help: "largest value accepted",
    default: String(DEFAULT_MAX_VALUE_BYTES),
  },
  "max-connections": {
    env: "PICCOLO_MAX_CONNECTIONS",
    help: "open client connections, all ports together; over it new ones are closed",
    default: String(MAX_CONNECTIONS),
  },
  "client-output-limit-bytes": {
    env: "PICCOLO_CLIENT_OUTPUT_LIMIT_BYTES",
    help: "answers one connection may hold unread before it is closed (at least the largest answer)",
    default: String(DEFAULT_CLIENT_OUTPUT_LIMIT_BYTES),
  },
  "client-output-stall-ms": {
    env: "PICCOLO_CLIENT_OUTPUT_STALL_MS",
    help: "ms a connection over 8 MiB of unread answers may go without reading a byte before it is closed",
    default: String(CLIENT_OUTPUT_STALL_MS),
  },
  "slowlog-slower-than": {
    env: "PICCOLO_SLOWLOG_SLOWER_THAN",
    help: "requests taking at least this many µs, receipt to answer, go in the slow log; -1: none (docs/tracing.md)",
    default: String(SLOWLOG_DEFAULT_SLOWER_THAN_US),
  },
  "slowlog-max-len": {
    env: "PICCOLO_SLOWLOG_MAX_LEN",
    help: `entries the slow log keeps, newest first (at most ${SLOWLOG_MAX_LEN})`,
    default: String(SLOWLOG_DEFAULT_MAX_LEN),
  },
  "log-level": { env: "PICCOLO_LOG_LEVEL", help: "fatal|error|warn|info|debug", default: "warn" },
  "no-pin": { env: "PICCOLO_NO_PIN", help: "do not pin shard workers to cores", default: "" },
  "node-id": { env: "PICCOLO_NODE_ID", help: "this member's name in --cluster", default: "" },
  cluster: {
    env: "PICCOLO_CLUSTER",
    help: "static member list name=host:peerPort,... (enables cluster mode)",
    default: "",
  },
  joined: {
    env: "PICCOLO_JOINED",
    help: "cluster mode: members added after bootstrap, name=host:peerPort,... (same on every member)",
    default: "",
  },
  "data-dir": {
    env: "PICCOLO_DATA_DIR",
    help: "where the data lives (a single node: ./data; a cluster member: ./data/<node-id>)",
    default: "./data",
  },
  fsync: {
    env: "PICCOLO_FSYNC",
    help: "single node: always (answer after fsync) | everysec (fsync each second) | no (the OS decides)",
    default: "everysec",
  },
  "in-memory": { env: "PICCOLO_IN_MEMORY", help: "single node: keep nothing on disk (a cache)", default: "" },
  "snapshot-log-bytes": {
    env: "PICCOLO_SNAPSHOT_LOG_BYTES",
    help: "single node: snapshot a shard once its log holds this many bytes (and as many as its last snapshot)",
    default: String(DEFAULT_SNAPSHOT_LOG_BYTES),
  },
  "watch-history-bytes": {
    env: "PICCOLO_WATCH_HISTORY_BYTES",
    help: "changes each shard keeps for watchers to resume from, in bytes (older positions answer COMPACTED)",
    default: String(DEFAULT_WATCH_HISTORY_BYTES),
  },
  partitions: { env: "PICCOLO_PARTITIONS", help: "cluster mode: partitions, fixed at bootstrap", default: "64" },
  replicas: { env: "PICCOLO_REPLICAS", help: "cluster mode: replicas per partition", default: "3" },
  "tick-ms": {
    env: "PICCOLO_TICK_MS",
    help: `cluster mode: Raft's tick in ms (a leader's heartbeat every ${HEARTBEAT_TICKS} ticks)`,
    default: String(CLUSTER_TICK_MS),
  },
  "election-ticks": {
    env: "PICCOLO_ELECTION_TICKS",
    help: "cluster mode: ticks without the leader's word before a follower campaigns, randomised up to twice that (a leader whose connection closes is replaced within a few ticks)",
    default: String(CLUSTER_ELECTION_TICKS),
  },
  "quiesce-ticks": {
    env: "PICCOLO_QUIESCE_TICKS",
    help: "cluster mode: idle ticks before a partition's group goes quiet (no heartbeats); 0: never",
    default: "10",
  },
  "compact-entries": {
    env: "PICCOLO_COMPACT_ENTRIES",
    help: "cluster mode: snapshot a partition once its log holds this many applied entries",
    default: "10000",
  },
} as const;

export { ConfigError };

/** The flags that take no value (`--in-memory`; `in-memory = true` in a config file). */
export const SERVER_SWITCHES = ["no-pin", "in-memory"] as const;

/** Where `piccolo server` looks for its config file when --config is not given. */
export const SERVER_CONFIG_ENV = "PICCOLO_CONFIG";

/** Reads and checks a config file for `piccolo server` (src/node/config-file.ts). */
export function readServerConfigFile(path: string): ConfigFile {
  return readConfigFile(path, SERVER_FLAGS, {
    command: "piccolo server",
    switches: SERVER_SWITCHES,
    inlineSecrets: ["requirepass"],
  });
}

function int(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ConfigError(`--${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  return n;
}

/**
 * Resolves flag values (strings, as parsed) against env, the config file and
 * defaults, and validates. A value refused names its flag, and where it came
 * from when that was not a flag (the file's line, the environment variable).
 */
export function resolveConfig(flags: FlagValues, env = process.env, file: ConfigFile | null = null): NodeConfig {
  const layers = layered(SERVER_FLAGS, flags, env, file);
  return attribute(SERVER_FLAGS, layers, file, () => resolveLayers(layers, env, file));
}

/**
 * How many shard workers `auto` starts on this machine (decision 0295).
 * Measured on 2 cores, the maps on the IO thread (0) beat any worker layout
 * on every workload of bench:redis but deep pipelines, where they tie: the
 * IO thread, the clients and the workers share two cores, so a worker has
 * no core of its own and the thread hop is pure cost. With more cores, one
 * is left to the IO thread and each other gets a worker. A cluster member's
 * `--shards` counts Raft group workers instead, and keeps one per core.
 */
export function defaultShards(cores = availableParallelism(), cluster = false): number {
  if (cluster) return cores;
  return cores <= 2 ? 0 : cores - 1;
}

/** `--shards`: auto (defaultShards), cores (one per core), or a count. */
export function shardCount(raw: string, cluster: boolean): number {
  if (raw === "auto") return defaultShards(availableParallelism(), cluster);
  if (raw === "cores") return availableParallelism();
  return int("shards", raw, 0, 256);
}

function resolveLayers(
  layers: ReturnType<typeof layered>,
  env: NodeJS.ProcessEnv,
  file: ConfigFile | null,
): NodeConfig {
  const pick = (name: keyof typeof SERVER_FLAGS): string => layers.pick(name);
  const shardsRaw = pick("shards");
  const inMemory = layers.on("in-memory");
  const fsyncSet = layers.source("fsync") === "flag" || layers.source("fsync") === "file";
  const maxValueBytes = int("max-value-bytes", pick("max-value-bytes"), 1, MAX_VALUE_BYTES_CEILING);
  const cluster = clusterConfig(pick);
  if (cluster !== null && (fsyncSet || inMemory))
    throw new ConfigError(
      "--fsync and --in-memory are for a single node: a cluster member always fsyncs its Raft log before it answers",
    );
  if (cluster !== null && maxValueBytes > REPLICATED_MAX_VALUE_BYTES)
    throw new ConfigError(
      `--max-value-bytes must be at most ${REPLICATED_MAX_VALUE_BYTES} in cluster mode (a replicated write must fit in one WAL record), got ${maxValueBytes}`,
    );
  return {
    host: pick("host"),
    port: int("port", pick("port"), 0, 65535),
    shards: shardCount(shardsRaw, cluster !== null),
    shardsExplicit: shardsRaw !== "auto",
    durability: cluster !== null || inMemory ? null : durabilityConfig(pick),
    maxValueBytes,
    maxConnections: int("max-connections", pick("max-connections"), 1, 1_000_000),
    // One answer at the value limit must fit, or a GET of such a value could never be answered.
    clientOutputLimitBytes: int(
      "client-output-limit-bytes",
      pick("client-output-limit-bytes"),
      maxFrameBytes(maxValueBytes),
      2 ** 46,
    ),
    clientOutputStallMs: int("client-output-stall-ms", pick("client-output-stall-ms"), 1_000, 86_400_000),
    slowlogSlowerThanUs: int("slowlog-slower-than", pick("slowlog-slower-than"), -1, 2 ** 40),
    slowlogMaxLen: int("slowlog-max-len", pick("slowlog-max-len"), 0, SLOWLOG_MAX_LEN),
    logLevel: pick("log-level"),
    pin: !layers.on("no-pin"),
    watchHistoryBytes: int("watch-history-bytes", pick("watch-history-bytes"), 256 * 1024, 2 ** 40),
    respPort: int("resp-port", pick("resp-port"), 0, 65535),
    metricsPort: int("metrics-port", pick("metrics-port"), 0, 65535),
    ...securityConfig(pick, layers.source, env, cluster, inMemory, file?.warnings ?? []),
    cluster,
  };
}

function yesNo(name: string, raw: string): boolean {
  if (raw !== "yes" && raw !== "no") throw new ConfigError(`--${name} must be yes or no, got "${raw}"`);
  return raw === "yes";
}

/** TLS, the default user's password, users, the cluster secret (docs/security.md). */
function securityConfig(
  pick: (name: keyof typeof SERVER_FLAGS) => string,
  source: (name: keyof typeof SERVER_FLAGS) => Source,
  env: NodeJS.ProcessEnv,
  cluster: NodeConfig["cluster"],
  inMemory: boolean,
  fileWarnings: string[],
): Pick<NodeConfig, "requirePass" | "aclFile" | "protectedMode" | "tls" | "tlsCluster" | "clusterSecret" | "warnings"> {
  const warnings: string[] = [...fileWarnings];
  const secret = (
    flag: "requirepass" | "cluster-secret-file",
    fileFlag: keyof typeof SERVER_FLAGS,
    envName: string,
  ) => {
    const file = pick(fileFlag);
    if (file !== "") {
      const s = readSecretFile(file, fileFlag);
      if (s.warning !== null) warnings.push(s.warning);
      return s.value;
    }
    if (flag === "requirepass" && pick("requirepass") !== "") {
      // Only a flag shows in ps; the env does not, and a config file's readers are its own warning (config-file.ts).
      if (source("requirepass") === "flag")
        warnings.push("--requirepass shows the password to every user of this machine (ps): prefer --requirepass-file");
      return pick("requirepass");
    }
    const v = env[envName];
    return v === undefined || v === "" ? null : v;
  };
  const tls = tlsFilesFromFlags(
    pick("tls-cert-file"),
    pick("tls-key-file"),
    pick("tls-ca-cert-file"),
    pick("tls-auth-clients"),
  );
  const tlsCluster = tls !== null && cluster !== null && yesNo("tls-cluster", pick("tls-cluster"));
  if (tlsCluster && tls!.caFile === null)
    throw new ConfigError("--tls-cluster needs --tls-ca-cert-file: the CA that signs every member's certificate");
  const clusterSecret = secret("cluster-secret-file", "cluster-secret-file", "PICCOLO_CLUSTER_SECRET");
  if (clusterSecret !== null && cluster === null)
    throw new ConfigError("--cluster-secret-file is for cluster mode (--cluster)");
  if (clusterSecret !== null && Buffer.byteLength(clusterSecret) < MIN_CLUSTER_SECRET_BYTES)
    throw new ConfigError(
      `the cluster secret must be at least ${MIN_CLUSTER_SECRET_BYTES} bytes (openssl rand -hex 32 > secret makes a good one)`,
    );
  const aclFile = pick("aclfile");
  const dataDir = cluster?.dataDir ?? pick("data-dir");
  return {
    requirePass: secret("requirepass", "requirepass-file", "PICCOLO_REQUIREPASS"),
    aclFile: aclFile !== "" ? aclFile : inMemory && cluster === null ? null : join(dataDir, "users.acl"),
    protectedMode: yesNo("protected-mode", pick("protected-mode")),
    tls,
    tlsCluster,
    clusterSecret,
    warnings,
  };
}

function durabilityConfig(pick: (name: keyof typeof SERVER_FLAGS) => string): NodeConfig["durability"] {
  const fsync = pick("fsync");
  if (!(FSYNC_POLICIES as readonly string[]).includes(fsync))
    throw new ConfigError(`--fsync must be one of ${FSYNC_POLICIES.join(", ")}, got "${fsync}"`);
  return {
    dataDir: pick("data-dir"),
    fsync: fsync as FsyncPolicy,
    snapshotLogBytes: int("snapshot-log-bytes", pick("snapshot-log-bytes"), 4096, 2 ** 46),
  };
}

function clusterConfig(pick: (name: keyof typeof SERVER_FLAGS) => string): NodeConfig["cluster"] {
  const members = pick("cluster");
  if (members === "") return null;
  const nodeId = pick("node-id");
  if (nodeId === "") throw new ConfigError("--cluster needs --node-id: this member's name in the list");
  const dataDir = pick("data-dir");
  return {
    nodeId,
    members,
    joined: pick("joined"),
    dataDir: dataDir === "./data" ? `./data/${nodeId}` : dataDir,
    partitions: int("partitions", pick("partitions"), 1, 4096),
    replicas: int("replicas", pick("replicas"), 1, 7),
    tickMs: int("tick-ms", pick("tick-ms"), 1, 10_000),
    electionTicks: int("election-ticks", pick("election-ticks"), HEARTBEAT_TICKS + 1, 100_000),
    compactEntries: int("compact-entries", pick("compact-entries"), 1, 100_000_000),
    quiesceTicks: int("quiesce-ticks", pick("quiesce-ticks"), 0, 1_000_000),
  };
}
