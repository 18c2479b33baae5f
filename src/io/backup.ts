/**
 * A backup on the IO thread (docs/backup.md): the node's whole keyspace,
 * streamed to one client as a backup file (src/backup/format.ts) while the
 * node keeps serving everyone else.
 *
 * A single node (its shards):
 *   1. START on every shard: each opens a part file in the backup directory
 *      (the data directory's backup-tmp/, or the system's temporary
 *      directory for a node in memory) and walks its map between batches,
 *      while every write it applies meanwhile is tapped into the same file
 *      (src/journal/backup.ts).
 *   2. STATUS every BACKUP_POLL_MS until every walk has ended.
 *   3. CUT on every shard, sent in one turn of this thread: every shard's
 *      part ends at the same point of the node's order of requests. That is
 *      the backup's linearization point: a request the node had answered
 *      before the cut was sent is in it; one read after it is not; and a
 *      multi-shard transaction's parts are sent in one turn, so the cut
 *      never splits one.
 *   4. The part files are streamed, one section each, then deleted.
 *
 * A cluster member (its partitions): each partition is read whole from its
 * leader after ReadIndex (Op.DUMP), one after another: every partition is
 * at its own linearizable point, and the file says so (consistency
 * "partition"). A transaction never spans partitions, so none is split.
 *
 * Backpressure: a frame is sent only while the client's connection is under
 * its soft output limit; the stream waits for the client otherwise (the
 * shards are never held up: their parts go to disk). A stream that makes no
 * progress for BACKUP_STALL_MS is given up and its files deleted. One
 * backup runs at a time (BACKUP_MAX_RUNNING); another is refused BUSY.
 */
import { createHash, type Hash } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import {
  BackupRecord,
  BACKUP_FORMAT,
  BACKUP_MAGIC,
  endRecord,
  jsonRecord,
  partEndRecord,
  record,
} from "../backup/format.js";
import { partitionSnapshotKeys } from "../cluster/partition-machine.js";
import { ErrorCode, errorName } from "../errors.js";
import { BackupStep } from "../journal/backup.js";
import {
  BACKUP_FRAME_BYTES,
  BACKUP_MAX_PARTITION_BYTES,
  BACKUP_MAX_RUNNING,
  BACKUP_POLL_MS,
  BACKUP_STALL_MS,
} from "../limits.js";
import { outcomeOf } from "../outcomes.js";
import type { PartResult } from "../protocol/codec.js";
import { Op, type Result } from "../shard/command.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";
import { copyResult } from "./native.js";

/** Where a backup's frames go: the client's connection. */
export interface BackupSink {
  /** The connection takes more now (under its soft output limit). */
  readonly ready: boolean;
  /** The client is gone, or the node is stopping: stop. */
  readonly gone: boolean;
  /** The next bytes of the file (copied before send returns); `last` when it is complete. */
  send(data: Uint8Array, last: boolean): void;
  /** The backup failed: the file is incomplete. */
  fail(code: number, message: string): void;
}

/** How a backend is backed up (src/io/shards.ts, src/cluster/backend.ts). */
export type BackupSource = { kind: "shards"; dir: string } | { kind: "partitions" };

class BackupFailed extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const NO_OWNER: RequestOwner = { requestDone() {}, charge() {}, gone: false };
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();

/** One command per shard, answered into a promise (an inline shard answers inside send()). */
class Gather extends InFlight {
  private readonly results: PartResult[] = [];
  private answered = 0;

  constructor(
    private readonly expected: number,
    private readonly done: (results: PartResult[]) => void,
  ) {
    super(NO_OWNER);
  }

  onResult(part: number, r: Result): void {
    this.results[part] = copyResult(r);
    if (++this.answered === this.expected) {
      this.finish(EMPTY);
      this.done(this.results);
    }
  }
}

