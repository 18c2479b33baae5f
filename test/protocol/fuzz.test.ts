// Fuzzing the native protocol with fast-check: the decoder (never throws,
// and whatever it accepts is within the limits), the framer (the same frames
// whatever the chunking), and a live node fed random and mutated frames
// while a bystander client keeps working.
// Fixed seeds: a failure prints its seed and shrunk counterexample; replay by
// passing them to fc.assert ({ seed, path }).
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import fc from "fast-check";
import type { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode } from "../../src/errors.js";
import { MAX_BATCH_KEYS, MAX_KEY_BYTES } from "../../src/limits.js";
import {
  decodeRequest,
  decodeRequestGeneric,
  encodeMulti,
  encodeSingle,
  encodeTxn,
  OpKind,
  type PartResult,
} from "../../src/protocol/codec.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { HOT, hotValue, hotWritten, readHot } from "../../src/protocol/hot-codec.js";
import { decodeListRequest, encodeTxnPutsAndDeletes, encodeVersions } from "../../src/protocol/list-codec.js";
import { Op } from "../../src/shard/command.js";
import { Request, Response, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { type RunningNode, startNode } from "../support/node.js";
import { mulberry32 } from "../support/random.js";

const MAX_VALUE_BYTES = 1 << 20;

/** Codes a request may be refused with; anything else from the decoder is a bug. */
const REQUEST_ERRORS = new Set<number>([
  ErrorCode.MALFORMED_FRAME,
  ErrorCode.UNKNOWN_OPERATION,
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.KEY_TOO_LARGE,
  ErrorCode.VALUE_TOO_LARGE,
  ErrorCode.TOO_MANY_KEYS,
]);

/** Codes a live node may answer random frames with: the refusals above, the operations' own outcomes, the fatal framing codes. */
const LIVE_ERRORS = new Set<number>([
  ...REQUEST_ERRORS,
  ErrorCode.NOT_FOUND,
  ErrorCode.ALREADY_EXISTS,
  ErrorCode.VERSION_MISMATCH,
  ErrorCode.FRAME_TOO_LARGE,
]);

/** A valid segment table around arbitrary bytes, cut into `segments` segments (sizes in words). */
function framed(content: Uint8Array, segments = 1): Uint8Array {
  const words = Math.max(segments, Math.ceil(content.length / 8));
  const sizes = Array.from({ length: segments }, (_, i) =>
    i < segments - 1 ? Math.floor(words / segments) : words - Math.floor(words / segments) * (segments - 1),
  );
  let table = 4 + 4 * segments;
  table += table % 8;
  const b = new Uint8Array(table + words * 8);
  const v = new DataView(b.buffer);
  v.setUint32(0, segments - 1, true);
  for (const [i, s] of sizes.entries()) v.setUint32(4 + 4 * i, s, true);
  b.set(content, table);
  return b;
}

const randomFramed = fc
  .tuple(fc.uint8Array({ minLength: 8, maxLength: 512 }), fc.integer({ min: 1, max: 4 }))
  .map(([content, segments]) => framed(content, segments));

const KINDS = [
  "ping",
  "stats",
  "get",
  "exists",
  "persist",
  "ttl",
  "put",
  "insert",
  "update",
  "cas",
  "delete",
  "expire",
  "mget",
  "mdel",
  "mput",
  "scan",
  "auth",
] as const;

/** Any valid Request, built with the generated code. */
const validRequest = fc
  .record({
    id: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    kind: fc.constantFrom(...KINDS),
    keys: fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 4 }),
    value: fc.uint8Array({ maxLength: 100 }),
    num: fc.bigInt({ min: 0n, max: 2n ** 40n }),
  })
  .map(({ id, kind, keys, value, num }) => {
    const m = new capnp.Message();
    const r = m.initRoot(Request);
    r.id = id;
    const key = keys[0]!;
    const setKey = (init: (n: number) => capnp.Data, k = key) => init(k.length).copyBuffer(k);
    const setValue = (init: (n: number) => capnp.Data) => {
      if (value.length > 0) init(value.length).copyBuffer(value);
    };
    switch (kind) {
      case "ping":
        r.ping = true;
        break;
      case "stats":
        r.stats = true;
        break;
      case "get":
      case "exists":
      case "persist":
      case "ttl": {
        const k =
          kind === "get"
            ? r._initGet()
            : kind === "exists"
              ? r._initExists()
              : kind === "persist"
                ? r._initPersist()
                : r._initTtl();
        setKey((n) => k._initKey(n));
        break;
      }
      case "put":
      case "insert":
      case "update": {
        const w = kind === "put" ? r._initPut() : kind === "insert" ? r._initInsert() : r._initUpdate();
        setKey((n) => w._initKey(n));
        setValue((n) => w._initValue(n));
        w.ttlMs = num;
        break;
      }
      case "cas": {
        const c = r._initCas();
        setKey((n) => c._initKey(n));
        setValue((n) => c._initValue(n));
        c.expectedVersion = num;
        break;
      }
      case "delete": {
        const d = r._initDelete();
        setKey((n) => d._initKey(n));
        d.ifVersion = num;
        break;
      }
      case "expire": {
        const e = r._initExpire();
        setKey((n) => e._initKey(n));
        e.ttlMs = num;
        break;
      }
      case "mget":
      case "mdel": {
        const list = (kind === "mget" ? r._initMget() : r._initMdel())._initKeys(keys.length);
        for (const [i, k] of keys.entries()) setKey((n) => list.get(i)._initKey(n), k);
        break;
      }
      case "mput": {
        const list = r._initMput()._initEntries(keys.length);
        for (const [i, k] of keys.entries()) {
          setKey((n) => list.get(i)._initKey(n), k);
          setValue((n) => list.get(i)._initValue(n));
        }
        break;
      }
      case "scan": {
        const s = r._initScan();
        s.count = Number(num % 100n);
        setKey((n) => s._initPrefix(n));
        break;
      }
      case "auth":
        r._initAuth().password = Buffer.from(key).toString("hex");
        break;
    }
    return { id, kind, frame: new Uint8Array(m.toArrayBuffer()) };
  });

