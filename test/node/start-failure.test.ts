// A server or gateway that cannot start says so in one line and exits 71,
// instead of printing a stack and lingering half-started (issue #14: a
// gateway whose port was taken stayed alive, never listening, while curl
// quietly reached the old one). Each case holds a real port with a real
// listener, or points at a data directory that cannot exist, and runs the
// real CLI as a user would.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, freePort } from "../support/node.js";

/** The exit code for "could not start" (README, "Exit codes"). */
const CANNOT_START = 71;

interface Outcome {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the CLI to its end; fails the test if it is still running after `ms` (a hang, the bug this guards). */
function run(args: string[], ms = 30_000): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`still running after ${ms} ms: piccolo ${args.join(" ")}\nstdout: ${out}\nstderr: ${err}`));
    }, ms);
    child.once("exit", (code) => {
      clearTimeout(timer);
      // 'exit' can come before the pipes are drained.
      setImmediate(() => resolve({ code, out, err }));
    });
  });
}

/** A port held by a listener of this test process. */
async function holdPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as { port: number }).port, server };
}

/** Exactly one line on stderr, matching `what`; nothing announced as listening. */
function oneLine(o: Outcome, what: RegExp): void {
  assert.equal(o.code, CANNOT_START, `exit code; stderr:\n${o.err}`);
  const lines = o.err.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${o.err}`);
  assert.match(lines[0]!, /^piccolo: cannot start: /);
  assert.match(lines[0]!, what);
  assert.doesNotMatch(o.out, /listening/);
}

/** The port can be listened on again: the failed process left nothing bound to it. */
async function free(port: number): Promise<void> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.listen(port, "127.0.0.1", resolve);
  });
  await new Promise((r) => s.close(r));
}

let held: { port: number; server: Server };
let root: string;

before(async () => {
  held = await holdPort();
  root = await mkdtemp(join(tmpdir(), "piccolo-start-failure-"));
});
after(async () => {
  await new Promise((r) => held.server.close(r));
  await rm(root, { recursive: true, force: true });
});

describe("piccolo server that cannot start", () => {
  it("its native port taken: one line naming the port and --port, exit 71 (default shards: workers were started)", async () => {
    const o = await run([
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      String(held.port),
      "--resp-port",
      "0",
      "--in-memory",
    ]);
    oneLine(o, new RegExp(`127\\.0\\.0\\.1:${held.port} \\(the native port, --port\\) is already in use`));
  });

  it("its Redis port taken: exit 71 naming --resp-port, and its native port is released", async () => {
    const native = await freePort();
    const o = await run([
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      String(native),
      "--resp-port",
      String(held.port),
      "--data-dir",
      join(root, "resp-taken"),
    ]);
    oneLine(o, new RegExp(`127\\.0\\.0\\.1:${held.port} \\(the Redis port, --resp-port\\) is already in use`));
    await free(native);
  });

  it("cluster mode, its peer port taken: exit 71 naming the member's peer port", async () => {
    const o = await run([
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--resp-port",
      "0",
      "--node-id",
      "n1",
      "--cluster",
      `n1=127.0.0.1:${held.port}`,
      "--replicas",
      "1",
      "--data-dir",
      join(root, "peer-taken"),
    ]);
    oneLine(
      o,
      new RegExp(`127\\.0\\.0\\.1:${held.port} \\(member n1's peer port, from --cluster\\) is already in use`),
    );
  });

  it("cluster mode, its client port taken after the group workers opened their WALs: exit 71", async () => {
    const peer = await freePort();
    const o = await run([
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      String(held.port),
      "--resp-port",
      "0",
      "--node-id",
      "n1",
      "--cluster",
      `n1=127.0.0.1:${peer}`,
      "--replicas",
      "1",
      "--data-dir",
      join(root, "client-taken"),
    ]);
    oneLine(o, /the native port, --port\) is already in use/);
    await free(peer);
  });

  it("a data directory that cannot be created: exit 71 naming it and why", async () => {
    const file = join(root, "a-file");
    await writeFile(file, "not a directory");
    const dir = join(file, "data");
    const o = await run([
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--resp-port",
      "0",
      "--node-id",
      "n1",
      "--cluster",
      `n1=127.0.0.1:${await freePort()}`,
      "--replicas",
      "1",
      "--data-dir",
      dir,
    ]);
    oneLine(o, new RegExp(`the data directory ${dir} \\(--data-dir\\) cannot be used: ENOTDIR`));
  });

  it("bad flags stay usage errors: exit 2, one line", async () => {
    const o = await run(["server", "--port", "70000"]);
    assert.equal(o.code, 2, o.err);
    assert.equal(o.err, 'piccolo: --port must be an integer in [0, 65535], got "70000"\n');
  });
});

describe("piccolo cerializer that cannot start", () => {
  it("its HTTP port taken: one line naming the port and --http-port, exit 71", async () => {
    // Its node is down too: a gateway starts without its nodes (they may start after it), so only the port fails it.
    const o = await run([
      "cerializer",
      "--host",
      "127.0.0.1",
      "--http-port",
      String(held.port),
      "--nodes",
      `127.0.0.1:${await freePort()}`,
      "--log-level",
      "error",
    ]);
    oneLine(o, new RegExp(`127\\.0\\.0\\.1:${held.port} \\(the HTTP port, --http-port\\) is already in use`));
  });
});
