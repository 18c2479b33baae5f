/**
 * The native port's runs (decision 0319): consecutive hot requests (a plain
 * get, put, insert or update: src/protocol/hot-codec.ts) of one connection,
 * read straight from the socket's chunk, sent to the shard at once, and
 * answered one after another into one buffer (src/io/run.ts).
 *
 * What a request costs here, against a HotRequest of its own
 * (src/io/native-hot.ts): no copy of its frame out of the chunk, no queued
 * object, no answer bytes of its own, no copy of them into the write. Its
 * key and value are views of the chunk, valid while it is sent: the
 * command is written to the shard's ring (or run on the IO thread's map)
 * inside sendHot, and the answer needs only the id's 8 bytes, copied here.
 *
 * When a request takes its HotRequest instead (NativeConnection.takeHot
 * says so): a frame not whole in one chunk, a user limited by permissions
 * or key patterns, a connection not yet authenticated, a stopping node, a
 * backend that answers out of order (shard workers), and a request the
 * dispatch window or the output limit holds back (it needs its own copy of
 * its bytes). The answers are byte for byte a HotRequest's: the same
 * layouts (hot-codec.ts's hotValueAt and hotWrittenAt), the same errors.
 */
import { ErrorCode } from "../errors.js";
import { encodeError, messageFor, OpKind } from "../protocol/codec.js";
import { type HotFields, HOT_WRITTEN_BYTES, hotValueAt, hotValueBytes, hotWrittenAt } from "../protocol/hot-codec.js";
import { HOT_RUN_MAX_COMMANDS } from "../limits.js";
import type { Result } from "../shard/command.js";
import { smallBytes } from "../small-bytes.js";
import type { Dispatcher, RequestOwner } from "./dispatch.js";
import { kindName } from "./native.js";
import { hotCreated, hotFlags, idOf, sendHot } from "./native-hot.js";
import { Run } from "./run.js";

export class NativeRun extends Run {
  /** Each request's kind, by its place in the run. */
  private readonly kinds = new Uint8Array(HOT_RUN_MAX_COMMANDS);
  /** Each request's id, 8 bytes by place, as its frame had it (its answer copies them; never decoded). */
  private readonly ids = smallBytes(HOT_RUN_MAX_COMMANDS * 8);

  constructor(owner: RequestOwner) {
    super(owner, 1024);
  }

  /** For the slow log: the run's first request, and how many it answers (their keys were the chunk's). */
  override describe(): string[] {
    const first = kindName(this.kinds[0]!);
    return this.sent > 1 ? [first, `(a run of ${this.sent} requests)`] : [first];
  }

  /** Sends the hot request just read into `h` from `frame`; its answer joins the run's. */
  send(d: Dispatcher, h: HotFields, frame: Uint8Array, nowMs: number): void {
    const part = this.took();
    this.kinds[part] = h.kind;
    const ids = this.ids;
    for (let i = 0; i < 8; i++) ids[part * 8 + i] = frame[h.idAt + i]!;
    sendHot(d, this, part, h.kind, h.key, h.value, hotFlags(h), h.ttlMs, h.expireAtMs, nowMs);
  }

  protected answer(part: number, r: Result): void {
    const kind = this.kinds[part]!;
    if (r.status !== ErrorCode.OK)
      return this.bytes(encodeError(idOf(this.ids, part * 8), r.status, messageFor(r.status), r.version));
    if (kind === OpKind.GET) {
      const found = r.flag !== 0;
      this.room(hotValueBytes(found, r.value));
      this.at = hotValueAt(this.buf, this.at, this.ids, part * 8, found, r.version, r.expireAtMs, r.value);
      return;
    }
    this.room(HOT_WRITTEN_BYTES);
    this.at = hotWrittenAt(this.buf, this.at, this.ids, part * 8, r.version, hotCreated(kind, r.flag));
  }
}
