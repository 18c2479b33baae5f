// The client's hand-laid hot path (src/client/hot-wire.ts) against the
// generated capnp-es code: every request it lays out reads back through
// capnp-es with the same fields, and every answer it reads by hand reads the
// same as through capnp-es, whichever side laid it out; anything else (an
// error, another kind) is left to capnp-es.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as capnp from "capnp-es";
import fc from "fast-check";
import { encodeGetRequest, encodeWriteRequest, readValue, readWritten, responseId } from "../../src/client/hot-wire.js";
import { ErrorCode } from "../../src/errors.js";
import { decodeRequest, encodeError, encodeSingle, OpKind, type PartResult } from "../../src/protocol/codec.js";
import { Request, Request_Which, Response } from "../../src/protocol/gen/piccolo.js";

const buf = (u: Uint8Array) => u.slice().buffer as ArrayBuffer;
const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const key = fc.uint8Array({ minLength: 0, maxLength: 40 });
const value = fc.uint8Array({ minLength: 0, maxLength: 100 });

describe("the client's hand-laid hot path", () => {
  it("get and write requests read back through capnp-es with every field", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        key,
        value,
        fc.constantFrom(Request_Which.PUT, Request_Which.INSERT, Request_Which.UPDATE),
        u53,
        u53,
        fc.boolean(),
        fc.boolean(),
        (id, k, v, kind, ttl, at, keep, stale) => {
          const g = new capnp.Message(buf(encodeGetRequest(id, k, stale)), false).getRoot(Request);
          assert.equal(g.id, BigInt(id));
          assert.equal(g.which(), Request_Which.GET);
          assert.equal(g.stale, stale);
          assert.deepEqual(g.get.key.toUint8Array(), k);
          const w = new capnp.Message(buf(encodeWriteRequest(id, kind, k, v, ttl, at, keep)), false).getRoot(Request);
          assert.equal(w.id, BigInt(id));
          assert.equal(w.which(), kind);
          const body = kind === Request_Which.PUT ? w.put : kind === Request_Which.INSERT ? w.insert : w.update;
          assert.deepEqual(body.key.toUint8Array(), k);
          assert.deepEqual(body.value.toUint8Array(), v);
          assert.equal(body.ttlMs, BigInt(ttl));
          assert.equal(body.expireAtMs, BigInt(at));
          assert.equal(body.keepTtl, keep);
          // And the node's own hand path takes them (same operation as capnp-es's path would give).
          const op = decodeRequest(buf(encodeWriteRequest(id, kind, k, v, 0, 0, keep)), 1 << 20);
          if (k.length > 0) {
            assert.equal(op.errorCode, 0);
            assert.deepEqual(op.keys[0], k);
            assert.deepEqual(op.values[0], v);
          } else assert.equal(op.errorCode, ErrorCode.INVALID_ARGUMENT);
        },
      ),
      { seed: 21, numRuns: 300 },
    );
  });

  it("answers read by hand equal capnp-es's reading, laid out by the node or by capnp-es", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 2n ** 53n - 1n }),
        fc.constantFrom(0, 1),
        u53,
        u53,
        value,
        (id, flag, version, at, v) => {
          const p: PartResult = { status: ErrorCode.OK, flag, version, expireAtMs: at, num: 0, value: v };
          // Laid out by the node's hand path.
          const got = readValue(buf(encodeSingle(id, OpKind.GET, p)));
          assert.deepEqual(
            got?.entry === null ? null : { ...got!.entry, value: new Uint8Array(got!.entry.value) },
            flag === 1 ? { value: v, version, expireAtMs: at } : null,
          );
          assert.deepEqual(readWritten(buf(encodeSingle(id, OpKind.PUT, p))), { version, created: flag === 0 });
          assert.equal(responseId(buf(encodeSingle(id, OpKind.PUT, p))), Number(id));
          // Laid out by capnp-es: read the same, or left to capnp-es (null), never misread.
          const m = new capnp.Message();
          const r = m.initRoot(Response);
          r.id = id;
          const w = r._initWritten();
          w.version = BigInt(version);
          w.created = flag === 1;
          const viaCapnp = readWritten(m.toArrayBuffer());
          if (viaCapnp !== null) assert.deepEqual(viaCapnp, { version, created: flag === 1 });
        },
      ),
      { seed: 22, numRuns: 300 },
    );
  });

  it("an error answer is never read as a value or a write: capnp-es raises it", () => {
    const err = buf(encodeError(9n, ErrorCode.NOT_LEADER, "not the leader"));
    assert.equal(readWritten(err), null);
    assert.equal(readValue(err), null);
    assert.equal(responseId(err), 9);
    // A Written answer is not a Value, and the other way round.
    const p: PartResult = {
      status: ErrorCode.OK,
      flag: 1,
      version: 3,
      expireAtMs: 0,
      num: 0,
      value: new Uint8Array([1]),
    };
    assert.equal(readValue(buf(encodeSingle(1n, OpKind.PUT, p))), null);
    assert.equal(readWritten(buf(encodeSingle(1n, OpKind.GET, p))), null);
  });
});