/** Sends `op` (arg0, value) to each of `shards` in this turn; resolves with their results by index. */
function ask(
  d: Dispatcher,
  shards: number[],
  op: Op,
  arg0: number,
  value: (s: number) => Uint8Array | null,
): Promise<PartResult[]> {
  return new Promise((resolve) => {
    const g = new Gather(shards.length, resolve);
    const now = Date.now();
    for (const [i, s] of shards.entries()) {
      const c = d.begin(op, now);
      c.arg0 = arg0;
      c.value = value(s);
      d.send(s, g, i, EMPTY);
    }
    // The node publishes the rings at the end of the turn: every command above goes out together.
    d.onSentLater();
  });
}

function failureOf(what: string, r: PartResult): BackupFailed {
  const why = r.value !== null && r.value.length > 0 ? utf8.decode(r.value) : outcomeOf(r.status).text;
  return new BackupFailed(r.status, `${what}: ${errorName(r.status)}: ${why}`);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The file as it is streamed: framed in BACKUP_FRAME_BYTES, hashed as it goes. */
class Stream {
  private readonly hash: Hash = createHash("sha256");
  private buf = new Uint8Array(BACKUP_FRAME_BYTES);
  private fill = 0;
  bytes = 0;
  private lastProgress = performance.now();

  constructor(private readonly sink: BackupSink) {}

  /** Waits until the client takes more; fails when it is gone or made no progress for BACKUP_STALL_MS. */
  async writable(): Promise<void> {
    for (;;) {
      if (this.sink.gone) throw new BackupFailed(ErrorCode.CONNECTION_CLOSED, "the client went away");
      if (this.sink.ready) {
        this.lastProgress = performance.now();
        return;
      }
      if (performance.now() - this.lastProgress > BACKUP_STALL_MS)
        throw new BackupFailed(
          ErrorCode.TIMEOUT,
          `the client read nothing for ${BACKUP_STALL_MS / 1000} s; the backup was given up`,
        );
      await sleep(10);
    }
  }

  async write(bytes: Uint8Array, hashed = true): Promise<void> {
    if (hashed) this.hash.update(bytes);
    this.bytes += bytes.length;
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.buf.length - this.fill);
      this.buf.set(bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.buf.length) await this.flush(false);
    }
  }

  /**
   * Sends what is buffered (an empty frame keeps a quiet stream alive while
   * the shards walk), then yields: the clients the IO thread serves get a
   * turn between any two frames of a backup.
   */
  async flush(last: boolean): Promise<void> {
    await this.writable();
    this.sink.send(this.buf.subarray(0, this.fill), last); // the frame is a copy
    this.fill = 0;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async end(sections: number): Promise<void> {
    const end = endRecord(this.bytes, sections, this.hash);
    await this.write(end, false); // END carries the hash of everything before it
    await this.flush(true);
  }
}

/** Starts a backup for `sink`; refused BUSY while another runs. */
export function startBackup(
  d: Dispatcher,
  source: BackupSource,
  sink: BackupSink,
  writer: string,
  log: (level: "info" | "warn", message: string, detail?: object) => void,
): void {
  if (d.backupsRunning >= BACKUP_MAX_RUNNING)
    return sink.fail(ErrorCode.BUSY, "a backup is already running on this node; try again when it ends");
  d.backupsRunning++;
  const t0 = performance.now();
  const out = new Stream(sink);
  const run = source.kind === "shards" ? backupShards(d, source.dir, out, writer) : backupPartitions(d, out, writer);
  void run
    .then(
      (summary) => log("info", "backup sent", { ...summary, bytes: out.bytes, ms: Math.round(performance.now() - t0) }),
      (err: unknown) => {
        const code = err instanceof BackupFailed ? err.code : ErrorCode.INTERNAL;
        const message = (err as Error).message;
        log("warn", "backup failed", { code: errorName(code), message });
        if (!sink.gone) sink.fail(code, message);
      },
    )
    .finally(() => {
      d.backupsRunning--;
    });
}

function head(kind: "node" | "cluster", sections: number, writer: string): Uint8Array {
  return jsonRecord(BackupRecord.HEAD, {
    magic: BACKUP_MAGIC,
    format: BACKUP_FORMAT,
    kind,
    consistency: kind === "node" ? "node" : "partition",
    sections,
    createdAtMs: Date.now(),
    writer,
  });
}

