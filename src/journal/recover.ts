/**
 * Rebuilding a shard's map from its directory: the newest snapshot, then
 * every log segment from the one it names.
 *
 * Damage is judged by the WAL's rule (docs/wal.md, decision 0152): a bad or
 * short record in the LAST segment with no valid record after it is a torn
 * tail: the process died while writing a batch whose answers had not left
 * (answers leave only after the write; under `always` only after the
 * fsync). It is cut off, the cut fsynced, and reported. Anything else (a bad
 * record followed by a good one, damage in an earlier segment, a missing
 * segment, a damaged snapshot) means the disk returned other bytes than were
 * written: recovery stops with JournalCorruptError naming the file and the
 * offset, and the node refuses to start rather than serve a map that lost
 * acknowledged writes.
 */
import { JOURNAL_MAX_RECORD_BYTES } from "../limits.js";
import { ShardCore } from "../shard/execute.js";
import { readFrame } from "../wal/record.js";
import { readF64 } from "../shard/command.js";
import { applyEffects, JournalRecord, readPartPrefix } from "./effects.js";
import type { JournalFs } from "./files.js";
import { loadSnapshot, snapshotSeq } from "./snapshot.js";

export class JournalCorruptError extends Error {
  override name = "JournalCorruptError";
  readonly code = "JOURNAL_CORRUPT";
  constructor(
    readonly file: string,
    readonly offset: number,
    why: string,
  ) {
    super(
      `data corrupt: ${file} at byte ${offset}: ${why}; refusing to start rather than serve data that lost acknowledged writes. ` +
        "Keep a copy of the data directory; to start from what is intact, move this file (and, for a log segment, every later one) aside, accepting the loss of the writes it held",
    );
  }
}

export function segmentName(seq: number): string {
  return `${String(seq).padStart(16, "0")}.wal`;
}

function segmentSeq(name: string): number {
  return /^\d{16}\.wal$/.test(name) ? Number(name.slice(0, 16)) : -1;
}

export interface ShardRecovery {
  core: ShardCore;
  /** The segment recovery started replaying at (the snapshot's seq, or the oldest). */
  replayFrom: number;
  /** Live segments after recovery, oldest first, with their sizes. */
  segments: { seq: number; bytes: number }[];
  /** The newest snapshot: its size and finish time (null: none yet). */
  snapshot: { name: string; bytes: number; finishedAtMs: number } | null;
  /** Set when a torn tail was cut off the last segment. */
  truncatedTail: { file: string; offset: number; bytes: number } | null;
  /** Files of an interrupted clean-up that recovery removed (older segments and snapshots). */
  removed: string[];
  /**
   * The last multi-shard transaction this shard has a record of, and its
   * state: applied (a record followed its part), aborted (its TXN_ABORT
   * followed), or in doubt (its part is the log's last record). Id 0: none.
   */
  lastTxn: { id: number; state: "applied" | "aborted" | "in-doubt" };
  /** The part in doubt, when `resolve` answered "ask": apply() it or drop() it once the other shards were asked. */
  inDoubt: InDoubtPart | null;
}

export interface InDoubtPart {
  id: number;
  participants: number[];
  /** Applies the part's effects to the recovered core (it completed on every participant). */
  apply(): void;
  /** Cuts the part off the log (some participant never wrote its part: the transaction did not happen). */
  drop(): void;
}

/**
 * What to do with a transaction part that is the log's last record: the
 * journal knows the fate of its own last part when it reloads after a
 * failure; at start-up only the other shards know ("ask").
 */
export type ResolveInDoubt = (id: number, participants: number[]) => "apply" | "drop" | "ask";

/**
 * Whether the transaction `id`, in doubt on some shard, completed: it did
 * if every participant wrote its part, i.e. each participant's last
 * transaction is a later one (a participant moves past a transaction only
 * once every part is written), or is this one, applied or in doubt too.
 * An abort record anywhere, or a participant that never got to it, means
 * it did not (docs/transactions.md, "Crash atomicity").
 */
export function txnCompleted(
  id: number,
  participants: readonly number[],
  lastTxnOf: (shard: number) => { id: number; state: string },
): boolean {
  for (const p of participants) {
    const last = lastTxnOf(p);
    if (last.id > id) continue;
    if (last.id === id && last.state !== "aborted") continue;
    return false;
  }
  return true;
}

