#!/usr/bin/env node
/**
 * The `piccolo` command.
 *
 *   piccolo server [flags]          start a node
 *   piccolo cerializer [flags]      start the JSON/REST gateway in front of nodes
 *   piccolo <op> [args] [--server host:port]   talk to one
 *
 * Exit codes are part of the interface, so scripts can branch on them:
 *   0  success
 *   1  the key does not exist (get, update, del, ttl, expire, persist)
 *   2  usage error (bad flags or arguments)
 *   3  cannot reach the node, or it did not answer in time
 *   4  a condition failed (insert on an existing key, cas/del version mismatch)
 *   5  the node refused the request (another error; the message says which)
 *   6  a watch fell behind the changes the node keeps (COMPACTED; the message gives the position)
 *  70  internal error: a bug or a broken invariant stopped the process (the log says which)
 *  71  could not start: `server` or `cerializer` found a port taken or a data
 *      directory it cannot use (one line on stderr says which and what to do)
 *  72  a cluster member stopped because the cluster forgot it (`piccolo cluster forget`)
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { parseArgs } from "node:util";
import {
  type ClusterInfo,
  PiccoloClient,
  type RequestTrace,
  VersionMismatchError,
  type WatchEvent,
} from "../client/client.js";
import { formatUs, renderWaterfall } from "./waterfall.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import {
  ConfigError,
  readServerConfigFile,
  resolveConfig,
  SERVER_CONFIG_ENV,
  SERVER_FLAGS,
  SERVER_SWITCHES,
  shardCount,
} from "../node/config.js";
import { configPath } from "../node/config-file.js";
import { EXIT_INTERNAL } from "../node/fatal.js";
import { runNode } from "../node/main.js";
import { readSecretFile } from "../security/secrets.js";
import { StartError } from "../start-failure.js";
import { packageVersion } from "../version.js";
import { backupToFile, describeConsistency, readBackupFile, restoreBackup, restoreToServer } from "./backup.js";
import { RestoreRefused } from "../backup/restore.js";
import { BackupFileError } from "../backup/format.js";
import { drainMember } from "./cluster-drain.js";
import { forgetMember } from "./cluster-forget.js";
import { replaceMember } from "./cluster-replace.js";
import { gatherStatus, renderStatus } from "./cluster-status.js";

const EXIT = {
  OK: 0,
  NOT_FOUND: 1,
  USAGE: 2,
  UNREACHABLE: 3,
  CONDITION: 4,
  REFUSED: 5,
  COMPACTED: 6,
  /** A backup file is damaged, incomplete or not one (restore, backup's own check). */
  BAD_FILE: 7,
  INTERNAL: EXIT_INTERNAL,
  CANNOT_START: 71,
} as const;

class UsageError extends Error {}

/**
 * Where a `cluster` command looks when neither --server nor PICCOLO_SERVER says:
 * the single node's default port, then the members `npm run cluster` starts
 * (scripts/cluster.mjs: client ports 7701-7703). The first that answers as a
 * cluster member is used.
 */
const CLUSTER_DEFAULT_SERVERS = ["127.0.0.1:7700", "127.0.0.1:7701", "127.0.0.1:7702", "127.0.0.1:7703"];

interface Command {
  args: string;
  help: string;
  options?: Record<string, { type: "string" | "boolean"; help: string }>;
  run(
    c: PiccoloClient,
    args: string[],
    o: Record<string, string | boolean | undefined>,
    /** Another connection with the same options (commands that talk to several members). */
    connect: (address: string) => PiccoloClient,
  ): Promise<number>;
}

const ttlOption = { ttl: { type: "string" as const, help: "time to live in milliseconds" } };

function ms(o: Record<string, string | boolean | undefined>, name: string): number | undefined {
  const v = o[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isInteger(n) || n < 0)
    throw new UsageError(`--${name} must be a non-negative integer`);
  return n;
}

