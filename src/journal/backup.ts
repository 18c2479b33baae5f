/**
 * A shard's part of a node backup (docs/backup.md): every key of its map,
 * as of one moment shared by every shard, written while the shard keeps
 * serving.
 *
 * The part is a file of records in the WAL's framing (src/wal/record.ts),
 * in the order things happened on the shard:
 *
 *   SNAP_KEYS  keys the walk copied (a key's whole state: value, version, expiry)
 *   EFFECTS    what each batch of writes did meanwhile (src/journal/effects.ts)
 *   TXN_PART / TXN_ABORT   a multi-shard transaction's part, and its voiding
 *   PART_END   written at the cut: keys walked, the shard's last version
 *
 * Why replaying it in order gives the map at the cut: the walk copies each
 * key as it is when the walk reaches it, and every change after the start is
 * tapped as an effect, in the order it happened relative to the walk's
 * steps. Each record sets a key's whole state (or its expiry alone, or
 * empties the map), so after replaying everything up to the cut, a key's
 * state is the one its last record gave it, which is its state at the cut:
 * a key present for the whole walk was copied at least once and any later
 * change is a later record; a key created, changed or removed meanwhile has
 * its effect. The same argument as the journal's fuzzy snapshot
 * (snapshot.ts), with the log of the walk's duration kept beside the keys
 * instead of in the shard's segments, so it also works with no data
 * directory (--in-memory) and the backup never depends on what the node
 * keeps or deletes.
 *
 * The cut itself is a command (Op.BACKUP, CUT) the IO thread puts into every
 * shard's ring in one turn, after every walk has ended (src/io/backup.ts):
 * whatever the IO thread sent before it is in every part, whatever after it
 * in none, which is one point in the node's order of requests (the argument
 * in docs/backup.md). A multi-shard transaction's parts are sent in one turn
 * too, so a cut never falls inside one.
 *
 * Limits: a part is never held in memory (records are written as they are
 * made, with the journal's 1 MiB chunks); the walk restarts at most
 * SNAPSHOT_MAX_RESTARTS times when the index is rebuilt under it, then the
 * backup fails and can be tried again. A shard whose map is replaced during
 * the backup (a failed disk write read the map back, DEBUG RELOAD) fails it
 * too: its effects could include writes the reload took back.
 */
import { ErrorCode } from "../errors.js";
import { SNAPSHOT_MAX_RESTARTS } from "../limits.js";
import { type CommandView, type Result, writeF64 } from "../shard/command.js";
import type { ShardCore } from "../shard/execute.js";
import { HEADER_BYTES, sealFrame } from "../wal/record.js";
import { EffectBuffer } from "./effects.js";
import { KeyChunks } from "./key-chunks.js";
import type { JournalFile, JournalFs } from "./files.js";
import type { Journal } from "./journal.js";

/** The record that ends a part: f64 keys walked, f64 the shard's last version, f64 the cut's time, f64 walk restarts. */
export const PART_END = 37;

export interface PartEnd {
  keysWalked: number;
  lastVersion: number;
  cutAtMs: number;
  restarts: number;
}

/** A PART_END record, framed (a shard's part here; a cluster partition's section in src/io/backup.ts). */
export function partEndRecord(end: PartEnd): Uint8Array {
  const r = new Uint8Array(HEADER_BYTES + 32);
  writeF64(r, HEADER_BYTES, end.keysWalked);
  writeF64(r, HEADER_BYTES + 8, end.lastVersion);
  writeF64(r, HEADER_BYTES + 16, end.cutAtMs);
  writeF64(r, HEADER_BYTES + 24, end.restarts);
  sealFrame(r, PART_END, r.length);
  return r;
}

/** In memory, a backup's own effects are written once they hold this many bytes (the journal's rule). */
const EFFECTS_CHUNK_BYTES = 1024 * 1024;

