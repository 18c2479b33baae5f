/**
 * Secrets come from files or the environment, never only from a flag: a
 * flag's value shows in `ps` to every user of the machine. A file is read
 * once at start (its trailing newline dropped) and should be readable by
 * the node's user alone; a looser one is logged as a warning.
 */
import { readFileSync, statSync } from "node:fs";
import { ConfigError } from "../config-error.js";

export interface Secret {
  value: string;
  /** Where it came from, for messages ("--requirepass-file /etc/piccolo/pass"). */
  from: string;
  /** A warning to log at start (a file others can read, a value given on the command line), or null. */
  warning: string | null;
}

/**
 * A file that may hold secrets: its text and its mode (who else may read
 * it); one that cannot be read is a ConfigError naming it as `what`.
 */
export function readGuardedFile(path: string, what: string): { text: string; mode: number } {
  try {
    return { text: readFileSync(path, "utf8"), mode: statSync(path).mode };
  } catch (err) {
    throw new ConfigError(`${what} cannot be read: ${(err as Error).message}`);
  }
}

/** Reads a secret file; `flag` names it in errors. An empty file is refused: an empty secret guards nothing. */
export function readSecretFile(path: string, flag: string): Secret {
  const { text, mode } = readGuardedFile(path, `--${flag} ${path}`);
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new ConfigError(`--${flag} ${path} is empty`);
  return {
    value,
    from: `--${flag} ${path}`,
    warning:
      (mode & 0o077) !== 0
        ? `${path} (--${flag}) can be read by other users of this machine (mode ${(mode & 0o777).toString(8)}): chmod 600 it`
        : null,
  };
}
