/**
 * The Redis command table: name -> arity, key positions, flags, handler.
 * Like Redis's own table, it also answers COMMAND (COUNT, INFO, DOCS), which
 * redis-cli uses for hints and client libraries for key positions.
 *
 * Arity follows Redis: N means exactly N arguments counting the command
 * name, -N means at least N.
 */
import { Perm } from "../security/users.js";
import * as ac from "./cmd-acl.js";
import * as k from "./cmd-keys.js";
import * as ps from "./cmd-persistence.js";
import * as mt from "./multi.js";
import * as pb from "./pubsub.js";
import * as sv from "./cmd-server.js";
import * as st from "./cmd-strings.js";
import * as reply from "./reply.js";
import type { RespRequest } from "./request.js";

export interface CommandSpec {
  name: string;
  arity: number;
  flags: string[];
  /** The "readonly" flag, as a field: checked on every command after READONLY. */
  readOnly: boolean;
  /** The permission a user needs to run it (Perm bits from src/security/users.ts; 0: any authenticated user). */
  perm: number;
  firstKey: number;
  lastKey: number;
  step: number;
  group: string;
  summary: string;
  run(q: RespRequest): void;
}

const table = new Map<string, CommandSpec>();

function def(
  name: string,
  arity: number,
  flags: string,
  keys: [number, number, number],
  group: string,
  summary: string,
  run: (q: RespRequest) => void,
): void {
  const f = flags === "" ? [] : flags.split(" ");
  table.set(name, {
    name,
    arity,
    flags: f,
    readOnly: f.includes("readonly"),
    perm:
      PERM_OF[name] ??
      (f.includes("admin") ? Perm.ADMIN : f.includes("write") ? Perm.WRITE : f.includes("readonly") ? Perm.READ : 0),
    firstKey: keys[0],
    lastKey: keys[1],
    step: keys[2],
    group,
    summary,
    run,
  });
}

/**
 * Permissions not read off the flags: a flush empties every key, so it is an
 * admin's (as the Cerializer's and the native protocol's admin operations);
 * publishing writes and subscribing reads; CLIENT is a connection command
 * (CLIENT LIST, which shows every client, checks admin itself).
 */
const PERM_OF: Record<string, number> = {
  flushdb: Perm.ADMIN | Perm.WRITE,
  flushall: Perm.ADMIN | Perm.WRITE,
  publish: Perm.WRITE,
  subscribe: Perm.READ,
  psubscribe: Perm.READ,
  client: 0,
};

const NONE: [number, number, number] = [0, 0, 0];
const ONE: [number, number, number] = [1, 1, 1];
const ALL: [number, number, number] = [1, -1, 1];

