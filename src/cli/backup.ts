/**
 * `piccolo backup FILE` and `piccolo restore FILE` (docs/backup.md).
 *
 * backup: the node streams its backup file (src/io/backup.ts); it is
 * written to FILE.partial, fsynced, checked end to end as restore would
 * check it (every record, the SHA-256), and only then renamed to FILE. So
 * FILE is either a whole, checked backup or absent, never half of one.
 *
 * restore: checks the file, then writes a new data directory from it
 * (src/backup/restore.ts); with --check it only checks and describes it.
 */
import { closeSync, fdatasyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import type { PiccoloClient } from "../client/client.js";
import { readBackupFile } from "../backup/format.js";
import { restoreBackup, restoreToServer } from "../backup/restore.js";

export interface BackupReport {
  bytes: number;
  ms: number;
  kind: string;
  consistency: string;
  sections: number;
  sha256: string;
}

export async function backupToFile(client: PiccoloClient, file: string): Promise<BackupReport> {
  const t0 = performance.now();
  const partial = `${file}.partial`;
  const fd = openSync(partial, "w", 0o600); // every key and value of the node: readable by its owner only
  let ok = false;
  try {
    await client.backup((chunk) => {
      for (let at = 0; at < chunk.length; ) at += writeSync(fd, chunk, at, chunk.length - at);
    });
    fdatasyncSync(fd);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(partial, { force: true });
  }
  try {
    const summary = readBackupFile(partial);
    renameSync(partial, file);
    return {
      bytes: summary.bytes,
      ms: performance.now() - t0,
      kind: summary.head.kind,
      consistency: summary.head.consistency,
      sections: summary.head.sections,
      sha256: summary.sha256,
    };
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  }
}

export function describeConsistency(kind: string, consistency: string): string {
  return consistency === "node"
    ? "every shard at one point of the node's order of requests"
    : `each partition at its own linearizable point (${kind === "cluster" ? "taken one after another" : consistency})`;
}

export { readBackupFile, restoreBackup, restoreToServer };
