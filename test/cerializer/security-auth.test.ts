// Who calls the Cerializer, against a real node whose default user needs a
// password (--requirepass-file): each caller's requests run as that caller
// on the node, never as the gateway (its own --password-file is for its
// probes and polling only). Basic credentials, bearer tokens (issue, use,
// revoke, expire), 401 problem+json with WWW-Authenticate, failed logins
// slowed per address and logged without the password.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type RunningNode, startNode } from "../support/node.js";
import { basic, call, problemOf, type SecureGateway, secretFile, startSecureGateway } from "./security-gateway.js";

const PASSWORD = "gw-s3cret-password";
const P = (name: string) => `urn:piccolo:problem:${name}`;

let node: RunningNode;
let nodes: string[];
let gw: SecureGateway;
before(async () => {
  node = await startNode(["--shards", "2", "--requirepass-file", secretFile(PASSWORD)]);
  nodes = [`127.0.0.1:${node.port}`];
  gw = await startSecureGateway(nodes);
});
after(async () => {
  await gw?.stop();
  await node?.stop();
});

const http = (g: SecureGateway, path: string, o: Parameters<typeof call>[3] = {}) => call("http", g.port, path, o);
const as = (user: string, password: string) => ({ authorization: basic(user, password) });

describe("Cerializer: who calls", { timeout: 120_000 }, () => {
  it("Basic credentials the node accepts: the caller's requests are served", async () => {
    const put = await http(gw, "/v1/kv/auth-a", { method: "PUT", body: "one", headers: as("default", PASSWORD) });
    assert.equal(put.status, 201, put.text);
    const get = await http(gw, "/v1/kv/auth-a", { headers: as("default", PASSWORD) });
    assert.equal(get.status, 200);
    assert.equal(get.text, "one");
    // An empty user name is the default user, as in Redis.
    assert.equal((await http(gw, "/v1/kv/auth-a", { headers: as("", PASSWORD) })).status, 200);
  });

  it("no credentials: the node's default user, which needs a password here: 401 with WWW-Authenticate", async () => {
    const a = await http(gw, "/v1/kv/auth-a");
    assert.equal(a.status, 401);
    assert.equal(a.headers["www-authenticate"], 'Basic realm="piccolo"');
    const p = problemOf(a);
    assert.equal(p.type, P("unauthorized"));
    assert.equal(p.code, "NOAUTH");
    // The load balancer's routes need none.
    assert.equal((await http(gw, "/healthz")).status, 200);
    assert.equal((await http(gw, "/readyz")).status, 200, "the probes count a NOAUTH answer as a node alive");
  });

  it("a wrong password or a malformed header: 401 problem+json with WWW-Authenticate", async () => {
    for (const headers of [
      as("default", "wrong"),
      as("nobody", PASSWORD),
      { authorization: "Basic !!!" },
      { authorization: `Basic ${Buffer.from("no-colon").toString("base64")}` },
      { authorization: "Digest x" },
    ]) {
      const a = await http(gw, "/v1/kv/auth-a", { headers });
      assert.equal(a.status, 401, headers.authorization);
      assert.equal(a.headers["www-authenticate"], 'Basic realm="piccolo"');
      assert.equal(problemOf(a).type, P("unauthorized"));
    }
    assert.doesNotMatch(gw.stderr(), /wrong/, "no password in the log");
  });

  it("bearer tokens: issued for Basic credentials, used, revoked", async () => {
    const issued = await http(gw, "/v1/auth/token", { method: "POST", headers: as("default", PASSWORD) });
    assert.equal(issued.status, 200, issued.text);
    assert.equal(issued.headers["cache-control"], "no-store");
    const { token, expiresInSeconds } = issued.json() as { token: string; expiresInSeconds: number };
    assert.match(token, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
    assert.equal(expiresInSeconds, 3600);
    const bearer = { authorization: `Bearer ${token}` };
    const put = await http(gw, "/v1/kv/auth-token", { method: "PUT", body: "t", headers: bearer });
    assert.equal(put.status, 201, put.text);
    assert.equal((await http(gw, "/v1/kv/auth-token", { headers: bearer })).text, "t");

    assert.equal((await http(gw, "/v1/auth/token", { method: "DELETE", headers: bearer })).status, 204);
    const after = await http(gw, "/v1/kv/auth-token", { headers: bearer });
    assert.equal(after.status, 401);
    assert.match(String(after.headers["www-authenticate"]), /^Bearer realm="piccolo", error="invalid_token"/);
    assert.equal(problemOf(after).type, P("unauthorized"));

    // A token is had for credentials only; revoking needs the token itself.
    assert.equal((await http(gw, "/v1/auth/token", { method: "POST" })).status, 400);
    assert.equal((await http(gw, "/v1/auth/token", { method: "POST", headers: as("default", "nope") })).status, 401);
    const del = await http(gw, "/v1/auth/token", { method: "DELETE", headers: as("default", PASSWORD) });
    assert.equal(del.status, 400);
    assert.equal(problemOf(del).type, P("invalid-request"));
  });

  it("a token expires after --token-ttl-seconds", async () => {
    const g = await startSecureGateway(nodes, ["--token-ttl-seconds", "1"]);
    try {
      const issued = await http(g, "/v1/auth/token", { method: "POST", headers: as("default", PASSWORD) });
      const { token, expiresInSeconds } = issued.json() as { token: string; expiresInSeconds: number };
      assert.equal(expiresInSeconds, 1);
      const bearer = { authorization: `Bearer ${token}` };
      assert.equal((await http(g, "/v1/kv/auth-ttl", { method: "PUT", body: "x", headers: bearer })).status, 201);
      await sleep(1_300);
      assert.equal((await http(g, "/v1/kv/auth-ttl", { headers: bearer })).status, 401);
    } finally {
      await g.stop();
    }
  });

  it("the gateway's own password is never lent to callers: without credentials a caller is still refused", async () => {
    const g = await startSecureGateway(nodes, ["--password-file", secretFile(PASSWORD)]);
    try {
      assert.equal((await http(g, "/readyz")).status, 200);
      const anon = await http(g, "/v1/kv/auth-a");
      assert.equal(anon.status, 401, "served as the gateway's own identity");
      // /v1/stats answers each node's part on its own: the node refused this caller its stats.
      const stats = (await http(g, "/v1/stats")).json() as { nodes: { stats: unknown; error?: string }[] };
      assert.equal(stats.nodes[0]!.stats, null);
      assert.match(stats.nodes[0]!.error ?? "", /auth/i);
      const rpc = await http(g, "/v1/rpc", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ get: { key: "auth-a" } }),
      });
      assert.equal(rpc.status, 401, "/v1/rpc answers a refusal of the caller as HTTP does");
      assert.equal(problemOf(rpc).code, "NOAUTH");
      const put = await http(g, "/v1/kv/auth-own", { method: "PUT", body: "x", headers: as("default", PASSWORD) });
      assert.equal(put.status, 201);
      assert.doesNotMatch(g.stderr(), /shows the password/, "a file is not a flag");
    } finally {
      await g.stop();
    }
  });

  it("--password as a flag still works for the gateway's own traffic, and warns that ps shows it", async () => {
    const g = await startSecureGateway(nodes, ["--password", PASSWORD]);
    try {
      assert.equal((await http(g, "/readyz")).status, 200);
      assert.match(g.stderr(), /--password shows the password to every user of this machine/);
      assert.doesNotMatch(g.stderr(), new RegExp(PASSWORD), "the warning does not repeat it");
    } finally {
      await g.stop();
    }
  });

  it("failed logins from one address are slowed down, doubling (the 5th waits >= 16x the first delay), and logged", async () => {
    const g = await startSecureGateway(nodes, ["--auth-failure-delay-ms", "100"]);
    try {
      const took: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const a = await http(g, "/v1/kv/auth-a", { headers: as("default", `guess-${i}`) });
        took.push(performance.now() - t0);
        assert.equal(a.status, 401);
      }
      // 100, 200, 400, 800, 1600 ms: only lower bounds are asserted.
      assert.ok(took[4]! >= 1_550, `the 5th failure took ${took[4]} ms: ${took.map(Math.round).join(", ")}`);
      assert.match(g.stderr(), /authentication failed/);
      assert.doesNotMatch(g.stderr(), /guess-/, "no password in the log");
      // Good credentials are still served from the same address (checked after the wait).
      const ok = await http(g, "/v1/kv/auth-slow", { method: "PUT", body: "x", headers: as("default", PASSWORD) });
      assert.equal(ok.status, 201);
    } finally {
      await g.stop();
    }
  });
});