// connection
def("ping", -1, "fast", NONE, "connection", "Returns the server's liveliness response.", sv.ping);
def("echo", 2, "fast", NONE, "connection", "Returns the given string.", sv.echo);
def("hello", -1, "noscript loading stale fast no_auth", NONE, "connection", "Handshakes with the server.", sv.hello);
def("auth", -2, "noscript loading stale fast no_auth", NONE, "connection", "Authenticates the connection.", sv.auth);
def("select", 2, "loading stale fast", NONE, "connection", "Changes the selected database (only 0).", sv.select);
def("quit", -1, "noscript loading stale fast no_auth", NONE, "connection", "Closes the connection.", sv.quit);
def("reset", 1, "noscript loading stale fast no_auth", NONE, "connection", "Resets the connection.", sv.reset);
def(
  "client",
  -2,
  "admin noscript loading stale",
  NONE,
  "connection",
  "CLIENT SETNAME|GETNAME|ID|INFO|LIST.",
  sv.client,
);
def(
  "acl",
  -2,
  "noscript loading stale",
  NONE,
  "server",
  "ACL WHOAMI|LIST|USERS|GETUSER|SETUSER|DELUSER|CAT|LOAD|SAVE (all but WHOAMI need admin).",
  ac.acl,
);
// cluster: stale reads (docs/cluster.md, "Stale reads")
def(
  "readonly",
  1,
  "loading stale fast",
  NONE,
  "cluster",
  "Lets this connection's reads be served, possibly stale, by the member's own replica.",
  sv.readonly,
);
def("readwrite", 1, "loading stale fast", NONE, "cluster", "Back to linearizable reads (the default).", sv.readwrite);
// server
def("command", -1, "loading stale", NONE, "server", "Returns detailed information about all commands.", command);
def("config", -2, "admin noscript loading stale", NONE, "server", "CONFIG GET (read-only here).", sv.config);
def("info", -1, "loading stale", NONE, "server", "Returns information and statistics about the server.", sv.info);
def("dbsize", 1, "readonly fast", NONE, "server", "Returns the number of keys.", k.dbsize);
def("flushdb", -1, "write", NONE, "server", "Removes all keys.", k.flush);
def("flushall", -1, "write", NONE, "server", "Removes all keys.", k.flush);
def("time", 1, "loading stale fast", NONE, "server", "Returns the server time.", sv.time);
def(
  "slowlog",
  -2,
  "admin loading stale",
  NONE,
  "server",
  "SLOWLOG GET [count] | LEN | RESET: the node's slowest recent requests (docs/tracing.md).",
  sv.slowlog,
);
def(
  "trace",
  2,
  "loading stale fast",
  NONE,
  "server",
  "TRACE LAST: the timeline of this connection's last traced command (CLIENT TRACING ON).",
  sv.trace,
);
def("save", 1, "admin noscript", NONE, "server", "Snapshots every shard now; answers once they are on disk.", ps.save);
def("bgsave", -1, "admin noscript", NONE, "server", "Starts a snapshot of every shard.", ps.bgsave);
def(
  "debug",
  -2,
  "admin noscript loading stale",
  NONE,
  "server",
  "DEBUG RELOAD: save, then reload every shard from its files.",
  ps.debug,
);
def(
  "lastsave",
  1,
  "loading stale fast",
  NONE,
  "server",
  "When the last complete snapshot finished (unix time).",
  ps.lastsave,
);
// strings
def("get", 2, "readonly fast", ONE, "string", "Returns the string value of a key.", st.get);
def("set", -3, "write denyoom", ONE, "string", "Sets the string value of a key.", st.set);
def("setnx", 3, "write denyoom fast", ONE, "string", "Sets the value only if the key does not exist.", st.setnx);
def("setex", 4, "write denyoom", ONE, "string", "Sets the value and expiry in seconds.", st.setex);
def("psetex", 4, "write denyoom", ONE, "string", "Sets the value and expiry in milliseconds.", st.psetex);
def("getset", 3, "write denyoom fast", ONE, "string", "Sets a value and returns the old one.", st.getset);
def("getdel", 2, "write fast", ONE, "string", "Returns the value and deletes the key.", st.getdel);
def("getex", -2, "write fast", ONE, "string", "Returns the value and sets its expiry.", st.getex);
def("mget", -2, "readonly fast", ALL, "string", "Returns the values of keys.", st.mget);
def("mset", -3, "write denyoom", [1, -1, 2], "string", "Sets many keys, atomically.", st.mset);
def(
  "msetnx",
  -3,
  "write denyoom",
  [1, -1, 2],
  "string",
  "Sets many keys only if none exists (all or nothing).",
  st.msetnx,
);
def("incr", 2, "write denyoom fast", ONE, "string", "Increments the integer value by one.", st.incr);
def("decr", 2, "write denyoom fast", ONE, "string", "Decrements the integer value by one.", st.decr);
def("incrby", 3, "write denyoom fast", ONE, "string", "Increments the integer value by a number.", st.incrby);
def("decrby", 3, "write denyoom fast", ONE, "string", "Decrements the integer value by a number.", st.decrby);
def("incrbyfloat", 3, "write denyoom fast", ONE, "string", "Increments the float value by a number.", st.incrbyfloat);
def("append", 3, "write denyoom fast", ONE, "string", "Appends to the value.", st.append);
def("strlen", 2, "readonly fast", ONE, "string", "Returns the length of the value.", st.strlen);
def("getrange", 4, "readonly", ONE, "string", "Returns a substring of the value.", st.getrange);
def("setrange", 4, "write denyoom", ONE, "string", "Overwrites part of the value.", st.setrange);
// keyspace
def("del", -2, "write", ALL, "generic", "Deletes keys.", k.del);
def("unlink", -2, "write fast", ALL, "generic", "Deletes keys.", k.del);
def("exists", -2, "readonly fast", ALL, "generic", "Counts existing keys.", k.exists);
def("type", 2, "readonly fast", ONE, "generic", "Returns the type of a key (always string).", k.type);
def("rename", 3, "write", [1, 2, 1], "generic", "Renames a key, atomically.", k.rename);
def("renamenx", 3, "write fast", [1, 2, 1], "generic", "Renames a key only if the new name is free.", k.renamenx);
def("copy", -3, "write denyoom", [1, 2, 1], "generic", "Copies a key (DB 0 only).", k.copy);
def("expire", -3, "write fast", ONE, "generic", "Sets an expiry in seconds.", k.expire);
def("pexpire", -3, "write fast", ONE, "generic", "Sets an expiry in milliseconds.", k.pexpire);
def("expireat", -3, "write fast", ONE, "generic", "Sets an expiry as a Unix time in seconds.", k.expireat);
def("pexpireat", -3, "write fast", ONE, "generic", "Sets an expiry as a Unix time in milliseconds.", k.pexpireat);
def("ttl", 2, "readonly fast", ONE, "generic", "Returns the time to live in seconds.", k.ttl);
def("pttl", 2, "readonly fast", ONE, "generic", "Returns the time to live in milliseconds.", k.pttl);
def("persist", 2, "write fast", ONE, "generic", "Removes the expiry.", k.persist);
def("scan", -2, "readonly", NONE, "generic", "Iterates over keys.", k.scan);
def("keys", 2, "readonly", NONE, "generic", "Returns all keys matching a pattern.", k.keys);
// transactions (multi.ts)
def("multi", 1, "noscript loading stale fast", NONE, "transactions", "Starts a transaction.", mt.multi);
def(
  "exec",
  1,
  "noscript loading stale",
  NONE,
  "transactions",
  "Runs the queued commands as one atomic transaction.",
  mt.exec,
);
def("discard", 1, "noscript loading stale fast", NONE, "transactions", "Discards the queued commands.", mt.discard);
def(
  "watch",
  -2,
  "noscript loading stale fast",
  ALL,
  "transactions",
  "EXEC runs only if these keys are unchanged.",
  mt.watch,
);
def("unwatch", 1, "noscript loading stale fast", NONE, "transactions", "Forgets the watched keys.", mt.unwatch);

