/**
 * Connection and server commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT,
 * RESET, CLIENT, READONLY, READWRITE, CONFIG, INFO, TIME. The transaction
 * commands are in multi.ts.
 * COMMAND lives in commands.ts beside the table it describes.
 */
import { SLOWLOG_MAX_LEN } from "../limits.js";
import { memoryUsage } from "node:process";
import { idleCollections } from "../idle-trim.js";
import { statsRow } from "../io/native.js";
import { Op } from "../shard/command.js";
import { E, int, lower, text } from "./args.js";
import { globMatch } from "../glob.js";
import { persistenceSection } from "./cmd-persistence.js";
import { notifyFlagsText, parseNotifyFlags, subscribed } from "./pubsub.js";
import { clearTransaction } from "./multi.js";
import * as reply from "./reply.js";
import type { RespRequest, RespSession } from "./request.js";

/** The Redis version whose behaviour we follow; clients use it to pick features. */
export const REDIS_COMPAT_VERSION = "7.2.0";
const enc = new TextEncoder();

export function ping(q: RespRequest): void {
  if (q.args.length > 2) return q.error("ERR wrong number of arguments for 'ping' command");
  // A subscribed RESP2 connection gets PING's answer in the shape of a message (as Redis).
  if (q.proto === 2 && subscribed(q.session))
    return q.reply(reply.array([reply.bulk("pong"), reply.bulk(q.args.length === 2 ? q.args[1]! : "")]));
  q.reply(q.args.length === 2 ? reply.bulk(q.args[1]!) : reply.PONG);
}

export const echo = (q: RespRequest) => q.reply(reply.bulk(q.args[1]!));

/**
 * Checks `user`'s `password` (on the thread pool: the connection's later
 * commands wait, as AUTH and HELLO are barriers in connection.ts), then
 * runs `then` as that user, or answers WRONGPASS after the failure's delay.
 */
function authenticate(q: RespRequest, user: string, password: Uint8Array, then: () => void): void {
  const s = q.session;
  // The argument is a view into this read's buffer: copied before the wait.
  void s.resp.auth.check(user, Buffer.from(password), s.remoteIp, "resp").then((u) => {
    if (u === null) return q.error("WRONGPASS invalid username-password pair or user is disabled.");
    s.user = u;
    then();
  });
}

/** AUTH [username] password */
export function auth(q: RespRequest): void {
  const a = q.args;
  if (a.length > 3) return q.error(E.syntax);
  if (a.length === 2 && !q.session.resp.auth.users.authRequired)
    return q.error(
      "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
    );
  authenticate(q, a.length === 3 ? text(a[1]!) : "default", a[a.length - 1]!, () => q.reply(reply.OK));
}

/** HELLO [protover [AUTH username password] [SETNAME clientname]] */
export function hello(q: RespRequest): void {
  const a = q.args;
  const s = q.session;
  let proto = s.proto;
  let i = 1;
  if (a.length > 1) {
    const v = int(a[1]!);
    if (v === null) return q.error("ERR Protocol version is not an integer or out of range");
    if (v !== 2 && v !== 3) return q.error("NOPROTO unsupported protocol version");
    proto = v;
    i = 2;
  }
  let name: string | null = null;
  let credentials: [string, Uint8Array] | null = null;
  for (; i < a.length; i++) {
    const opt = lower(a[i]!);
    if (opt === "auth" && i + 2 < a.length) {
      credentials = [text(a[i + 1]!), a[i + 2]!];
      i += 2;
    } else if (opt === "setname" && i + 1 < a.length) {
      name = text(a[++i]!);
      if (!validName(name)) return q.error(BAD_NAME);
    } else return q.error(`ERR Syntax error in HELLO option '${text(a[i]!)}'`);
  }
  const answer = (): void => {
    s.proto = proto;
    if (name !== null) s.name = name;
    q.reply(
      reply.map(
        [
          [reply.bulk("server"), reply.bulk("redis")],
          [reply.bulk("version"), reply.bulk(REDIS_COMPAT_VERSION)],
          [reply.bulk("proto"), reply.integer(proto)],
          [reply.bulk("id"), reply.integer(s.id)],
          [reply.bulk("mode"), reply.bulk("standalone")],
          [reply.bulk("role"), reply.bulk("master")],
          [reply.bulk("modules"), reply.array([])],
        ],
        proto,
      ),
    );
  };
  if (credentials !== null) return authenticate(q, credentials[0], credentials[1], answer);
  if (s.user === null)
    return q.error(
      "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
    );
  answer();
}

