/**
 * A process that cannot start says so in one line and stops.
 *
 * `piccolo server` and `piccolo cerializer` need things only the machine can
 * give: ports to listen on, a data directory to write. When one is missing
 * the process must not print a stack and linger half-started (a listener
 * open, workers running, nothing useful served, and a script that thinks it
 * is up); it closes what it opened, prints one line naming what failed and
 * what to do, and exits with the "could not start" code (71, README "Exit
 * codes"; docs/decisions/0195-start-failures-exit-at-once.md).
 *
 * A StartError's message is that line. Everything else that goes wrong while
 * starting is a bug and keeps its stack (exit 70).
 */
export class StartError extends Error {
  override name = "StartError";
}

/** What each errno code a listen() can fail with means for the person starting the process. */
const LISTEN_ADVICE: Record<string, string> = {
  EADDRINUSE: "is already in use by another process; stop that process or choose another port",
  EACCES: "cannot be opened: permission denied (ports below 1024 need privileges); choose another port",
  EADDRNOTAVAIL: "is not an address of this machine; check the host",
  EAFNOSUPPORT: "is of an address family this machine does not support; check the host",
  ENOTFOUND: "names a host that does not resolve; check the host",
};

/**
 * The StartError for a listen() on `address` that failed with `err`.
 * `what` says which listener, for whom reads the line: "the native port
 * (--port)", "the HTTP port (--http-port)".
 */
export function listenFailure(err: unknown, address: string, what: string): StartError {
  const e = err as NodeJS.ErrnoException;
  const advice = LISTEN_ADVICE[e.code ?? ""] ?? `cannot be listened on: ${e.message ?? String(err)}`;
  return new StartError(`cannot start: ${address} (${what}) ${advice}`);
}
