/**
 * SAVE, BGSAVE, LASTSAVE and INFO's persistence section, on top of the
 * shards' journals (src/journal/, docs/durability.md).
 *
 * Redis's words map onto the journal like this: its RDB snapshot is a
 * shard's snapshot, its AOF is the shard's log (always on when the node is
 * durable), and an AOF rewrite is what a snapshot does to the log (the log
 * before it is deleted). SAVE blocks, as in Redis, but only the shards (the
 * IO thread keeps answering other connections' commands as the shards
 * return to them); BGSAVE starts a snapshot that the shards take between
 * batches of commands.
 */
import { PERSISTENCE_FIELDS, readF64, Op } from "../shard/command.js";
import type { PartResult } from "../protocol/codec.js";
import * as reply from "./reply.js";
import type { RespRequest } from "./request.js";

type Figures = Record<(typeof PERSISTENCE_FIELDS)[number], number>;

function figures(p: PartResult): Figures {
  const out = {} as Figures;
  for (const [i, name] of PERSISTENCE_FIELDS.entries()) out[name] = readF64(p.value!, i * 8);
  return out;
}

function inMemory(q: RespRequest): boolean {
  if (q.session.resp.persistence !== null) return false;
  q.error("ERR this node keeps nothing on disk (started with --in-memory, or a cluster member, whose log is Raft's)");
  return true;
}

/** SAVE: every shard snapshots now; OK once every snapshot is durable. */
export function save(q: RespRequest): void {
  if (inMemory(q)) return;
  q.everyShard(Op.SNAPSHOT, () => q.reply(reply.OK), 1);
}

/** BGSAVE [SCHEDULE]: starts a snapshot on every shard (one already running counts). */
export function bgsave(q: RespRequest): void {
  if (inMemory(q)) return;
  q.everyShard(Op.SNAPSHOT, () => q.reply(reply.simple("Background saving started")), 0);
}

/**
 * DEBUG RELOAD: SAVE, then every shard rebuilds its map from its files, as
 * a restart would (Redis's DEBUG RELOAD saves and reloads its RDB). Tests use
 * it to check the files hold the map without a process restart. Other DEBUG
 * subcommands are refused.
 */
export function debug(q: RespRequest): void {
  const sub = new TextDecoder().decode(q.args[1]!).toLowerCase();
  if (sub !== "reload" || q.args.length !== 2) return q.error("ERR DEBUG: only DEBUG RELOAD is supported by Piccolo");
  if (inMemory(q)) return;
  q.everyShard(Op.SNAPSHOT, () => q.reply(reply.OK), 2);
}

/** LASTSAVE: when the last snapshot of every shard had finished (the oldest of the shards' last ones). */
export function lastsave(q: RespRequest): void {
  if (inMemory(q)) return;
  q.everyShard(Op.PERSISTENCE, (parts) => {
    const last = Math.min(...parts.map((p) => figures(p).lastSaveMs));
    q.reply(reply.integer(Math.floor(last / 1000)));
  });
}

/** INFO's "# Persistence" section, in Redis's field names where they mean the same thing. */
export function persistenceSection(q: RespRequest, then: (section: string) => void): void {
  const p = q.session.resp.persistence;
  if (p === null) {
    then(["# Persistence", "loading:0", "aof_enabled:0", "rdb_bgsave_in_progress:0", "piccolo_durable:0"].join("\r\n"));
    return;
  }
  q.everyShard(Op.PERSISTENCE, (parts) => {
    const all = parts.map(figures);
    const sum = (f: keyof Figures) => all.reduce((n, x) => n + x[f], 0);
    const fsyncs = sum("fsyncs");
    const lastSave = Math.min(...all.map((x) => x.lastSaveMs));
    then(
      [
        "# Persistence",
        "loading:0",
        `rdb_changes_since_last_save:${sum("changesSinceSave")}`,
        `rdb_bgsave_in_progress:${sum("saving") > 0 ? 1 : 0}`,
        `rdb_last_save_time:${Math.floor(lastSave / 1000)}`,
        `rdb_last_bgsave_status:${all.every((x) => x.lastSaveOk === 1) ? "ok" : "err"}`,
        "aof_enabled:1",
        `aof_rewrite_in_progress:${sum("saving") > 0 ? 1 : 0}`,
        `aof_last_write_status:${sum("failed") > 0 ? "err" : "ok"}`,
        `aof_current_size:${sum("logBytes")}`,
        `piccolo_durable:1`,
        `piccolo_data_dir:${p.dataDir}`,
        `piccolo_fsync:${p.fsync}`,
        `piccolo_log_bytes:${sum("logBytes")}`,
        `piccolo_snapshot_bytes:${sum("snapshotBytes")}`,
        `piccolo_fsyncs:${fsyncs}`,
        `piccolo_fsync_avg_ms:${fsyncs === 0 ? 0 : (sum("fsyncTotalMs") / fsyncs).toFixed(3)}`,
        `piccolo_fsync_max_ms:${Math.max(...all.map((x) => x.fsyncMaxMs)).toFixed(3)}`,
        `piccolo_shards_refusing_writes:${sum("failed")}`,
      ].join("\r\n"),
    );
  });
}