export function select(q: RespRequest): void {
  const n = int(q.args[1]!);
  if (n === null) return q.error(E.notInteger);
  if (n !== 0) return q.error("ERR DB index is out of range");
  q.reply(reply.OK);
}

export function quit(q: RespRequest): void {
  q.closeAfter = true;
  q.reply(reply.OK);
}

export function reset(q: RespRequest): void {
  const s = q.session;
  s.proto = 2;
  s.name = "";
  clearTransaction(s); // as Redis: RESET discards MULTI and forgets WATCH
  s.staleReads = false; // as Redis: RESET puts the connection back in READWRITE mode
  s.tracing = false; // CLIENT TRACING is this connection's state, as READONLY is
  s.resp.pubsub.drop(s); // as Redis: RESET leaves every channel and pattern
  s.user = s.resp.auth.users.initialUser(); // as Redis: RESET authenticates as the default user
  q.reply(reply.simple("RESET"));
}

/**
 * READONLY: from now on, this connection's read-only commands (GET, MGET,
 * EXISTS, TTL, SCAN, ...) carry FLAG_STALE_READ, so in a cluster the member
 * answers them from its own replica of the key's partition, without the
 * leader: possibly out of date (docs/cluster.md, "Stale reads"). Redis
 * Cluster's command, with its meaning (reads from a replica). Redis refuses
 * it outside cluster mode; here it answers OK on a single node too, where
 * every read is local and current anyway, so a client library that sends
 * READONLY on every connection (ioredis with scaleReads) works against both.
 */
export function readonly(q: RespRequest): void {
  q.session.staleReads = true;
  q.reply(reply.OK);
}

/** READWRITE: back to linearizable reads, the default. */
export function readwrite(q: RespRequest): void {
  q.session.staleReads = false;
  q.reply(reply.OK);
}

const BAD_NAME = "ERR Client names cannot contain spaces, newlines or special characters.";

function validName(name: string): boolean {
  return /^[\x21-\x7e]*$/.test(name);
}

function clientLine(s: RespSession, nowMs: number): string {
  const age = Math.floor((nowMs - s.createdMs) / 1000);
  return `id=${s.id} addr=${s.address} laddr=127.0.0.1:${s.resp.port} fd=-1 name=${s.name} age=${age} idle=0 flags=${s.multi !== null ? "x" : subscribed(s) ? "P" : s.staleReads ? "r" : "N"} db=0 sub=${s.subscriptions.channels.size} psub=${s.subscriptions.patterns.size} ssub=0 multi=${s.multi === null ? -1 : s.multi.queued.length} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 tot-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 events=r cmd=${s.lastCommand} user=default redir=-1 resp=${s.proto} lib-name= lib-ver=`;
}

