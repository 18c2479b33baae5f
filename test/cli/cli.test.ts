// The `piccolo` command as a user runs it: against a real node, checking
// output and exit codes (which scripts depend on).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { redisClient } from "../resp/support.js";
import { CLI, type RunningNode, startNode } from "../support/node.js";

let node: RunningNode;

function run(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    [CLI, ...args, ...(args[0] === "--help" ? [] : ["--server", `127.0.0.1:${node.port}`])],
    {
      encoding: "utf8",
      timeout: 20_000,
    },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("piccolo CLI", () => {
  before(async () => {
    node = await startNode(["--shards", "2"]);
  });
  after(async () => {
    await node.stop();
  });

  it("put then get prints the value", () => {
    const put = run("put", "k", "v");
    assert.equal(put.code, 0, put.err);
    assert.match(put.out, /^OK version=\d+\n$/);
    const get = run("get", "k");
    assert.equal(get.code, 0, get.err);
    assert.equal(get.out, "v\n");
    // --stale asks for a stale read; a single node answers it as any read.
    assert.equal(run("get", "k", "--stale").out, "v\n");
  });

  it("exit codes: 1 not found, 2 usage, 3 unreachable, 4 condition failed", () => {
    assert.equal(run("get", "absent").code, 1);
    assert.equal(run("update", "absent", "x").code, 1);
    assert.equal(run("put", "only-key").code, 2);
    assert.equal(run("frobnicate").code, 2);
    assert.equal(run("put", "k", "v", "--ttl", "soon").code, 2);
    assert.equal(run("insert", "k", "again").code, 4);
    assert.equal(run("cas", "k", "999999", "x").code, 4);
    const r = spawnSync(process.execPath, [CLI, "get", "k", "--server", "127.0.0.1:1", "--timeout", "2000"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /CONNECTION_CLOSED/);
  });

  it("cas, ttl, del, exists, mget, keys, stats", () => {
    const v = /version=(\d+)/.exec(run("put", "c", "1").out)![1]!;
    assert.equal(run("cas", "c", v, "2").code, 0);
    assert.equal(run("get", "c").out, "2\n");
    assert.equal(run("put", "t", "x", "--ttl", "60000").code, 0);
    assert.ok(Number(run("ttl", "t").out) > 0);
    assert.equal(run("ttl", "c").out, "-1\n");
    assert.equal(run("exists", "c").out, "1\n");
    assert.equal(run("mget", "c", "absent").out, "2\n(nil)\n");
    assert.match(run("keys").out, /\bc\n/);
    assert.equal(run("del", "c").code, 0);
    assert.equal(run("del", "c").code, 1);
    const stats = run("stats", "--json");
    assert.equal(stats.code, 0);
    assert.equal(JSON.parse(stats.out).shards.length, 2);
  });

  it("--help on every command", () => {
    for (const cmd of [
      "server",
      "cerializer",
      "get",
      "put",
      "insert",
      "update",
      "cas",
      "del",
      "ttl",
      "stats",
      "keys",
    ]) {
      const r = spawnSync(process.execPath, [CLI, cmd, "--help"], { encoding: "utf8" });
      assert.equal(r.status, 0, `${cmd} --help`);
      assert.match(r.stdout, /usage: piccolo/, cmd);
    }
    const top = spawnSync(process.execPath, [CLI, "--help"], { encoding: "utf8" });
    assert.equal(top.status, 0);
    assert.match(top.stdout, /exit codes/);
    assert.match(top.stdout, /piccolo cerializer/);
  });

  it("whoami says who the connection is and what it may do", async () => {
    const me = run("whoami");
    assert.equal(me.code, 0, me.err);
    assert.equal(me.out, "default: read, write, admin; every key\n");
    // A user limited to reads of app:* keys, made over the Redis port.
    const r = redisClient({ port: node.respPort });
    try {
      assert.equal(await r.call("ACL", "SETUSER", "reader", "on", ">reader-pw", "~app:*", "+@read"), "OK");
    } finally {
      r.disconnect();
    }
    const dir = mkdtempSync(join(tmpdir(), "piccolo-cli-whoami-"));
    writeFileSync(join(dir, "pw"), "reader-pw\n");
    const reader = run("whoami", "--user", "reader", "--password-file", join(dir, "pw"));
    rmSync(dir, { recursive: true, force: true });
    assert.equal(reader.code, 0, reader.err);
    assert.equal(reader.out, "reader: read; keys limited by pattern\n");
    assert.equal(run("whoami", "extra").code, 2);
  });

  it("cluster status on a single node: refused, saying why (exit 5)", () => {
    const r = run("cluster", "status");
    assert.equal(r.code, 5);
    assert.match(r.err, /not a cluster member/);
  });

  it("cerializer: bad flags are usage errors (exit 2) with a clear message", () => {
    for (const [args, msg] of [
      [["--nodes", "nonsense"], /--nodes: "nonsense" is not host:port/],
      [["--nodes", ""], /at least one node/],
      [["--http-port", "99999"], /--http-port must be an integer/],
      [["--max-batch-ops", "0"], /--max-batch-ops must be an integer/],
      [["--bogus"], /Unknown option/],
    ] as [string[], RegExp][]) {
      const r = spawnSync(process.execPath, [CLI, "cerializer", ...args], { encoding: "utf8", timeout: 10_000 });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, msg);
    }
  });
});