/** A valid Txn request: compares by version or value, branches of puts, deletes and gets. */
const validTxn = fc
  .record({
    id: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    compares: fc.array(
      fc.record({
        key: fc.uint8Array({ minLength: 1, maxLength: 20 }),
        byValue: fc.boolean(),
        relation: fc.integer({ min: 0, max: 3 }),
        version: fc.bigInt({ min: 0n, max: 2n ** 40n }),
        value: fc.uint8Array({ maxLength: 20 }),
      }),
      { maxLength: 3 },
    ),
    branches: fc.array(
      fc.array(
        fc.record({
          op: fc.constantFrom("put", "delete", "get"),
          key: fc.uint8Array({ minLength: 1, maxLength: 20 }),
          value: fc.uint8Array({ maxLength: 40 }),
          ttlMs: fc.bigInt({ min: 0n, max: 2n ** 30n }),
          expireAtMs: fc.bigInt({ min: 0n, max: 2n ** 45n }),
          keepTtl: fc.boolean(),
        }),
        { maxLength: 12 },
      ),
      { minLength: 2, maxLength: 2 },
    ),
    verdictOnly: fc.boolean(),
  })
  .map(({ id, compares, branches, verdictOnly }) => {
    const m = new capnp.Message();
    const r = m.initRoot(Request);
    r.id = id;
    const t = r._initTxn();
    t.verdictOnly = verdictOnly;
    const cs = t._initCompares(compares.length);
    for (const [i, c] of compares.entries()) {
      const w = cs.get(i);
      w._initKey(c.key.length).copyBuffer(c.key);
      w.target = c.byValue ? 1 : 0;
      w.relation = c.relation as 0;
      w.version = c.version;
      if (c.byValue && c.value.length > 0) w._initValue(c.value.length).copyBuffer(c.value);
    }
    for (const [b, ops] of branches.entries()) {
      const list = b === 0 ? t._initSuccess(ops.length) : t._initFailure(ops.length);
      for (const [i, o] of ops.entries()) {
        const w = list.get(i);
        if (o.op === "put") {
          const p = w._initPut();
          p._initKey(o.key.length).copyBuffer(o.key);
          if (o.value.length > 0) p._initValue(o.value.length).copyBuffer(o.value);
          p.ttlMs = o.ttlMs;
          p.expireAtMs = o.expireAtMs;
          p.keepTtl = o.keepTtl;
        } else (o.op === "get" ? w._initGet() : w._initDelete())._initKey(o.key.length).copyBuffer(o.key);
      }
    }
    return { id, kind: "txn", frame: new Uint8Array(m.toArrayBuffer()) };
  });

