/**
 * One command on a durable shard, the same for both hosts (a shard worker,
 * or the IO thread with --shards 0): writes are refused while the log
 * cannot be written, SNAPSHOT (SAVE/BGSAVE) and PERSISTENCE (the journal's
 * figures) are answered by the journal, everything else by the core.
 */
import { ErrorCode } from "../errors.js";
import { type CommandView, isWrite, Op, PERSISTENCE_FIELDS, type Result, writeF64 } from "../shard/command.js";
import type { Journal } from "./journal.js";

/** Runs `c`; false when the journal failed during it (the host then fails every answer since its last commit). */
export function executeJournaled(j: Journal, c: CommandView, r: Result): boolean {
  const op = c.op;
  if (op === Op.SNAPSHOT) {
    // arg0 0: BGSAVE (answer once started); 1: SAVE (the snapshot is finished and durable before the
    // answer); 2: DEBUG RELOAD (SAVE, then the map rebuilt from the files, as a restart would).
    const wasFailed = j.failed !== null;
    const running = j.startSnapshot(Date.now()) || j.saving;
    if (!running || (c.arg0 >= 1 && !j.finishSnapshot())) r.status = ErrorCode.STORAGE_FAILED;
    else if (c.arg0 === 2) j.reload();
    r.num = j.stats().lastSaveMs;
    r.flag = j.saving ? 1 : 0;
    return wasFailed || j.failed === null;
  }
  if (op === Op.PERSISTENCE) {
    r.value = persistenceBytes(j);
    return true;
  }
  if (op === Op.STATS) {
    // The core's figures, then the journal's: one STATS answers both (src/io/native.ts statsRow).
    j.core.execute(c, r);
    const core = r.value!;
    statsAndFigures.set(core, 0);
    statsAndFigures.set(persistenceBytes(j), core.length);
    r.value = statsAndFigures.subarray(0, core.length + figures.length);
    return true;
  }
  if (j.failed !== null && isWrite(op)) {
    r.status = ErrorCode.STORAGE_FAILED;
    return true;
  }
  j.core.execute(c, r);
  return j.afterCommand();
}

const figures = new Uint8Array(PERSISTENCE_FIELDS.length * 8);
const statsAndFigures = new Uint8Array(64 + figures.length);

/** The journal's figures as f64s, in the order of PERSISTENCE_FIELDS (src/shard/command.ts). */
function persistenceBytes(j: Journal): Uint8Array {
  const s = j.stats();
  const values: Record<(typeof PERSISTENCE_FIELDS)[number], number> = {
    logBytes: s.logBytes,
    snapshotBytes: s.snapshotBytes,
    lastSaveMs: s.lastSaveMs,
    saving: s.saving ? 1 : 0,
    changesSinceSave: s.changesSinceSave,
    lastSaveOk: s.lastSaveOk ? 1 : 0,
    failed: s.failed ? 1 : 0,
    fsyncs: s.fsyncs,
    fsyncTotalMs: s.fsyncTotalMs,
    fsyncMaxMs: s.fsyncMaxMs,
  };
  for (const [i, name] of PERSISTENCE_FIELDS.entries()) writeF64(figures, i * 8, values[name]);
  return figures;
}
