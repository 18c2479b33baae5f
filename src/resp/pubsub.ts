/**
 * Pub/sub on the Redis port, and keyspace notifications built on watches
 * (docs/resp.md, "Pub/sub"; docs/watch.md).
 *
 * The hub is node-local fan-out on the IO thread: no shard is involved.
 * It maps each channel to its subscribed connections, and keeps the
 * patterns (Redis's glob syntax, glob.ts) with theirs. PUBLISH encodes the
 * message once per RESP version and pushes it through each receiver's
 * connection (Connection.push): queued after that connection's earlier
 * answers and counted against its output limits like any answer, so a
 * subscriber that does not read is closed by the client output limits
 * (docs/architecture.md, "Memory per connection") while the others go on.
 * In a cluster, PUBLISH is relayed to every other member (a peer frame),
 * each delivering it to its own subscribers.
 *
 * Keyspace notifications (`CONFIG SET notify-keyspace-events`): while they
 * are on and some channel or pattern that a notification may reach has a
 * subscriber, the hub keeps ONE watch over every key (src/io/watch.ts)
 * and publishes each change as Redis's `__keyspace@0__:<key>` and
 * `__keyevent@0__:<event>` messages. Fire-and-forget, as in Redis: if the
 * watch ends (it fell behind the shards' history), it restarts from now,
 * and what happened in between is not announced.
 */
import type { Dispatcher, RequestOwner } from "../io/dispatch.js";
import { Watch, type WatchSink } from "../io/watch.js";
import { WATCH_PARK_MS } from "../limits.js";
import { type Change, ChangeType } from "../shard/history.js";
import { lower, text } from "./args.js";
import { globMatch, literalPrefix } from "../glob.js";
import * as reply from "./reply.js";
import type { RespRequest, RespSession } from "./request.js";

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Redis's notify-keyspace-events classes (server.h NOTIFY_*), by flag letter. */
export const NOTIFY = {
  K: 1 << 0,
  E: 1 << 1,
  g: 1 << 2,
  $: 1 << 3,
  l: 1 << 4,
  s: 1 << 5,
  h: 1 << 6,
  z: 1 << 7,
  x: 1 << 8,
  e: 1 << 9,
  t: 1 << 10,
  m: 1 << 11,
  d: 1 << 13,
  n: 1 << 14,
} as const;
/** "A": every class but key misses and new keys (as Redis). */
const NOTIFY_ALL =
  NOTIFY.g | NOTIFY.$ | NOTIFY.l | NOTIFY.s | NOTIFY.h | NOTIFY.z | NOTIFY.x | NOTIFY.e | NOTIFY.t | NOTIFY.d;
/** The classes Piccolo produces events of: generic (del, expire, persist), string (set), expired. */
const NOTIFY_PRODUCED = NOTIFY.g | NOTIFY.$ | NOTIFY.x;

/** Parses a notify-keyspace-events value into flags; null on a character Redis does not know. */
export function parseNotifyFlags(s: string): number | null {
  let flags = 0;
  for (const ch of s) {
    if (ch === "A") flags |= NOTIFY_ALL;
    else if (Object.hasOwn(NOTIFY, ch)) flags |= NOTIFY[ch as keyof typeof NOTIFY];
    else return null;
  }
  return flags;
}

/** The flags as CONFIG GET shows them (Redis's keyspaceEventsFlagsToString: "KEA" reads "AKE"). */
export function notifyFlagsText(flags: number): string {
  let s = "";
  if ((flags & NOTIFY_ALL) === NOTIFY_ALL) s += "A";
  else for (const ch of "g$lshzxetd") if (flags & NOTIFY[ch as keyof typeof NOTIFY]) s += ch;
  for (const ch of "KEmn") if (flags & NOTIFY[ch as keyof typeof NOTIFY]) s += ch;
  return s;
}

const KEYSPACE = enc.encode("__keyspace@0__:");
const KEYEVENT = enc.encode("__keyevent@0__:");

/** One kind of change as Redis names its event: the event's name, its class, its keyevent channel. */
interface Event {
  name: Uint8Array;
  flag: number;
  channel: Uint8Array;
}
function event(name: string, flag: number): Event {
  return { name: enc.encode(name), flag, channel: reply.concat([KEYEVENT, enc.encode(name)]) };
}
const EV_SET = event("set", NOTIFY.$);
const EV_DEL = event("del", NOTIFY.g);
const EV_EXPIRE = event("expire", NOTIFY.g);
const EV_PERSIST = event("persist", NOTIFY.g);
const EV_EXPIRED = event("expired", NOTIFY.x);

