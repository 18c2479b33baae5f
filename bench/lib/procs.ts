// Child processes of a benchmark (nodes, gateways, etcd, redis-server): every
// one dies with the benchmark (on exit, on SIGINT/SIGTERM/SIGHUP), and one
// that dies on its own before then ends the benchmark with its last words.
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import { progressDone } from "./report.js";

export interface Procs {
  /** Spawns a child that is killed on exit; stdout is piped (see waitLine), stderr inherited or kept in `tail`. */
  child(name: string, cmd: string, args: string[], tail?: string[]): ChildProcess;
  /** Something to undo at the end (a temp dir to remove); run once, after the children are killed. */
  onCleanup(f: () => void): void;
  /** Stops one child (SIGTERM) and waits for it to exit; its exit is expected, not the end of the benchmark. */
  stop(c: ChildProcess): Promise<void>;
  /** Kills every child and runs the clean-ups (also run on exit). */
  cleanup(): void;
}

/** `bench` names the benchmark in messages ("bench:rest"); `what` says what a signal stops. */
export function procs(bench: string, what: string): Procs {
  const children = new Set<ChildProcess>();
  const cleanups: (() => void)[] = [];
  let stopping = false;
  const cleanup = (): void => {
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    children.clear();
    for (const f of cleanups.splice(0)) {
      try {
        f();
      } catch {}
    }
  };
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.on(sig, () => {
      progressDone();
      console.error(`${bench}: ${sig}, stopping ${what}`);
      process.exit(128 + constants.signals[sig]);
    });
  return {
    cleanup,
    onCleanup: (f) => {
      cleanups.push(f);
    },
    stop(c) {
      if (!children.delete(c) || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        c.once("exit", () => resolve());
        c.kill("SIGTERM");
      });
    },
    child(name, cmd, args, tail) {
      const c = spawn(cmd, args, { stdio: ["ignore", "pipe", tail ? "pipe" : "inherit"] });
      children.add(c);
      if (tail)
        c.stderr!.on("data", (d: Buffer) => {
          tail.push(d.toString());
          if (tail.length > 50) tail.shift();
        });
      c.once("error", (e) => {
        console.error(`${bench}: ${name}: ${e.message}`);
        process.exit(1);
      });
      c.once("exit", (code, signal) => {
        if (!children.delete(c) || stopping) return; // stopped on purpose
        progressDone();
        console.error(`${bench}: ${name} exited on its own (code ${code}, signal ${signal})`);
        if (tail?.length) console.error(tail.join(""));
        process.exit(1);
      });
      return c;
    },
  };
}

/** Waits for a line on a child's stdout matching `re` (20 s at most, or `timeoutMs`). */
export function waitLine(c: ChildProcess, re: RegExp, what: string, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(
      () => reject(new Error(`${what} did not start within ${timeoutMs / 1000} s: ${out}`)),
      timeoutMs,
    );
    c.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
