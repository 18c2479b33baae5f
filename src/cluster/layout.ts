/**
 * A member's data directory across its group hosts (decision 0189).
 *
 * Host h keeps the partitions p with p % hosts === h, in its own WAL: host 0
 * in the data directory itself (so a directory from before group workers, or
 * from `--shards 0` or 1, is read as it is), host h > 0 in `shard-<h>/`. The
 * assignment must not change between restarts (a partition's log is where
 * its host left it), so the number of hosts is recorded in `hosts.json` on
 * first start, and a restart with a different `--shards` is refused with a
 * clear message rather than losing sight of some partitions' logs.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PlacementError } from "./placement.js";

const FILE = "hosts.json";
/** Files of the data directory that are not WAL files of host 0. */
const NOT_WAL = new Set([FILE, "joined.json"]);

/** The WAL directory of each host, creating the record on first start. */
export function walDirs(dataDir: string, hosts: number): string[] {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, FILE);
  let recorded: number;
  if (existsSync(file)) {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as { hosts?: unknown };
    if (!Number.isInteger(parsed.hosts) || (parsed.hosts as number) < 1)
      throw new PlacementError(`${file} does not say how many group hosts this member runs`);
    recorded = parsed.hosts as number;
  } else {
    // A data directory with WAL files but no record was written by a single host.
    const used = readdirSync(dataDir).some((n) => !NOT_WAL.has(n) && !n.startsWith("shard-"));
    recorded = used ? 1 : hosts;
    writeFileSync(file, `${JSON.stringify({ hosts: recorded })}\n`);
  }
  if (recorded !== hosts)
    throw new PlacementError(
      `${dataDir} holds the partitions of ${recorded} group host(s) (--shards ${recorded}, or 0 for 1 inline); ` +
        `it was started with ${hosts}: restart with the same --shards`,
    );
  return Array.from({ length: hosts }, (_, h) => (h === 0 ? dataDir : join(dataDir, `shard-${h}`)));
}
