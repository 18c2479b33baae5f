// /v1/kv through a real Cerializer in front of a real node: values as bytes
// and as JSON envelopes, every condition header, TTLs, deletes, listings.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { P, problem, type RunningGateway, startGateway } from "../support/cerializer.js";
import { type RunningNode, startNode } from "../support/node.js";

let node: RunningNode;
let gw: RunningGateway;
before(async () => {
  node = await startNode(["--shards", "2"]);
  gw = await startGateway([node.port]);
});
after(async () => {
  await gw?.stop();
  await node?.stop();
});

const put = (key: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
  gw.fetch(`/v1/kv/${key}`, { method: "PUT", body, headers });

describe("Cerializer /v1/kv", () => {
  it("?consistency=stale and =linearizable read as usual on a single node", async () => {
    assert.equal((await put("kv-consistency", "c")).status, 201);
    for (const level of ["stale", "linearizable"]) {
      const g = await gw.fetch(`/v1/kv/kv-consistency?consistency=${level}`);
      assert.equal(g.status, 200, level);
      assert.equal(await g.text(), "c");
      const l = (await (await gw.fetch(`/v1/kv?prefix=kv-consistency&consistency=${level}`)).json()) as {
        keys: { key: string }[];
      };
      assert.deepEqual(
        l.keys.map((k) => k.key),
        ["kv-consistency"],
        level,
      );
    }
  });

  it("PUT creates (201) then replaces (200), with the version as a strong ETag", async () => {
    const a = await put("kv-create", "one");
    assert.equal(a.status, 201);
    const av = (await a.json()) as { version: number; created: boolean };
    assert.equal(av.created, true);
    assert.equal(a.headers.get("etag"), `"${av.version}"`);
    const b = await put("kv-create", "two");
    assert.equal(b.status, 200);
    const bv = (await b.json()) as { version: number; created: boolean };
    assert.equal(bv.created, false);
    assert.ok(bv.version > av.version);
    const g = await gw.fetch("/v1/kv/kv-create");
    assert.equal(g.status, 200);
    assert.equal(g.headers.get("content-type"), "application/octet-stream");
    assert.equal(g.headers.get("etag"), `"${bv.version}"`);
    assert.equal(await g.text(), "two");
    // The node itself agrees.
    const c = await node.client();
    assert.equal((await c.get("kv-create"))?.version, bv.version);
    await c.close();
  });

  it("keeps every byte of a binary value, raw and through the JSON envelope", async () => {
    const all = new Uint8Array(256).map((_, i) => i);
    assert.equal((await put("kv-bin", all, { "content-type": "application/octet-stream" })).status, 201);
    const raw = new Uint8Array(await (await gw.fetch("/v1/kv/kv-bin")).arrayBuffer());
    assert.deepEqual(raw, all);
    const env = (await (await gw.fetch("/v1/kv/kv-bin", { headers: { accept: "application/json" } })).json()) as {
      value: string;
      encoding: string;
      key: string;
    };
    assert.equal(env.encoding, "base64");
    assert.deepEqual(new Uint8Array(Buffer.from(env.value, "base64")), all);
    assert.equal(env.key, "kv-bin");
    // text/plain bodies are bytes too: invalid UTF-8 is not "repaired".
    const bad = new Uint8Array([0x68, 0xff, 0xfe, 0x69]);
    await put("kv-text", bad, { "content-type": "text/plain" });
    assert.deepEqual(new Uint8Array(await (await gw.fetch("/v1/kv/kv-text")).arrayBuffer()), bad);
    // An envelope with base64 stores the decoded bytes.
    const r = await put(
      "kv-env",
      JSON.stringify({ value: Buffer.from([0, 1, 2]).toString("base64"), encoding: "base64" }),
      {
        "content-type": "application/json",
      },
    );
    assert.equal(r.status, 201);
    assert.deepEqual(new Uint8Array(await (await gw.fetch("/v1/kv/kv-env")).arrayBuffer()), new Uint8Array([0, 1, 2]));
    // UTF-8 text comes back as text in the envelope.
    await put("kv-utf8", JSON.stringify({ value: "héllo ✓" }), { "content-type": "application/json" });
    const e = (await (await gw.fetch("/v1/kv/kv-utf8", { headers: { accept: "application/json" } })).json()) as {
      value: string;
      encoding: string;
      ttlMs: number | null;
    };
    assert.deepEqual([e.value, e.encoding, e.ttlMs], ["héllo ✓", "utf8", null]);
  });

  it("keys are bytes: %FF%00, a literal slash, %2F and UTF-8 all name what they encode", async () => {
    await put("%FF%00", "binary key");
    const c = await node.client();
    assert.equal((await c.get(new Uint8Array([0xff, 0x00])))?.value.toString(), "binary key");
    await put("users/42", "slash");
    assert.equal(await (await gw.fetch("/v1/kv/users%2F42")).text(), "slash", "a/b and a%2Fb are the same key");
    assert.equal((await c.get("users/42"))?.value.toString(), "slash");
    await put(encodeURIComponent("ключ"), "cyrillic");
    assert.equal((await c.get("ключ"))?.value.toString(), "cyrillic");
    await c.close();
  });

  it("HEAD answers like GET without a body", async () => {
    await put("kv-head", "12345");
    const h = await gw.fetch("/v1/kv/kv-head", { method: "HEAD" });
    assert.equal(h.status, 200);
    assert.ok(h.headers.get("etag"));
    assert.equal(await h.text(), "");
    assert.equal((await gw.fetch("/v1/kv/kv-head-absent", { method: "HEAD" })).status, 404);
  });

  it("GET of an absent key is 404 problem+json", async () => {
    const r = await gw.fetch("/v1/kv/kv-absent");
    assert.equal(r.status, 404);
    const p = await problem(r);
    assert.equal(p.type, P("not-found"));
    assert.equal(p.status, 404);
  });

  it("If-None-Match: * inserts only if absent", async () => {
    const a = await put("kv-insert", "first", { "if-none-match": "*" });
    assert.equal(a.status, 201);
    const b = await put("kv-insert", "second", { "if-none-match": "*" });
    assert.equal(b.status, 412);
    const p = await problem(b);
    assert.equal(p.type, P("precondition-failed"));
    assert.equal(p.code, "ALREADY_EXISTS");
    assert.equal(await (await gw.fetch("/v1/kv/kv-insert")).text(), "first", "the failed insert changed nothing");
  });

  it("If-Match: * updates only if present", async () => {
    const a = await put("kv-update", "x", { "if-match": "*" });
    assert.equal(a.status, 412);
    assert.equal((await problem(a)).code, "NOT_FOUND");
    assert.equal((await gw.fetch("/v1/kv/kv-update")).status, 404, "nothing was created");
    await put("kv-update", "x");
    const b = await put("kv-update", "y", { "if-match": "*" });
    assert.equal(b.status, 200);
    assert.equal(await (await gw.fetch("/v1/kv/kv-update")).text(), "y");
  });

  it('If-Match: "<version>" is a compare-and-swap', async () => {
    const v1 = (await (await put("kv-cas", "a")).json()) as { version: number };
    const ok = await put("kv-cas", "b", { "if-match": `"${v1.version}"` });
    assert.equal(ok.status, 200);
    const v2 = (await ok.json()) as { version: number };
    const stale = await put("kv-cas", "c", { "if-match": `"${v1.version}"` });
    assert.equal(stale.status, 412);
    const p = await problem(stale);
    assert.equal(p.code, "VERSION_MISMATCH");
    assert.equal(p.currentVersion, v2.version);
    assert.equal(stale.headers.get("etag"), `"${v2.version}"`, "the 412 carries the current version");
    assert.equal(await (await gw.fetch("/v1/kv/kv-cas")).text(), "b");
    // A CAS on an absent key fails too.
    assert.equal((await put("kv-cas-absent", "z", { "if-match": '"1"' })).status, 412);
    // A weak tag never matches If-Match (strong comparison).
    assert.equal((await put("kv-cas", "w", { "if-match": `W/"${v2.version}"` })).status, 412);
  });

  it("GET with If-None-Match of the current version is 304", async () => {
    const v = (await (await put("kv-304", "a")).json()) as { version: number };
    const r = await gw.fetch("/v1/kv/kv-304", { headers: { "if-none-match": `"${v.version}"` } });
    assert.equal(r.status, 304);
    assert.equal(r.headers.get("etag"), `"${v.version}"`);
    const r2 = await gw.fetch("/v1/kv/kv-304", { headers: { "if-none-match": `"${v.version + 1000}"` } });
    assert.equal(r2.status, 200);
    assert.equal(await r2.text(), "a");
  });

  it("malformed or unsupported conditions are 400, not guesses", async () => {
    for (const headers of <Record<string, string>[]>[
      { "if-match": '"1", "2"' },
      { "if-match": "1" },
      { "if-match": '"abc"' },
      { "if-match": "*", "if-none-match": "*" },
      { "if-none-match": '"5"' },
    ]) {
      const r = await put("kv-cond", "v", headers);
      assert.equal(r.status, 400, JSON.stringify(headers));
      assert.equal((await problem(r)).type, P("invalid-condition"));
    }
  });

  it("?ttl sets a time to live; the key is gone after it", async () => {
    const r = await put("kv-ttl?ttl=300", "soon gone");
    assert.equal(r.status, 201);
    const g = await gw.fetch("/v1/kv/kv-ttl");
    const left = Number(g.headers.get("x-piccolo-ttl-ms"));
    assert.ok(left > 0 && left <= 300, `ttl left ${left}`);
    const env = (await (await gw.fetch("/v1/kv/kv-ttl", { headers: { accept: "application/json" } })).json()) as {
      ttlMs: number;
    };
    assert.ok(env.ttlMs > 0 && env.ttlMs <= 300);
    // An envelope may carry the TTL instead.
    await put("kv-ttl2", JSON.stringify({ value: "v", ttlMs: 300 }), { "content-type": "application/json" });
    await sleep(450);
    assert.equal((await gw.fetch("/v1/kv/kv-ttl")).status, 404);
    assert.equal((await gw.fetch("/v1/kv/kv-ttl2")).status, 404);
    for (const bad of ["0", "abc", "-5", "1.5"]) {
      const b = await put(`kv-ttl3?ttl=${bad}`, "v");
      assert.equal(b.status, 400, `ttl=${bad}`);
    }
  });

  it("DELETE: 204, then 404; If-Match guards it by version", async () => {
    await put("kv-del", "v");
    assert.equal((await gw.fetch("/v1/kv/kv-del", { method: "DELETE" })).status, 204);
    const again = await gw.fetch("/v1/kv/kv-del", { method: "DELETE" });
    assert.equal(again.status, 404);
    assert.equal((await problem(again)).type, P("not-found"));
    const v = (await (await put("kv-del", "v")).json()) as { version: number };
    const wrong = await gw.fetch("/v1/kv/kv-del", { method: "DELETE", headers: { "if-match": `"${v.version + 1}"` } });
    assert.equal(wrong.status, 412);
    assert.equal((await gw.fetch("/v1/kv/kv-del")).status, 200, "still there");
    const right = await gw.fetch("/v1/kv/kv-del", { method: "DELETE", headers: { "if-match": `"${v.version}"` } });
    assert.equal(right.status, 204);
    const absent = await gw.fetch("/v1/kv/kv-del", { method: "DELETE", headers: { "if-match": `"${v.version}"` } });
    assert.equal(absent.status, 404);
  });

  it("GET /v1/kv lists keys by prefix, page by page, each key exactly once", async () => {
    const want = new Set<string>();
    for (let i = 0; i < 37; i++) {
      const k = `list/${String(i).padStart(2, "0")}`;
      want.add(k);
      await put(encodeURIComponent(k), "v");
    }
    await put("other-prefix", "v");
    const seen: string[] = [];
    let cursor: string | null = "";
    let pages = 0;
    do {
      const q: string = `/v1/kv?prefix=list%2F&limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const r = await gw.fetch(q);
      assert.equal(r.status, 200);
      const page = (await r.json()) as { keys: { key: string; encoding: string }[]; cursor: string | null };
      assert.ok(page.keys.length <= 10, `page of ${page.keys.length}`);
      for (const k of page.keys) seen.push(k.key);
      cursor = page.cursor;
      pages++;
      assert.ok(pages < 100, "the listing ends");
    } while (cursor !== null);
    assert.deepEqual(seen.sort(), [...want].sort());
    // Binary keys come back base64-encoded, saying so.
    const all = (await (await gw.fetch("/v1/kv?prefix=%FF&limit=1000")).json()) as {
      keys: { key: string; encoding: string }[];
    };
    assert.deepEqual(all.keys, [{ key: Buffer.from([0xff, 0]).toString("base64"), encoding: "base64" }]);
    for (const q of ["limit=0", "limit=100000", "limit=x", "cursor=bogus", "cursor=9.0"]) {
      const r = await gw.fetch(`/v1/kv?${q}`);
      assert.equal(r.status, 400, q);
      await problem(r);
    }
  });
});
