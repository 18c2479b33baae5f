// `npm run cluster` (scripts/cluster.mjs), run as a developer runs it, in a
// directory of its own and with its ports shifted (PICCOLO_CLUSTER_PORT_OFFSET)
// so that it never meets a copy a developer has running: its three members and
// its Cerializer start, it prints for each member the process id and the
// exact command that starts it again, and following those words (kill the
// pid, wait for the exit it reports, run the command from the same
// directory) restarts the member with its data: it rejoins the cluster and
// serves a write and the reads of it.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { PiccoloClient } from "../../src/client/client.js";
import { eventually } from "../support/eventually.js";

const SCRIPT = fileURLToPath(new URL("../../../scripts/cluster.mjs", import.meta.url));
// Below 10,000: free-port.ts never hands those out, so no other test file takes them meanwhile; above
// the script's own ports (6381-8700), so not a copy a developer started with the defaults.
const OFFSET = 1_000 + Math.floor(Math.random() * 250);

/** A process whose stdout lines are kept, and waited for. */
class Proc {
  readonly lines: string[] = [];
  private waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;
  constructor(readonly child: ChildProcess) {
    let rest = "";
    child.stdout!.on("data", (d: Buffer) => {
      const parts = (rest + d.toString()).split("\n");
      rest = parts.pop()!;
      this.lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr!.on("data", () => {});
    this.exited = new Promise((r) => child.once("exit", (code) => r(code)));
  }

  /** The first line matching `re` (waiting up to `ms` for it). */
  async line(re: RegExp, ms = 60_000): Promise<RegExpExecArray> {
    const by = Date.now() + ms;
    for (;;) {
      for (const l of this.lines) {
        const m = re.exec(l);
        if (m !== null) return m;
      }
      if (Date.now() > by || this.child.exitCode !== null)
        throw new Error(`no line matching ${re} in:\n${this.lines.slice(-30).join("\n")}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    return this.exited;
  }
}

let dir: string;
let cluster: Proc;
let restarted: Proc | null = null;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "piccolo-npm-cluster-"));
  cluster = new Proc(
    spawn(process.execPath, [SCRIPT], {
      cwd: dir,
      env: { ...process.env, PICCOLO_CLUSTER_PORT_OFFSET: String(OFFSET) },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
});

after(async () => {
  await restarted?.stop();
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("npm run cluster", { timeout: 120_000 }, () => {
  it("prints how to restart each member, and following it restarts the member with its data", async () => {
    await cluster.line(/^cluster: every process is listening/);
    const how = new Map<string, { pid: number; command: string }>();
    for (const name of ["n1", "n2", "n3"]) {
      const m = await cluster.line(new RegExp(`^\\[${name}\\] pid (\\d+): to restart it, kill \\1, then: (node .*)$`));
      how.set(name, { pid: Number(m[1]), command: m[2]! });
    }
    const n2 = how.get("n2")!;
    assert.match(n2.command, new RegExp(`--port ${OFFSET + 7702} .*--node-id n2 .*--data-dir \\./data/n2`));

    const put = async (port: number, key: string, value: string): Promise<void> => {
      const c = await PiccoloClient.connect({ host: "127.0.0.1", port, timeoutMs: 10_000 });
      try {
        await c.put(key, value);
      } finally {
        await c.close();
      }
    };
    const get = async (port: number, key: string): Promise<string | undefined> => {
      const c = await PiccoloClient.connect({ host: "127.0.0.1", port, timeoutMs: 10_000 });
      try {
        return (await c.get(key))?.value.toString();
      } finally {
        await c.close();
      }
    };
    await eventually("a write before the restart", () => put(OFFSET + 7702, "before", "1"), 30_000, 200);

    // As the printed line says: kill the pid (SIGTERM), and the script reports the exit with the command again.
    process.kill(n2.pid, "SIGTERM");
    const exited = await cluster.line(/^\[n2\] exited \((\S+)\); to start it again: (node .*)$/);
    assert.equal(exited[1], "0", "a member stopped by SIGTERM exits 0");
    assert.equal(exited[2], n2.command, "the same command as at the start");

    // Run it from the same directory, as typed.
    const [, cli, ...args] = n2.command.split(" ");
    restarted = new Proc(spawn(process.execPath, [cli!, ...args], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }));
    await restarted.line(/listening on /, 30_000);
    // Its data came back (the write before the stop), and it serves a write and the reads of it with the others.
    assert.equal(await eventually("n2's data back", () => get(OFFSET + 7702, "before"), 30_000, 200), "1");
    await eventually("a write through n2 after the restart", () => put(OFFSET + 7702, "after", "2"), 30_000, 200);
    assert.equal(await get(OFFSET + 7701, "after"), "2");
    assert.equal(await get(OFFSET + 7703, "after"), "2");

    assert.equal(await restarted.stop(), 0);
    assert.equal(await cluster.stop(), 0);
  });
});
