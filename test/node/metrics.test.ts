// A node's own metrics and health (--metrics-port, src/node/metrics.ts), on real processes on 127.0.0.1:
// /metrics in Prometheus text with the documented names, the keys gauge following writes, /healthz, /readyz,
// 404 elsewhere; no port opened without the flag; a cluster member's partition metrics and readiness.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:net";
import { copyFileSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { get as httpsGet } from "node:https";
import { makeCerts, tlsFlags } from "../support/certs.js";
import { CLI, freePort, memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";

async function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, type: r.headers.get("content-type") ?? "", body: await r.text() };
}

/** The sample values of `name` in Prometheus text, by their label set. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-z0-9_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m !== null && m[1] === name) out.set(m[2] ?? "", Number(m[3]));
  }
  return out;
}

function sum(text: string, name: string): number {
  let s = 0;
  for (const v of samples(text, name).values()) s += v;
  return s;
}

async function eventually(what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await f().catch(() => false)) return;
    await sleep(100);
  }
  assert.fail(`timed out: ${what}`);
}

/** TCP ports process `pid` listens on (Linux: its socket inodes in /proc/net/tcp*); null elsewhere. */
function listeningPorts(pid: number): number[] | null {
  if (process.platform !== "linux") return null;
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null) inodes.add(m[1]!);
    } catch {}
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"])
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9]!)) ports.push(Number.parseInt(f[1]!.split(":")[1]!, 16));
    }
  return ports.sort((a, b) => a - b);
}

/** Every metric name the node and the member suites saw (# HELP lines): the dashboard may use only these. */
const seen = new Set<string>();
function see(text: string): void {
  for (const m of text.matchAll(/^# HELP (\S+)/gm)) seen.add(m[1]!);
}

describe("a single node with --metrics-port", () => {
  let node: RunningNode;
  let port: number;
  before(async () => {
    port = await freePort();
    node = await startNode(["--shards", "2", "--resp-port", "0", "--metrics-port", String(port)]);
  });
  after(async () => {
    await node?.stop();
  });

  it("serves Prometheus text with the node's metrics", async () => {
    const r = await get(port, "/metrics");
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain/);
    see(r.body);
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "piccolo_connections",
      "piccolo_keys",
      "piccolo_memory_bytes",
      "piccolo_reads_total",
      "piccolo_writes_total",
      "piccolo_expired_total",
      "piccolo_fsyncs_total",
      "piccolo_fsync_seconds_total",
      "piccolo_fsync_max_seconds",
    ])
      assert.ok(samples(r.body, name).size > 0, `${name} has a sample`);
    assert.deepEqual([...samples(r.body, "piccolo_keys").keys()].sort(), ['{shard="0"}', '{shard="1"}']);
    assert.match(r.body, /# TYPE piccolo_writes_total counter/);
    assert.match(r.body, /# TYPE piccolo_keys gauge/);
    assert.equal(samples(r.body, "piccolo_cluster_proposals_total").size, 0, "no Raft metrics on a single node");
  });

  it("the keys gauge, the writes counter and the connections gauge follow the clients", async () => {
    const before = await get(port, "/metrics");
    const c = await node.client();
    try {
      for (let i = 0; i < 20; i++) await c.put(`metrics-key-${i}`, "v");
      const r = await get(port, "/metrics");
      assert.equal(sum(r.body, "piccolo_keys") - sum(before.body, "piccolo_keys"), 20);
      assert.ok(sum(r.body, "piccolo_writes_total") - sum(before.body, "piccolo_writes_total") >= 20);
      assert.equal(sum(r.body, "piccolo_connections"), 1);
      assert.doesNotMatch(r.body, /metrics-key/, "no key is ever shown");
    } finally {
      await c.close();
    }
  });

  it("/healthz and /readyz answer 200; another path 404, another method 405", async () => {
    assert.equal((await get(port, "/healthz")).status, 200);
    const ready = await get(port, "/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.body), { ready: true });
    assert.equal((await get(port, "/")).status, 404);
    assert.equal((await get(port, "/v1/kv/x")).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status, 405);
  });

  it("listens on one more port than the same node without the flag", () => {
    const ports = listeningPorts(node.process.pid!);
    if (ports === null) return;
    assert.deepEqual(
      ports,
      [node.port, port].sort((a, b) => a - b),
    );
  });
});

describe("without --metrics-port", () => {
  it("no metrics port is opened, and the help says it is off by default", async () => {
    const help = execFileSync(process.execPath, [CLI, "server", "--help"], { encoding: "utf8" });
    assert.match(help, /--metrics-port[\s\S]*0: off/);
    const node = await startNode(["--in-memory", "--shards", "0", "--resp-port", "0"]);
    try {
      const ports = listeningPorts(node.process.pid!);
      if (ports !== null) assert.deepEqual(ports, [node.port]);
    } finally {
      await node.stop();
    }
  });
});

describe("a cluster member with --metrics-port (3 members, 64 partitions)", () => {
  let root: string;
  const nodes: RunningNode[] = [];
  const ports: number[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "piccolo-metrics-cluster-"));
    const list = await memberList();
    for (let i = 0; i < 3; i++) {
      ports.push(await freePort());
      nodes.push(await startMember(list, root, i, ["--metrics-port", String(ports[i])]));
    }
  });
  after(async () => {
    await stopAll(nodes);
    await rm(root, { recursive: true, force: true });
  });

  it("/readyz is 200 once every partition has a leader", async () => {
    for (const p of ports)
      await eventually(`member on ${p} ready`, async () => (await get(p, "/readyz")).status === 200);
  });

  it("/metrics has the member's Raft and per-partition metrics", async () => {
    const c = await nodes[0]!.client();
    try {
      for (let i = 0; i < 10; i++) await c.put(`cluster-metrics-${i}`, "v");
    } finally {
      await c.close();
    }
    const led = new Set<string>();
    for (const p of ports) {
      const r = await get(p, "/metrics");
      assert.equal(r.status, 200);
      see(r.body);
      for (const name of [
        "piccolo_cluster_proposals_total",
        "piccolo_cluster_elections_total",
        "piccolo_cluster_leader_changes_total",
        "piccolo_cluster_proposal_p99_seconds",
        "piccolo_cluster_wal_p99_seconds",
        "piccolo_cluster_forwarded_total",
      ])
        assert.equal(samples(r.body, name).size, 1, `${name} on the member at ${p}`);
      for (const name of [
        "piccolo_partition_commit_index",
        "piccolo_partition_applied_index",
        "piccolo_partition_is_leader",
      ])
        assert.equal(samples(r.body, name).size, 64, `${name}: one per partition`);
      const leads = [...samples(r.body, "piccolo_partition_is_leader")].filter(([, v]) => v === 1).map(([k]) => k);
      for (const k of leads) led.add(k);
      // Each partition it leads has two followers, each with a lag.
      assert.equal(samples(r.body, "piccolo_partition_follower_lag").size, 2 * leads.length);
      if (leads.length > 0)
        assert.match(r.body, /piccolo_partition_follower_lag\{partition="\d+",follower="n[123]"\} \d+/);
    }
    // Leadership settles (and is rebalanced) after start-up: scraped again until the views agree.
    await eventually("every partition led by one of the members", async () => {
      const union = new Set<string>();
      for (const p of ports)
        for (const [k, v] of samples((await get(p, "/metrics")).body, "piccolo_partition_is_leader"))
          if (v === 1) union.add(k);
      return union.size === 64;
    });
    assert.ok(led.size > 0);
  });
});

