// The schema-driven JSON <-> Cap'n Proto bridge (src/protocol/json.ts), on
// its own: round trips through real encoded messages, and a property test
// over random Requests.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as capnp from "capnp-es";
import fc from "fast-check";
import { Request } from "../../src/protocol/gen/piccolo.js";
import { fillStruct, JsonSchemaError, structInfo, structToJson } from "../../src/protocol/json.js";

const info = structInfo("Request");
type Dyn = Record<string, unknown>;

/** JSON -> Request -> bytes -> Request -> JSON. */
function roundTrip(json: Record<string, unknown>): Record<string, unknown> {
  const m = new capnp.Message();
  fillStruct(info, m.initRoot(Request) as unknown as Dyn, json);
  const back = new capnp.Message(m.toArrayBuffer(), false).getRoot(Request);
  return structToJson(info, back as unknown as Dyn);
}

describe("JSON <-> Cap'n Proto by the schema", () => {
  it("round-trips a request through its encoded bytes", () => {
    const out = roundTrip({ id: "18446744073709551615", put: { key: "k", value: { base64: "/wA=" }, ttlMs: 5 } });
    assert.equal(out.id, "18446744073709551615", "a uint64 above 2^53 stays exact, as a string");
    assert.deepEqual(out.put, {
      key: { text: "k" },
      value: { base64: "/wA=" },
      ttlMs: 5,
      expireAtMs: 0,
      keepTtl: false,
    });
  });

  it("names the field that does not fit", () => {
    assert.throws(
      () => roundTrip({ cas: { key: "k", expectedVersion: 1.5 } }),
      (e: unknown) => e instanceof JsonSchemaError && e.path === "cas.expectedVersion",
    );
    assert.throws(
      () => roundTrip({ id: "18446744073709551616", ping: null }),
      (e: unknown) => e instanceof JsonSchemaError && e.path === "id",
    );
  });

  it("any put/mget request survives JSON -> capnp -> JSON (property)", () => {
    const bytes = fc.uint8Array({ maxLength: 40 });
    const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    fc.assert(
      fc.property(
        fc.oneof(fc.constant("put"), fc.constant("mget")),
        bytes,
        bytes,
        u64,
        fc.array(bytes, { maxLength: 5 }),
        (op, k, v, ttl, ks) => {
          const b64 = (b: Uint8Array) => ({ base64: Buffer.from(b).toString("base64") });
          const json =
            op === "put"
              ? { put: { key: b64(k), value: b64(v), ttlMs: ttl.toString(), expireAtMs: 0, keepTtl: false } }
              : { mget: { keys: ks.map((x) => ({ key: b64(x) })) } };
          const out = roundTrip(json) as Dyn;
          const norm = (d: { text?: string; base64?: string }) =>
            Buffer.from(d.text ?? d.base64 ?? "", d.text !== undefined ? "utf8" : "base64").toString("hex");
          if (op === "put") {
            const p = out.put as Record<string, { text?: string; base64?: string }>;
            assert.equal(norm(p.key!), Buffer.from(k).toString("hex"));
            assert.equal(norm(p.value!), Buffer.from(v).toString("hex"));
            assert.equal(BigInt(p.ttlMs as unknown as number | string), ttl);
          } else {
            const keys = (out.mget as { keys: { key: { text?: string; base64?: string } }[] }).keys;
            assert.deepEqual(
              keys.map((x) => norm(x.key)),
              ks.map((x) => Buffer.from(x).toString("hex")),
            );
          }
        },
      ),
      { numRuns: 300, seed: 20261125 },
    );
  });
});
