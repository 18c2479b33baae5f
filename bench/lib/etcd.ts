// A single-member etcd (Debian's etcd-server) for the HTTP benchmarks: found,
// or installed when running as root, or missing (the benchmark then runs its
// Piccolo half alone and says so); started on free loopback ports with its
// data in a temp dir, over HTTP or HTTPS, its JSON gateway's path detected.
import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { b64, send } from "./http.js";
import { freePort } from "./ports.js";
import { type Procs, sleep } from "./procs.js";

export function etcdVersionOf(bin: string): string | null {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.status !== 0 || !r.stdout) return null;
  return /etcd Version:\s*(\S+)/.exec(r.stdout)?.[1] ?? r.stdout.split("\n")[0]!.trim();
}

/** etcd's version, installing it first when missing and root; `missing` says why there is none. */
export function findEtcd(bench: string, bin: string): { version: string | null; missing: string | null } {
  let version = etcdVersionOf(bin);
  if (version !== null) return { version, missing: null };
  console.error(
    `${bench}: etcd (${bin}) is not installed. Install it with:\n` +
      "  apt-get update && apt-get install -y etcd-server",
  );
  if (process.getuid?.() === 0) {
    console.error(`${bench}: running as root: installing etcd-server now`);
    spawnSync("sh", ["-c", "apt-get update && apt-get install -y etcd-server"], {
      stdio: ["ignore", 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      timeout: 600_000,
    });
    version = etcdVersionOf(bin);
  }
  if (version !== null) return { version, missing: null };
  const missing = "etcd is not installed and could not be installed here: only the Piccolo half was run.";
  console.error(`${bench}: ${missing}`);
  return { version: null, missing };
}

export interface EtcdTls {
  certFile: string;
  keyFile: string;
  /** The CA of certFile, trusted by the probe. */
  ca: Buffer;
}

/**
 * Starts etcd (clients over https when `tls` is given; the peer URL stays plain http, one member has no
 * peers); answers its client URL, the gateway's path prefix (/v3, or /v3beta on 3.3), its process and its
 * data directory: a new temp dir, or `o.dataDir` (one `etcdctl snapshot restore` wrote, say; the caller
 * removes it). `o.args` are added to its flags.
 */
export async function startEtcd(
  procs: Procs,
  bin: string,
  version: string,
  tls?: EtcdTls,
  o: { args?: string[]; dataDir?: string } = {},
): Promise<{ base: string; prefix: string; child: ChildProcess; dir: string }> {
  let dir = o.dataDir;
  if (dir === undefined) {
    const tmp = mkdtempSync(join(tmpdir(), "piccolo-bench-etcd-"));
    procs.onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
    dir = tmp;
  }
  const c = `${tls ? "https" : "http"}://127.0.0.1:${await freePort()}`;
  const p = `http://127.0.0.1:${await freePort()}`;
  const [major = 0, minor = 0] = version.split(".").map(Number);
  const quiet = major > 3 || (major === 3 && minor >= 4) ? ["--logger=zap", "--log-level=error"] : [];
  const tail: string[] = [];
  const proc = procs.child(
    tls ? "etcd (https)" : "etcd",
    bin,
    [
      "--name=bench",
      `--data-dir=${dir}`,
      `--listen-client-urls=${c}`,
      `--advertise-client-urls=${c}`,
      `--listen-peer-urls=${p}`,
      `--initial-advertise-peer-urls=${p}`,
      `--initial-cluster=bench=${p}`,
      "--initial-cluster-state=new",
      ...(tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`] : []),
      ...quiet,
      ...(o.args ?? []),
    ],
    tail,
  );
  proc.stdout!.resume();
  const probe = { base: c, ...(tls ? { ca: tls.ca } : {}) };
  let last = "";
  for (let i = 0; i < 200; i++) {
    for (const prefix of ["/v3", "/v3beta", "/v3alpha"]) {
      try {
        const r = await send(probe, {
          method: "POST",
          path: `${prefix}/kv/range`,
          body: JSON.stringify({ key: b64("probe") }),
        });
        if (r.status === 200) return { base: c, prefix, child: proc, dir };
      } catch (err) {
        last = (err as Error).message;
        break; // not listening yet
      }
    }
    await sleep(100);
  }
  throw new Error(`etcd did not answer on /v3, /v3beta or /v3alpha within 20 s (last: ${last}):\n${tail.join("")}`);
}