/**
 * The same request with its Txn struct as the schema had it before
 * verdictOnly: 0 data words and the 3 pointers. The Txn pointer is made to
 * skip the data word (left in place, unused, as Cap'n Proto allows), so
 * the pointers it leads to, and their offsets, stay where they are.
 */
function withoutTxnDataWord(frame: Uint8Array): Uint8Array {
  const b = frame.slice();
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const rootWord = 1 + (v.getInt32(8, true) >> 2); // segment word of the Request (the root pointer is word 0)
  const at = 8 + (rootWord + 2) * 8; // its pointer, after 2 data words
  const lo = v.getInt32(at, true);
  assert.equal(lo & 3, 0, "a struct pointer");
  assert.equal(v.getUint16(at + 4, true), 1, "the Txn as this schema writes it: 1 data word");
  v.setInt32(at, (((lo >> 2) + 1) << 2) | 0, true);
  v.setUint16(at + 4, 0, true);
  return b;
}

/**
 * A valid request, damaged: bytes overwritten in the content (the segment
 * table is left alone so the framer can cut it), or the content cut short
 * with the table fixed to match.
 */
const mutated = fc
  .tuple(
    validRequest,
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
    fc.option(fc.nat(), { freq: 4 }),
  )
  .map(([{ frame }, flips, cutWords]) => {
    let b = frame.slice();
    for (const [at, v] of flips) b[8 + (at % (b.length - 8))] = v;
    if (cutWords !== null) {
      const words = Math.max(1, (b.length - 8) / 8 - 1 - (cutWords % ((b.length - 8) / 8)));
      b = b.slice(0, 8 + words * 8);
      new DataView(b.buffer).setUint32(4, words, true);
    }
    return b;
  });

/** decodeRequest's promise: never throws, refuses with a known code, and whatever it accepts is within the limits. */
function decodesSafely(frame: Uint8Array): void {
  const op = decodeRequest(frame.slice().buffer, MAX_VALUE_BYTES);
  if (op.errorCode !== 0) {
    assert.ok(REQUEST_ERRORS.has(op.errorCode), `unexpected code ${op.errorCode}: ${op.errorMessage}`);
    return;
  }
  assert.ok(Object.values(OpKind).includes(op.kind), `accepted unknown kind ${op.kind}`);
  assert.ok(op.keys.length <= MAX_BATCH_KEYS);
  for (const k of op.keys) assert.ok(k.length <= MAX_KEY_BYTES);
  if (op.kind !== OpKind.SCAN) for (const k of op.keys) assert.ok(k.length > 0, "an accepted key is never empty");
  for (const v of op.values) assert.ok(v.length <= MAX_VALUE_BYTES);
}