/** Recovers the shard in `dir` (created when missing). Throws JournalCorruptError. */
export function recoverShard(fs: JournalFs, dir: string, resolve: ResolveInDoubt = () => "ask"): ShardRecovery {
  fs.mkdir(dir);
  const names = fs.list(dir).sort();
  for (const n of names) if (n.endsWith(".tmp")) fs.remove(`${dir}/${n}`); // an unfinished snapshot
  const snaps = names.filter((n) => snapshotSeq(n) >= 0);
  const core = new ShardCore();
  let snapshot: ShardRecovery["snapshot"] = null;
  let replayFrom = 0;
  const removed: string[] = [];
  let lastTxn: ShardRecovery["lastTxn"] = { id: 0, state: "applied" };
  if (snaps.length > 0) {
    const newest = snaps[snaps.length - 1]!;
    const buf = fs.read(`${dir}/${newest}`);
    const loaded = loadSnapshot(buf, core, JOURNAL_MAX_RECORD_BYTES);
    if ("why" in loaded) throw new JournalCorruptError(`${dir}/${newest}`, loaded.offset, loaded.why);
    if (loaded.seq !== snapshotSeq(newest))
      throw new JournalCorruptError(`${dir}/${newest}`, 0, "the header names another segment than the file name");
    snapshot = { name: newest, bytes: buf.length, finishedAtMs: loaded.finishedAtMs };
    replayFrom = loaded.seq;
    lastTxn = { id: loaded.lastTxnId, state: "applied" };
    // A crash after the snapshot was published but before the clean-up.
    for (const old of snaps.slice(0, -1)) {
      fs.remove(`${dir}/${old}`);
      removed.push(old);
    }
  }
  const segs: string[] = [];
  for (const n of names) {
    const seq = segmentSeq(n);
    if (seq < 0) continue;
    if (seq < replayFrom) {
      fs.remove(`${dir}/${n}`);
      removed.push(n);
    } else segs.push(n);
  }
  if (removed.length > 0) fs.syncDir(dir);
  // A snapshot is published only after the segment it names was created and fsynced into the
  // directory (it holds the writes made while the fuzzy walk ran): without it, writes are lost.
  if (snapshot !== null && (segs.length === 0 || segmentSeq(segs[0]!) !== replayFrom))
    throw new JournalCorruptError(
      `${dir}/${segmentName(replayFrom)}`,
      0,
      `the snapshot needs this segment, and it is missing`,
    );
  const segments: ShardRecovery["segments"] = [];
  let truncatedTail: ShardRecovery["truncatedTail"] = null;
  // A transaction part waits for the next record: its abort voids it, anything else confirms it.
  let held: {
    id: number;
    participants: number[];
    buf: Uint8Array;
    start: number;
    end: number;
    file: string;
    offset: number;
  } | null = null;
  const applyHeld = (): void => {
    const h = held!;
    held = null;
    if (!applyEffects(core, h.buf, h.start, h.end))
      throw new JournalCorruptError(h.file, h.offset, "a transaction part with a valid checksum does not parse");
    lastTxn = { id: h.id, state: "applied" };
  };
  for (const [i, name] of segs.entries()) {
    const seq = segmentSeq(name);
    if (i > 0 && seq !== segments[i - 1]!.seq + 1)
      throw new JournalCorruptError(`${dir}/${segmentName(segments[i - 1]!.seq + 1)}`, 0, "a log segment is missing");
    const path = `${dir}/${name}`;
    const buf = fs.read(path);
    const last = i === segs.length - 1;
    let at = 0;
    while (at < buf.length) {
      const f = readFrame(buf, at, JOURNAL_MAX_RECORD_BYTES);
      if (f !== "short" && f !== "bad") {
        // Intact bytes that do not parse were written that way: a bug or another program, never a tear.
        const unparsed = (): JournalCorruptError =>
          new JournalCorruptError(path, at, `a record with a valid checksum does not parse (type ${f.type})`);
        if (f.type === JournalRecord.TXN_ABORT) {
          if (f.end - f.start !== 8) throw unparsed();
          const id = readF64(buf, f.start);
          if (held !== null && held.id === id) {
            held = null;
            lastTxn = { id, state: "aborted" };
          }
          at = f.end;
          continue;
        }
        if (held !== null) applyHeld();
        if (f.type === JournalRecord.TXN_PART) {
          const prefix = readPartPrefix(buf, f.start, f.end);
          if (prefix === null) throw unparsed();
          held = { ...prefix, buf, start: prefix.effects, end: f.end, file: path, offset: at };
        } else if (f.type !== JournalRecord.EFFECTS || !applyEffects(core, buf, f.start, f.end)) throw unparsed();
        at = f.end;
        continue;
      }
      const why = f === "short" ? "a record runs past the end of the file" : "a record fails its checksum or layout";
      if (!last) throw new JournalCorruptError(path, at, `${why}, in a sealed segment`);
      const later = findValidFrame(buf, at + 1);
      if (later >= 0) throw new JournalCorruptError(path, at, `${why}, with a valid record after it at byte ${later}`);
      truncatedTail = { file: path, offset: at, bytes: buf.length - at };
      const file = fs.open(path);
      try {
        file.truncate(at);
        file.sync();
      } finally {
        file.close();
      }
      break;
    }
    segments.push({ seq, bytes: truncatedTail?.file === path ? truncatedTail.offset : buf.length });
  }
  if (replayFrom === 0) replayFrom = segments.length > 0 ? segments[0]!.seq : 1;
  let inDoubt: InDoubtPart | null = null;
  if (held !== null) {
    const h: NonNullable<typeof held> = held;
    lastTxn = { id: h.id, state: "in-doubt" };
    const drop = (): void => {
      // The part is the log's last record: cut it as a torn tail is cut.
      const file = fs.open(h.file);
      try {
        file.truncate(h.offset);
        file.sync();
      } finally {
        file.close();
      }
      const seg = segments.find((x) => `${dir}/${segmentName(x.seq)}` === h.file);
      if (seg !== undefined) seg.bytes = h.offset;
      lastTxn = { id: h.id, state: "aborted" };
    };
    const part: InDoubtPart = {
      id: h.id,
      participants: h.participants,
      apply: () => {
        held = h;
        applyHeld();
      },
      drop,
    };
    const verdict = resolve(h.id, h.participants);
    if (verdict === "apply") part.apply();
    else if (verdict === "drop") part.drop();
    else inDoubt = part;
  }
  return {
    core,
    replayFrom,
    segments,
    snapshot,
    truncatedTail,
    removed,
    get lastTxn() {
      return lastTxn;
    },
    inDoubt,
  };
}

/** The first offset at or after `from` where a whole, valid frame starts; -1 if none. */
function findValidFrame(buf: Uint8Array, from: number): number {
  for (let at = from; at < buf.length; at++) {
    const f = readFrame(buf, at, JOURNAL_MAX_RECORD_BYTES);
    if (f !== "short" && f !== "bad") return at;
  }
  return -1;
}
