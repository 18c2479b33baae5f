/**
 * One supervised child process of the chaos harness: a cluster member or
 * the Cerializer. It knows which of its exits the harness caused (kill -9,
 * SIGTERM, the final teardown) and reports every other one as a failure,
 * with the last lines the process wrote to stderr: a store that stops
 * itself under legitimate load (issue #14: a member restarted with 64
 * partitions exiting with code 70) must fail the run, not hide behind the
 * next restart.
 */
import { type ChildProcess, spawn } from "node:child_process";

/** Lines of stderr kept per process for the failure report. */
const STDERR_TAIL_LINES = 12;
/** Characters of one stderr line kept (pino lines can be long). */
const STDERR_LINE_CHARS = 600;

/** An exit the harness did not cause. */
export interface UnexpectedExit {
  name: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Seconds since the run began. */
  atS: number;
  stderr: string[];
}

export interface ProcessSpec {
  name: string;
  /** Arguments after `node`. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** A stdout line matching this means the process is serving. */
  ready: RegExp;
}

export class Supervised {
  proc: ChildProcess | null = null;
  paused = false;
  private tail: string[] = [];
  /** True while an exit of the current process would be the harness's doing. */
  private exitExpected = false;

  constructor(
    readonly spec: ProcessSpec,
    private readonly onUnexpectedExit: (e: UnexpectedExit) => void,
    private readonly clock: () => number,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  /** The last stderr lines of the latest process. */
  stderrTail(): string[] {
    return [...this.tail];
  }

  /**
   * Starts the process and resolves with the stdout line that matched
   * `ready`. A process that does not get there within `timeoutMs` is killed
   * and the promise rejects (the caller reports it).
   */
  start(timeoutMs: number): Promise<string> {
    if (this.proc !== null) throw new Error(`${this.name} is already running`);
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, this.spec.args, { stdio: ["ignore", "pipe", "pipe"], env: this.spec.env });
      this.proc = p;
      this.paused = false;
      this.exitExpected = false;
      this.tail = [];
      let settled = false;
      let out = "";
      let partial = "";
      p.stderr!.on("data", (d: Buffer) => {
        const lines = (partial + d.toString()).split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) this.remember(l);
      });
      p.stderr!.on("end", () => {
        if (partial !== "") this.remember(partial);
        partial = "";
      });
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.exitExpected = true;
        p.kill("SIGKILL");
        reject(new Error(`${this.name} did not start within ${timeoutMs} ms; stderr: ${this.tail.join(" | ")}`));
      }, timeoutMs);
      p.stdout!.on("data", (d: Buffer) => {
        if (settled) return;
        out += d.toString();
        const line = out.split("\n").find((l) => this.spec.ready.test(l));
        if (line !== undefined) {
          settled = true;
          clearTimeout(timer);
          resolve(line);
        }
      });
      p.once("error", (err) => {
        // The process could not be spawned (or signalled): "exit" may never come.
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.proc === p) this.proc = null;
        reject(new Error(`${this.name} could not be started: ${err.message}`));
      });
      p.once("exit", (code, signal) => {
        clearTimeout(timer);
        if (this.proc === p) {
          this.proc = null;
          this.paused = false;
        }
        if (!settled) {
          settled = true;
          reject(
            new Error(`${this.name} exited (${signal ?? code}) before it was ready; stderr: ${this.tail.join(" | ")}`),
          );
          return;
        }
        if (!this.exitExpected)
          this.onUnexpectedExit({ name: this.name, code, signal, atS: this.clock() / 1000, stderr: this.stderrTail() });
      });
    });
  }

  private remember(line: string): void {
    if (line.trim() === "") return;
    this.tail.push(line.length > STDERR_LINE_CHARS ? `${line.slice(0, STDERR_LINE_CHARS)}...` : line);
    if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift();
  }

  /** kill -9, and wait for the exit. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (p === null) return;
    this.exitExpected = true;
    const exited = new Promise((res) => p.once("exit", res));
    p.kill("SIGKILL");
    await exited;
  }

  /**
   * A clean stop: SIGTERM, then the exit code, or "timeout" if the process
   * is still there after `graceMs` (it is then killed -9). The caller judges
   * the code: a clean stop should exit 0.
   */
  async terminate(graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | "timeout"> {
    const p = this.proc;
    if (p === null) return { code: 0, signal: null };
    this.exitExpected = true;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
      p.once("exit", (code, signal) => res({ code, signal })),
    );
    p.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"timeout">((res) => {
      timer = setTimeout(() => res("timeout"), graceMs);
    });
    const r = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (r === "timeout") {
      p.kill("SIGKILL");
      await exited;
    }
    return r;
  }

  pause(): void {
    if (this.proc === null || this.paused) return;
    this.proc.kill("SIGSTOP");
    this.paused = true;
  }

  resume(): void {
    if (this.proc === null || !this.paused) return;
    this.proc.kill("SIGCONT");
    this.paused = false;
  }

  /** Synchronous last resort (a signal is ending the harness). */
  killNow(): void {
    const p = this.proc;
    if (p === null) return;
    this.exitExpected = true;
    if (this.paused) p.kill("SIGCONT");
    p.kill("SIGKILL");
  }
}
