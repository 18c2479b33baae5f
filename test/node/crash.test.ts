// The crash policy (src/node/fatal.ts, decision 0196): an error nobody
// catches stops a server or a gateway with exit code 70 and one fatal log
// line carrying its stack; a worker thread's uncaught error stops the node
// with 70 too, its stack logged.
//
// Nothing a client sends can make these processes throw (that is the point
// of every bad-input test), and production code has no hook to make it. So
// the fault comes from outside: test/support/crash.ts is loaded into the real
// process with NODE_OPTIONS=--import, as any preloaded module could be, and
// throws on the main thread when the test sends SIGUSR2, or in the worker
// threads once a file exists. What this proves: whatever code in the process
// throws, the process ends promptly with 70 and says why. It does not prove
// that no such bug exists.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { fatalHandler } from "../../src/node/fatal.js";
import { startGateway } from "../support/cerializer.js";
import { freePort, type RunningNode, startNode } from "../support/node.js";

const CRASH = fileURLToPath(new URL("../support/crash.js", import.meta.url));
const INTERNAL = 70;

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-crash-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function crashEnv(mode: string, file = ""): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${CRASH}`.trim(),
    PICCOLO_TEST_CRASH: mode,
    PICCOLO_TEST_CRASH_FILE: file,
  };
}

/** Waits for the process to exit on its own (bounded: a process that stays up fails the test). */
async function exitOf(n: { process: RunningNode["process"] }, ms = 20_000): Promise<number | null> {
  const p = n.process;
  if (p.exitCode !== null) return p.exitCode;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still running ${ms} ms after the fault`)), ms);
    p.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** The JSON log lines of a process's stderr. */
function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("crash policy: uncaught errors stop the process with 70, logged with their stack", () => {
  it("an uncaught exception on a node's main thread (default flags)", async () => {
    const node = await startNode([], crashEnv("throw"));
    try {
      node.process.kill("SIGUSR2");
      assert.equal(await exitOf(node), INTERNAL, node.stderr());
      const fatal = logLines(node.stderr()).find((l) => l.level === 60);
      assert.ok(fatal, `a fatal line in:\n${node.stderr()}`);
      assert.equal(fatal.origin, "uncaughtException");
      assert.match((fatal.err as { stack: string }).stack, /injected throw[\s\S]*crash\.js/);
    } finally {
      await node.stop();
    }
  });

  it("an unhandled rejection on a node's main thread", async () => {
    const node = await startNode([], crashEnv("reject"));
    try {
      node.process.kill("SIGUSR2");
      assert.equal(await exitOf(node), INTERNAL, node.stderr());
      const fatal = logLines(node.stderr()).find((l) => l.level === 60);
      assert.ok(fatal, `a fatal line in:\n${node.stderr()}`);
      assert.equal(fatal.origin, "unhandledRejection");
      assert.match((fatal.err as { stack: string }).stack, /injected reject/);
    } finally {
      await node.stop();
    }
  });

  it("a shard worker thread that throws stops the node, its stack logged", async () => {
    const flag = join(root, "shard-worker");
    const node = await startNode(["--shards", "2"], crashEnv("worker", flag));
    try {
      await writeFile(flag, "");
      assert.equal(await exitOf(node), INTERNAL, node.stderr());
      const crashed = logLines(node.stderr()).find((l) => l.msg === "shard worker crashed");
      assert.ok(crashed, `the worker's error in:\n${node.stderr()}`);
      assert.match((crashed.err as { stack: string }).stack, /injected worker crash[\s\S]*crash\.js/);
    } finally {
      await node.stop();
    }
  });

  it("a cluster member's group worker that throws stops the member, its stack logged", async () => {
    const flag = join(root, "group-worker");
    const node = await startNode(
      [
        "--node-id",
        "n1",
        "--cluster",
        `n1=127.0.0.1:${await freePort()}`,
        "--replicas",
        "1",
        "--data-dir",
        join(root, "n1"),
      ],
      crashEnv("worker", flag),
    );
    try {
      await writeFile(flag, "");
      assert.equal(await exitOf(node), INTERNAL, node.stderr());
      const crashed = logLines(node.stderr()).find((l) => l.msg === "group worker crashed");
      assert.ok(crashed, `the worker's error in:\n${node.stderr()}`);
      assert.match((crashed.err as { stack: string }).stack, /injected worker crash[\s\S]*crash\.js/);
    } finally {
      await node.stop();
    }
  });

  it("an uncaught exception in the Cerializer", async () => {
    const node = await startNode(["--shards", "1"]);
    const gw = await startGateway([node.port], [], crashEnv("throw"));
    try {
      assert.equal((await gw.fetch("/healthz")).status, 200);
      gw.process.kill("SIGUSR2");
      assert.equal(await exitOf(gw), INTERNAL, gw.stderr());
      const fatal = logLines(gw.stderr()).find((l) => l.level === 60);
      assert.ok(fatal, `a fatal line in:\n${gw.stderr()}`);
      assert.equal(fatal.role, "cerializer");
      assert.match((fatal.err as { stack: string }).stack, /injected throw/);
    } finally {
      await gw.stop();
      await node.stop();
    }
  });
});

describe("the fatal handler itself", () => {
  it("logs once at fatal with the error and exits 70; a second error exits without logging again", () => {
    const logged: unknown[][] = [];
    const exits: number[] = [];
    const handle = fatalHandler({ fatal: ((...args: unknown[]) => logged.push(args)) as never }, (c) => exits.push(c));
    const err = new Error("first");
    handle(err, "uncaughtException");
    handle(new Error("second"), "unhandledRejection");
    assert.deepEqual(exits, [INTERNAL, INTERNAL]);
    assert.equal(logged.length, 1);
    assert.deepEqual(logged[0]![0], { err, origin: "uncaughtException" });
  });

  it("exits 70 even when logging throws", () => {
    const exits: number[] = [];
    const handle = fatalHandler(
      {
        fatal: (() => {
          throw new Error("the logger is broken");
        }) as never,
      },
      (c) => exits.push(c),
    );
    assert.throws(() => handle(new Error("x"), "uncaughtException"), /the logger is broken/);
    assert.deepEqual(exits, [INTERNAL]);
  });
});
