/**
 * The chaos harness: a real three-member cluster (child processes on
 * loopback), clients doing reads, writes and compare-and-swaps on a few keys
 * through random members, and a nemesis that kill -9s and restarts members
 * and pauses them (SIGSTOP/SIGCONT). Every client operation is recorded
 * (invoke, then ok / failed / unknown) and the history is judged by the
 * linearizability checker (src/check/linearizability.ts).
 *
 * The deterministic simulator (src/sim/kv-cluster.ts) explores many more
 * interleavings of the same logic; this harness checks the real thing:
 * processes, sockets, the WAL on disk, timers.
 *
 * Network partitions go through the peer transport's test-only fault hook:
 * each member is started with PICCOLO_TEST_FAULT_FILE pointing at a file of
 * its own, and the nemesis writes "block <member> out|in|both" lines there
 * (src/cluster/backend.ts applies them within 50 ms).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkHistory, type Operation, type Value, type Verdict } from "../check/linearizability.js";
import { PiccoloClient, VersionMismatchError } from "../client/client.js";
import { Prng } from "../sim/prng.js";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

export interface ChaosOptions {
  seed: number;
  /** Seconds of faults (then a calm phase and the check). */
  seconds: number;
  clients?: number;
  keys?: number;
  /** Where to write the history when the check fails. */
  historyDir?: string;
  log?: (line: string) => void;
}