describe("decoder fuzzing", () => {
  it("decodeRequest round-trips every valid request", () => {
    fc.assert(
      fc.property(validRequest, ({ id, kind, frame }) => {
        const op = decodeRequest(frame.slice().buffer, MAX_VALUE_BYTES);
        assert.equal(op.errorCode, 0, `${kind}: ${op.errorMessage}`);
        assert.equal(op.id, id);
        assert.equal(op.kind, OpKind[kind.toUpperCase() as keyof typeof OpKind]);
      }),
      { seed: 11, numRuns: 500 },
    );
  });

  it("the hand-written path for get and put decodes exactly as capnp-es does, valid or mutated (decision 0192)", () => {
    const same = (frame: Uint8Array) =>
      assert.deepEqual(
        decodeRequest(frame.slice().buffer, MAX_VALUE_BYTES),
        decodeRequestGeneric(frame.slice().buffer, MAX_VALUE_BYTES),
      );
    fc.assert(
      fc.property(validRequest, ({ frame }) => same(frame)),
      { seed: 12, numRuns: 500 },
    );
    fc.assert(fc.property(mutated, same), { seed: 13, numRuns: 3000 });
  });

  it("get and put answers laid out by hand are Responses capnp-es reads back exactly (decision 0192)", () => {
    const part = fc.record({
      flag: fc.constantFrom(0, 1),
      version: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      expireAtMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      value: fc.uint8Array({ maxLength: 40 }),
    });
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), part, (id, p) => {
        const result: PartResult = { status: ErrorCode.OK, num: 0, ...p };
        const get = new capnp.Message(encodeSingle(id, OpKind.GET, result).slice().buffer, false).getRoot(Response);
        assert.equal(get.id, id);
        assert.equal(get.which(), Response_Which.VALUE);
        assert.equal(get.value.found, p.flag === 1);
        assert.equal(get.value.version, p.flag === 1 ? BigInt(p.version) : 0n);
        assert.equal(get.value.expireAtMs, p.flag === 1 ? BigInt(p.expireAtMs) : 0n);
        assert.deepEqual(get.value.value.toUint8Array(), p.flag === 1 ? p.value : new Uint8Array(0));
        for (const kind of [OpKind.PUT, OpKind.INSERT, OpKind.UPDATE]) {
          const put = new capnp.Message(encodeSingle(id, kind, result).slice().buffer, false).getRoot(Response);
          assert.equal(put.id, id);
          assert.equal(put.which(), Response_Which.WRITTEN);
          assert.equal(put.written.version, BigInt(p.version));
          assert.equal(put.written.created, kind === OpKind.INSERT || (kind === OpKind.PUT && p.flag === 0));
        }
      }),
      { seed: 14, numRuns: 300 },
    );
  });

  it("the hot reader (hot-codec.ts) takes a request only when decodeRequest accepts it, and reads it the same (decision 0316)", () => {
    const HOT_KINDS = new Set<number>([OpKind.GET, OpKind.PUT, OpKind.INSERT, OpKind.UPDATE]);
    const agrees = (frame: Uint8Array, asWritten = false) => {
      const op = decodeRequest(frame.slice().buffer, MAX_VALUE_BYTES);
      const hot = readHot(frame, MAX_VALUE_BYTES);
      // Every valid get and put as this schema writes it takes the hot path: it is not a path nobody walks.
      if (asWritten && op.errorCode === 0 && HOT_KINDS.has(op.kind))
        assert.ok(hot, `kind ${op.kind} missed the hot path`);
      if (!hot) return;
      assert.equal(op.errorCode, 0, `the hot reader took a request decodeRequest refuses: ${op.errorMessage}`);
      assert.equal(HOT.kind, op.kind);
      assert.equal(new DataView(frame.buffer, frame.byteOffset).getBigUint64(HOT.idAt, true), op.id);
      assert.deepEqual(HOT.key, op.keys[0]);
      assert.deepEqual(HOT.value, op.values[0] ?? new Uint8Array(0));
      assert.equal(HOT.ttlMs, op.ttlMs);
      assert.equal(HOT.expireAtMs, op.expireAtMs);
      assert.equal(HOT.keepTtl, op.keepTtl);
      assert.equal(HOT.stale, op.stale);
    };
    fc.assert(
      fc.property(validRequest, ({ frame }) => agrees(frame, true)),
      { seed: 15, numRuns: 1000 },
    );
    fc.assert(
      fc.property(mutated, (frame) => agrees(frame)),
      { seed: 16, numRuns: 5000 },
    );
    fc.assert(
      fc.property(randomFramed, (frame) => agrees(frame)),
      { seed: 17, numRuns: 2000 },
    );
  });

  it("mput and txn read by hand (list-codec.ts) decode exactly as capnp-es does, or not at all (decision 0317)", () => {
    const agrees = (frame: Uint8Array, asWritten = false) => {
      const generic = decodeRequestGeneric(frame.slice().buffer, MAX_VALUE_BYTES);
      const hand = decodeListRequest(frame, MAX_VALUE_BYTES);
      // Every valid mput and txn as this schema writes it is read by hand.
      if (asWritten && generic.errorCode === 0 && (generic.kind === OpKind.MPUT || generic.kind === OpKind.TXN))
        assert.ok(hand !== null, `kind ${generic.kind} missed the hand path`);
      if (hand === null) return;
      assert.equal(generic.errorCode, 0, `the hand path took a request capnp-es refuses: ${generic.errorMessage}`);
      assert.deepEqual(hand, generic);
    };
    fc.assert(
      fc.property(fc.oneof(validRequest, validTxn), ({ frame }) => agrees(frame, true)),
      { seed: 19, numRuns: 1500 },
    );
    // A Txn as clients built before verdictOnly write it (no data word): still read by hand, as not verdict-only.
    fc.assert(
      fc.property(validTxn, ({ frame }) => {
        const old = withoutTxnDataWord(frame);
        agrees(old, true);
        assert.equal(decodeListRequest(old, MAX_VALUE_BYTES)?.txn?.verdictOnly, false);
      }),
      { seed: 22, numRuns: 500 },
    );
    const mutatedTxn = fc
      .tuple(validTxn, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }))
      .map(([{ frame }, flips]) => {
        const b = frame.slice();
        for (const [at, v] of flips) b[8 + (at % (b.length - 8))] = v;
        return b;
      });
    fc.assert(
      fc.property(mutatedTxn, (frame) => agrees(frame)),
      { seed: 20, numRuns: 5000 },
    );
    fc.assert(
      fc.property(mutated, (frame) => agrees(frame)),
      { seed: 21, numRuns: 3000 },
    );
  });

  it("mput and txn answers laid out by hand (list-codec.ts) read back as capnp-es's own (decision 0317)", () => {
    const part = fc.record({
      flag: fc.constantFrom(0, 1),
      version: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    });
    const read = (frame: Uint8Array) => {
      const r = new capnp.Message(frame.slice().buffer, false).getRoot(Response);
      return r.which() === Response_Which.VERSIONS
        ? { id: r.id, versions: Array.from(r.versions) }
        : {
            id: r.id,
            succeeded: r.txn.succeeded,
            results: Array.from(r.txn.results, (x) =>
              x._isPut ? { version: x.put.version, created: x.put.created } : { deleted: x.delete },
            ),
          };
    };
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.boolean(),
        fc.array(fc.tuple(fc.constantFrom(Op.PUT, Op.DELETE), part), { maxLength: 20 }),
        (id, succeeded, items) => {
          const ops = items.map(([o]) => o);
          const parts: PartResult[] = items.map(([, p]) => ({
            status: ErrorCode.OK,
            expireAtMs: 0,
            num: 0,
            value: null,
            ...p,
          }));
          const txn = encodeTxnPutsAndDeletes(id, succeeded, ops, parts);
          assert.ok(txn !== null);
          assert.deepEqual(read(txn), read(encodeTxn(id, succeeded, ops, parts)));
          if (parts.length > 0)
            assert.deepEqual(read(encodeVersions(id, parts)), read(encodeMulti(id, OpKind.MPUT, parts)));
        },
      ),
      { seed: 22, numRuns: 500 },
    );
    assert.equal(encodeTxnPutsAndDeletes(1n, true, [Op.PUT, Op.GET], []), null, "a get goes through capnp-es");
  });

  it("the hot answers (hot-codec.ts) are byte for byte encodeSingle's (decision 0316)", () => {
    const part = fc.record({
      flag: fc.constantFrom(0, 1),
      version: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      expireAtMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      value: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(16), part, (id, idAt, p) => {
        const frame = new Uint8Array(idAt + 8);
        new DataView(frame.buffer).setBigUint64(idAt, id, true);
        const result: PartResult = { status: ErrorCode.OK, num: 0, ...p };
        const value = hotValue(frame, idAt, p.flag === 1, p.version, p.expireAtMs, p.value);
        assert.deepEqual(value, encodeSingle(id, OpKind.GET, result));
        for (const kind of [OpKind.PUT, OpKind.INSERT, OpKind.UPDATE]) {
          const created = kind === OpKind.INSERT || (kind === OpKind.PUT && p.flag === 0);
          assert.deepEqual(hotWritten(frame, idAt, p.version, created), encodeSingle(id, kind, result));
        }
      }),
      { seed: 18, numRuns: 500 },
    );
  });

  it("decodeRequest never throws on random words in valid segment tables (1 to 4 segments)", () => {
    fc.assert(fc.property(randomFramed, decodesSafely), { seed: 1, numRuns: 3000 });
  });

  it("decodeRequest never throws on mutated valid requests", () => {
    fc.assert(fc.property(mutated, decodesSafely), { seed: 2, numRuns: 3000 });
  });

  it("the framer cuts the same frames whatever the chunking", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            validRequest.map((r) => r.frame),
            randomFramed,
          ),
          { minLength: 1, maxLength: 20 },
        ),
        fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 30 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames);
          const whole: Buffer[] = [];
          new FrameReader(1 << 20).push(stream, (f) => whole.push(Buffer.from(f)));
          const pieces: Buffer[] = [];
          const reader = new FrameReader(1 << 20);
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = cuts.length > 0 ? cuts[i % cuts.length]! : stream.length;
            reader.push(stream.subarray(at, at + n), (f) => pieces.push(Buffer.from(f)));
            at += n;
          }
          assert.equal(reader.error, null);
          assert.equal(reader.partial, false, "nothing is left over");
          assert.deepEqual(
            whole.map((f) => new Uint8Array(f)),
            frames,
            "the frames cut are the frames sent",
          );
          assert.deepEqual(pieces, whole, "chunking does not matter");
        },
      ),
      { seed: 3, numRuns: 400 },
    );
  });
});