/** The Redis event of a watch's change; null for a flush (Redis sends nothing per key on FLUSHALL either). */
function eventOf(c: Change): Event | null {
  switch (c.type) {
    case ChangeType.PUT:
      return EV_SET;
    case ChangeType.DELETE:
      return EV_DEL;
    case ChangeType.EXPIRE:
      return c.expiresAtMs === 0 ? EV_PERSIST : EV_EXPIRE;
    case ChangeType.EXPIRED:
      return EV_EXPIRED;
    default:
      return null;
  }
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

/** A name's bytes as a map key (latin1: one char per byte, so binary names stay distinct). */
function nameOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString("latin1");
}

function bytesOf(name: string): Uint8Array {
  return Buffer.from(name, "latin1");
}

/** Whether a keyspace notification may be published on `channel`. */
function keyspaceChannel(channel: Uint8Array): boolean {
  return startsWith(channel, KEYSPACE) || startsWith(channel, KEYEVENT);
}

/**
 * Whether `pattern` may match a keyspace notification's channel: its literal
 * start and the channels' prefixes agree as far as both go (conservative:
 * "*" may, "news.*" may not).
 */
function keyspacePattern(pattern: Uint8Array): boolean {
  const lit = literalPrefix(pattern);
  return [KEYSPACE, KEYEVENT].some((p) => startsWith(lit, p) || startsWith(p, lit));
}

const MESSAGE = reply.bulk("message");
const PMESSAGE = reply.bulk("pmessage");

export class PubSubHub {
  /** Channel -> its subscribers. An entry goes with its last subscriber. */
  private readonly channels = new Map<string, Set<RespSession>>();
  /** Pattern -> its bytes and subscribers. */
  private readonly patterns = new Map<string, { bytes: Uint8Array; subs: Set<RespSession> }>();
  /** Entries of the two maps above that a keyspace notification may reach. */
  private keyspaceListeners = 0;
  private flags = 0;
  private watch: Watch | null = null;
  /** Stops a watch no longer wanted (updateWatch). */
  private stopTimer: ReturnType<typeof setTimeout> | null = null;
  /** The watch's owner: never gone, charged nothing (a watch's results are not answers). */
  private readonly owner: RequestOwner = { gone: false, charge() {}, requestDone() {} };
  /** Times the keyspace watch ended and was started again from now (notifications were lost). */
  restarts = 0;

  constructor(
    private readonly d: Dispatcher,
    private readonly log: (level: "debug" | "info" | "warn", message: string, detail?: object) => void = () => {},
  ) {}

  get notifyFlags(): number {
    return this.flags;
  }

  /** Sets notify-keyspace-events; starts or stops the keyspace watch as needed. */
  setNotifyFlags(flags: number): void {
    this.flags = flags;
    this.updateWatch();
  }

  get channelCount(): number {
    return this.channels.size;
  }

  get patternCount(): number {
    return this.patterns.size;
  }

