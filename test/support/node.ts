// Starting real Piccolo nodes for tests: a child process running the built
// CLI (`piccolo server`) on a free loopback port, exactly as a user would.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ClientOptions, PiccoloClient } from "../../src/client/client.js";
import { freePort } from "../../src/free-port.js";

export { freePort };

export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export interface RunningNode {
  port: number;
  /** The Redis protocol port (0 when disabled). */
  respPort: number;
  process: ChildProcess;
  /** Everything the node wrote to stderr (its logs). */
  stderr(): string;
  /** A new client connected to this node. */
  client(options?: ClientOptions): Promise<PiccoloClient>;
  /** SIGTERM, then wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (after SIGCONT, if paused), then wait for exit: for teardown, see stopAll(). */
  kill(): Promise<void>;
}

/**
 * A test file's teardown: every node killed (-9) at once, and waited for.
 * Not stop(): a cluster member's SIGTERM first hands its leaderships to its
 * peers (LEADERSHIP_HANDOFF_MS, 10 s at most), and members stopped one after
 * another each found their peers gone and waited that out, so tearing down
 * a three-member cluster took about 20 s, in every cluster test file. A test
 * that means to check a clean stop calls stop() and asserts on its code;
 * teardown checks nothing, so it need not wait (decision 0335).
 */
export async function stopAll(nodes: readonly (RunningNode | null | undefined)[]): Promise<void> {
  await Promise.all(nodes.map((n) => n?.kill()));
}

/** A loopback member list of `n` members on free peer ports: "n1=127.0.0.1:p1,n2=...". */
export async function memberList(n = 3): Promise<string> {
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  return ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
}

/** Starts member n{i+1} of `list`, its data under `root`/n{i+1}, with `args` added. */
export function startMember(
  list: string,
  root: string,
  i: number,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<RunningNode> {
  const name = `n${i + 1}`;
  return startNode(["--node-id", name, "--cluster", list, "--data-dir", join(root, name), ...args], env);
}

/** `env` is added to this process's environment (PICCOLO_TEST_FAULT_FILE, for one). */
export async function startNode(args: string[] = [], env: Record<string, string> = {}): Promise<RunningNode> {
  // Never the default RESP port: test files run in parallel.
  const resp = args.includes("--resp-port") ? [] : ["--resp-port", String(await freePort())];
  // Durable as users get it, each node in a directory of its own (never ./data: files run in parallel).
  const ownDir =
    args.includes("--cluster") || args.includes("--data-dir") || args.includes("--in-memory")
      ? null
      : mkdtempSync(join(tmpdir(), "piccolo-test-node-"));
  const data = ownDir === null ? [] : ["--data-dir", ownDir];
  const child = spawn(
    process.execPath,
    [CLI, "server", "--host", "127.0.0.1", "--port", "0", ...resp, ...data, ...args],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    },
  );
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  let respPort = 0;
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    // On a timeout the child is killed: left running, its pipes would keep the test file alive until its
    // 10-minute limit (a loaded machine's slow start then cost a whole file, not one test).
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`node did not start in 30s; stderr:\n${err}`));
    }, 30_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        respPort = Number(/resp on 127\.0\.0\.1:(\d+)/.exec(out)?.[1] ?? 0);
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before listening; stderr:\n${err}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    port,
    respPort,
    process: child,
    stderr: () => err,
    client: (options = {}) => PiccoloClient.connect({ host: "127.0.0.1", port, ...options }),
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true });
      return code;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGCONT");
        child.kill("SIGKILL");
      }
      await exited;
      if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true });
    },
  };
}

/** The shard layouts every end-to-end suite runs against. */
export const LAYOUTS: { name: string; args: string[] }[] = [
  { name: "inline (--shards 0)", args: ["--shards", "0"] },
  { name: "threaded (--shards 2)", args: ["--shards", "2"] },
];