/** Op.BACKUP's arg0 (src/shard/command.ts). */
export const BackupStep = {
  /** Open the part file named by the command's value and start walking. */
  START: 0,
  /** flag 1 once the walk has ended (the part keeps tapping effects until the cut). */
  STATUS: 1,
  /** Write PART_END and close the file; num: the part's bytes. */
  CUT: 2,
  /** Stop and delete the part file (the backup failed elsewhere, or its client left). */
  ABORT: 3,
} as const;

export class ShardBackup {
  private readonly file: JournalFile;
  private readonly chunks = new KeyChunks((record, length) => this.write(record, length));
  private cursor = 0;
  private epoch: number;
  /** The walk has seen every slot once (after its last restart). */
  walked = false;
  /** Why the backup cannot go on (then every later step answers it); null while fine. */
  failure: string | null = null;
  keysWalked = 0;
  restarts = 0;
  bytes = 0;
  /** In memory only: effects are recorded here and written at each commit (the journal's tap, otherwise). */
  private readonly ownEffects: EffectBuffer | null;

  constructor(
    private readonly fs: JournalFs,
    readonly path: string,
    readonly core: ShardCore,
    private readonly journal: Journal | null,
  ) {
    fs.remove(path);
    this.file = fs.open(path);
    this.epoch = core.store.indexEpoch;
    if (journal === null) {
      this.ownEffects = new EffectBuffer();
      core.effects = this.ownEffects;
    } else {
      this.ownEffects = null;
      // The batch's effects recorded before this command are tapped too when it commits: a few records
      // from before the walk, harmless (any record older than the walk's copy of a key is superseded).
      journal.tap = (rec) => this.record(rec);
    }
  }

  /** A sealed record of the shard's writes (the journal's, or our own in memory), in the order they happened. */
  private record(rec: Uint8Array): void {
    if (this.failure !== null) return;
    this.chunks.flush(); // keys walked before this write come first
    this.write(rec, rec.length);
  }

  private write(bytes: Uint8Array, length: number): void {
    try {
      this.file.write(bytes, length);
      this.bytes += length;
    } catch (err) {
      this.fail(`cannot write the backup part ${this.path}: ${(err as Error).message}`);
    }
  }

  /** In memory: the batch's effects go to the part (the host calls this before answers leave, and per command). */
  commit(force: boolean): void {
    const e = this.ownEffects;
    if (e === null || e.empty || (!force && e.bytes < EFFECTS_CHUNK_BYTES)) return;
    this.record(e.seal());
    e.clear();
  }

  /**
   * Walks up to `maxKeys` more keys; `current` is the host's map now.
   * Returns true while the walk has more to do.
   */
  step(current: ShardCore, maxKeys: number): boolean {
    if (!this.check(current) || this.walked) return false;
    const store = this.core.store;
    if (store.indexEpoch !== this.epoch) {
      // Slots moved: the walk may have skipped keys. Walk again from the start; what was copied stays
      // (a later copy of a key supersedes an earlier one on replay, as an effect does).
      this.epoch = store.indexEpoch;
      this.cursor = 0;
      if (++this.restarts > SNAPSHOT_MAX_RESTARTS) {
        this.fail("the shard's index was rebuilt under the backup's walk too often; try again");
        return false;
      }
    }
    this.cursor = store.scan(this.cursor, maxKeys, (slot) => {
      this.chunks.add(store.key(slot), store.value(slot), store.version(slot), store.expiresAtMs(slot));
      this.keysWalked++;
    });
    this.chunks.flush(); // an effect may come next: keep the order on disk
    if (this.cursor === 0) this.walked = true;
    return !this.walked;
  }

  /** False (and the backup failed) when the host's map is no longer the one being walked. */
  private check(current: ShardCore): boolean {
    if (this.failure !== null) return false;
    if (current !== this.core) {
      this.fail(
        "the shard's map was read back from its files during the backup (a failed write, or DEBUG RELOAD); try again",
      );
      return false;
    }
    return true;
  }

