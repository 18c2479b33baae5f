// The course never goes stale: every command the experiments quote (docs/*.md,
// "## Experiments"), run for real, in docs/README.md's reading order, and its
// output compared with the one the doc shows, after the masks of
// test/docs/course.ts. Decision 0330.
//
// The servers the reader starts in other terminals are started here, on free
// 127.0.0.1 ports, and the default ports in the quoted commands rewritten to
// them (and back in the outputs):
//   $ npm start -- FLAGS 2>&1 | tee FILE   the single node (again: restarted, as Ctrl-C and the same command);
//                                          its output until it listens is the command's output, all of it goes to FILE
//   $ npx piccolo cerializer FLAGS         a Cerializer; its first line is the output
//   $ npm run cluster                      stops the single node and its Cerializer (the reader is told to) and
//                                          starts three members and a Cerializer as scripts/cluster.mjs does; no output
// Every other command runs in a bash shell, one per chapter (a terminal): its
// variables, working directory (a temporary directory, the reader's clone) and
// background jobs last until the chapter ends. `npx piccolo` is the built CLI,
// `npm run NAME` package.json's script without its build (the test ran it).
//
// PICCOLO_COURSE_CAPTURE=1 (`npm run course:capture`) writes each command's
// real output into the doc instead of comparing it: the maintainer's refresh.
// An experiment quoting a tool this machine lacks (redis-cli, curl,
// redis-benchmark) is skipped with a message.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CLI, freePort } from "../support/node.js";
import {
  type Chapter,
  type Command,
  captured,
  compare,
  parseChapter,
  rewriteOutputs,
  rewritePorts,
  unrewritePorts,
} from "./course.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const DOCS = join(ROOT, "docs");
const CAPTURE = process.env.PICCOLO_COURSE_CAPTURE === "1";
const COMMAND_TIMEOUT_MS = 30_000;

/** The chapters in the reading order: docs/README.md itself (its setup), then every chapter it links, in order. */
function readingOrder(): string[] {
  const readme = readFileSync(join(DOCS, "README.md"), "utf8");
  const names = ["README.md"];
  for (const m of readme.matchAll(/\]\(([a-z-]+\.md)\)/g)) if (!names.includes(m[1]!)) names.push(m[1]!);
  // PICCOLO_COURSE_ONLY=watch.md,cluster.md: those chapters only (and the setup), for a writer at work on them.
  const only = process.env.PICCOLO_COURSE_ONLY?.split(",");
  return only === undefined ? names : names.filter((n) => n === "README.md" || only.includes(n));
}