describe("a cluster member alone (its peers not started)", () => {
  it("/readyz is 503 with the reason: no partition has a leader", async () => {
    const root = await mkdtemp(join(tmpdir(), "piccolo-metrics-alone-"));
    const port = await freePort();
    const node = await startMember(await memberList(), root, 0, ["--partitions", "8", "--metrics-port", String(port)]);
    try {
      const r = await get(port, "/readyz");
      assert.equal(r.status, 503);
      const body = JSON.parse(r.body) as { ready: boolean; reason: string; partitions: number[] };
      assert.equal(body.ready, false);
      assert.match(body.reason, /8 of 8 partitions have no known leader/);
      assert.equal((await get(port, "/healthz")).status, 200, "alive all the same");
    } finally {
      await node.stop();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("examples/grafana/piccolo.json", () => {
  it("uses only metric names the node exposes", () => {
    const dashboard = readFileSync(new URL("../../../examples/grafana/piccolo.json", import.meta.url), "utf8");
    const used = new Set([...dashboard.matchAll(/\b((?:piccolo|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!));
    assert.ok(used.size >= 10);
    assert.ok(seen.size > 0, "the suites above ran");
    for (const name of used) assert.ok(seen.has(name), `${name} is exposed by a node`);
  });
});

describe("with TLS on (--tls-cert-file)", () => {
  it("the metrics port speaks HTTPS with the same certificate (renewed on SIGHUP), and not plaintext", async () => {
    const certs = makeCerts("node");
    const port = await freePort();
    const node = await startNode([
      "--in-memory",
      "--shards",
      "0",
      "--resp-port",
      "0",
      "--metrics-port",
      String(port),
      ...tlsFlags(certs, "node"),
    ]);
    try {
      const scrape = (ca: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          httpsGet({ host: "127.0.0.1", port, path: "/metrics", ca: readFileSync(ca), agent: false }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => (body += d));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          }).on("error", reject);
        });
      const r = await scrape(certs.ca);
      assert.equal(r.status, 200);
      assert.ok(samples(r.body, "piccolo_keys").size > 0);
      // A renewed certificate (here from another CA) is taken on SIGHUP, as on the client ports.
      const renewed = makeCerts("node");
      copyFileSync(renewed.cert("node").cert, certs.cert("node").cert);
      copyFileSync(renewed.cert("node").key, certs.cert("node").key);
      node.process.kill("SIGHUP");
      await eventually("the renewed certificate served", async () => (await scrape(renewed.ca)).status === 200);
      await assert.rejects(scrape(certs.ca), "the old CA no longer verifies it");
      await rm(renewed.dir, { recursive: true, force: true });
      await assert.rejects(get(port, "/healthz"), "plaintext is not answered");
    } finally {
      await node.stop();
      await rm(certs.dir, { recursive: true, force: true });
    }
  });
});

describe("--metrics-port taken", () => {
  it("the start stops with exit 71 and one line naming --metrics-port", async () => {
    const held = createServer();
    await new Promise<void>((r) => held.listen(0, "127.0.0.1", r));
    const taken = (held.address() as { port: number }).port;
    try {
      const args = ["server", "--host", "127.0.0.1", "--port", "0", "--resp-port", "0", "--in-memory"];
      const child = spawn(process.execPath, [CLI, ...args, "--metrics-port", String(taken)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let err = "";
      let out = "";
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const code = await new Promise<number | null>((r) => child.once("exit", r));
      clearTimeout(timer);
      await sleep(50);
      assert.equal(code, 71, err);
      assert.match(
        err.trim(),
        new RegExp(
          `^piccolo: cannot start: 127\\.0\\.0\\.1:${taken} \\(the metrics port, --metrics-port\\) is already in use[^\\n]*$`,
        ),
      );
      assert.doesNotMatch(out, /listening on/);
    } finally {
      held.close();
    }
  });
});