export function client(q: RespRequest): void {
  const a = q.args;
  const sub = lower(a[1]!);
  const s = q.session;
  if (sub === "setname" && a.length === 3) {
    const name = text(a[2]!);
    if (!validName(name)) return q.error(BAD_NAME);
    s.name = name;
    return q.reply(reply.OK);
  }
  if (sub === "getname" && a.length === 2) return q.reply(s.name === "" ? reply.nil(q.proto) : reply.bulk(s.name));
  if (sub === "id" && a.length === 2) return q.reply(reply.integer(s.id));
  if (sub === "info" && a.length === 2) return q.reply(reply.verbatim(`${clientLine(s, q.nowMs)}\n`, q.proto));
  if (sub === "list") {
    const lines = [...s.resp.sessions()].map((x) => `${clientLine(x, q.nowMs)}\n`).join("");
    return q.reply(reply.verbatim(lines, q.proto));
  }
  // CLIENT TRACING ON|OFF: trace this connection's next commands; TRACE LAST reads the last (docs/tracing.md).
  if (sub === "tracing") {
    const v = a.length === 3 ? lower(a[2]!) : "";
    if (v !== "on" && v !== "off") return q.error("ERR CLIENT TRACING takes ON or OFF");
    s.tracing = v === "on";
    return q.reply(reply.OK);
  }
  // Client libraries announce themselves (node-redis sends CLIENT SETINFO LIB-NAME ...).
  if (sub === "setinfo" && a.length === 4) return q.reply(reply.OK);
  if (sub === "no-evict" || sub === "no-touch") return q.reply(reply.OK);
  q.error(`ERR unknown subcommand or wrong number of arguments for '${text(a[1]!)}'. Try CLIENT HELP.`);
}

/**
 * TRACE LAST: the timeline of this connection's last traced command (after
 * CLIENT TRACING ON; docs/tracing.md), as a map: command (its name and first
 * key), node, dropped, spans (each a map of stage, where, start-us,
 * duration-us, detail). Nil before any command was traced. A Piccolo
 * command: Redis has none like it (its LATENCY and SLOWLOG are per node).
 */
export function trace(q: RespRequest): void {
  const a = q.args;
  if (a.length !== 2 || lower(a[1]!) !== "last")
    return q.error(`ERR unknown subcommand or wrong number of arguments for '${text(a[1]!)}'. TRACE takes LAST.`);
  const t = q.session.lastTrace;
  if (t === null) return q.reply(reply.nil(q.proto));
  const b = reply.bulk;
  const spans = t.spans.map((x) =>
    reply.map(
      [
        [b("stage"), b(x.stage)],
        [b("where"), b(x.where)],
        [b("start-us"), reply.integer(x.startUs)],
        [b("duration-us"), reply.integer(x.durationUs)],
        [b("detail"), b(x.detail)],
      ],
      q.proto,
    ),
  );
  q.reply(
    reply.map(
      [
        [b("command"), b(t.command)],
        [b("node"), b(t.node)],
        [b("dropped"), reply.integer(t.dropped)],
        [b("spans"), reply.array(spans)],
      ],
      q.proto,
    ),
  );
}

/**
 * SLOWLOG GET [count] | LEN | RESET | HELP, as Redis 7: each entry is an
 * array of id, Unix time (s), duration (µs), the arguments (a RESP command's
 * as Redis 7 keeps them, RespRequest.describe; a native request's kind and
 * key), the client's address and its name (src/io/slowlog.ts). The
 * node's log holds every port's requests. A traced entry's timeline is
 * shown by `piccolo slowlog` and the gateway's /v1/slowlog, not here: the
 * six fields are what Redis tools parse.
 */
export function slowlog(q: RespRequest): void {
  const a = q.args;
  const sub = lower(a[1]!);
  const log = q.d.slowlog;
  if (sub === "len" && a.length === 2) return q.reply(reply.integer(log.length));
  if (sub === "reset" && a.length === 2) {
    log.reset();
    return q.reply(reply.OK);
  }
  if (sub === "get" && a.length <= 3) {
    let n = 10;
    if (a.length === 3) {
      const v = text(a[2]!);
      if (!/^-?\d{1,15}$/.test(v)) return q.error("ERR value is not an integer or out of range");
      n = Number(v);
      if (n < -1) return q.error("ERR count should be greater than or equal to -1");
      if (n === -1) n = log.length;
    }
    const b = reply.bulk;
    return q.reply(
      reply.array(
        log
          .newest(n)
          .map((e) =>
            reply.array([
              reply.integer(e.id),
              reply.integer(Math.floor(e.timeMs / 1000)),
              reply.integer(e.durationUs),
              reply.array(e.args.map((x) => b(x))),
              b(e.client),
              b(e.clientName),
            ]),
          ),
      ),
    );
  }
  if (sub === "help" && a.length === 2)
    return q.reply(
      reply.array(
        [
          "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
          "GET [<count>]",
          "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
          "LEN",
          "    Return the length of the slowlog.",
          "RESET",
          "    Reset the slowlog.",
        ].map((x) => reply.simple(x)),
      ),
    );
  q.error(`ERR unknown subcommand or wrong number of arguments for '${text(a[1]!)}'. Try SLOWLOG HELP.`);
}