/** One fuzzing connection: decodes every answer (each must be a valid Response) and notices the close. */
class FuzzConnection {
  readonly answers: { id: bigint; which: number; code: number }[] = [];
  closed = false;
  private readonly reader = new FrameReader(1 << 26);
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.closedPromise = new Promise((r) => socket.once("close", () => r()));
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => {}); // writes racing the node's close: the close is what counts
    socket.on("data", (d: Buffer) =>
      this.reader.push(d, (f) => {
        const r = new capnp.Message(f, false).getRoot(Response);
        const which = r.which();
        this.answers.push({ id: r.id, which, code: which === Response_Which.ERROR ? r.error.code : 0 });
      }),
    );
  }

  static async open(port: number): Promise<FuzzConnection> {
    const s = connect({ host: "127.0.0.1", port });
    await new Promise((r) => s.once("connect", r));
    return new FuzzConnection(s);
  }

  get framingError(): string | null {
    return this.reader.error?.message ?? null;
  }

  /** Resolves "pong" when the probe is answered, "closed" when the node closed, "silent" after waitMs. */
  async probe(id: bigint, waitMs: number): Promise<"pong" | "closed" | "silent"> {
    for (let t = 0; t < waitMs; t += 5) {
      if (this.answers.some((a) => a.id === id && a.which === Response_Which.PONG)) return "pong";
      if (this.closed) return "closed";
      await new Promise((r) => setTimeout(r, 5));
    }
    return "silent";
  }
}

