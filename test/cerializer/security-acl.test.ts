// Permissions through the Cerializer: the node is the one authority on what
// a user may do, and the gateway sends each caller's requests as that user,
// so a user without write permission is refused a PUT (403 problem+json,
// NOPERM) and a non-admin user an admin /v1/rpc (transferLeader), while
// others on the same gateway are served. Users are made on the node with
// Redis's ACL SETUSER over its RESP port; a node without ACL users skips
// this file, saying so.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { type RunningNode, startNode } from "../support/node.js";
import { basic, call, problemOf, type SecureGateway, secretFile, startSecureGateway } from "./security-gateway.js";

const PASSWORD = "default-s3cret-password";
const P = (name: string) => `urn:piccolo:problem:${name}`;

let node: RunningNode;
let gw: SecureGateway;
/** Why this file is skipped (null: the node has ACL users). */
let missing: string | null = null;

before(async () => {
  node = await startNode(["--shards", "2", "--requirepass-file", secretFile(PASSWORD)]);
  const r = new Redis({ host: "127.0.0.1", port: node.respPort, password: PASSWORD, maxRetriesPerRequest: 1 });
  try {
    for (const rule of [
      ["reader", "on", ">reader-pw", "~*", "+@read"],
      ["writer", "on", ">writer-pw", "~*", "+@read", "+@write"],
      ["app", "on", ">app-pw", "~app:*", "+@read", "+@write"],
    ])
      await r.call("ACL", "SETUSER", ...rule);
  } catch (err) {
    const m = (err as Error).message;
    if (!/unknown command|unknown subcommand/i.test(m)) throw err;
    missing = `the node has no ACL users yet (ACL SETUSER: ${m}); issue #17's node side is not on this branch`;
  } finally {
    r.disconnect();
  }
  gw = await startSecureGateway([`127.0.0.1:${node.port}`]);
  const seed = await call("http", gw.port, "/v1/kv/acl-seed", {
    method: "PUT",
    body: "seeded",
    headers: { authorization: basic("default", PASSWORD) },
  });
  assert.equal(seed.status, 201);
});
after(async () => {
  await gw?.stop();
  await node?.stop();
});

const http = (path: string, user: string, password: string, o: Parameters<typeof call>[3] = {}) =>
  call("http", gw.port, path, { ...o, headers: { authorization: basic(user, password), ...o.headers } });

describe("Cerializer: the node's permissions, per caller", { timeout: 120_000 }, () => {
  it("a user without write permission reads, and is refused a write: 403 problem+json NOPERM", async (t) => {
    if (missing !== null) return t.skip(missing);
    const get = await http("/v1/kv/acl-seed", "reader", "reader-pw");
    assert.equal(get.status, 200);
    assert.equal(get.text, "seeded");
    const put = await http("/v1/kv/acl-seed", "reader", "reader-pw", { method: "PUT", body: "no" });
    assert.equal(put.status, 403, put.text);
    const p = problemOf(put);
    assert.equal(p.type, P("forbidden"));
    assert.equal(p.code, "NOPERM");
    assert.equal(p.applied, "no");
    // Meanwhile, on the same gateway, a user who may write does.
    const w = await http("/v1/kv/acl-seed", "writer", "writer-pw", { method: "PUT", body: "yes" });
    assert.equal(w.status, 200, w.text);
    assert.equal((await http("/v1/kv/acl-seed", "reader", "reader-pw")).text, "yes");
  });

  it("an admin operation through /v1/rpc (transferLeader) as a non-admin user: 403 problem+json", async (t) => {
    if (missing !== null) return t.skip(missing);
    const rpc = await http("/v1/rpc", "writer", "writer-pw", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ transferLeader: { partition: 0, member: 1 } }),
    });
    assert.equal(rpc.status, 403, rpc.text);
    const p = problemOf(rpc);
    assert.equal(p.type, P("forbidden"));
    assert.equal(p.code, "NOPERM");
  });

  it("key patterns: a user limited to app:* writes there and nowhere else", async (t) => {
    if (missing !== null) return t.skip(missing);
    assert.equal((await http("/v1/kv/app:one", "app", "app-pw", { method: "PUT", body: "1" })).status, 201);
    const other = await http("/v1/kv/acl-other", "app", "app-pw", { method: "PUT", body: "1" });
    assert.equal(other.status, 403, other.text);
    assert.equal(problemOf(other).type, P("forbidden"));
  });
});
