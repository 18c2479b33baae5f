// The gateway's security decisions as tables: protected mode (tests may
// bind only to 127.0.0.1, where every request is local, so the decision is
// tested here as the pure function it is), the Authorization header, the
// failed-attempt throttle and the token table on a hand-driven clock, and
// the callers' cache (its eviction and re-checking; the check itself is a
// function the test passes in, the node's AUTH being tested for real in
// security-auth.test.ts).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Callers } from "../../src/cerializer/callers.js";
import { parseAuthorization } from "../../src/cerializer/credentials.js";
import type { Identity } from "../../src/cerializer/pool.js";
import { Problem } from "../../src/cerializer/problems.js";
import { isLoopbackAddress, protectedModeRefuses } from "../../src/cerializer/protected-mode.js";
import { AuthThrottle } from "../../src/cerializer/throttle.js";
import { Tokens } from "../../src/cerializer/tokens.js";

describe("protected mode: who is refused", { timeout: 10_000 }, () => {
  const cases: [string, boolean, string, string | undefined, boolean, boolean][] = [
    // name, protectedMode, boundHost, remote, hasCredentials, refused
    ["bound to loopback: anyone", true, "127.0.0.1", "10.0.0.5", false, false],
    ["bound to localhost: anyone", true, "localhost", "10.0.0.5", false, false],
    ["bound to ::1: anyone", true, "::1", "10.0.0.5", false, false],
    ["public, remote, no credentials: refused", true, "0.0.0.0", "10.0.0.5", false, true],
    ["public IPv6, remote: refused", true, "::", "2001:db8::1", false, true],
    ["public, remote, with credentials", true, "0.0.0.0", "10.0.0.5", true, false],
    ["public, from this machine", true, "0.0.0.0", "127.0.0.1", false, false],
    ["public, from this machine over IPv4-mapped IPv6", true, "::", "::ffff:127.0.0.1", false, false],
    ["public, from ::1", true, "::", "::1", false, false],
    ["public, socket gone: refused", true, "10.0.0.1", undefined, false, true],
    ["--protected-mode no", false, "0.0.0.0", "10.0.0.5", false, false],
    ["a remote 127-lookalike is not loopback", true, "0.0.0.0", "::ffff:10.127.0.1", false, true],
  ];
  for (const [name, protectedMode, boundHost, remoteAddress, hasCredentials, refused] of cases)
    it(name, () => {
      assert.equal(protectedModeRefuses({ protectedMode, boundHost, remoteAddress, hasCredentials }), refused);
    });

  it("loopback addresses", () => {
    for (const a of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) assert.ok(isLoopbackAddress(a), a);
    for (const a of ["10.0.0.1", "128.0.0.1", "::", "0.0.0.0", "::ffff:10.0.0.1", "localhost.evil"])
      assert.ok(!isLoopbackAddress(a), a);
  });
});

describe("the Authorization header", { timeout: 10_000 }, () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  it("reads Basic and Bearer, and refuses everything else as malformed", () => {
    assert.deepEqual(parseAuthorization(undefined), { kind: "none" });
    assert.deepEqual(parseAuthorization(`Basic ${b64("alice:pw:with:colons")}`), {
      kind: "basic",
      user: "alice",
      password: "pw:with:colons",
    });
    assert.deepEqual(parseAuthorization(`basic ${b64(":pw")}`), { kind: "basic", user: "default", password: "pw" });
    assert.deepEqual(parseAuthorization("Bearer abc-_DEF123"), { kind: "bearer", token: "abc-_DEF123" });
    for (const h of [
      "",
      "Basic",
      "Basic ",
      `Basic ${b64("nocolon")}`,
      "Basic @@@@",
      "Basic abc",
      "Bearer",
      "Bearer a b",
      "Digest x",
      `Basic ${"A".repeat(20_000)}`,
    ])
      assert.equal(parseAuthorization(h).kind, "malformed", JSON.stringify(h.slice(0, 40)));
  });
});

