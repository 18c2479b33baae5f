/**
 * A setting that cannot be used (a flag out of range, a file that cannot be
 * read): the CLI prints its message and exits 2 (src/cli/main.ts). Shared
 * by every process's configuration: the node's, the Cerializer's, and the
 * security files both read.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}