  /**
   * The cut: what this batch recorded before the CUT command goes in, then
   * PART_END; the file is closed. Returns the part's bytes, or null when
   * the backup failed (`failure` says why).
   */
  cut(current: ShardCore, nowMs: number): number | null {
    if (this.check(current) && !this.walked) this.fail("cut before the walk ended");
    if (this.failure !== null) {
      this.close();
      return null;
    }
    // What this batch recorded before the CUT command is in the cut: copied now (the journal writes the
    // same bytes to its log at its commit, untapped by then).
    if (this.journal !== null) {
      const e = this.journal.effects;
      if (!e.empty) this.record(e.seal());
    } else this.commit(true);
    const tail = partEndRecord({
      keysWalked: this.keysWalked,
      lastVersion: this.core.lastVersion,
      cutAtMs: nowMs,
      restarts: this.restarts,
    });
    this.write(tail, tail.length);
    this.close();
    return this.failure === null ? this.bytes : null;
  }

  private fail(why: string): void {
    if (this.failure === null) this.failure = why;
  }

  /** Stops tapping and closes the file (kept: the IO thread streams it, then deletes it). */
  close(): void {
    if (this.journal !== null && this.journal.tap !== null) this.journal.tap = null;
    if (this.ownEffects !== null && this.core.effects === this.ownEffects) this.core.effects = null;
    try {
      this.file.close();
    } catch {
      // closing a file we are done with
    }
  }

  /** Gives up: stops and deletes the part. */
  abandon(): void {
    this.fail("aborted");
    this.close();
    try {
      this.fs.remove(this.path);
    } catch {
      // the IO thread removes the backup's directory too
    }
  }
}

/** A shard host's backup in progress (a worker's, or the IO thread's with --shards 0). */
export interface BackupSlot {
  backup: ShardBackup | null;
}

const utf8 = new TextEncoder();

function refuse(r: Result, status: number, why: string): void {
  r.status = status;
  r.value = utf8.encode(why);
}

/** Op.BACKUP on a shard host: `core` is the host's map now, `journal` its journal (null in memory). */
export function executeBackupStep(
  slot: BackupSlot,
  c: CommandView,
  r: Result,
  core: ShardCore,
  journal: Journal | null,
  fs: JournalFs,
): void {
  const b = slot.backup;
  switch (c.arg0) {
    case BackupStep.START: {
      b?.abandon(); // a part left by a backup whose end never arrived
      slot.backup = null;
      if (journal !== null && journal.failed !== null)
        return refuse(r, ErrorCode.STORAGE_FAILED, `this shard cannot write its log: ${journal.failed}`);
      try {
        slot.backup = new ShardBackup(fs, new TextDecoder().decode(c.value), core, journal);
      } catch (err) {
        return refuse(r, ErrorCode.INTERNAL, `cannot open the backup part: ${(err as Error).message}`);
      }
      return;
    }
    case BackupStep.STATUS:
      if (b === null) return refuse(r, ErrorCode.INTERNAL, "no backup is in progress on this shard");
      if (b.failure !== null) return refuse(r, ErrorCode.INTERNAL, b.failure);
      r.flag = b.walked ? 1 : 0;
      r.num = b.keysWalked;
      return;
    case BackupStep.CUT: {
      if (b === null) return refuse(r, ErrorCode.INTERNAL, "no backup is in progress on this shard");
      slot.backup = null;
      const bytes = b.cut(core, Date.now());
      if (bytes === null) return refuse(r, ErrorCode.INTERNAL, b.failure ?? "the backup failed");
      r.num = bytes;
      r.version = core.lastVersion;
      return;
    }
    case BackupStep.ABORT:
      b?.abandon();
      slot.backup = null;
      return;
    default:
      return refuse(r, ErrorCode.INVALID_ARGUMENT, `unknown backup step ${c.arg0}`);
  }
}

/**
 * The host's periodic backup work, between batches: effects recorded in
 * memory go to the part, then the walk takes `maxKeys` more keys. True
 * while the walk has more to do (the host should come back soon).
 */
export function backupTick(slot: BackupSlot, core: ShardCore, maxKeys: number): boolean {
  const b = slot.backup;
  if (b === null) return false;
  b.commit(true);
  return b.step(core, maxKeys);
}