function pingFrame(id: bigint): Buffer {
  const m = new capnp.Message();
  const r = m.initRoot(Request);
  r.id = id;
  r.ping = true;
  return Buffer.from(m.toArrayBuffer());
}

describe("a live node under random frames", () => {
  const SEED = Number(process.env.PICCOLO_SEED ?? 4);
  let node: RunningNode;
  let bystander: PiccoloClient;
  before(async () => {
    node = await startNode(["--shards", "2"]);
    bystander = await node.client();
  });
  after(async () => {
    try {
      await bystander?.close();
    } finally {
      assert.equal(await node.stop(), 0, `the node shuts down cleanly; stderr:\n${node.stderr()}`);
    }
  });

  it("answers or closes, never crashes, and a bystander working all along never notices", async (t) => {
    const frames = fc.sample(
      fc.oneof(
        { arbitrary: mutated, weight: 4 },
        { arbitrary: validRequest.map((r) => r.frame), weight: 2 },
        { arbitrary: randomFramed, weight: 2 },
        { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }), weight: 1 },
      ),
      { seed: SEED, numRuns: 400 },
    );
    const rand = mulberry32(SEED);

    // The bystander: put then get, over and over, all through the fuzzing.
    let fuzzing = true;
    let bystanderOps = 0;
    const bystanderRun = (async () => {
      while (fuzzing) {
        const key = `bystander-${bystanderOps % 64}`;
        const version = await bystander.put(key, String(bystanderOps));
        const e = await bystander.get(key);
        assert.equal(e?.value.toString(), String(bystanderOps), `seed ${SEED}: bystander read its write`);
        assert.equal(e?.version, version);
        bystanderOps++;
      }
    })();

    let conn: FuzzConnection | null = null;
    const connections: FuzzConnection[] = [];
    let probeId = 1n << 62n;
    let silent = 0;
    try {
      for (let sent = 0; sent < frames.length; ) {
        if (conn === null || conn.closed) {
          conn = await FuzzConnection.open(node.port);
          connections.push(conn);
        }
        // A burst of 1 to 8 frames and a probe ping. The probe is answered if
        // the connection survived; a close means the node gave up on the
        // stream; silence means the burst ended inside a frame (the probe's
        // bytes went into it), so we half-close and expect the final error.
        const burst = frames.slice(sent, sent + 1 + Math.floor(rand() * 8));
        sent += burst.length;
        const id = probeId++;
        conn.socket.write(Buffer.concat([...burst, pingFrame(id)]));
        if ((await conn.probe(id, 200)) === "silent") {
          silent++;
          conn.socket.end();
          await conn.closedPromise;
        }
      }
    } finally {
      fuzzing = false;
      await bystanderRun;
      conn?.socket.destroy();
    }

    const answers = connections.flatMap((c) => c.answers);
    for (const c of connections) assert.equal(c.framingError, null, "every answer is a well-framed Response");
    for (const a of answers)
      assert.ok(
        a.which !== Response_Which.ERROR || LIVE_ERRORS.has(a.code),
        `seed ${SEED}: unexpected error code ${a.code}`,
      );
    assert.ok(connections.length > 1, "some streams were given up on (and reconnected)");
    assert.ok(
      connections.some((c) => c.answers.length > 10),
      "some connections survived many bad frames",
    );
    assert.ok(bystanderOps > 0, "the bystander worked during the fuzzing");
    assert.equal(node.process.exitCode, null, `the node is alive; stderr:\n${node.stderr()}`);
    assert.equal(node.process.signalCode, null);
    const stats = await bystander.stats();
    assert.equal(stats.shards.length, 2);
    // Informative: how the stream went.
    t.diagnostic(
      `${frames.length} frames on ${connections.length} connections, ${answers.length} answers, ${silent} half-closed mid-frame, ${bystanderOps} bystander round trips`,
    );
  });
});
