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
function idOf(frame: Uint8Array, at: number): bigint {
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
    // A request's `stale` becomes FLAG_STALE_READ on a read; a write never carries it (as native.ts's staleFlag).
    this.flags = (h.keepTtl ? FLAG_KEEP_TTL : 0) | (h.stale && h.kind === OpKind.GET ? FLAG_STALE_READ : 0);
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
    const c = d.begin(this.kind === OpKind.GET ? Op.GET : OP_OF_WRITE[this.kind]!, nowMs);
    c.flags = this.flags;
    c.expireAtMs = this.expireAtMs > 0 ? this.expireAtMs : this.ttlMs > 0 ? nowMs + this.ttlMs : 0;
    if (this.kind !== OpKind.GET) c.value = this.value;
    d.sendKey(this, 0, this.key);
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
    // The shard's flag for a put is 1 when it replaced a key, 0 when it created one.
    const created = this.kind === OpKind.INSERT || (this.kind === OpKind.PUT && r.flag === 0);
    this.finish(hotWritten(this.frame, this.idAt, r.version, created));
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

const OP_OF_WRITE: Partial<Record<number, Op>> = {
  [OpKind.PUT]: Op.PUT,
  [OpKind.INSERT]: Op.INSERT,
  [OpKind.UPDATE]: Op.UPDATE,
};