/** The configuration keys clients and redis-benchmark ask for, with Piccolo's answers. */
function configValues(q: RespRequest): Record<string, string> {
  // A durable node's journal is Redis's AOF in spirit (docs/durability.md): appendonly yes, its policy.
  const p = q.session.resp.persistence;
  return {
    save: "",
    appendonly: p === null ? "no" : "yes",
    appendfsync: p === null ? "no" : p.fsync,
    dir: p === null ? "" : p.dataDir,
    databases: "1",
    maxmemory: "0",
    "maxmemory-policy": "noeviction",
    port: String(q.session.resp.port),
    "proto-max-bulk-len": String(q.session.resp.maxValueBytes),
    requirepass: "",
    timeout: "0",
    "notify-keyspace-events": notifyFlagsText(q.session.resp.pubsub.notifyFlags),
    "slowlog-log-slower-than": String(q.d.slowlog.slowerThanUs),
    "slowlog-max-len": String(q.d.slowlog.maxLen),
  };
}

export function config(q: RespRequest): void {
  const a = q.args;
  const sub = lower(a[1]!);
  if (sub === "get" && a.length >= 3) {
    const values = configValues(q);
    const entries: [Uint8Array, Uint8Array][] = [];
    const added = new Set<string>();
    for (const pattern of a.slice(2)) {
      const p = enc.encode(text(pattern).toLowerCase());
      for (const [k, v] of Object.entries(values)) {
        if (added.has(k) || !globMatch(p, enc.encode(k))) continue;
        added.add(k);
        entries.push([reply.bulk(k), reply.bulk(v)]);
      }
    }
    return q.reply(reply.map(entries, q.proto));
  }
  if (sub === "set" && a.length >= 4 && a.length % 2 === 0) return configSet(q);
  if (sub === "resetstat" && a.length === 2) return q.reply(reply.OK);
  q.error(`ERR unknown subcommand or wrong number of arguments for '${text(a[1]!)}'. Try CONFIG HELP.`);
}

/**
 * CONFIG SET name value [name value ...]: notify-keyspace-events only (keyspace
 * notifications, pubsub.ts); every pair is checked before any is applied.
 */
function configSet(q: RespRequest): void {
  const a = q.args;
  const hub = q.session.resp.pubsub;
  let flags: number | null = null;
  let slowerThan: number | null = null;
  let maxLen: number | null = null;
  // Every pair is checked before any is set: a bad one changes nothing (as Redis).
  for (let i = 2; i < a.length; i += 2) {
    const name = lower(a[i]!);
    const value = text(a[i + 1]!);
    if (name === "notify-keyspace-events") {
      flags = parseNotifyFlags(value);
      if (flags === null)
        return q.error(
          "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
        );
    } else if (name === "slowlog-log-slower-than") {
      slowerThan = /^-?\d{1,15}$/.test(value) ? Number(value) : null;
      if (slowerThan === null)
        return q.error(
          "ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - argument couldn't be parsed into an integer",
        );
    } else if (name === "slowlog-max-len") {
      maxLen = /^\d{1,9}$/.test(value) && Number(value) <= SLOWLOG_MAX_LEN ? Number(value) : null;
      if (maxLen === null)
        return q.error(
          `ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument must be between 0 and ${SLOWLOG_MAX_LEN} inclusive`,
        );
    } else return q.error(`ERR Unknown option or number of arguments for CONFIG SET - '${text(a[i]!)}'`);
  }
  if (flags !== null) hub.setNotifyFlags(flags);
  if (slowerThan !== null) q.d.slowlog.slowerThanUs = slowerThan;
  if (maxLen !== null) q.d.slowlog.maxLen = maxLen;
  q.reply(reply.OK);
}

