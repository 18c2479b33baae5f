// Starting a real Cerializer for tests: a child process running the built
// CLI (`piccolo cerializer`) on a free loopback port, in front of real nodes.
import { type ChildProcess, spawn } from "node:child_process";
import { CLI } from "./node.js";

export interface RunningGateway {
  port: number;
  /** "http", or "https" for a gateway run with --tls-cert-file (its start line says which). */
  scheme: string;
  /** http://127.0.0.1:<port> (or https://) */
  url: string;
  process: ChildProcess;
  stderr(): string;
  /** fetch() against the gateway: path like "/v1/kv/a". */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<number | null>;
}

/**
 * `nodes`: the nodes' ports on 127.0.0.1, or host:port addresses. `env` is
 * added to this process's environment (the crash tests' NODE_OPTIONS, for one).
 */
export async function startGateway(
  nodes: (number | string)[],
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<RunningGateway> {
  const list = nodes.map((n) => (typeof n === "number" ? `127.0.0.1:${n}` : n)).join(",");
  const child = spawn(
    process.execPath,
    [CLI, "cerializer", "--host", "127.0.0.1", "--http-port", "0", "--nodes", list, ...args],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } },
  );
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const { scheme, port } = await new Promise<{ scheme: string; port: number }>((resolve, reject) => {
    let out = "";
    // On a timeout the child is killed: left running, its pipes would keep the test file alive until its
    // 10-minute limit (a loaded machine's slow start then cost a whole file, not one test).
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`gateway did not start in 30s; stderr:\n${err}`));
    }, 30_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /cerializer listening on (https?):\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ scheme: m[1]!, port: Number(m[2]) });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before listening; stderr:\n${err}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = `${scheme}://127.0.0.1:${port}`;
  return {
    port,
    scheme,
    url,
    process: child,
    stderr: () => err,
    fetch: (path, init) => fetch(url + path, init),
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The problem+json body of a response, checked to be one. */
export async function problem(
  res: Response,
): Promise<{ type: string; status: number; detail: string } & Record<string, unknown>> {
  const ct = res.headers.get("content-type") ?? "";
  if (!ct.startsWith("application/problem+json"))
    throw new Error(`expected application/problem+json, got ${ct}: ${await res.text()}`);
  return (await res.json()) as { type: string; status: number; detail: string };
}

export const P = (name: string) => `urn:piccolo:problem:${name}`;