describe("failed attempts are slowed per address", { timeout: 10_000 }, () => {
  it("doubles from the base to the cap, waits out a running delay, forgets after a quiet minute", () => {
    let now = 0;
    const t = new AuthThrottle({ baseDelayMs: 100, maxDelayMs: 2_000, forgetMs: 60_000, maxTracked: 100 }, () => now);
    assert.equal(t.waitMs("a"), 0);
    const delays = Array.from({ length: 7 }, () => t.failed("a").delayMs);
    assert.deepEqual(delays, [100, 200, 400, 800, 1_600, 2_000, 2_000]);
    assert.equal(t.waitMs("a"), 2_000, "a new attempt waits out the delay running");
    assert.equal(t.waitMs("b"), 0, "another address is not slowed");
    now += 1_000;
    assert.equal(t.waitMs("a"), 1_000);
    now += 58_999;
    assert.equal(t.failed("a").failures, 8, "within a minute of the last failure: remembered");
    now += 60_000;
    assert.equal(t.waitMs("a"), 0);
    assert.deepEqual(t.failed("a"), { delayMs: 100, failures: 1 }, "forgotten after a minute without failures");
  });

  it("remembers at most maxTracked addresses, dropping the least recently failed", () => {
    const now = 0;
    const t = new AuthThrottle({ baseDelayMs: 100, maxDelayMs: 2_000, forgetMs: 60_000, maxTracked: 3 }, () => now);
    for (const a of ["a", "b", "c"]) t.failed(a);
    t.failed("a");
    t.failed("d");
    assert.equal(t.size, 3);
    assert.equal(t.waitMs("b"), 0, "b failed least recently: dropped");
    assert.ok(t.waitMs("a") > 0 && t.waitMs("c") > 0 && t.waitMs("d") > 0);
  });
});

describe("bearer tokens", { timeout: 10_000 }, () => {
  it("map to their credentials until revoked or expired; the table is bounded", () => {
    let now = 0;
    const tokens = new Tokens(60, 2, () => now);
    const a = tokens.issue("alice", "pw");
    assert.equal(a.expiresInSeconds, 60);
    assert.equal(Buffer.from(a.token, "base64url").length, 32);
    assert.deepEqual({ ...tokens.lookup(a.token) }, { user: "alice", password: "pw", expiresAtMs: 60_000 });
    assert.equal(tokens.lookup(`${a.token}x`), null);
    const b = tokens.issue("bob", "pw2");
    assert.notEqual(a.token, b.token);
    assert.throws(
      () => tokens.issue("carol", "pw3"),
      (err: Problem) => err.type === "too-many-tokens",
    );
    assert.equal(tokens.revoke(b.token), true);
    assert.equal(tokens.lookup(b.token), null);
    tokens.issue("carol", "pw3");
    now = 60_000;
    assert.equal(tokens.lookup(a.token), null, "expired");
    tokens.issue("dave", "pw4"); // the expired ones are swept to make room
  });
});

describe("the callers' cache", { timeout: 10_000 }, () => {
  const setup = (maxCallers: number) => {
    let now = 0;
    const checks: string[] = [];
    const evicted: string[] = [];
    const valid = new Map([
      ["alice", "a"],
      ["bob", "b"],
      ["carol", "c"],
    ]);
    const callers = new Callers({
      maxCallers,
      reverifyMs: 60_000,
      verify: async (user, password) => {
        checks.push(user);
        if (valid.get(user) !== password) throw new Problem("unauthorized", "refused");
      },
      onEvict: (i: Identity) => evicted.push(i.user),
      now: () => now,
    });
    return { callers, checks, evicted, valid, tick: (ms: number) => (now += ms) };
  };
  const none = async () => {};

  it("checks a credential once, keeps at most maxCallers (LRU) and retires the evicted", async () => {
    const { callers, checks, evicted } = setup(2);
    const a = await callers.resolve("alice", "a", none);
    assert.equal(await callers.resolve("alice", "a", none), a, "kept");
    const [b1, b2] = await Promise.all([callers.resolve("bob", "b", none), callers.resolve("bob", "b", none)]);
    assert.equal(b1, b2);
    assert.deepEqual(checks, ["alice", "bob"], "one check for a burst");
    await callers.resolve("alice", "a", none); // alice is now the most recent
    await callers.resolve("carol", "c", none);
    assert.deepEqual(evicted, ["bob"]);
    assert.equal(b1.retired, true);
    assert.equal(callers.size, 2);
    await assert.rejects(callers.resolve("alice", "wrong", none), (err: Problem) => err.type === "unauthorized");
    assert.equal(callers.size, 2, "a refused credential is not kept");
  });

  it("checks a kept credential again once it is old, and drops it if the node now refuses it", async () => {
    const { callers, checks, evicted, valid, tick } = setup(4);
    const a = await callers.resolve("alice", "a", none);
    tick(60_000);
    assert.equal(await callers.resolve("alice", "a", none), a);
    assert.deepEqual(checks, ["alice", "alice"]);
    valid.set("alice", "changed");
    tick(60_000);
    await assert.rejects(callers.resolve("alice", "a", none));
    assert.deepEqual(evicted, ["alice"]);
    assert.equal(a.retired, true);
  });

  it("runs the throttle's wait before a check, and only then", async () => {
    const { callers } = setup(4);
    let waits = 0;
    const wait = async () => {
      waits++;
    };
    await callers.resolve("alice", "a", wait);
    await callers.resolve("alice", "a", wait);
    await callers.resolve("alice", "bad", wait).catch(() => {});
    assert.equal(waits, 2);
  });
});