// pub/sub (pubsub.ts): node-local fan-out
def(
  "subscribe",
  -2,
  "pubsub noscript loading stale",
  NONE,
  "pubsub",
  "Listens for messages on channels.",
  pb.subscribe,
);
def(
  "psubscribe",
  -2,
  "pubsub noscript loading stale",
  NONE,
  "pubsub",
  "Listens for messages on channels matching patterns.",
  pb.psubscribe,
);
def("unsubscribe", -1, "pubsub noscript loading stale", NONE, "pubsub", "Stops listening on channels.", pb.unsubscribe);
def(
  "punsubscribe",
  -1,
  "pubsub noscript loading stale",
  NONE,
  "pubsub",
  "Stops listening on patterns.",
  pb.punsubscribe,
);
def(
  "publish",
  3,
  "pubsub loading stale fast",
  NONE,
  "pubsub",
  "Posts a message to a channel (this node's subscribers).",
  pb.publish,
);
def("pubsub", -2, "pubsub loading stale", NONE, "pubsub", "PUBSUB CHANNELS|NUMSUB|NUMPAT.", pb.pubsub);

/** Every command, in table order (ACL CAT). */
export function allCommands(): CommandSpec[] {
  return [...table.values()];
}

export function lookup(name: string): CommandSpec | undefined {
  return table.get(name);
}

/** Command specs by name length, for lookupBytes(). */
const byLength: CommandSpec[][] = [];
for (const spec of table.values()) (byLength[spec.name.length] ??= []).push(spec);

/**
 * Finds a command by its name's bytes, case-insensitively, without making a
 * string: the per-command cost of dispatch on the hot path. A handful of
 * names share each length, so this is a few byte comparisons.
 */
export function lookupBytes(b: Uint8Array): CommandSpec | undefined {
  const candidates = byLength[b.length];
  if (candidates === undefined) return undefined;
  for (const spec of candidates) {
    const name = spec.name;
    let i = 0;
    for (; i < b.length; i++) if ((b[i]! | 0x20) !== name.charCodeAt(i)) break;
    if (i === b.length) return spec;
  }
  return undefined;
}

function infoOf(c: CommandSpec): Uint8Array {
  return reply.array([
    reply.bulk(c.name),
    reply.integer(c.arity),
    reply.array(c.flags.map((f) => reply.simple(f))),
    reply.integer(c.firstKey),
    reply.integer(c.lastKey),
    reply.integer(c.step),
    reply.array([]),
    reply.array([]),
    reply.array([]),
    reply.array([]),
  ]);
}

function docsOf(c: CommandSpec, proto: reply.Proto): Uint8Array {
  return reply.map(
    [
      [reply.bulk("summary"), reply.bulk(c.summary)],
      [reply.bulk("since"), reply.bulk("1.0.0")],
      [reply.bulk("group"), reply.bulk(c.group)],
    ],
    proto,
  );
}

/** COMMAND, COMMAND COUNT, COMMAND INFO [name...], COMMAND DOCS [name...] */
function command(q: RespRequest): void {
  const a = q.args;
  const dec = new TextDecoder();
  if (a.length === 1) return q.reply(reply.array([...table.values()].map(infoOf)));
  const sub = dec.decode(a[1]!).toLowerCase();
  const named = a.slice(2).map((b) => dec.decode(b).toLowerCase());
  if (sub === "count" && a.length === 2) return q.reply(reply.integer(table.size));
  if (sub === "info") {
    const list = named.length === 0 ? [...table.values()] : named.map((n) => table.get(n));
    return q.reply(reply.array(list.map((c) => (c === undefined ? reply.nil(q.proto) : infoOf(c)))));
  }
  if (sub === "docs") {
    const list = named.length === 0 ? [...table.values()] : named.flatMap((n) => table.get(n) ?? []);
    return q.reply(
      reply.map(
        list.map((c) => [reply.bulk(c.name), docsOf(c, q.proto)]),
        q.proto,
      ),
    );
  }
  q.error(`ERR unknown subcommand or wrong number of arguments for '${dec.decode(a[1]!)}'. Try COMMAND HELP.`);
}