async function backupShards(d: Dispatcher, dir: string, out: Stream, writer: string): Promise<object> {
  const n = d.shardCount;
  const shards = [...Array(n).keys()];
  // A backup directory left by a node that crashed mid-backup holds nothing anyone needs.
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const partPath = (s: number): string => `${dir}/shard-${s}.part`;
  let cut = false;
  try {
    const started = await ask(d, shards, Op.BACKUP, BackupStep.START, (s) => new TextEncoder().encode(partPath(s)));
    for (const [s, r] of started.entries()) if (r.status !== ErrorCode.OK) throw failureOf(`shard ${s}`, r);
    await out.write(head("node", n, writer));
    await out.flush(false); // the client hears at once that the backup started
    let lastFrame = performance.now();
    for (;;) {
      const status = await ask(d, shards, Op.BACKUP, BackupStep.STATUS, () => null);
      for (const [s, r] of status.entries()) if (r.status !== ErrorCode.OK) throw failureOf(`shard ${s}`, r);
      if (status.every((r) => r.flag === 1)) break;
      if (out.bytes > 0 && performance.now() - lastFrame > 1000) {
        await out.flush(false); // an empty frame: the walk goes on, the client's timer starts again
        lastFrame = performance.now();
      } else if (performance.now() - lastFrame > BACKUP_STALL_MS / 2)
        throw new BackupFailed(ErrorCode.TIMEOUT, "stalled");
      await sleep(BACKUP_POLL_MS);
    }
    const cuts = await ask(d, shards, Op.BACKUP, BackupStep.CUT, () => null);
    cut = true;
    for (const [s, r] of cuts.entries()) if (r.status !== ErrorCode.OK) throw failureOf(`shard ${s}`, r);
    const chunk = new Uint8Array(BACKUP_FRAME_BYTES);
    for (const s of shards) {
      await out.write(jsonRecord(BackupRecord.SECTION, { section: s, kind: "shard", shard: s }));
      const f = await open(partPath(s), "r");
      try {
        for (;;) {
          const { bytesRead } = await f.read(chunk, 0, chunk.length, null);
          if (bytesRead === 0) break;
          await out.write(chunk.subarray(0, bytesRead));
        }
      } finally {
        await f.close();
      }
      rmSync(partPath(s), { force: true });
    }
    await out.end(n);
    return { kind: "node", sections: n, versions: cuts.map((r) => r.version) };
  } finally {
    if (!cut) void ask(d, shards, Op.BACKUP, BackupStep.ABORT, () => null);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function backupPartitions(d: Dispatcher, out: Stream, writer: string): Promise<object> {
  const n = d.shardCount;
  await out.write(head("cluster", n, writer));
  await out.flush(false);
  let keys = 0;
  for (let p = 0; p < n; p++) {
    await out.writable();
    const [r] = await ask(d, [p], Op.DUMP, 0, () => null);
    if (r!.status === ErrorCode.VALUE_TOO_LARGE)
      throw new BackupFailed(
        ErrorCode.VALUE_TOO_LARGE,
        `partition ${p} holds more than ${BACKUP_MAX_PARTITION_BYTES} bytes, which a backup reads whole: over its limit (docs/backup.md)`,
      );
    if (r!.status !== ErrorCode.OK || r!.value === null) throw failureOf(`partition ${p}`, r!);
    const snap = r!.value;
    const count = partitionSnapshotKeys(snap);
    keys += count;
    await out.write(jsonRecord(BackupRecord.SECTION, { section: p, kind: "partition", partition: p }));
    await out.write(record(BackupRecord.PARTITION, snap));
    await out.write(partEndRecord({ keysWalked: count, lastVersion: r!.version, cutAtMs: Date.now(), restarts: 0 }));
  }
  await out.end(n);
  return { kind: "cluster", sections: n, keys };
}
