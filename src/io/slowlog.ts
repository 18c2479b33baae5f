/**
 * The slow log (docs/tracing.md, "Slow requests"; decision 0324): the most
 * recent requests that took at least `slowerThanUs` from their receipt to
 * their answer, at most `maxLen` of them, newest first, as Redis's SLOWLOG
 * keeps them. Read with RESP `SLOWLOG GET [n]`, `piccolo slowlog` and the
 * gateway's `/v1/slowlog`; a traced request's entry holds its timeline.
 *
 * Every request is timed: the receipt is its socket read's stamp (taken for
 * tracing anyway: src/io/connection.ts), and one clock read when its answer
 * is made. Only a request over the threshold costs more (its entry).
 */
import { SLOWLOG_DEFAULT_MAX_LEN, SLOWLOG_DEFAULT_SLOWER_THAN_US, SLOWLOG_MAX_LEN } from "../limits.js";
import type { SlowEntry } from "../protocol/trace-shapes.js";

export type { SlowEntry } from "../protocol/trace-shapes.js";

/**
 * Bytes of each argument (a native request's key, a RESP command's every
 * argument) a slow log entry keeps; the rest is said as "... (N more bytes)",
 * as Redis 7 does (SLOWLOG_ENTRY_MAX_STRING, 128).
 */
export const SLOWLOG_KEY_BYTES = 128;
/**
 * Arguments a RESP entry keeps, the command's name included: past it the
 * last one kept says "... (N more arguments)", as Redis 7 does
 * (SLOWLOG_ENTRY_MAX_ARGC, 32). Together: an entry's arguments are at most
 * 32 x (128 bytes and a note), about 5 KiB.
 */
export const SLOWLOG_MAX_ARGS = 32;

const utf8 = new TextDecoder();

/** One argument as an entry keeps it: its first SLOWLOG_KEY_BYTES as text, and how many more bytes it had. */
export function slowArg(b: Uint8Array): string {
  if (b.length <= SLOWLOG_KEY_BYTES) return utf8.decode(b);
  return `${utf8.decode(b.subarray(0, SLOWLOG_KEY_BYTES))}... (${b.length - SLOWLOG_KEY_BYTES} more bytes)`;
}

/**
 * A command's arguments as an entry keeps them (Redis 7's slowlogCreateEntry):
 * each by slowArg, at most SLOWLOG_MAX_ARGS, the last of those saying how
 * many more there were. `argc` is the command's whole count; `args` may hold
 * only its first SLOWLOG_MAX_ARGS.
 */
export function slowArgs(args: readonly Uint8Array[], argc = args.length): string[] {
  const kept = Math.min(argc, SLOWLOG_MAX_ARGS);
  const out: string[] = [];
  for (let i = 0; i < kept; i++)
    out.push(kept !== argc && i === kept - 1 ? `... (${argc - kept + 1} more arguments)` : slowArg(args[i]!));
  return out;
}

export class SlowLog {
  /** Requests at least this slow are logged, µs; negative: none are (Redis's slowlog-log-slower-than). */
  slowerThanUs: number;
  private max: number;
  /** Oldest first; the newest is at the end. */
  private entries: SlowEntry[] = [];
  private nextId = 0;

  constructor(slowerThanUs = SLOWLOG_DEFAULT_SLOWER_THAN_US, maxLen = SLOWLOG_DEFAULT_MAX_LEN) {
    this.slowerThanUs = slowerThanUs;
    this.max = maxLen;
  }

  get maxLen(): number {
    return this.max;
  }

  /** At most SLOWLOG_MAX_LEN; the oldest entries past a smaller length are dropped now. */
  set maxLen(n: number) {
    this.max = Math.max(0, Math.min(n, SLOWLOG_MAX_LEN));
    if (this.entries.length > this.max) this.entries.splice(0, this.entries.length - this.max);
  }

  /** Whether a request that took `us` goes in. */
  isSlow(us: number): boolean {
    return this.slowerThanUs >= 0 && us >= this.slowerThanUs && this.max > 0;
  }

  add(e: Omit<SlowEntry, "id">): void {
    if (this.max === 0) return;
    this.entries.push({ id: this.nextId++, ...e });
    if (this.entries.length > this.max) this.entries.shift();
  }

  get length(): number {
    return this.entries.length;
  }

  /** The `n` newest entries, newest first. */
  newest(n: number): SlowEntry[] {
    return this.entries.slice(Math.max(0, this.entries.length - n)).reverse();
  }

  reset(): void {
    this.entries = [];
  }
}
