/**
 * A single node's data directory, as a whole: who owns it, and how many
 * shards wrote it.
 *
 *   data/
 *     LOCK           the pid of the process that owns the directory
 *     piccolo.json   {"format": 2, "shards": N}: written once, at creation
 *     shard-0/ ...   one journal per shard worker (src/journal/journal.ts)
 *
 * LOCK. Two processes appending to the same logs would interleave records
 * and destroy both. The lock is a file created with O_EXCL holding the
 * owner's pid; a process that finds one checks whether that pid still runs
 * a Piccolo node (its /proc cmdline), so the lock of a process killed with
 * -9 is taken over, and a live owner's is refused with a message naming it.
 * Node has no flock(2); a pid file is what Redis and PostgreSQL
 * (postmaster.pid) use too. Taken over wrongly only if, after a reboot, an
 * unrelated Piccolo node got the dead owner's pid.
 *
 * Shards. A key belongs to shard hash(key) % N, so the journals are only
 * meaningful with the N that wrote them. A node started without --shards
 * adopts the directory's N; one started with another N is refused, with
 * what to do (decision 0223).
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { realFs } from "./files.js";

/**
 * 2 (2026-12-03): keys are placed by their hash tag (src/hash.ts), and the
 * journal holds transaction records. A format-1 directory (written the day
 * before, by the first durable build) is refused: a key with braces in it
 * may sit in a shard it no longer routes to.
 */
export const DATA_FORMAT = 2;

export class DataDirError extends Error {
  override name = "DataDirError";
}

export interface DataDir {
  dir: string;
  /** Shards the directory was written with (adopted when --shards was not given). */
  shards: number;
  /** True when the directory was created now. */
  created: boolean;
  /** Releases the lock (at a clean stop). */
  release(): void;
  shardDir(shard: number): string;
}

function ownerRuns(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // alive, someone else's
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("server");
  } catch {
    return true; // no /proc: assume the owner is alive rather than share the files
  }
}

/**
 * Opens `dir` for this process: creates it, takes its lock, reads or
 * writes its manifest. `shards`: the configured count; `explicit`: whether
 * the user gave it (then a mismatch is refused instead of adopted).
 */
export function openDataDir(dir: string, shards: number, explicit: boolean): DataDir {
  realFs.mkdir(dir);
  const lock = `${dir}/LOCK`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
      const owner = Number(readFileSync(lock, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && ownerRuns(owner))
        throw new DataDirError(
          `the data directory ${dir} is in use by process ${owner} (its LOCK file); stop that node first, or give this one another --data-dir`,
        );
      rmSync(lock, { force: true }); // a dead owner's lock
    }
  }
  realFs.syncDir(dir);
  const release = (): void => {
    try {
      if (readFileSync(lock, "utf8").trim() === String(process.pid)) rmSync(lock, { force: true });
    } catch {
      // already gone
    }
  };
  try {
    const manifestPath = `${dir}/piccolo.json`;
    const layout = Math.max(1, shards); // --shards 0 (the IO thread) is one shard on disk
    let created = false;
    let onDisk = layout;
    if (existsSync(manifestPath)) {
      let m: { format?: unknown; shards?: unknown };
      try {
        m = JSON.parse(readFileSync(manifestPath, "utf8"));
      } catch (err) {
        throw new DataDirError(
          `${manifestPath} is not valid JSON (${(err as Error).message}); it says how many shards wrote this directory`,
        );
      }
      if (m.format === 1)
        throw new DataDirError(
          `${manifestPath}: format 1, written by a build before keys were placed by their hash tag; this build reads format ${DATA_FORMAT}. Move the directory aside (or export its keys with SCAN and GET through that build) and start on an empty one`,
        );
      if (m.format !== DATA_FORMAT || !Number.isInteger(m.shards) || (m.shards as number) < 1)
        throw new DataDirError(
          `${manifestPath}: format ${String(m.format)} with shards ${String(m.shards)} is not one this build reads (format ${DATA_FORMAT})`,
        );
      onDisk = m.shards as number;
      if (onDisk !== layout && explicit)
        throw new DataDirError(
          `the data directory ${dir} was written by ${onDisk} shard${onDisk === 1 ? "" : "s"}, and --shards asks for ${shards}: keys are placed by shard, so start without --shards (it adopts ${onDisk}) or with --shards ${onDisk}`,
        );
    } else {
      // No manifest, but shard journals: the manifest was lost (or deleted). Starting as a new directory
      // would place keys by a shard count the journals may not have been written with, and serve with
      // keys missing; refuse and say how to put the manifest back.
      const shardDirs = readdirSync(dir).filter((n) => /^shard-\d+$/.test(n));
      if (shardDirs.length > 0)
        throw new DataDirError(
          `${dir} holds shard journals (${shardDirs.length} shard director${shardDirs.length === 1 ? "y" : "ies"}) but no piccolo.json, which says how many shards wrote them; if ${shardDirs.length} shards wrote it, recreate it as {"format": ${DATA_FORMAT}, "shards": ${shardDirs.length}}, or move the directory aside to start empty`,
        );
      const tmp = `${manifestPath}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ format: DATA_FORMAT, shards: layout })}\n`);
      const f = realFs.open(tmp);
      f.sync();
      f.close();
      realFs.rename(tmp, manifestPath);
      realFs.syncDir(dir);
      created = true;
    }
    return { dir, shards: onDisk, created, release, shardDir: (shard) => `${dir}/shard-${shard}` };
  } catch (err) {
    release();
    throw err;
  }
}
