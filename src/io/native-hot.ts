/**
 * A native get, put, insert or update on its hot path (decision 0316): read
 * by src/protocol/hot-codec.ts into this one object, sent as one shard
 * command, answered by hand. Everything else, and any of these that is
 * unusual or invalid, is a NativeRequest (native.ts) built from a decoded
 * Operation.
 *
 * The request keeps its frame until its answer is made: its key and value
 * are views into it, and its answer copies the id's 8 bytes from it (the id
 * is never decoded).
 */
import { ErrorCode } from "../errors.js";
import { outcomeOf } from "../outcomes.js";
import { encodeError, messageFor, OpKind } from "../protocol/codec.js";
import { hotValue, hotWritten, type HotFields } from "../protocol/hot-codec.js";
import { FLAG_KEEP_TTL, FLAG_STALE_READ, Op, type Result } from "../shard/command.js";
import { ALL_PERMS } from "../security/users.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";
import { keyText, kindName, type NativeSession } from "./native.js";
import { keyRefusal } from "./native-perms.js";

const EMPTY = new Uint8Array(0);

/** The request's id, for the rare answers laid out by capnp-es (errors). */
export function idOf(frame: Uint8Array, at: number): bigint {
  const v = new DataView(frame.buffer, frame.byteOffset + at, 8);
  return v.getBigUint64(0, true);
}

export class HotRequest extends InFlight {
  private frame: Uint8Array;
  private key: Uint8Array;
  private value: Uint8Array;
  private readonly idAt: number;
  private readonly kind: number;
  private readonly ttlMs: number;
  private readonly expireAtMs: number;
  private readonly flags: number;

  constructor(
    owner: RequestOwner,
    h: HotFields,
    frame: Uint8Array,
    /** When it was read (its TTL counts from then, even if it waited in the dispatch window). */
    readonly readMs: number,
  ) {
    super(owner);
    this.frame = frame;
    this.key = h.key;
    this.value = h.value;
    this.idAt = h.idAt;
    this.kind = h.kind;
    this.ttlMs = h.ttlMs;
    this.expireAtMs = h.expireAtMs;
    this.flags = hotFlags(h);
  }

  /** Sends its one command, or answers at once: a stopping node, an unauthenticated or refused user. */
  start(d: Dispatcher, nowMs: number, session: NativeSession): void {
    if (session.stopping) return this.fail(ErrorCode.SHUTTING_DOWN, outcomeOf(ErrorCode.SHUTTING_DOWN).text);
    const user = session.user;
    if (user === null || user.deleted) return this.fail(ErrorCode.NOAUTH, "authentication required");
    if (user.perms !== ALL_PERMS || user.keys !== null) {
      const refusal = keyRefusal(user, this.kind, this.key);
      if (refusal !== null) return this.fail(ErrorCode.NOPERM, refusal);
    }
    sendHot(d, this, 0, this.kind, this.key, this.value, this.flags, this.ttlMs, this.expireAtMs, nowMs);
  }

  override describe(): string[] {
    return [kindName(this.kind), keyText(this.key)];
  }

  onResult(_part: number, r: Result, _d: Dispatcher): void {
    // Nobody reads the answer (dispatch.ts, RequestOwner.gone).
    if (this.owner.gone) return this.finish(EMPTY);
    if (r.status !== ErrorCode.OK) return this.fail(r.status, messageFor(r.status), r.version);
    if (this.kind === OpKind.GET)
      return this.finish(hotValue(this.frame, this.idAt, r.flag !== 0, r.version, r.expireAtMs, r.value));
    this.finish(hotWritten(this.frame, this.idAt, r.version, hotCreated(this.kind, r.flag)));
  }

  private fail(code: number, message: string, version = 0): void {
    this.finish(encodeError(idOf(this.frame, this.idAt), code, message, version));
  }

  /** The frame, key and value are let go once the answer is made (it may wait in the queue behind a slower one). */
  override finish(out: Uint8Array): void {
    super.finish(out);
    this.frame = EMPTY;
    this.key = EMPTY;
    this.value = EMPTY;
  }
}

/** The flags a hot request's shard command carries. */
export function hotFlags(h: HotFields): number {
  // A request's `stale` becomes FLAG_STALE_READ on a read; a write never carries it (as native.ts's staleFlag).
  return (h.keepTtl ? FLAG_KEEP_TTL : 0) | (h.stale && h.kind === OpKind.GET ? FLAG_STALE_READ : 0);
}

/** Sends a hot request's one shard command, as part `part` of `req` (a HotRequest, or a run's place). */
export function sendHot(
  d: Dispatcher,
  req: InFlight,
  part: number,
  kind: number,
  key: Uint8Array,
  value: Uint8Array,
  flags: number,
  ttlMs: number,
  expireAtMs: number,
  nowMs: number,
): void {
  const c = d.begin(kind === OpKind.GET ? Op.GET : OP_OF_WRITE[kind]!, nowMs);
  c.flags = flags;
  c.expireAtMs = expireAtMs > 0 ? expireAtMs : ttlMs > 0 ? nowMs + ttlMs : 0;
  if (kind !== OpKind.GET) c.value = value;
  d.sendKey(req, part, key);
}

/** Whether a hot write created its key: the shard's flag for a put is 1 when it replaced one, 0 when it created it. */
export function hotCreated(kind: number, flag: number): boolean {
  return kind === OpKind.INSERT || (kind === OpKind.PUT && flag === 0);
}

const OP_OF_WRITE: Partial<Record<number, Op>> = {
  [OpKind.PUT]: Op.PUT,
  [OpKind.INSERT]: Op.INSERT,
  [OpKind.UPDATE]: Op.UPDATE,
};