function need(args: string[], n: number, what: string): void {
  if (args.length !== n) throw new UsageError(`expected ${what}`);
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function writeOptions(o: Record<string, string | boolean | undefined>): { ttlMs?: number } {
  const ttlMs = ms(o, "ttl");
  return ttlMs === undefined ? {} : { ttlMs };
}

/** A member of the cluster by name or id, as the CLI's cluster commands take it. */
function findMember(info: ClusterInfo, x: string): ClusterInfo["members"][number] {
  const m = info.members.find((y) => y.name === x || String(y.id) === x);
  if (m === undefined) throw new UsageError(`no member ${x} (members: ${info.members.map((y) => y.name).join(", ")})`);
  return m;
}

/** Exit 4 with the key's current version, as HTTP's 412 reports it, so a script can retry at once. */
function versionMismatch(key: string, expected: number, err: VersionMismatchError): number {
  process.stderr.write(
    err.currentVersion === 0
      ? `piccolo: VERSION_MISMATCH: ${key} does not exist (expected version ${expected})\n`
      : `piccolo: VERSION_MISMATCH: ${key} is at version ${err.currentVersion} (expected ${expected})\n`,
  );
  return EXIT.CONDITION;
}

/** One line of `piccolo watch`: <position> <kind> <key> [<value> | <N bytes> | expireAtMs=<ms>]. */
function watchLine(e: WatchEvent): string {
  const parts = [e.position, e.kind];
  if (e.kind !== "flush") parts.push(e.key.toString("utf8"));
  if (e.kind === "put") parts.push(e.value === null ? `<${e.valueBytes} bytes>` : e.value.toString("utf8"));
  if (e.kind === "expire") parts.push(`expireAtMs=${e.expireAtMs}`);
  return parts.join(" ");
}

const commands: Record<string, Command> = {
  // invoked as `piccolo cluster transfer-leader <partition> <member>`
  "cluster-transfer-leader": {
    args: "<partition> <member>",
    help: "hand a partition's leadership to a member (by name or id), and wait until it leads",
    async run(c, args) {
      need(args, 2, "a partition and a member");
      const partition = Number(args[0]);
      if (!Number.isInteger(partition) || partition < 0) throw new UsageError("the partition must be a number");
      const m = findMember(await c.clusterInfo(), args[1]!);
      // During an election nobody can hand the partition over: wait it out (a few seconds at most).
      for (let tries = 0; ; tries++) {
        try {
          await c.transferLeader(partition, m.id);
          break;
        } catch (err) {
          if (tries >= 30 || !(err instanceof PiccoloError) || !/no known leader/.test(err.message)) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      for (let i = 0; i < 50; i++) {
        const now = await c.clusterInfo();
        if (now.partitions[partition]?.leader === m.id) {
          print(`partition ${partition} is led by ${m.name}`);
          return EXIT.OK;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      process.stderr.write(`the transfer was requested, but ${m.name} does not lead partition ${partition} yet\n`);
      return EXIT.REFUSED;
    },
  },
  // invoked as `piccolo cluster replace <old> <new>`
  "cluster-replace": {
    args: "<old> <new>",
    help: "move every replica member <old> holds to member <new> (a member started with --joined), by Raft membership changes",
    options: { wait: { type: "string", help: "give up after this many milliseconds (default 120000)" } },
    async run(c, args, o, connect) {
      need(args, 2, "the member to replace and the one to replace it with");
      const info = await c.clusterInfo();
      const from = findMember(info, args[0]!);
      const to = findMember(info, args[1]!);
      if (from.id === to.id) throw new UsageError("the two members are the same");
      const r = await replaceMember(c, connect, from.id, to.id, ms(o, "wait") ?? 120_000, print);
      for (const u of r.unfinished)
        process.stderr.write(
          `partition ${u.partition} not finished: voters ${u.replicas.join(",")}, learners ${u.learners.join(",") || "none"}\n`,
        );
      if (r.unfinished.length > 0) return EXIT.REFUSED;
      print(`${from.name} replaced by ${to.name} in ${r.moved.length} partitions`);
      return EXIT.OK;
    },
  },
  // invoked as `piccolo cluster forget <member>`
  "cluster-forget": {
    args: "<member>",
    help: "every member drops <member> from its address book for good and refuses it from then on (it must hold no replica: `cluster replace` it first)",
    async run(c, args, _o, connect) {
      need(args, 1, "the member to forget");
      const info = await c.clusterInfo();
      const gone = info.forgotten.find((f) => f.name === args[0] || String(f.id) === args[0]);
      const m = gone ?? findMember(info, args[0]!);
      if (m.id === info.self)
        throw new UsageError(`${m.name} is the member asked (--server): ask another member to forget it`);
      const r = await forgetMember(c, connect, m.id);
      if (r.holds.length > 0) {
        process.stderr.write(
          `piccolo: ${m.name} still holds a replica or learner of partitions ${r.holds.join(",")}: ` +
            `move them first with \`piccolo cluster replace ${m.name} <new member>\`; nothing was changed\n`,
        );
        return EXIT.REFUSED;
      }
      if (r.unknown.length > 0) {
        process.stderr.write(
          `piccolo: the configuration of partitions ${r.unknown.join(",")} could not be read (no leader answered, ` +
            "and the member asked holds no replica of them); nothing was changed: try again, or ask a member that holds them\n",
        );
        return EXIT.UNREACHABLE;
      }
      for (const x of r.refused) process.stderr.write(`piccolo: ${x.member} refused: ${x.why}\n`);
      if (r.told.length > 0) print(`${m.name} forgotten by ${r.told.join(", ")}`);
      if (r.unreached.length > 0)
        print(
          `not reached: ${r.unreached.join(", ")} (each learns it from the first member it greets when back; ` +
            "or run this again)",
        );
      return r.refused.length > 0 ? EXIT.REFUSED : EXIT.OK;
    },
  },
  // invoked as `piccolo cluster drain <member>`
  "cluster-drain": {
    args: "<member>",
    help: "hand every partition a member leads to caught-up followers, without stopping it (SIGTERM does this first)",
    options: { wait: { type: "string", help: "give up after this many milliseconds (default 30000)" } },
    async run(c, args, o, connect) {
      need(args, 1, "the member to drain");
      const m = findMember(await c.clusterInfo(), args[0]!);
      const r = await drainMember(c, connect, m.id, ms(o, "wait") ?? 30_000, print);
      if (r.left.length > 0) {
        process.stderr.write(`${m.name} still leads partitions ${r.left.join(",")}: no caught-up follower took them\n`);
        return EXIT.REFUSED;
      }
      print(`${m.name} leads no partition (${r.led} handed over)`);
      return EXIT.OK;
    },
  },
  // invoked as `piccolo cluster status`
  "cluster-status": {
    args: "",
    help: "members, and each partition as its leader sees it: term, commit/applied, replicas, follower lag",
    options: { json: { type: "boolean", help: "print it as JSON" } },
    async run(c, args, o, connect) {
      need(args, 0, "no arguments");
      const status = await gatherStatus(c, connect);
      if (o.json) print(JSON.stringify(status));
      else for (const line of renderStatus(status)) print(line);
      return EXIT.OK;
    },
  },
  get: {
    args: "<key>",
    help: "print the value of a key (exit 1 if absent)",
    options: {
      json: { type: "boolean", help: "print {value, version, expireAtMs} as JSON" },
      stale: { type: "boolean", help: "a stale read: the member's own replica answers, maybe out of date" },
    },
    async run(c, args, o) {
      need(args, 1, "one key");
      const e = await c.get(args[0]!, { stale: o.stale === true });
      if (e === null) {
        process.stderr.write(`(not found) ${args[0]}\n`);
        return EXIT.NOT_FOUND;
      }
      if (o.json)
        print(JSON.stringify({ value: e.value.toString("utf8"), version: e.version, expireAtMs: e.expireAtMs }));
      else process.stdout.write(`${e.value.toString("utf8")}\n`);
      return EXIT.OK;
    },
  },
  put: {
    args: "<key> <value>",
    help: "insert or overwrite; prints the new version",
    options: ttlOption,
    async run(c, args, o) {
      need(args, 2, "a key and a value");
      print(`OK version=${await c.put(args[0]!, args[1]!, writeOptions(o))}`);
      return EXIT.OK;
    },
  },
  insert: {
    args: "<key> <value>",
    help: "write only if the key is absent (exit 4 if it exists)",
    options: ttlOption,
    async run(c, args, o) {
      need(args, 2, "a key and a value");
      print(`OK version=${await c.insert(args[0]!, args[1]!, writeOptions(o))}`);
      return EXIT.OK;
    },
  },
  update: {
    args: "<key> <value>",
    help: "write only if the key exists (exit 1 if absent)",
    options: ttlOption,
    async run(c, args, o) {
      need(args, 2, "a key and a value");
      print(`OK version=${await c.update(args[0]!, args[1]!, writeOptions(o))}`);
      return EXIT.OK;
    },
  },
  cas: {
    args: "<key> <expected-version> <value>",
    help: "compare-and-swap: write only if the key's version matches (exit 4 if not)",
    options: ttlOption,
    async run(c, args, o) {
      need(args, 3, "a key, an expected version and a value");
      const v = Number(args[1]);
      if (!Number.isInteger(v) || v < 0) throw new UsageError("expected-version must be a non-negative integer");
      try {
        print(`OK version=${await c.cas(args[0]!, args[2]!, v, writeOptions(o))}`);
      } catch (err) {
        if (err instanceof VersionMismatchError) return versionMismatch(args[0]!, v, err);
        throw err;
      }
      return EXIT.OK;
    },
  },
  del: {
    args: "<key>",
    help: "delete a key (exit 1 if absent)",
    options: { "if-version": { type: "string", help: "delete only at this version (exit 4 if not)" } },
    async run(c, args, o) {
      need(args, 1, "one key");
      const ifVersion = ms(o, "if-version");
      let removed: boolean;
      try {
        removed = await c.delete(args[0]!, ifVersion === undefined ? {} : { ifVersion });
      } catch (err) {
        if (err instanceof VersionMismatchError && ifVersion !== undefined)
          return versionMismatch(args[0]!, ifVersion, err);
        throw err;
      }
      print(removed ? "deleted" : "(not found)");
      return removed ? EXIT.OK : EXIT.NOT_FOUND;
    },
  },
  exists: {
    args: "<key>",
    help: "print 1 if the key exists, 0 if not",
    async run(c, args) {
      need(args, 1, "one key");
      const e = await c.exists(args[0]!);
      print(e ? "1" : "0");
      return e ? EXIT.OK : EXIT.NOT_FOUND;
    },
  },
  expire: {
    args: "<key> <ttl-ms>",
    help: "set a key's time to live (exit 1 if absent)",
    async run(c, args) {
      need(args, 2, "a key and a TTL in ms");
      const t = Number(args[1]);
      if (!Number.isInteger(t) || t < 0) throw new UsageError("ttl-ms must be a non-negative integer");
      const ok = await c.expire(args[0]!, t);
      print(ok ? "OK" : "(not found)");
      return ok ? EXIT.OK : EXIT.NOT_FOUND;
    },
  },
  persist: {
    args: "<key>",
    help: "remove a key's TTL (exit 1 if absent or without TTL)",
    async run(c, args) {
      need(args, 1, "one key");
      const ok = await c.persist(args[0]!);
      print(ok ? "OK" : "(no TTL or not found)");
      return ok ? EXIT.OK : EXIT.NOT_FOUND;
    },
  },
  ttl: {
    args: "<key>",
    help: "print milliseconds to live (-1: no TTL; exit 1 if absent)",
    async run(c, args) {
      need(args, 1, "one key");
      const t = await c.ttl(args[0]!);
      print(String(t));
      return t === -2 ? EXIT.NOT_FOUND : EXIT.OK;
    },
  },
  mget: {
    args: "<key>...",
    help: "print the values of several keys, one per line ((nil) if absent)",
    async run(c, args) {
      if (args.length === 0) throw new UsageError("expected at least one key");
      for (const e of await c.mget(args)) print(e === null ? "(nil)" : e.value.toString("utf8"));
      return EXIT.OK;
    },
  },
  watch: {
    args: "<key>",
    help: "print every change to a key (with --prefix, to every key under it) until Ctrl-C (exit 6 if cut off)",
    options: {
      prefix: { type: "boolean", help: 'watch every key starting with <key> (may be "": all keys)' },
      from: { type: "string", help: "resume after this position (the first word of a line printed before)" },
    },
    async run(c, args, o) {
      need(args, 1, "one key (or, with --prefix, a prefix)");
      const from = typeof o.from === "string" ? o.from : undefined;
      let watcher: Awaited<ReturnType<PiccoloClient["watch"]>>;
      try {
        watcher = await c.watch(args[0]!, { prefix: o.prefix === true, ...(from === undefined ? {} : { from }) });
      } catch (err) {
        if (err instanceof PiccoloError && err.code === ErrorCode.COMPACTED) {
          const at = (err as PiccoloError & { position?: string }).position ?? "";
          process.stderr.write(
            `piccolo: ${err.message}\n` +
              `the node no longer keeps the changes after ${from}; read the keys again, then watch ${at === "" ? "from now" : `--from ${at}`}\n`,
          );
          return EXIT.COMPACTED;
        }
        throw err;
      }
      const stop = () => void watcher.cancel();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        for await (const e of watcher) print(watchLine(e));
        return EXIT.OK;
      } catch (err) {
        if (err instanceof PiccoloError && err.code === ErrorCode.COMPACTED) {
          process.stderr.write(
            `piccolo: the watch fell behind the changes the node keeps and was cut off (${err.message})\n` +
              `changes were missed; read the keys again, then watch --from ${watcher.position}\n`,
          );
          return EXIT.COMPACTED;
        }
        if (err instanceof PiccoloError)
          process.stderr.write(`piccolo: the watch ended; resume with --from ${watcher.position}\n`);
        throw err;
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    },
  },
  keys: {
    args: "[prefix]",
    help: "list keys (optionally only those starting with prefix)",
    async run(c, args) {
      for (const k of await c.keys(args[0])) print(k.toString("utf8"));
      return EXIT.OK;
    },
  },
  stats: {
    args: "",
    help: "print the node's statistics per shard",
    options: { json: { type: "boolean", help: "as JSON" } },
    async run(c, _args, o) {
      const s = await c.stats();
      if (o.json) {
        print(JSON.stringify(s));
        return EXIT.OK;
      }
      print(`uptime ${(s.uptimeMs / 1000).toFixed(1)}s, ${s.connections} connection(s), ${s.shards.length} shard(s)`);
      print("shard  keys        memory      reads       writes      expired");
      for (const t of s.shards) {
        print(
          [t.shard, t.keys, `${(t.memoryBytes / 1048576).toFixed(1)}MiB`, t.reads, t.writes, t.expired]
            .map((x, i) => String(x).padEnd(i === 0 ? 7 : 12))
            .join("")
            .trimEnd(),
        );
      }
      if (s.shards.some((t) => t.persistence !== undefined)) {
        print("shard  log         snapshot    last save             fsyncs      avg fsync   max fsync   writes");
        for (const t of s.shards) {
          const p = t.persistence;
          if (p === undefined) continue;
          const mib = (n: number) => `${(n / 1048576).toFixed(1)}MiB`;
          print(
            [
              t.shard,
              mib(p.logBytes),
              mib(p.snapshotBytes),
              p.lastSaveMs === 0 ? "never" : new Date(p.lastSaveMs).toISOString().slice(0, 19),
              p.fsyncs,
              `${(p.fsyncs === 0 ? 0 : p.fsyncTotalMs / p.fsyncs).toFixed(2)}ms`,
              `${p.fsyncMaxMs.toFixed(2)}ms`,
              p.refusingWrites ? "REFUSED (the log cannot be written)" : "ok",
            ]
              .map((x, i) => String(x).padEnd(i === 0 ? 7 : i === 3 ? 22 : 12))
              .join("")
              .trimEnd(),
          );
        }
      }
      return EXIT.OK;
    },
  },
  backup: {
    args: "FILE",
    help: "write a backup of the node (or of the whole cluster, through any member) to FILE",
    async run(c, args) {
      const file = args[0];
      if (file === undefined || args.length > 1) throw new UsageError("usage: piccolo backup FILE");
      const r = await backupToFile(c, file);
      print(
        `backup of ${r.kind === "node" ? `a node (${r.sections} shards)` : `a cluster (${r.sections} partitions)`} written to ${file}: ${r.bytes} bytes in ${(r.ms / 1000).toFixed(2)} s, sha256 ${r.sha256}`,
      );
      print(`consistency: ${describeConsistency(r.kind, r.consistency)}`);
      return EXIT.OK;
    },
  },
  restore: {
    args: "FILE (--data-dir DIR | --server H:P | --check)",
    help: "restore a backup: into a new data directory, or a running node or cluster; --check only checks it",
    options: {
      "data-dir": { type: "string", help: "write a new data directory for `piccolo server --data-dir DIR`" },
      shards: {
        type: "string",
        help: "with --data-dir: the shard workers it is laid out for (default: auto, as piccolo server)",
      },
      check: { type: "boolean", help: "only check the file (every record's CRC, the SHA-256) and describe it" },
      force: { type: "boolean", help: "with --server: restore over keys the target already holds" },
    },
    async run(c, args, o) {
      const file = args[0];
      if (file === undefined || args.length > 1)
        throw new UsageError("usage: piccolo restore FILE (--data-dir DIR | --server H:P | --check)");
      const dir = o["data-dir"] as string | undefined;
      try {
        if (o.check === true) {
          const s = readBackupFile(file);
          print(
            `${file}: a whole backup (format ${s.head.format}, written by piccolo ${s.head.writer} at ${new Date(s.head.createdAtMs).toISOString()})`,
          );
          print(
            `  ${s.head.kind === "node" ? `a node, ${s.head.sections} shards` : `a cluster, ${s.head.sections} partitions`}; ${s.bytes} bytes; sha256 ${s.sha256}`,
          );
          print(`  consistency: ${describeConsistency(s.head.kind, s.head.consistency)}`);
          return EXIT.OK;
        }
        const left = (n: number) => (n > 0 ? `; ${n} keys whose TTL had run out were left out` : "");
        if (dir !== undefined) {
          const shardsRaw = (o.shards as string | undefined) ?? "auto";
          const shards =
            shardsRaw === "auto" || shardsRaw === "cores" ? shardCount(shardsRaw, false) : Number(shardsRaw);
          if (!Number.isInteger(shards) || shards < 0 || shards > 256)
            throw new UsageError(`--shards: not a shard count: ${shardsRaw}`);
          const r = await restoreBackup(file, dir, shards);
          print(
            `restored ${r.keys} keys into ${dir} (${r.shards} shard${r.shards === 1 ? "" : "s"}) in ${(r.ms / 1000).toFixed(2)} s${left(r.expired)}`,
          );
          print(`start it: piccolo server --data-dir ${dir}`);
          return EXIT.OK;
        }
        if (o.server === undefined && process.env.PICCOLO_SERVER === undefined)
          throw new UsageError(
            "restore needs --data-dir DIR, --server HOST:PORT (a running node or cluster) or --check",
          );
        const r = await restoreToServer(file, c, o.force === true);
        print(
          `restored ${r.keys} keys in ${(r.ms / 1000).toFixed(2)} s, with their versions and expiry${left(r.expired)}`,
        );
        return EXIT.OK;
      } catch (err) {
        if (err instanceof BackupFileError) {
          process.stderr.write(`piccolo: ${file} is refused: ${err.message}\n`);
          return EXIT.BAD_FILE;
        }
        if (err instanceof RestoreRefused) {
          process.stderr.write(`piccolo: ${err.message}\n`);
          return EXIT.REFUSED;
        }
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "EACCES" || code === "EISDIR") {
          process.stderr.write(`piccolo: ${(err as Error).message}\n`);
          return EXIT.REFUSED;
        }
        throw err;
      }
    },
  },
  slowlog: {
    args: "[count]",
    help: "the node's slowest recent requests, newest first (admin; --reset empties it after; docs/tracing.md)",
    options: { reset: { type: "boolean", help: "empty the slow log after reading it" } },
    async run(c, args, o) {
      if (args.length > 1) throw new UsageError("expected at most a count");
      const n = args.length === 0 ? 10 : Number(args[0]);
      if (!Number.isInteger(n) || n < 0) throw new UsageError("count must be a non-negative integer");
      const log = await c.slowlog({ count: n, reset: o.reset === true });
      print(
        `slow log: ${log.length} of at most ${log.maxLen} entries, requests of ${
          log.slowerThanUs < 0 ? "no duration (off)" : `${formatUs(log.slowerThanUs)} or more`
        }${o.reset === true ? "; emptied" : ""}`,
      );
      for (const e of log.entries) {
        print(
          `#${e.id} ${new Date(e.timeMs).toISOString()} ${formatUs(e.durationUs)} ${e.port} ${e.client}${
            e.clientName === "" ? "" : ` (${e.clientName})`
          }: ${e.args.join(" ")}`,
        );
        if (e.spans !== null)
          for (const line of renderWaterfall({
            id: e.id,
            node: "node",
            spans: e.spans,
            dropped: 0,
            roundTripUs: 0,
          }).slice(1))
            print(`  ${line}`);
      }
      return EXIT.OK;
    },
  },
  whoami: {
    args: "",
    help: "who this connection is (the --user, or the default user) and what it may do (docs/security.md)",
    async run(c, args) {
      if (args.length > 0) throw new UsageError("expected no arguments");
      const w = await c.whoami();
      const may = [w.read ? "read" : "", w.write ? "write" : "", w.admin ? "admin" : ""].filter((x) => x !== "");
      print(
        `${w.user}: ${may.length === 0 ? "no permissions" : may.join(", ")}; ${w.allKeys ? "every key" : "keys limited by pattern"}`,
      );
      return EXIT.OK;
    },
  },
  ping: {
    args: "",
    help: "check that the node answers",
    async run(c) {
      const t0 = process.hrtime.bigint();
      await c.ping();
      print(`PONG ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(2)}ms`);
      return EXIT.OK;
    },
  },
};

/** The client's TLS options from --tls, --cacert, --cert, --key (as redis-cli names them); undefined: plaintext. */
function clientTls(values: Record<string, unknown>): ConnectionOptions | undefined {
  const file = (flag: string): Buffer | undefined => {
    const path = values[flag] as string | undefined;
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new UsageError(`--${flag} ${path} cannot be read: ${(err as Error).message}`);
    }
  };
  const ca = file("cacert");
  const cert = file("cert");
  const key = file("key");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--cert and --key go together");
  if (values.tls !== true && ca === undefined && cert === undefined) return undefined;
  return { ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert, key }) };
}

function usage(): string {
  const lines = [
    "piccolo: a distributed key:value store",
    "",
    "usage:",
    "  piccolo server [--host H] [--port P] [--resp-port P] [--shards N] [--max-value-bytes B] [--requirepass PW]",
    "  piccolo cerializer [--nodes host:port,...] [--http-port P] [--host H]   (see piccolo cerializer --help)",
  ];
  for (const [name, c] of Object.entries(commands))
    lines.push(`  piccolo ${`${name.replace(/^cluster-/, "cluster ")} ${c.args}`.padEnd(36)} ${c.help}`);
  lines.push(
    `  piccolo ${"trace <command> [args]".padEnd(36)} the command, then each request's timeline (= <command> --trace)`,
  );
  lines.push(
    "",
    "common flags: --server host:port (default 127.0.0.1:7700), --timeout ms, --trace (a waterfall of each request), --help",
    "",
  );
  lines.push("  piccolo --version                        print the version", "");
  lines.push(
    "exit codes: 0 ok, 1 not found, 2 usage, 3 unreachable, 4 condition failed, 5 refused, 6 watch cut off, 7 bad backup file,",
    "            70 internal error, 71 could not start (a port taken, a data directory it cannot use),",
    "            72 a cluster member the cluster has forgotten (piccolo cluster forget)",
  );
  return lines.join("\n");
}

function serverHelp(): string {
  const lines = [
    "usage: piccolo server [--config FILE] [flags]",
    "",
    "Starts a node. Flags (environment variable, default):",
    `  --${"config".padEnd(18)} a TOML file with any of the flags below as keys (${SERVER_CONFIG_ENV}; examples/)`,
  ];
  for (const [name, f] of Object.entries(SERVER_FLAGS))
    lines.push(`  --${name.padEnd(18)} ${f.help} (${f.env}${f.default ? `, default ${f.default}` : ""})`);
  lines.push("", "Precedence: a flag, then its environment variable, then the config file, then the default.");
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  // `piccolo cluster status` is the command "cluster-status".
  const args = argv[0] === "cluster" && argv[1] !== undefined ? [`cluster-${argv[1]}`, ...argv.slice(2)] : argv;
  const [name, ...rest] = args;
  if (name === "--version" || name === "-v" || name === "version") {
    print(packageVersion());
    return EXIT.OK;
  }
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    print(usage());
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (name === "server") {
    // Every server flag takes a value, but the two switches.
    const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
      help: { type: "boolean", short: "h" },
      config: { type: "string" },
    };
    const switches: readonly string[] = SERVER_SWITCHES;
    for (const k of Object.keys(SERVER_FLAGS)) options[k] = { type: switches.includes(k) ? "boolean" : "string" };
    const { values } = parseArgs({
      args: rest,
      options,
      strict: true,
    });
    if (values.help) {
      print(serverHelp());
      return EXIT.OK;
    }
    const file = configPath(values, process.env, SERVER_CONFIG_ENV);
    await runNode(resolveConfig(values, process.env, file === null ? null : readServerConfigFile(file)));
    return -1; // keep running
  }
  if (name === "cerializer") {
    // The gateway's code (fastify, Swagger) is loaded only to run the gateway: every other command, and
    // `piccolo server` above all, starts without it.
    const { CERIALIZER_CONFIG_ENV, CERIALIZER_FLAGS, runCerializer } = await import("./cerializer.js");
    const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
      help: { type: "boolean", short: "h" },
    };
    for (const k of [...Object.keys(CERIALIZER_FLAGS), "config"]) options[k] = { type: "string" };
    const { values } = parseArgs({ args: rest, options, strict: true });
    if (values.help) {
      const lines = [
        "usage: piccolo cerializer [--config FILE] [flags]",
        "",
        "Starts the JSON/REST gateway. Flags (environment variable, default):",
        `  --${"config".padEnd(20)} a TOML file with any of the flags below as keys (${CERIALIZER_CONFIG_ENV})`,
      ];
      for (const [k, f] of Object.entries(CERIALIZER_FLAGS))
        lines.push(`  --${k.padEnd(20)} ${f.help} (${f.env}, default ${f.default})`);
      lines.push("", "Precedence: a flag, then its environment variable, then the config file, then the default.");
      print(lines.join("\n"));
      return EXIT.OK;
    }
    await runCerializer(values);
    return -1; // keep running
  }
  // `piccolo trace <command> ...` is `piccolo <command> ... --trace`.
  if (name === "trace") {
    if (rest.length === 0 || rest[0]!.startsWith("-")) throw new UsageError("usage: piccolo trace <command> [args]");
    return main([...rest, "--trace"]);
  }
  const command = commands[name];
  if (command === undefined) throw new UsageError(`unknown command "${name}" (see piccolo --help)`);
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    server: { type: "string" },
    timeout: { type: "string" },
    password: { type: "string" },
    "password-file": { type: "string" },
    user: { type: "string" },
    tls: { type: "boolean" },
    cacert: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    trace: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  };
  for (const [k, v] of Object.entries(command.options ?? {})) options[k] = { type: v.type };
  const { values, positionals } = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  if (values.help) {
    print(`usage: piccolo ${name} ${command.args}\n\n${command.help}\n\nflags:`);
    print(
      name.startsWith("cluster-")
        ? "  --server host:port   a member to ask (env PICCOLO_SERVER; default: the first of 127.0.0.1:7700-7703 that is one)"
        : "  --server host:port   node to talk to (default 127.0.0.1:7700, env PICCOLO_SERVER)",
    );
    print("  --timeout ms         give up after this long (default 5000)");
    print("  --user name          the user to AUTH as (env PICCOLO_USER; default: default)");
    print("  --password-file f    AUTH first with the password in file f (or env PICCOLO_PASSWORD)");
    print("  --password pw        the same, given inline (shows in ps: prefer the file or the env)");
    print("  --tls                speak TLS (also implied by --cacert); --cacert f: the CA to trust");
    print("  --cert f --key f     a client certificate, for nodes run with --tls-auth-clients yes");
    print("  --trace              print each request's timeline after the answer: a waterfall (docs/tracing.md)");
    for (const [k, v] of Object.entries(command.options ?? {})) print(`  --${k.padEnd(19)}${v.help}`);
    return EXIT.OK;
  }
  // A stream's answer never ends, so it has no timeline to print (the node refuses a traced watch or backup too).
  if (values.trace === true && (name === "watch" || name === "backup" || name === "restore"))
    throw new UsageError(`${name} cannot be traced: its answer is a stream (docs/tracing.md)`);
  const given = (values.server as string | undefined) ?? process.env.PICCOLO_SERVER;
  const server = given ?? "127.0.0.1:7700";
  const m = /^(.+):(\d+)$/.exec(server);
  if (m === null) throw new UsageError(`--server must be host:port, got "${server}"`);
  const timeoutMs = ms(values, "timeout") ?? 5000;
  const passwordFile = values["password-file"] as string | undefined;
  const password =
    passwordFile !== undefined
      ? readSecretFile(passwordFile, "password-file").value
      : ((values.password as string | undefined) ?? process.env.PICCOLO_PASSWORD);
  const user = (values.user as string | undefined) ?? process.env.PICCOLO_USER;
  const tls = clientTls(values);
  const traces: RequestTrace[] = [];
  const tracing = values.trace === true;
  const connect = (address: string) => {
    const a = /^(.+):(\d+)$/.exec(address);
    if (a === null) throw new UsageError(`"${address}" is not host:port`);
    return new PiccoloClient({
      host: a[1]!,
      port: Number(a[2]),
      timeoutMs,
      ...(password ? { password } : {}),
      ...(user ? { user } : {}),
      ...(tls === undefined ? {} : { tls }),
      ...(tracing ? { trace: true, onTrace: (t: RequestTrace) => traces.push(t) } : {}),
    });
  };
  const client =
    given === undefined && name.startsWith("cluster-") ? await findClusterMember(connect) : connect(server);
  try {
    return await command.run(client, positionals, values, connect);
  } finally {
    await client.close();
    // After the answer (or the error), whatever the command's outcome: a slow NOT_FOUND is worth seeing too.
    for (const t of traces) print(renderWaterfall(t, t.roundTripUs).join("\n"));
  }
}