function which(tool: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

/** Tools an experiment may quote that CI installs best effort (.ci/run): absent, the experiment is skipped. */
const TOOLS = ["redis-cli", "redis-benchmark", "curl"];
const found = new Map(TOOLS.map((t) => [t, which(t)]));

/** The reader's working directory (their clone), the shims' directory, and every process started. */
const work = mkdtempSync(join(tmpdir(), "piccolo-course-"));
const bin = join(work, ".bin");
const children: ChildProcess[] = [];

function shim(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

function writeShims(): void {
  mkdirSync(bin, { recursive: true });
  // `piccolo cluster ...` without --server would look on the default ports: another cluster, not the test's.
  shim(
    "npx",
    `if [ "$1" = piccolo ]; then
  shift
  if [ "$1" = server ]; then case " $* " in *" --port "*) ;; *) echo "course: a quoted 'piccolo server' command needs --port (the default port may be taken by someone else's node)" >&2; exit 2;; esac; fi
  if [ "$1" = cluster ]; then case " $* " in *" --server "*) ;; *) echo "course: a quoted 'piccolo cluster' command needs --server (the test's members are not on the default ports)" >&2; exit 2;; esac; fi
  exec "${process.execPath}" "${CLI}" "$@"
fi
echo "course: 'npx $1' is not a command the course knows" >&2; exit 127`,
  );
  const scripts = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts as Record<string, string>;
  const cases = Object.entries(scripts)
    .filter(([, s]) => s.startsWith("npm run build && "))
    .map(([name, s]) => `  ${name}) cd "${ROOT}" && exec ${s.slice("npm run build && ".length)} "$@";;`)
    .join("\n");
  shim(
    "npm",
    `if [ "$1" != run ]; then echo "course: only 'npm run NAME' runs in a shell here" >&2; exit 127; fi
name=$2; shift 2; if [ "$1" = "--" ]; then shift; fi
case "$name" in
${cases}
  *) echo "course: npm run $name is not a script the course can run" >&2; exit 127;;
esac`,
  );
  // Without -p, redis-cli and redis-benchmark would talk to whatever listens on 6379.
  for (const tool of ["redis-cli", "redis-benchmark"]) {
    const real = found.get(tool);
    if (real)
      shim(
        tool,
        `case " $* " in *" -p "*) exec "${real}" "$@";; esac
echo "course: a quoted ${tool} command needs -p PORT" >&2; exit 2`,
      );
  }
}

/** One terminal: a bash reading commands from us, each followed by a marker line carrying its exit status. */
class Shell {
  private readonly child: ChildProcess;
  private buffer = "";
  private wake: (() => void) | null = null;
  private readonly token = `__course_${process.pid}_${Date.now()}__`;
  constructor(env: Record<string, string>) {
    this.child = spawn("bash", ["--noprofile", "--norc"], {
      cwd: work,
      env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH}` },
      stdio: ["pipe", "pipe", "pipe"],
      detached: true, // its own process group: its background jobs end with it
    });
    const take = (d: Buffer) => {
      this.buffer += d.toString();
      this.wake?.();
    };
    this.child.stdout!.on("data", take);
    this.child.stderr!.on("data", take);
    this.child.stdin!.write("exec 2>&1\n");
  }

  async run(text: string): Promise<string[]> {
    // stdin from /dev/null: a command reading stdin would otherwise read the commands after it.
    this.child.stdin!.write(`{\n${text}\n} </dev/null\n__rc=$?; printf '\\n${this.token}\\n'; (exit $__rc)\n`);
    const deadline = Date.now() + COMMAND_TIMEOUT_MS;
    for (;;) {
      const at = this.buffer.indexOf(`\n${this.token}\n`);
      if (at >= 0) {
        const out = this.buffer.slice(0, at);
        this.buffer = this.buffer.slice(at + this.token.length + 2);
        return out.split("\n");
      }
      if (Date.now() > deadline) throw new Error(`no end after ${COMMAND_TIMEOUT_MS} ms; so far:\n${this.buffer}`);
      if (this.child.exitCode !== null) throw new Error(`the shell exited; its output:\n${this.buffer}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
  }

  close(): void {
    try {
      process.kill(-this.child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** A server the reader runs in another terminal. */
interface Server {
  child: ChildProcess;
  /** Its stdout lines up to and including the one that says it listens. */
  start: string[];
}

function startServer(args: string[], listening: RegExp, logFile: string | null): Promise<Server> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: work, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const log = logFile === null ? null : join(work, logFile);
  if (log !== null) writeFileSync(log, "");
  // Both streams in the order they came, as `2>&1 | tee` shows them, kept until the process listens.
  const lines: string[] = [];
  let rest = "";
  let started = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${args.join(" ")}: not listening after 30 s:\n${lines.join("\n")}${rest}`)),
      30_000,
    );
    const keep = (d: Buffer) => {
      if (log !== null) writeFileSync(log, d, { flag: "a" });
      if (started) return;
      const parts = (rest + d.toString()).split("\n");
      rest = parts.pop()!;
      for (const l of parts) {
        lines.push(l);
        if (listening.test(l)) {
          started = true;
          clearTimeout(timer);
          resolve({ child, start: lines });
          return;
        }
      }
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (!started) reject(new Error(`${args.join(" ")} exited ${code} before listening:\n${lines.join("\n")}${rest}`));
    });
  });
}

/** As Ctrl-C in its terminal: SIGINT, then wait (SIGKILL after 10 s). */
async function stopServer(s: Server | null): Promise<void> {
  if (s === null || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((r) => s.child.once("exit", r));
  s.child.kill("SIGCONT"); // a member an experiment froze (kill -STOP) and a failure left frozen
  s.child.kill("SIGINT");
  const t = setTimeout(() => s.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** The ports, the reader's (defaults) to the test's; filled before the first chapter. */
const ports = new Map<number, number>();
/** The cluster's Cerializer takes 8700 once `npm run cluster` ran; the single node's until then. */
const clusterGateway = { port: 0 };
let node: Server | null = null;
let gateway: Server | null = null;
const members: Server[] = [];

async function allocatePorts(): Promise<void> {
  // The single node (native, Redis, metrics), the Cerializer, and the cluster's members (client, Redis, peer).
  for (const p of [7700, 6380, 9700, 8700, 7701, 7702, 7703, 6381, 6382, 6383, 7711, 7712, 7713])
    ports.set(p, await freePort());
  clusterGateway.port = await freePort();
}

/**
 * The cluster of `npm run cluster`: scripts/cluster.mjs's flags (memberArgs), on the test's ports.
 * Started at the beginning of the run, beside the single node (its groups idle and go quiet), so
 * that Raft's chapter does not wait for it: the reader's cluster starts later, and the same.
 */
async function startCluster(): Promise<{ members: Server[]; gateway: Server }> {
  const list = [1, 2, 3].map((i) => `n${i}=127.0.0.1:${ports.get(7710 + i)}`).join(",");
  const started = await Promise.all(
    [1, 2, 3].map((i) =>
      startServer(
        [
          "server",
          ...["--port", String(ports.get(7700 + i)), "--resp-port", String(ports.get(6380 + i))],
          ...["--node-id", `n${i}`, "--cluster", list, "--data-dir", `./data/n${i}`, "--shards", "1"],
          ...["--log-level", "info"],
        ],
        / listening on /,
        null,
      ),
    ),
  );
  const nodes = [1, 2, 3].map((i) => `127.0.0.1:${ports.get(7700 + i)}`).join(",");
  const gw = await startServer(
    ["cerializer", "--nodes", nodes, "--cluster", "true", "--http-port", String(clusterGateway.port)],
    /listening on/,
    null,
  );
  return { members: started, gateway: gw };
}
let clusterStarting: Promise<{ members: Server[]; gateway: Server }> | null = null;

/** The harness's own commands (servers); null for a command the shell runs. */
async function serverStep(text: string): Promise<string[] | null> {
  const start = /^npm start(?: -- (.*?))?(?: 2>&1 \| tee (\S+))?$/.exec(text);
  if (start) {
    await stopServer(node);
    const flags = rewritePorts(start[1] ?? "", ports)
      .split(/\s+/)
      .filter(Boolean);
    const add = (flag: string, def: number) => (flags.includes(flag) ? [] : [flag, String(ports.get(def))]);
    node = await startServer(
      ["server", ...add("--port", 7700), ...add("--resp-port", 6380), ...flags],
      / listening on /,
      start[2] ?? null,
    );
    return node.start;
  }
  const cerializer = /^npx piccolo cerializer(.*)$/.exec(text);
  if (cerializer) {
    await stopServer(gateway);
    const flags = rewritePorts(cerializer[1]!, ports).split(/\s+/).filter(Boolean);
    const nodes = flags.includes("--nodes") ? [] : ["--nodes", `127.0.0.1:${ports.get(7700)}`];
    const http = flags.includes("--http-port") ? [] : ["--http-port", String(ports.get(8700))];
    gateway = await startServer(["cerializer", ...nodes, ...http, ...flags], /listening on/, null);
    return gateway.start;
  }
  if (text === "npm run cluster") {
    // The reader stops the single node and its Cerializer first (their ports, 8700 above all).
    await stopServer(gateway);
    await stopServer(node);
    const cluster = await (clusterStarting ?? startCluster());
    members.push(...cluster.members);
    gateway = cluster.gateway;
    ports.set(8700, clusterGateway.port);
    return [];
  }
  return null;
}

/**
 * Set once an experiment was skipped for a missing tool: the experiments after it find the node in
 * another state than the docs show (fewer keys, other versions), so they are skipped too, saying why.
 */
let skippedEarlier: string | null = null;

function usesMissingTool(commands: Command[]): string | null {
  for (const c of commands)
    for (const [tool, path] of found)
      if (path === null && new RegExp(`(^|[\\s|;(&])${tool}\\b`).test(c.text)) return tool;
  return null;
}

const chapters: Chapter[] = readingOrder().map((name) => parseChapter(name, readFileSync(join(DOCS, name), "utf8")));

describe("the course: every experiment in docs/, run as a reader runs it", { concurrency: false }, () => {
  after(async () => {
    await clusterStarting?.catch(() => null); // its processes are among `children`
    // Killed, not stopped: teardown checks nothing, and a member's clean stop first hands its
    // leaderships over (up to 10 s each: test/support/node.ts, stopAll).
    const exits = children
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map((c) => {
        const exited = new Promise((r) => c.once("exit", r));
        c.kill("SIGCONT");
        c.kill("SIGKILL");
        return exited;
      });
    await Promise.all(exits);
    rmSync(work, { recursive: true, force: true });
  });

  it("every chapter in docs/README.md's reading order has experiments", () => {
    const without = chapters.filter((c) => c.file !== "README.md" && c.experiments.length === 0).map((c) => c.file);
    assert.deepEqual(without, [], "chapters without a '## Experiments' section (or with none under it)");
    for (const c of chapters) assert.ok(existsSync(join(DOCS, c.file)), c.file);
  });

  for (const chapter of chapters) {
    it(chapter.file, async (t) => {
      if (ports.size === 0) {
        writeShims();
        await allocatePorts();
        if (chapters.some((c) => c.experiments.some((e) => e.commands.some((x) => x.text === "npm run cluster")))) {
          clusterStarting = startCluster();
          clusterStarting.catch(() => {}); // reported where it is awaited
        }
      }
      const shell = new Shell({ PICCOLO_SERVER: `127.0.0.1:${ports.get(7700)}` });
      const outputs = new Map<Command, string[]>();
      try {
        for (const exp of chapter.experiments) {
          const missing = usesMissingTool(exp.commands);
          if (missing !== null) skippedEarlier ??= `${chapter.file}, "${exp.title}"`;
          if (missing !== null || skippedEarlier !== null) {
            const why =
              missing !== null
                ? `${missing} is not installed (apt-get install redis-tools curl)`
                : `an earlier experiment (${skippedEarlier}) was skipped, so the state this one expects is not there`;
            await t.test(exp.title, { skip: why }, () => {});
            continue;
          }
          await t.test(exp.title, async () => {
            for (const c of exp.commands) {
              const where = `${chapter.file}:${c.line}: $ ${c.text}`;
              const real = rewritePorts(c.text, ports);
              let raw: string[];
              const began = Date.now();
              try {
                raw = (await serverStep(c.text)) ?? (await shell.run(real));
              } catch (err) {
                throw new Error(`${where}\n${(err as Error).message}`);
              }
              if (process.env.PICCOLO_COURSE_TIMES === "1") console.log(`${Date.now() - began} ms  $ ${c.text}`);
              const out = raw.map((l) => unrewritePorts(l, ports));
              if (CAPTURE) {
                outputs.set(c, captured(c.expected, out, c.masks));
                continue;
              }
              const diff = compare(c.expected, out, c.masks);
              assert.equal(diff, null, `${where}\n${diff}`);
            }
          });
        }
      } finally {
        shell.close();
        if (CAPTURE) {
          const path = join(DOCS, chapter.file);
          const all = chapter.experiments.flatMap((e) => e.commands).map((c) => outputs.get(c) ?? null);
          writeFileSync(path, rewriteOutputs(readFileSync(path, "utf8"), chapter, all));
        }
      }
    });
  }
});