export function time(q: RespRequest): void {
  const now = Date.now();
  const micros = Number(process.hrtime.bigint() / 1000n) % 1000;
  q.reply(reply.array([reply.bulk(String(Math.floor(now / 1000))), reply.bulk(String((now % 1000) * 1000 + micros))]));
}

/** INFO [section...]: server, clients, memory, persistence, stats, keyspace (others answer empty). */
export function info(q: RespRequest): void {
  const want = new Set(q.args.slice(1).map((b) => lower(b)));
  const all = want.size === 0 || want.has("all") || want.has("everything") || want.has("default");
  const show = (s: string) => all || want.has(s);
  const r = q.session.resp;
  q.everyShard(Op.STATS, (parts) => {
    let keys = 0;
    let memory = 0;
    let expired = 0;
    let expires = 0;
    for (const [shard, p] of parts.entries()) {
      const row = statsRow(shard, p.value!);
      keys += row.keys;
      memory += row.memoryBytes;
      expired += row.expired;
      expires += p.num; // keys with a TTL (src/shard/execute.ts, STATS)
    }
    const sections: string[] = [];
    const uptime = Math.floor((Date.now() - r.dispatcher.startedMs) / 1000);
    if (show("server"))
      sections.push(
        [
          "# Server",
          `redis_version:${REDIS_COMPAT_VERSION}`,
          "piccolo_version:0.1.0",
          "redis_mode:standalone",
          `os:${process.platform} ${process.arch}`,
          `process_id:${process.pid}`,
          `tcp_port:${r.port}`,
          `piccolo_native_port:${r.nativePort}`,
          `piccolo_shards:${r.dispatcher.shardCount}`,
          `uptime_in_seconds:${uptime}`,
          `uptime_in_days:${Math.floor(uptime / 86400)}`,
        ].join("\r\n"),
      );
    if (show("clients"))
      sections.push(["# Clients", `connected_clients:${[...r.sessions()].length}`, "blocked_clients:0"].join("\r\n"));
    if (show("memory")) {
      const m = memoryUsage();
      sections.push(
        [
          "# Memory",
          `used_memory:${Math.round(memory)}`,
          `used_memory_human:${(memory / 1048576).toFixed(2)}M`,
          `used_memory_rss:${m.rss}`,
          `used_memory_rss_human:${(m.rss / 1048576).toFixed(2)}M`,
          `piccolo_heap_used:${m.heapUsed}`,
          // V8's heap as committed on this thread, and the idle trim's young-generation collections (decision 0299).
          `piccolo_heap_total:${m.heapTotal}`,
          `piccolo_idle_collections:${idleCollections()}`,
          "maxmemory:0",
          "maxmemory_policy:noeviction",
        ].join("\r\n"),
      );
    }
    if (show("stats"))
      sections.push(
        [
          "# Stats",
          `total_connections_received:${r.stats.connectionsReceived}`,
          `total_commands_processed:${r.stats.commands}`,
          `rejected_calls:${r.stats.rejectedCalls}`,
          `expired_keys:${expired}`,
          `pubsub_channels:${r.pubsub.channelCount}`,
          `pubsub_patterns:${r.pubsub.patternCount}`,
          `piccolo_keyspace_notification_restarts:${r.pubsub.restarts}`,
        ].join("\r\n"),
      );
    const finish = (): void => {
      if (show("keyspace"))
        sections.push(keys > 0 ? `# Keyspace\r\ndb0:keys=${keys},expires=${expires},avg_ttl=0` : "# Keyspace");
      q.reply(reply.verbatim(`${sections.join("\r\n\r\n")}\r\n`, q.proto));
    };
    if (!show("persistence")) return finish();
    persistenceSection(q, (section) => {
      sections.push(section);
      finish();
    });
  });
}