/**
 * A cluster command without --server: the first of CLUSTER_DEFAULT_SERVERS
 * that answers as a cluster member. If none does, the most telling error: a
 * node's refusal (not a member, NOAUTH) over "nothing listens there".
 */
async function findClusterMember(connect: (address: string) => PiccoloClient): Promise<PiccoloClient> {
  let refusal: PiccoloError | null = null;
  for (const address of CLUSTER_DEFAULT_SERVERS) {
    const c = connect(address);
    try {
      await c.clusterInfo();
      if (address !== CLUSTER_DEFAULT_SERVERS[0])
        process.stderr.write(`piccolo: no --server given; using the cluster member at ${address}\n`);
      return c;
    } catch (err) {
      await c.close();
      if (!(err instanceof PiccoloError)) throw err;
      const unreachable = err.code === ErrorCode.CONNECTION_CLOSED || err.code === ErrorCode.TIMEOUT;
      if (!unreachable && refusal === null) refusal = err;
    }
  }
  if (refusal !== null) throw refusal;
  throw new PiccoloError(
    ErrorCode.CONNECTION_CLOSED,
    `no cluster member answers at ${CLUSTER_DEFAULT_SERVERS.join(", ")} (the defaults, and npm run cluster's members); give --server host:port`,
  );
}

