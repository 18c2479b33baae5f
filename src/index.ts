/**
 * The package's public API: the client and the error vocabulary. The
 * server is started with the `piccolo server` command (src/cli/main.ts).
 */
export type {
  Bytes,
  ClientOptions,
  Entry,
  NodeStats,
  ReadOptions,
  RequestTrace,
  ScanPage,
  ShardStats,
  SlowEntry,
  SlowLogPage,
  TraceOption,
  TraceSpan,
  WriteOptions,
} from "./client/client.js";
export type { ClusterInfo } from "./client/client.js";
export { PiccoloClient, VersionMismatchError } from "./client/client.js";
export { type ClusterClientOptions, PiccoloClusterClient } from "./client/cluster-client.js";
export { ErrorCode, errorName, PiccoloError } from "./errors.js";
export * as limits from "./limits.js";
