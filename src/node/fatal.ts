/**
 * What a server or gateway process does with an error nobody caught.
 *
 * An `uncaughtException` or an `unhandledRejection` on the main thread means
 * some code path failed in a way its author did not foresee: a request may
 * have been half applied, a table half updated, a promise that someone awaits
 * will never settle. Serving on from that state risks answers that look
 * right and are not, which is worse than being down (the rule TigerBeetle
 * states as "crash loudly"). So the process logs the error, with its stack,
 * at `fatal`, and exits at once with code 70 (EX_SOFTWARE, "internal
 * software error"; README, "Exit codes"). It does not drain in-flight
 * requests first: their answers would come from the state we no longer
 * trust. What it has acknowledged is safe anyway: a cluster member acks a
 * write only once it is in a quorum's WAL, and a single node keeps nothing
 * across a restart. A supervisor (systemd, Kubernetes) restarts it.
 *
 * Worker threads install no handler of their own: an error they do not catch
 * ends the thread and reaches the main thread as the Worker's `error` event,
 * where src/io/shards.ts (shard workers) and src/cluster/host-link.ts (group
 * workers) log it with its stack and stop the node with the same code 70.
 *
 * docs/decisions/0196-crash-on-uncaught-errors.md has the choice and what we
 * rejected; docs/architecture.md, "Shutdown", the whole picture.
 */
import type { Logger } from "pino";

/** The exit code of a process stopped by a bug or a broken invariant (sysexits' EX_SOFTWARE). */
export const EXIT_INTERNAL = 70;

/**
 * The handler both events share: log once at fatal, exit with 70. A second
 * error while the first is being reported (the logger itself failing, say)
 * exits at once without logging again.
 */
export function fatalHandler(
  logger: Pick<Logger, "fatal">,
  exit: (code: number) => void = (code) => process.exit(code),
): (err: unknown, origin: string) => void {
  let dying = false;
  return (err, origin) => {
    if (dying) return exit(EXIT_INTERNAL);
    dying = true;
    try {
      logger.fatal({ err, origin }, `${origin}: stopping, this process's state can no longer be trusted`);
    } finally {
      exit(EXIT_INTERNAL);
    }
  };
}

/** Installs the policy on this process (its entry point calls this once, before starting anything). */
export function installCrashPolicy(logger: Logger): void {
  const handle = fatalHandler(logger);
  process.on("uncaughtException", (err, origin) => handle(err, origin));
  process.on("unhandledRejection", (reason) => handle(reason, "unhandledRejection"));
}