// `piccolo keys | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    // Exit now, not when the event loop empties: a server that failed to start must not linger.
    const fail = (code: number, message: string): never => {
      process.stderr.write(`piccolo: ${message}\n`);
      process.exit(code);
    };
    if (
      err instanceof UsageError ||
      err instanceof ConfigError ||
      (err as Error).name === "PlacementError" ||
      (err as { code?: string }).code?.startsWith?.("ERR_PARSE_ARGS")
    )
      fail(EXIT.USAGE, (err as Error).message);
    if (err instanceof StartError) fail(EXIT.CANNOT_START, err.message);
    if (err instanceof BackupFileError) fail(EXIT.BAD_FILE, `the backup received is refused: ${err.message}`);
    if (err instanceof PiccoloError) {
      const c = err.code;
      fail(
        c === ErrorCode.CONNECTION_CLOSED ||
          c === ErrorCode.TIMEOUT ||
          c === ErrorCode.UNAVAILABLE ||
          c === ErrorCode.SHUTTING_DOWN
          ? EXIT.UNREACHABLE
          : c === ErrorCode.NOT_FOUND
            ? EXIT.NOT_FOUND
            : c === ErrorCode.ALREADY_EXISTS || c === ErrorCode.VERSION_MISMATCH
              ? EXIT.CONDITION
              : EXIT.REFUSED,
        err.message,
      );
    }
    fail(EXIT.INTERNAL, (err as Error).stack ?? String(err));
  },
);
