// The Cerializer over HTTPS (--tls-cert-file ...), against a real node: the
// port speaks TLS only, a client that trusts the gateway's CA is served
// (node:https and the real curl), one that trusts another CA is refused,
// client certificates with --tls-auth-clients yes, and a certificate
// renewed on disk is taken after SIGHUP without a restart.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { type Certs, makeCerts, tlsFlags } from "../support/certs.js";
import { type RunningNode, startNode } from "../support/node.js";
import { eventually } from "../support/eventually.js";
import { call, type SecureGateway, startSecureGateway } from "./security-gateway.js";

let node: RunningNode;
let certs: Certs;
let other: Certs;
let gw: SecureGateway;
before(async () => {
  certs = makeCerts("gateway", "client");
  other = makeCerts("gateway");
  node = await startNode(["--shards", "1"]);
  gw = await startSecureGateway([`127.0.0.1:${node.port}`], tlsFlags(certs, "gateway"));
});
after(async () => {
  await gw?.stop();
  await node?.stop();
});

const curl = spawnSync("curl", ["--version"], { encoding: "utf8" }).status === 0;

describe("Cerializer over HTTPS", { timeout: 120_000 }, () => {
  it("says https:// when it starts", () => {
    assert.equal(gw.scheme, "https");
  });

  it("serves a client that trusts its CA (node:https)", async () => {
    const put = await call("https", gw.port, "/v1/kv/tls-a", { method: "PUT", body: "over tls", ca: certs.ca });
    assert.equal(put.status, 201, put.text);
    const get = await call("https", gw.port, "/v1/kv/tls-a", { ca: certs.ca });
    assert.equal(get.status, 200);
    assert.equal(get.text, "over tls");
  });

  it("takes no plaintext: an HTTP request gets no HTTP answer", async () => {
    await assert.rejects(call("http", gw.port, "/healthz"), (err: Error & { code?: string }) => {
      assert.ok(
        ["ECONNRESET", "HPE_INVALID_CONSTANT", "HPE_INVALID_VERSION"].includes(err.code ?? "") ||
          /socket hang up|Parse Error/.test(err.message),
        `${err.code}: ${err.message}`,
      );
      return true;
    });
  });

  it("refuses a client that trusts another CA (the handshake fails)", async () => {
    await assert.rejects(call("https", gw.port, "/healthz", { ca: other.ca }), (err: Error & { code?: string }) => {
      assert.match(err.code ?? err.message, /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
      return true;
    });
  });

  it("serves the real curl with --cacert, and curl without it refuses the certificate", (t) => {
    if (!curl) return t.skip("curl is not installed on this machine");
    const url = `https://127.0.0.1:${gw.port}/v1/kv/tls-curl`;
    const put = execFileSync("curl", ["-sS", "--cacert", certs.ca, "-X", "PUT", "-d", "by curl", url], {
      encoding: "utf8",
    });
    assert.match(put, /"created":true/);
    assert.equal(execFileSync("curl", ["-sS", "--cacert", certs.ca, url], { encoding: "utf8" }), "by curl");
    const untrusted = spawnSync("curl", ["-sS", url], { encoding: "utf8" });
    // 60: the peer certificate cannot be authenticated with known CA certificates.
    assert.equal(untrusted.status, 60, untrusted.stderr);
  });

  it("--tls-auth-clients yes: a client without a certificate from the CA is refused, one with it served", async () => {
    const strict = await startSecureGateway(
      [`127.0.0.1:${node.port}`],
      tlsFlags(certs, "gateway", ["--tls-auth-clients", "yes"]),
    );
    try {
      await assert.rejects(call("https", strict.port, "/v1/kv/tls-a", { ca: certs.ca }));
      const foreign = makeCerts("client");
      await assert.rejects(call("https", strict.port, "/v1/kv/tls-a", { ca: certs.ca, cert: foreign.cert("client") }));
      const ok = await call("https", strict.port, "/v1/kv/tls-a", { ca: certs.ca, cert: certs.cert("client") });
      assert.equal(ok.status, 200);
      assert.equal(ok.text, "over tls");
    } finally {
      await strict.stop();
    }
  });

  it("takes a renewed certificate on SIGHUP, without a restart", async () => {
    // Files the gateway reads, first holding a certificate from `certs`' CA.
    const live = makeCerts("gateway");
    const files = live.cert("gateway");
    copyFileSync(certs.cert("gateway").cert, files.cert);
    copyFileSync(certs.cert("gateway").key, files.key);
    const g = await startSecureGateway(
      [`127.0.0.1:${node.port}`],
      ["--tls-cert-file", files.cert, "--tls-key-file", files.key],
    );
    try {
      assert.equal((await call("https", g.port, "/healthz", { ca: certs.ca })).status, 200);
      await assert.rejects(call("https", g.port, "/healthz", { ca: other.ca }));
      // Renewed: a certificate from the other CA replaces it on disk.
      copyFileSync(other.cert("gateway").cert, files.cert);
      copyFileSync(other.cert("gateway").key, files.key);
      g.process.kill("SIGHUP");
      await eventually("the renewed certificate is served", async () => {
        assert.equal((await call("https", g.port, "/healthz", { ca: other.ca })).status, 200);
      });
      await assert.rejects(call("https", g.port, "/healthz", { ca: certs.ca }));
      assert.equal(g.process.exitCode, null, "the gateway is still running");
    } finally {
      await g.stop();
    }
  });
});
