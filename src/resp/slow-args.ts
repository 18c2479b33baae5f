/**
 * How the Redis port's slow log names a command (docs/tracing.md, "Slow
 * requests"; decision 0336): its arguments as Redis 7 keeps them, read again
 * from the bytes the command came in only once its answer turned out slow
 * (src/resp/parser.ts: argsAfter, argsAt; RespParser.keepsBytes keeps those
 * bytes in place meanwhile), with what is secret redacted. RespRequest.describe
 * (request.ts) names a general command; LoggedHotRun a run of hot ones.
 */
import type { RequestOwner } from "../io/dispatch.js";
import { slowArgs } from "../io/slowlog.js";
import { HotRun } from "./hot.js";
import { argsAt } from "./parser.js";
import type { Proto } from "./reply.js";

/**
 * A run of hot commands (src/resp/hot.ts) that knows where its first command
 * starts in the bytes it was read from: set once per run, read again only if
 * the run is slow. The run is timed as one request, so its entry is its first
 * command with its arguments, then "(a run of N commands)".
 */
export class LoggedHotRun extends HotRun {
  constructor(
    owner: RequestOwner,
    proto: Proto,
    private readonly firstBuf: Uint8Array,
    private readonly firstAt: number,
  ) {
    super(owner, proto);
  }

  override describe(): string[] {
    const args = argsAt(this.firstBuf, this.firstAt, 3);
    if (args === null) return super.describe();
    const out = slowArgs(args);
    if (this.commands > 1) out.push(`(a run of ${this.commands} commands)`);
    return out;
  }
}

const REDACTED = "(redacted)";

/**
 * A slow log entry's arguments with what is secret replaced, as Redis 7
 * redacts them: AUTH's arguments, HELLO's AUTH user and password, ACL
 * SETUSER's rules (a rule may be a password), and CONFIG SET's value of a
 * setting whose name says it holds a password or credentials. SLOWLOG GET
 * needs the admin permission, but a log must not be where a password leaks.
 */
export function redacted(args: string[]): string[] {
  const name = (args[0] ?? "").toLowerCase();
  const from = (i: number) => {
    for (let j = i; j < args.length; j++) if (!args[j]!.startsWith("... (")) args[j] = REDACTED;
  };
  if (name === "auth") from(1);
  else if (name === "hello") {
    const at = args.findIndex((a, i) => i >= 2 && a.toLowerCase() === "auth");
    if (at > 0) for (let j = at + 1; j <= at + 2 && j < args.length; j++) args[j] = REDACTED;
  } else if (name === "acl" && (args[1] ?? "").toLowerCase() === "setuser") from(3);
  else if (name === "config" && (args[1] ?? "").toLowerCase() === "set")
    for (let j = 2; j + 1 < args.length; j += 2) if (/pass|auth|secret/i.test(args[j]!)) args[j + 1] = REDACTED;
  return args;
}