  /** Channels with at least one subscriber, matching `pattern` (all when null). */
  activeChannels(pattern: Uint8Array | null): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const name of this.channels.keys()) {
      const b = bytesOf(name);
      if (pattern === null || globMatch(pattern, b)) out.push(b);
    }
    return out;
  }

  subscriberCount(channel: Uint8Array): number {
    return this.channels.get(nameOf(channel))?.size ?? 0;
  }

  subscribe(s: RespSession, channel: Uint8Array): void {
    const name = nameOf(channel);
    if (s.subscriptions.channels.has(name)) return;
    s.subscriptions.channels.add(name);
    let subs = this.channels.get(name);
    if (subs === undefined) {
      subs = new Set();
      this.channels.set(name, subs);
      if (keyspaceChannel(channel)) this.keyspaceListeners++;
    }
    subs.add(s);
  }

  unsubscribe(s: RespSession, name: string): void {
    if (!s.subscriptions.channels.delete(name)) return;
    const subs = this.channels.get(name);
    if (subs === undefined) return;
    subs.delete(s);
    if (subs.size === 0) {
      this.channels.delete(name);
      if (keyspaceChannel(bytesOf(name))) this.keyspaceListeners--;
    }
  }

  psubscribe(s: RespSession, pattern: Uint8Array): void {
    const name = nameOf(pattern);
    if (s.subscriptions.patterns.has(name)) return;
    s.subscriptions.patterns.add(name);
    let p = this.patterns.get(name);
    if (p === undefined) {
      p = { bytes: pattern.slice(), subs: new Set() };
      this.patterns.set(name, p);
      if (keyspacePattern(pattern)) this.keyspaceListeners++;
    }
    p.subs.add(s);
  }

  punsubscribe(s: RespSession, name: string): void {
    if (!s.subscriptions.patterns.delete(name)) return;
    const p = this.patterns.get(name);
    if (p === undefined) return;
    p.subs.delete(s);
    if (p.subs.size === 0) {
      this.patterns.delete(name);
      if (keyspacePattern(p.bytes)) this.keyspaceListeners--;
    }
  }

  /** Forgets every subscription of `s` (the connection closed, or RESET). */
  drop(s: RespSession): void {
    for (const name of [...s.subscriptions.channels]) this.unsubscribe(s, name);
    for (const name of [...s.subscriptions.patterns]) this.punsubscribe(s, name);
    this.updateWatch();
  }

  /**
   * Pushes `message` to every subscriber of `channel` and of each pattern
   * matching it; answers how many received it (a connection subscribed to
   * the channel and to a matching pattern counts twice, as in Redis).
   */
  publish(channel: Uint8Array, message: Uint8Array): number {
    let n = 0;
    const subs = this.channels.get(nameOf(channel));
    let ch: Uint8Array | null = null;
    let msg: Uint8Array | null = null;
    if (subs !== undefined) {
      ch = reply.bulk(channel);
      msg = reply.bulk(message);
      const frames: (Uint8Array | null)[] = [null, null];
      for (const s of subs) {
        if (s.gone) continue;
        const v = s.proto === 3 ? 1 : 0;
        const f = (frames[v] ??= reply.push([MESSAGE, ch, msg], s.proto));
        s.push(f);
        n++;
      }
    }
    if (this.patterns.size === 0) return n;
    for (const p of this.patterns.values()) {
      if (!globMatch(p.bytes, channel)) continue;
      ch ??= reply.bulk(channel);
      msg ??= reply.bulk(message);
      const pat = reply.bulk(p.bytes);
      const frames: (Uint8Array | null)[] = [null, null];
      for (const s of p.subs) {
        if (s.gone) continue;
        const v = s.proto === 3 ? 1 : 0;
        const f = (frames[v] ??= reply.push([PMESSAGE, pat, ch, msg], s.proto));
        s.push(f);
        n++;
      }
    }
    return n;
  }

  /**
   * Starts the keyspace watch when it is wanted and not running. One no
   * longer wanted is stopped after WATCH_PARK_MS, not at once: a cancelled
   * watch's parked reads stay at the shards until they time out, so a
   * client subscribing and unsubscribing in a loop would otherwise park a
   * read per shard each time. Changes it reads meanwhile reach nobody
   * (notify() checks the flags; publish() finds no subscriber).
   */
  updateWatch(): void {
    const want =
      (this.flags & (NOTIFY.K | NOTIFY.E)) !== 0 && (this.flags & NOTIFY_PRODUCED) !== 0 && this.keyspaceListeners > 0;
    if (want) {
      if (this.stopTimer !== null) {
        clearTimeout(this.stopTimer);
        this.stopTimer = null;
      }
      if (this.watch === null) this.startWatch();
    } else if (this.watch !== null && this.stopTimer === null) {
      this.stopTimer = setTimeout(() => {
        this.stopTimer = null;
        this.watch?.cancel();
        this.watch = null;
      }, WATCH_PARK_MS);
      this.stopTimer.unref();
    }
  }

  private startWatch(): void {
    const sink: WatchSink = {
      // Delivery to each subscriber is bounded by that connection's own output limits.
      ready: true,
      created: () => {},
      changes: (changes) => {
        if (this.watch !== w) return;
        for (const c of changes) this.notify(c);
      },
      ended: (code, message) => {
        if (this.watch !== w) return;
        this.watch = null;
        this.restarts++;
        this.log("info", "keyspace notifications fell behind and start again from now (some were not sent)", {
          code,
          message,
        });
        setImmediate(() => {
          this.updateWatch();
          this.d.onSentLater();
        });
      },
    };
    const w = new Watch(this.owner, this.d, EMPTY, false, null, sink);
    this.watch = w;
    w.start();
  }

  /** Publishes one change as Redis's keyspace and keyevent messages, as the flags ask. */
  private notify(c: Change): void {
    const ev = eventOf(c);
    if (ev === null || (this.flags & ev.flag) === 0) return;
    if (this.flags & NOTIFY.K) this.publish(reply.concat([KEYSPACE, c.key]), ev.name);
    if (this.flags & NOTIFY.E) this.publish(ev.channel, c.key);
  }
}

// --- the commands ---

