// Users and permissions on a real node, through real clients: ACL SETUSER
// and friends on the Redis port, AUTH as a user on both ports, NOPERM with
// Redis's words for a command or a key the user may not touch, users kept
// across a restart (hashed, in a file only the node's user reads), failed
// AUTHs slowed, and the default user's password from a file.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { isLoopback, protectedRefuses } from "../../src/io/auth.js";
import { AUTH_FIRST_DELAY_MS } from "../../src/security/auth-throttle.js";
import { CLI, type RunningNode, startNode } from "../support/node.js";
import { redisClient } from "../resp/support.js";

const hasRedisCli = spawnSync("redis-cli", ["--version"]).status === 0;

/**
 * A bare RESP connection (client libraries send HELLO or CLIENT commands of
 * their own first): `send` writes one command and resolves with the bytes of
 * the answer that follow, once they end a line and nothing more comes for 50 ms.
 */
async function bare(port: number): Promise<{ send(...args: string[]): Promise<string>; close(): void }> {
  const s = connect({ host: "127.0.0.1", port });
  s.on("error", () => {});
  await new Promise((r) => s.once("connect", r));
  let got = "";
  s.on("data", (d: Buffer) => {
    got += d.toString("latin1");
  });
  return {
    async send(...args) {
      got = "";
      s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`);
      let last = "";
      for (;;) {
        await new Promise((r) => setTimeout(r, 50));
        if (got !== "" && got === last && got.endsWith("\r\n")) return got;
        last = got;
      }
    },
    close: () => s.destroy(),
  };
}

function code(c: number) {
  return (e: unknown) => e instanceof PiccoloError && e.code === c;
}

describe("ACL users on a single node", { timeout: 180_000 }, () => {
  let node: RunningNode;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "piccolo-acl-"));
    const pass = join(dir, "admin.pass");
    writeFileSync(pass, "adm1n-secret\n", { mode: 0o600 });
    node = await startNode(["--shards", "2", "--data-dir", join(dir, "data"), "--requirepass-file", pass]);
  });
  after(async () => {
    await node?.stop();
  });

  it("the default user's password comes from the file (and nothing runs before AUTH)", async () => {
    const anon = redisClient({ port: node.respPort });
    await assert.rejects(anon.get("k"), /NOAUTH/);
    anon.disconnect();
    const admin = redisClient({ port: node.respPort, password: "adm1n-secret" });
    assert.equal(await admin.call("ACL", "WHOAMI"), "default");
    admin.disconnect();
    assert.doesNotMatch(node.stderr(), /shows the password/);
  });

  it("ACL SETUSER makes a reader limited to app:*; NOPERM in Redis's words", async () => {
    const admin = redisClient({ port: node.respPort, password: "adm1n-secret" });
    assert.equal(await admin.call("ACL", "SETUSER", "alice", "on", ">alice-pw", "~app:*", "+@read"), "OK");
    assert.equal(await admin.set("app:1", "one"), "OK");
    assert.equal(await admin.set("other", "x"), "OK");
    const list = (await admin.call("ACL", "LIST")) as string[];
    const line = list.find((l) => l.startsWith("user alice "))!;
    assert.match(line, /^user alice on #scrypt\$\S+ ~app:\* &\* -@all \+@read$/);
    assert.doesNotMatch(line, /alice-pw/);
    admin.disconnect();

    const alice = redisClient({ port: node.respPort, username: "alice", password: "alice-pw" });
    assert.equal(await alice.call("ACL", "WHOAMI"), "alice");
    assert.equal(await alice.get("app:1"), "one");
    await assert.rejects(
      alice.set("app:1", "two"),
      /^ReplyError: NOPERM User alice has no permissions to run the 'set' command$/,
    );
    await assert.rejects(alice.get("other"), /^ReplyError: NOPERM No permissions to access a key$/);
    await assert.rejects(alice.mget("app:1", "other"), /NOPERM No permissions to access a key/);
    await assert.rejects(
      alice.call("ACL", "LIST"),
      /NOPERM User alice has no permissions to run the 'acl\|list' command/,
    );
    await assert.rejects(alice.flushall(), /NOPERM/);
    await assert.rejects(alice.config("GET", "save"), /NOPERM/);
    await assert.rejects(alice.call("CLIENT", "LIST"), /NOPERM/);
    // A refused command inside MULTI aborts the transaction, as Redis does.
    const tx = await alice
      .multi()
      .get("app:1")
      .set("app:1", "three")
      .exec()
      .catch((e: Error) => e);
    assert.match(String(tx), /EXECABORT/);
    assert.equal(await alice.get("app:1"), "one");
    alice.disconnect();
  });

  it("a wrong password is WRONGPASS; HELLO 3 AUTH authenticates and switches protocol", async () => {
    const r = await bare(node.respPort);
    assert.equal(
      await r.send("AUTH", "alice", "nope"),
      "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    const hello = await r.send("HELLO", "3", "AUTH", "alice", "alice-pw");
    assert.match(hello, /^%7\r\n[\s\S]*\$5\r\nproto\r\n:3\r\n/);
    assert.equal(await r.send("ACL", "WHOAMI"), "$5\r\nalice\r\n");
    r.close();
  });

  it("the native protocol: the same user, the same refusals, admin operations need admin", async () => {
    const alice = await node.client({ user: "alice", password: "alice-pw" });
    assert.equal((await alice.get("app:1"))!.value.toString(), "one");
    await assert.rejects(alice.put("app:1", "x"), code(ErrorCode.NOPERM));
    await assert.rejects(alice.get("other"), code(ErrorCode.NOPERM));
    await assert.rejects(alice.transferLeader(0, 1), code(ErrorCode.NOPERM));
    await assert.rejects(alice.forgetMember(2), code(ErrorCode.NOPERM));
    await assert.rejects(alice.txn({ success: [{ op: "put", key: "app:2", value: "v" }] }), code(ErrorCode.NOPERM));
    await alice.close();
    const wrong = new PiccoloClient({ port: node.port, user: "alice", password: "nope" });
    await assert.rejects(wrong.ping(), code(ErrorCode.NOAUTH));
    await wrong.close();
  });

  it("redis-cli --user --pass", { skip: hasRedisCli ? false : "redis-cli is not installed" }, () => {
    const out = spawnSync(
      "redis-cli",
      ["-p", String(node.respPort), "--user", "alice", "--pass", "alice-pw", "--no-auth-warning", "SET", "app:1", "z"],
      { encoding: "utf8" },
    );
    assert.match(out.stdout, /NOPERM/);
  });

  it("the CLI: --user and --password-file", () => {
    const pw = join(dir, "alice.pass");
    writeFileSync(pw, "alice-pw\n", { mode: 0o600 });
    const server = `127.0.0.1:${node.port}`;
    const read = spawnSync(
      process.execPath,
      [CLI, "get", "app:1", "--server", server, "--user", "alice", "--password-file", pw],
      {
        encoding: "utf8",
      },
    );
    assert.equal(read.status, 0, read.stderr);
    assert.equal(read.stdout, "one\n");
    const write = spawnSync(
      process.execPath,
      [CLI, "put", "app:1", "w", "--server", server, "--user", "alice", "--password-file", pw],
      { encoding: "utf8" },
    );
    assert.equal(write.status, 5, write.stderr);
    assert.match(write.stderr, /NOPERM/);
  });

  it("ACL DELUSER: the user's open connections are refused from then on", async () => {
    const admin = redisClient({ port: node.respPort, password: "adm1n-secret" });
    await admin.call("ACL", "SETUSER", "bob", "on", ">bob-pw", "allkeys", "+@all");
    const bob = redisClient({ port: node.respPort, username: "bob", password: "bob-pw" });
    assert.equal(await bob.set("b", "1"), "OK");
    assert.equal(await admin.call("ACL", "DELUSER", "bob"), 1);
    await assert.rejects(bob.get("b"), /NOAUTH/);
    await assert.rejects(admin.call("ACL", "DELUSER", "default"), /cannot be removed/);
    await assert.rejects(admin.call("ACL", "SETUSER", "carol", "+get"), /Syntax error/);
    bob.disconnect();
    admin.disconnect();
  });

  it("failed AUTHs from one address are slowed, doubling", async () => {
    const r = await bare(node.respPort);
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) assert.match(await r.send("AUTH", "alice", `guess${i}`), /^-WRONGPASS/);
    // Earlier tests failed once or twice from this address too: at least 100+200+400+800 ms here.
    assert.ok(Date.now() - t0 >= AUTH_FIRST_DELAY_MS * (1 + 2 + 4 + 8) - 50, `${Date.now() - t0} ms`);
    r.close();
    assert.match(node.stderr(), /a client failed to authenticate/);
  });

  it("users survive a restart, kept hashed in a file only the node's user reads", async () => {
    const file = join(dir, "data", "users.acl");
    const text = readFileSync(file, "utf8");
    assert.match(text, /^user alice on #scrypt/m);
    assert.doesNotMatch(text, /alice-pw|adm1n-secret/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    await node.stop();
    node = await startNode([
      "--shards",
      "2",
      "--data-dir",
      join(dir, "data"),
      "--requirepass-file",
      join(dir, "admin.pass"),
    ]);
    const alice = redisClient({ port: node.respPort, username: "alice", password: "alice-pw" });
    assert.equal(await alice.get("app:1"), "one");
    await assert.rejects(alice.set("app:1", "x"), /NOPERM/);
    alice.disconnect();
  });
});

describe("secrets on the command line", { timeout: 60_000 }, () => {
  it("--requirepass works and warns that it shows in ps", async () => {
    const node = await startNode(["--shards", "0", "--requirepass", "visible"]);
    try {
      const c = await node.client({ password: "visible" });
      await c.ping();
      await c.close();
      assert.match(node.stderr(), /--requirepass shows the password to every user of this machine/);
    } finally {
      await node.stop();
    }
  });
});

describe("protected mode's rule", () => {
  it("refuses only remote clients of a node bound beyond loopback whose default user has no password", () => {
    assert.equal(protectedRefuses(true, "0.0.0.0", false, "10.1.2.3"), true);
    assert.equal(protectedRefuses(true, "0.0.0.0", false, "127.0.0.1"), false);
    assert.equal(protectedRefuses(true, "0.0.0.0", false, "::ffff:127.0.0.1"), false);
    assert.equal(protectedRefuses(true, "::", false, "::1"), false);
    assert.equal(protectedRefuses(true, "0.0.0.0", true, "10.1.2.3"), false); // a password is set
    assert.equal(protectedRefuses(false, "0.0.0.0", false, "10.1.2.3"), false); // --protected-mode no
    assert.equal(protectedRefuses(true, "127.0.0.1", false, "10.1.2.3"), false); // cannot happen: bound to loopback
    assert.equal(isLoopback("127.8.9.10"), true);
    assert.equal(isLoopback("192.168.1.1"), false);
    assert.equal(isLoopback(undefined), false);
  });
});
