// INCR's arithmetic (src/shard/numbers.ts): the fast path in doubles for
// short integers must give exactly what the 64-bit BigInt path gives, errors
// included, for any text a client can store.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ErrorCode } from "../../src/errors.js";
import { addInteger } from "../../src/shard/numbers.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const MIN = -(2n ** 63n);
const MAX = 2n ** 63n - 1n;

/** What Redis answers for current + delta, computed the slow, obvious way. */
function expected(current: string | null, delta: string): string | number {
  const strict = (s: string): bigint | null =>
    /^-?(0|[1-9][0-9]*)$/.test(s) && s !== "-0" && s.length <= 20 && BigInt(s) >= MIN && BigInt(s) <= MAX
      ? BigInt(s)
      : null;
  const d = strict(delta);
  if (d === null) return ErrorCode.NOT_AN_INTEGER;
  const v = current === null ? 0n : strict(current);
  if (v === null) return ErrorCode.NOT_AN_INTEGER;
  const sum = v + d;
  return sum < MIN || sum > MAX ? ErrorCode.OVERFLOW : sum.toString();
}

function actual(current: string | null, delta: string): string | number {
  const r = addInteger(current === null ? null : enc.encode(current), enc.encode(delta));
  return typeof r === "number" ? r : dec.decode(r);
}

/** Integer texts around every edge: short and long, signs, zeros, the 64-bit limits, and junk. */
const integerText = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }).map(String),
  fc.bigInt({ min: MIN - 10n, max: MAX + 10n }).map(String),
  fc.constantFrom("0", "-0", "00", "01", "-01", "1", "-1", "999999999999999", "1000000000000000", "-999999999999999"),
  fc.constantFrom("9223372036854775807", "-9223372036854775808", "9223372036854775808", "", "-", "+1", " 1", "1a"),
  fc.string({ maxLength: 22 }),
);

test("addInteger agrees with 64-bit arithmetic on any current value and delta", () => {
  fc.assert(
    fc.property(fc.option(integerText, { nil: null }), integerText, (current, delta) => {
      assert.deepEqual(actual(current, delta), expected(current, delta));
    }),
    { numRuns: 20_000 },
  );
});

test("addInteger's edges, spelled out", () => {
  assert.equal(actual(null, "1"), "1");
  assert.equal(actual("41", "1"), "42");
  assert.equal(actual("-1", "1"), "0");
  assert.equal(actual("0", "-1"), "-1");
  assert.equal(actual("999999999999999", "1"), "1000000000000000");
  assert.equal(actual("-999999999999999", "-999999999999999"), "-1999999999999998");
  assert.equal(actual("9223372036854775806", "1"), "9223372036854775807");
  assert.equal(actual("9223372036854775807", "1"), ErrorCode.OVERFLOW);
  assert.equal(actual("-0", "1"), ErrorCode.NOT_AN_INTEGER);
  assert.equal(actual("01", "1"), ErrorCode.NOT_AN_INTEGER);
  assert.equal(actual("1", "+1"), ErrorCode.NOT_AN_INTEGER);
  assert.equal(actual("abc", "1"), ErrorCode.NOT_AN_INTEGER);
});
