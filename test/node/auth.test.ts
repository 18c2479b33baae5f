// --requirepass on the native protocol: nothing but AUTH is served until the
// connection authenticates; the client's `password` option authenticates
// every (re)connection by itself.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { CLI, type RunningNode, startNode } from "../support/node.js";

describe("native AUTH with --requirepass", () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode(["--shards", "2", "--requirepass", "s3cret"]);
  });
  after(async () => {
    await node.stop();
  });

  it("refuses every operation before AUTH with NOAUTH", async () => {
    const c = new PiccoloClient({ port: node.port });
    for (const call of [() => c.get("k"), () => c.put("k", "v"), () => c.ping(), () => c.stats()]) {
      await assert.rejects(call(), (e: unknown) => e instanceof PiccoloError && e.code === ErrorCode.NOAUTH);
    }
    await c.close();
  });

  it("refuses a wrong password and accepts the right one", async () => {
    const c = new PiccoloClient({ port: node.port });
    await assert.rejects(c.auth("wrong"), (e: unknown) => e instanceof PiccoloError && e.code === ErrorCode.NOAUTH);
    await c.auth("s3cret");
    await c.put("k", "v");
    assert.equal((await c.get("k"))!.value.toString(), "v");
    await c.close();
  });

  it("the password option authenticates by itself", async () => {
    const c = await PiccoloClient.connect({ port: node.port, password: "s3cret" });
    assert.equal((await c.get("k"))!.value.toString(), "v");
    await c.close();
  });

  it("the CLI takes --password", () => {
    const server = `127.0.0.1:${node.port}`;
    const denied = spawnSync(process.execPath, [CLI, "get", "k", "--server", server], { encoding: "utf8" });
    assert.equal(denied.status, 5, denied.stderr);
    assert.match(denied.stderr, /NOAUTH/);
    const ok = spawnSync(process.execPath, [CLI, "get", "k", "--server", server, "--password", "s3cret"], {
      encoding: "utf8",
    });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, "v\n");
  });
});