function subscriptionCount(s: RespSession): number {
  return s.subscriptions.channels.size + s.subscriptions.patterns.size;
}

/** Whether a connection is in Redis's subscribed state (RESP2 then allows only the pub/sub commands). */
export function subscribed(s: RespSession): boolean {
  return subscriptionCount(s) > 0;
}

function confirmation(q: RespRequest, kind: string, name: Uint8Array | null): Uint8Array {
  return reply.push(
    [
      reply.bulk(kind),
      name === null ? reply.nil(q.proto) : reply.bulk(name),
      reply.integer(subscriptionCount(q.session)),
    ],
    q.proto,
  );
}

/** SUBSCRIBE channel [channel ...]: a confirmation per channel, with the connection's count after it. */
export function subscribe(q: RespRequest): void {
  const hub = q.session.resp.pubsub;
  const out: Uint8Array[] = [];
  for (const ch of q.args.slice(1)) {
    hub.subscribe(q.session, ch);
    out.push(confirmation(q, "subscribe", ch));
  }
  hub.updateWatch();
  q.reply(reply.concat(out));
}

export function psubscribe(q: RespRequest): void {
  const hub = q.session.resp.pubsub;
  const out: Uint8Array[] = [];
  for (const p of q.args.slice(1)) {
    hub.psubscribe(q.session, p);
    out.push(confirmation(q, "psubscribe", p));
  }
  hub.updateWatch();
  q.reply(reply.concat(out));
}

/** UNSUBSCRIBE [channel ...]: every channel when none is named; [unsubscribe, nil, 0] when there was none. */
export function unsubscribe(q: RespRequest): void {
  const hub = q.session.resp.pubsub;
  const names = q.args.length > 1 ? q.args.slice(1).map(nameOf) : [...q.session.subscriptions.channels];
  const out: Uint8Array[] = [];
  for (const name of names) {
    hub.unsubscribe(q.session, name);
    out.push(confirmation(q, "unsubscribe", bytesOf(name)));
  }
  if (out.length === 0) out.push(confirmation(q, "unsubscribe", null));
  hub.updateWatch();
  q.reply(reply.concat(out));
}

export function punsubscribe(q: RespRequest): void {
  const hub = q.session.resp.pubsub;
  const names = q.args.length > 1 ? q.args.slice(1).map(nameOf) : [...q.session.subscriptions.patterns];
  const out: Uint8Array[] = [];
  for (const name of names) {
    hub.punsubscribe(q.session, name);
    out.push(confirmation(q, "punsubscribe", bytesOf(name)));
  }
  if (out.length === 0) out.push(confirmation(q, "punsubscribe", null));
  hub.updateWatch();
  q.reply(reply.concat(out));
}

/**
 * PUBLISH channel message: delivered to this node's subscribers, and in a
 * cluster relayed to every other member's (as Redis Cluster does). The
 * answer counts this member's receivers only, as Redis Cluster's does.
 */
export function publish(q: RespRequest): void {
  q.d.backend.publish?.(q.args[1]!, q.args[2]!);
  q.reply(reply.integer(q.session.resp.pubsub.publish(q.args[1]!, q.args[2]!)));
}

/** PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | HELP */
export function pubsub(q: RespRequest): void {
  const a = q.args;
  const hub = q.session.resp.pubsub;
  const sub = lower(a[1]!);
  if (sub === "channels" && a.length <= 3)
    return q.reply(reply.array(hub.activeChannels(a.length === 3 ? a[2]! : null).map((c) => reply.bulk(c))));
  if (sub === "numsub") {
    const out: Uint8Array[] = [];
    for (const ch of a.slice(2)) out.push(reply.bulk(ch), reply.integer(hub.subscriberCount(ch)));
    return q.reply(reply.array(out));
  }
  if (sub === "numpat" && a.length === 2) return q.reply(reply.integer(hub.patternCount));
  if (sub === "help" && a.length === 2)
    return q.reply(
      reply.array(
        [
          "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
          "CHANNELS [<pattern>]",
          "    Return the currently active channels matching a <pattern> (default: '*').",
          "NUMPAT",
          "    Return number of subscriptions to patterns.",
          "NUMSUB [<channel> ...]",
          "    Return the number of subscribers for the specified channels, excluding",
          "    pattern subscriptions(default: no channels).",
          "HELP",
          "    Print this help.",
        ].map((l) => reply.simple(l)),
      ),
    );
  q.error(`ERR unknown subcommand or wrong number of arguments for '${text(a[1]!)}'. Try PUBSUB HELP.`);
}