export interface ChaosResult {
  verdict: Verdict;
  operations: number;
  ok: number;
  unknown: number;
  kills: number;
  pauses: number;
  partitions: number;
  historyFile: string | null;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface Member {
  name: string;
  clientPort: number;
  dataDir: string;
  proc: ChildProcess | null;
  paused: boolean;
  faultFile: string;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const r = new Prng(o.seed);
  const root = await mkdtemp(join(tmpdir(), "piccolo-chaos-"));
  const peer = await Promise.all([freePort(), freePort(), freePort()]);
  const list = peer.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
  const members: Member[] = await Promise.all(
    [0, 1, 2].map(async (i) => ({
      name: `n${i + 1}`,
      clientPort: await freePort(),
      dataDir: join(root, `n${i + 1}`),
      proc: null,
      paused: false,
      faultFile: join(root, `n${i + 1}.faults`),
    })),
  );
  for (const m of members) await writeFile(m.faultFile, "");

  const start = (m: Member) =>
    new Promise<void>((resolve, reject) => {
      const p = spawn(
        process.execPath,
        [
          CLI,
          "server",
          "--host",
          "127.0.0.1",
          "--port",
          String(m.clientPort),
          "--resp-port",
          "0",
          "--node-id",
          m.name,
          "--cluster",
          list,
          "--data-dir",
          m.dataDir,
          "--partitions",
          "4",
        ],
        { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PICCOLO_TEST_FAULT_FILE: m.faultFile } },
      );
      m.proc = p;
      m.paused = false;
      let out = "";
      let err = "";
      p.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => reject(new Error(`${m.name} did not start: ${err}`)), 15_000);
      p.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("listening on")) {
          clearTimeout(timer);
          resolve();
        }
      });
      p.once("exit", (code, signal) => {
        clearTimeout(timer);
        if (m.proc === p) m.proc = null;
        if (code !== null && code !== 0 && signal === null) log(`${m.name} exited with ${code}: ${err.slice(-500)}`);
      });
    });
  const kill = async (m: Member) => {
    const p = m.proc;
    if (p === null) return;
    const exited = new Promise((res) => p.once("exit", res));
    p.kill("SIGKILL");
    await exited;
  };

  const history: Operation[] = [];
  let stopClients = false;
  let kills = 0;
  let pauses = 0;
  let partitions = 0;
  const t0 = performance.now();
  const now = () => performance.now() - t0;

  const client = async (id: number) => {
    const seen = new Map<string, Map<string, number>>();
    let c: PiccoloClient | null = null;
    let value = 0;
    while (!stopClients) {
      const m = members[r.int(3)]!;
      if (c === null || c.port !== m.clientPort) {
        await c?.close().catch(() => {});
        c = new PiccoloClient({ host: "127.0.0.1", port: m.clientPort, timeoutMs: 2_000, connectTimeoutMs: 500 });
      }
      const key = `k${r.int(o.keys ?? 3)}`;
      let versions = seen.get(key);
      if (versions === undefined) seen.set(key, (versions = new Map()));
      const roll = r.next();
      const call = now();
      try {
        if (roll < 0.45) {
          const e = await c.get(key);
          const v: Value = e === null ? null : e.value.toString();
          if (e !== null) versions.set(v!, e.version);
          history.push({
            client: id,
            key,
            input: { kind: "read" },
            output: { kind: "read", value: v },
            call,
            ret: now(),
          });
        } else if (roll < 0.85 || versions.size === 0) {
          const v = `c${id}-${value++}`;
          const op: Operation = { client: id, key, input: { kind: "write", value: v }, output: null, call, ret: 0 };
          history.push(op);
          const version = await c.put(key, v);
          versions.set(v, version);
          op.output = { kind: "write" };
          op.ret = now();
        } else {
          const [expected, version] = [...versions.entries()][r.int(versions.size)]!;
          const v = `c${id}-${value++}`;
          const op: Operation = {
            client: id,
            key,
            input: { kind: "cas", expected, value: v },
            output: null,
            call,
            ret: 0,
          };
          history.push(op);
          try {
            versions.set(v, await c.cas(key, v, version));
            op.output = { kind: "cas", ok: true };
          } catch (err) {
            if (!(err instanceof VersionMismatchError)) throw err;
            op.output = { kind: "cas", ok: false };
          }
          op.ret = now();
        }
      } catch {
        // The outcome is unknown (timeout, connection lost, no leader in time):
        // a write stays in the history with no output; a failed read says nothing.
        c = null;
        await new Promise((res) => setTimeout(res, 20));
      }
    }
    await c?.close().catch(() => {});
  };

  // Interrupted (Ctrl-C, a CI timeout): take the cluster down with us, not leave it running.
  const onSignal = (signal: NodeJS.Signals) => {
    for (const m of members) {
      if (m.paused) m.proc?.kill("SIGCONT");
      m.proc?.kill("SIGKILL");
    }
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await Promise.all(members.map(start));
    log(`cluster up: ${list}`);
    const clients = Array.from({ length: o.clients ?? 4 }, (_, i) => client(i));
    const end = Date.now() + o.seconds * 1000;
    while (Date.now() < end) {
      await new Promise((res) => setTimeout(res, 1000 + r.int(2000)));
      const m = members[r.int(3)]!;
      const roll = r.next();
      if (roll < 0.3) {
        // Cut m off from the others: both ways, or only what m sends (one way).
        const oneWay = r.chance(0.5);
        const others = members.filter((x) => x !== m);
        const id = (x: Member) => Number(x.name.slice(1));
        await writeFile(m.faultFile, others.map((x) => `block ${id(x)} ${oneWay ? "out" : "both"}`).join("\n"));
        if (!oneWay) for (const x of others) await writeFile(x.faultFile, `block ${id(m)} both`);
        partitions++;
        log(
          `${(now() / 1000).toFixed(1)}s partition ${m.name} (${oneWay ? "one way: its sends are lost" : "both ways"})`,
        );
        await new Promise((res) => setTimeout(res, 1000 + r.int(2000)));
        for (const x of members) await writeFile(x.faultFile, "");
        log(`${(now() / 1000).toFixed(1)}s healed`);
      } else if (roll < 0.65) {
        log(`${(now() / 1000).toFixed(1)}s kill -9 ${m.name}`);
        await kill(m);
        kills++;
        await new Promise((res) => setTimeout(res, 500 + r.int(1500)));
        await start(m);
        log(`${(now() / 1000).toFixed(1)}s restarted ${m.name}`);
      } else if (m.proc !== null) {
        log(`${(now() / 1000).toFixed(1)}s SIGSTOP ${m.name}`);
        m.proc.kill("SIGSTOP");
        m.paused = true;
        pauses++;
        await new Promise((res) => setTimeout(res, 500 + r.int(1500)));
        m.proc?.kill("SIGCONT");
        m.paused = false;
        log(`${(now() / 1000).toFixed(1)}s SIGCONT ${m.name}`);
      }
    }
    // Calm: everyone up and connected, let the clients see a healthy cluster, then stop.
    for (const m of members) await writeFile(m.faultFile, "");
    for (const m of members) if (m.proc === null) await start(m);
    await new Promise((res) => setTimeout(res, 2_000));
    stopClients = true;
    await Promise.all(clients);
    const verdict = checkHistory(history);
    let historyFile: string | null = null;
    if (verdict.ok !== true) {
      historyFile = join(o.historyDir ?? tmpdir(), `piccolo-chaos-${o.seed}-${Date.now()}.json`);
      await writeFile(historyFile, JSON.stringify({ seed: o.seed, verdict, history }, null, 1));
    }
    return {
      verdict,
      operations: history.length,
      ok: history.filter((h) => h.output !== null).length,
      unknown: history.filter((h) => h.output === null).length,
      kills,
      pauses,
      partitions,
      historyFile,
    };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    for (const m of members) {
      if (m.paused) m.proc?.kill("SIGCONT");
      await kill(m);
    }
    await rm(root, { recursive: true, force: true });
  }
}
