// TLS on the node's client ports, with real processes and real clients: the
// native client and the CLI, ioredis and redis-cli (when installed), with
// the certificates scripts/make-certs.sh makes (as docs/security.md shows).
// With TLS on, a port takes no plaintext; a client that does not trust the
// node's CA is refused; client certificates when asked for; SIGHUP reloads.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { type Certs, makeCerts, tlsFlags } from "../support/certs.js";
import { eventually } from "../support/eventually.js";
import { CLI, type RunningNode, startNode } from "../support/node.js";
import { redisClient } from "../resp/support.js";

const hasRedisCli = spawnSync("redis-cli", ["--version"]).status === 0;

/** What a plaintext client gets from a TLS port: no answer, and the connection closed. */
function plaintextAnswer(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let got = "";
    s.on("data", (d) => {
      got += d.toString("latin1");
    });
    s.on("error", () => {});
    s.on("close", () => resolve(got));
    s.write(request);
    setTimeout(() => s.destroy(), 5_000).unref();
  });
}

function refusedOnConnect(e: unknown): boolean {
  return e instanceof PiccoloError && e.code === ErrorCode.CONNECTION_CLOSED;
}

describe("TLS on the client ports", { timeout: 120_000 }, () => {
  let certs: Certs;
  let other: Certs;
  let node: RunningNode;
  before(async () => {
    certs = makeCerts("node", "client");
    other = makeCerts("node");
    node = await startNode(["--shards", "2", ...tlsFlags(certs, "node")]);
  });
  after(async () => {
    await node?.stop();
  });

  it("the start line says TLS", () => {
    assert.ok(node.port > 0);
  });

  it("the native client with the CA: writes and reads", async () => {
    const c = await node.client({ tls: { ca: readFileSync(certs.ca) } });
    await c.put("tls:k", "v");
    assert.equal((await c.get("tls:k"))!.value.toString(), "v");
    await c.close();
  });

  it("a plaintext native client gets nothing and is cut off", async () => {
    const c = new PiccoloClient({ port: node.port, timeoutMs: 3_000 });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof PiccoloError);
    await c.close();
  });

  it("a client that trusts another CA is refused in the handshake", async () => {
    const c = new PiccoloClient({ port: node.port, tls: { ca: readFileSync(other.ca) } });
    await assert.rejects(c.ping(), refusedOnConnect);
    await c.close();
  });

  it("the Redis port: plaintext gets no answer, ioredis over TLS works", async () => {
    assert.equal(await plaintextAnswer(node.respPort, "PING\r\n"), "");
    const r = redisClient({ port: node.respPort, tls: { ca: readFileSync(certs.ca) } });
    assert.equal(await r.set("tls:r", "1"), "OK");
    assert.equal(await r.get("tls:r"), "1");
    r.disconnect();
  });

  it("redis-cli --tls --cacert", { skip: hasRedisCli ? false : "redis-cli is not installed" }, () => {
    const out = spawnSync(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(node.respPort), "--tls", "--cacert", certs.ca, "SET", "tls:cli", "x"],
      { encoding: "utf8" },
    );
    assert.equal(out.stdout.trim(), "OK", out.stderr);
    const get = spawnSync(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(node.respPort), "--tls", "--cacert", certs.ca, "GET", "tls:cli"],
      { encoding: "utf8" },
    );
    assert.equal(get.stdout.trim(), "x");
  });

  it("the CLI: --cacert speaks TLS; without it the node is unreachable", () => {
    const server = `127.0.0.1:${node.port}`;
    const ok = spawnSync(process.execPath, [CLI, "get", "tls:k", "--server", server, "--cacert", certs.ca], {
      encoding: "utf8",
    });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, "v\n");
    const plain = spawnSync(process.execPath, [CLI, "get", "tls:k", "--server", server, "--timeout", "2000"], {
      encoding: "utf8",
    });
    assert.equal(plain.status, 3, plain.stderr);
  });
});

describe("TLS with client certificates (--tls-auth-clients yes)", { timeout: 120_000 }, () => {
  let certs: Certs;
  let other: Certs;
  let node: RunningNode;
  before(async () => {
    certs = makeCerts("node", "client");
    other = makeCerts("client");
    node = await startNode(["--shards", "0", ...tlsFlags(certs, "node", ["--tls-auth-clients", "yes"])]);
  });
  after(async () => {
    await node?.stop();
  });

  it("a client without a certificate is refused", async () => {
    const c = new PiccoloClient({ port: node.port, tls: { ca: readFileSync(certs.ca) } });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof PiccoloError);
    await c.close();
  });

  it("a certificate from another CA is refused", async () => {
    const wrong = other.cert("client");
    const c = new PiccoloClient({
      port: node.port,
      tls: { ca: readFileSync(certs.ca), cert: readFileSync(wrong.cert), key: readFileSync(wrong.key) },
    });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof PiccoloError);
    await c.close();
  });

  it("a client with the CA's certificate is served, on both ports", async () => {
    const mine = certs.cert("client");
    const tls = { ca: readFileSync(certs.ca), cert: readFileSync(mine.cert), key: readFileSync(mine.key) };
    const c = await node.client({ tls });
    await c.put("k", "v");
    await c.close();
    const r = redisClient({ port: node.respPort, tls });
    assert.equal(await r.get("k"), "v");
    r.disconnect();
  });
});

describe("TLS certificate reload on SIGHUP", { timeout: 120_000 }, () => {
  it("new connections get the new certificate; the node keeps serving", async () => {
    const first = makeCerts("node");
    const second = makeCerts("node");
    const dir = mkdtempSync(join(tmpdir(), "piccolo-reload-"));
    const cert = join(dir, "node.crt");
    const key = join(dir, "node.key");
    copyFileSync(first.cert("node").cert, cert);
    copyFileSync(first.cert("node").key, key);
    const node = await startNode(["--shards", "0", "--tls-cert-file", cert, "--tls-key-file", key]);
    try {
      const before = await node.client({ tls: { ca: readFileSync(first.ca) } });
      await before.put("k", "1");
      copyFileSync(second.cert("node").cert, cert);
      copyFileSync(second.cert("node").key, key);
      node.process.kill("SIGHUP");
      await eventually("a connection trusting the new CA", async () => {
        const c = new PiccoloClient({ port: node.port, tls: { ca: readFileSync(second.ca) } });
        try {
          assert.equal((await c.get("k"))!.value.toString(), "1");
        } finally {
          await c.close();
        }
      });
      // A connection made before the reload keeps working.
      assert.equal((await before.get("k"))!.value.toString(), "1");
      await before.close();
      const old = new PiccoloClient({ port: node.port, tls: { ca: readFileSync(first.ca) } });
      await assert.rejects(old.ping(), refusedOnConnect);
      await old.close();
    } finally {
      await node.stop();
    }
  });
});
