// The Dockerfile and compose.yaml, checked without Docker: every flag a
// service passes is one `piccolo server --help` (or `cerializer --help`)
// lists, members off loopback carry the cluster secret and a password, the
// member list, node ids, ports and secrets agree with each other, and every
// file the Dockerfile copies or runs exists. When a Docker daemon and the
// compose plugin are present, the image is also built and the cluster run;
// on a machine without them (as where this was written) that case is
// skipped and says so.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { CLI } from "../support/node.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  volumes?: string[];
  ports?: string[];
  depends_on?: string[] | Record<string, unknown>;
  healthcheck?: { test: string[] };
}
const compose = parse(readFileSync(join(ROOT, "compose.yaml"), "utf8"), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const services = compose.services;

/** The `--name` flags a `piccolo <sub> --help` lists. */
function helpFlags(sub: string): Set<string> {
  const r = spawnSync(process.execPath, [CLI, sub, "--help"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return new Set([...r.stdout.matchAll(/^ {2}--([a-z0-9-]+)/gm)].map((m) => m[1]!));
}

/** A command's flags as a map, from "--name=value" or "--name value". */
function flags(command: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 1; i < command.length; i++) {
    const a = command[i]!;
    assert.ok(a.startsWith("--"), `"${a}" is not a flag (in ${command.join(" ")})`);
    const eq = a.indexOf("=");
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else out.set(a.slice(2), command[++i] ?? "");
  }
  return out;
}

/** "volume:/path[:ro]" -> the path inside the container. */
function mounts(s: Service): string[] {
  return (s.volumes ?? []).map((v) => v.split(":")[1]!);
}

const members = Object.entries(services).filter(([, s]) => s.command?.[0] === "server");

describe("compose.yaml", () => {
  it("runs three members and a Cerializer, every flag one the CLI knows", () => {
    assert.deepEqual(
      members.map(([name]) => name),
      ["n1", "n2", "n3"],
    );
    const server = helpFlags("server");
    const gateway = helpFlags("cerializer");
    for (const [name, s] of Object.entries(services)) {
      if (s.command === undefined || s.command.length === 0) continue;
      const known = s.command[0] === "server" ? server : s.command[0] === "cerializer" ? gateway : null;
      assert.ok(known !== null, `${name}: unknown subcommand ${s.command[0]}`);
      for (const f of flags(s.command).keys())
        assert.ok(known.has(f), `${name}: --${f} is not a flag of piccolo ${s.command[0]}`);
    }
    assert.equal(services.cerializer?.command?.[0], "cerializer");
  });

  it("members agree on the member list, each is its own service, peer port not published", () => {
    const lists = new Set(members.map(([, s]) => flags(s.command!).get("cluster")));
    assert.equal(lists.size, 1, "every member is given the same --cluster");
    const list = [...lists][0]!.split(",").map((m) => /^(\w+)=([\w.-]+):(\d+)$/.exec(m)!);
    for (const [name, s] of members) {
      const f = flags(s.command!);
      assert.equal(f.get("node-id"), name, `${name}: --node-id is its service name`);
      const entry = list.find((m) => m[1] === name);
      assert.ok(entry, `${name} is in --cluster`);
      assert.equal(entry[2], name, `${name}: its peer address is its service's host name`);
      for (const p of s.ports ?? []) assert.ok(!p.endsWith(`:${entry[3]}`), `${name}: the peer port is not published`);
    }
  });

  it("members on 0.0.0.0 have a cluster secret and a password, on a mounted volume the secrets service fills", () => {
    for (const [name, s] of members) {
      const f = flags(s.command!);
      assert.equal(f.get("host"), "0.0.0.0");
      for (const flag of ["cluster-secret-file", "requirepass-file"]) {
        const path = f.get(flag);
        assert.ok(path, `${name}: --${flag} (a member off loopback refuses to start without a secret; protected mode)`);
        assert.ok(
          mounts(s).some((m) => path.startsWith(`${m}/`)),
          `${name}: ${path} is on a mounted volume`,
        );
      }
      assert.deepEqual(s.depends_on, { secrets: { condition: "service_completed_successfully" } });
      assert.ok(s.healthcheck?.test.includes(f.get("requirepass-file")!), `${name}: the health check authenticates`);
    }
    const gen = services.secrets!;
    assert.ok(mounts(gen).includes("/secrets"));
    const script = gen.entrypoint!.find((a) => a.endsWith(".mjs"))!;
    assert.equal(script, "/opt/piccolo/docker/make-secrets.mjs", "the generator is where the Dockerfile copies it");
    const gateway = flags(services.cerializer!.command!);
    assert.equal(gateway.get("password-file"), flags(members[0]![1].command!).get("requirepass-file"));
  });

  it("published ports reach the ports the processes listen on, on 127.0.0.1, once each", () => {
    const host = new Set<string>();
    const listened = (s: Service): Set<string> => {
      const f = flags(s.command!);
      if (s.command![0] === "cerializer") return new Set([f.get("http-port") ?? "8700"]);
      return new Set([f.get("port") ?? "7700", f.get("resp-port") ?? "6380"]);
    };
    for (const [name, s] of Object.entries(services)) {
      for (const p of s.ports ?? []) {
        const m = /^127\.0\.0\.1:(\d+):(\d+)$/.exec(p);
        assert.ok(m, `${name}: "${p}" is 127.0.0.1:host:container`);
        assert.ok(!host.has(m[1]!), `${name}: host port ${m[1]} published twice`);
        host.add(m[1]!);
        assert.ok(listened(s).has(m[2]!), `${name}: container port ${m[2]} is one it listens on`);
      }
    }
    // The same host ports as `npm run cluster` (scripts/cluster.mjs), so its instructions carry over.
    for (const p of ["7701", "7702", "7703", "6381", "6382", "6383", "8700"]) assert.ok(host.has(p), p);
    const nodes = flags(services.cerializer!.command!).get("nodes")!.split(",");
    for (const [name, s] of members) assert.ok(nodes.includes(`${name}:${flags(s.command!).get("port")}`));
  });

  it("every named volume is declared", () => {
    for (const [name, s] of Object.entries(services))
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0]!;
        assert.ok(source in compose.volumes, `${name}: volume ${source} is declared`);
      }
  });
});

describe("Dockerfile", () => {
  const lines = readFileSync(join(ROOT, "Dockerfile"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"));
  const scripts = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts as Record<string, string>;

  it("copies only what exists, and runs only scripts package.json has", () => {
    for (const l of lines) {
      const [op, ...rest] = l.trim().split(/\s+/);
      if (op === "COPY" && !rest[0]!.startsWith("--from=")) {
        for (const src of rest.slice(0, -1)) assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: no such file`);
      }
      if (op === "RUN")
        for (const m of l.matchAll(/npm run ([\w:-]+)/g))
          assert.ok(m[1]! in scripts, `RUN npm run ${m[1]}: no such script`);
    }
  });

  it("builds on Node 20, the range engines accepts, and starts piccolo", () => {
    const engines = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).engines.node as string;
    const from = lines.filter((l) => l.startsWith("FROM "));
    assert.ok(from.length >= 1);
    for (const l of from) assert.match(l, /^FROM node:20[-\w.]*( AS \w+)?$/);
    assert.equal(engines, ">=20");
    assert.ok(lines.includes('ENTRYPOINT ["piccolo"]'));
    const cmd = JSON.parse(lines.find((l) => l.startsWith("CMD "))!.slice(4)) as string[];
    assert.equal(cmd[0], "server");
    const known = helpFlags("server");
    for (const f of flags(cmd).keys()) assert.ok(known.has(f), `CMD: --${f}`);
  });

  it(".dockerignore keeps node_modules, dist and local data out of the build context", () => {
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n");
    for (const p of ["node_modules", "dist", "data", ".git"]) assert.ok(ignored.includes(p), p);
  });
});

describe("with Docker", () => {
  const daemon = spawnSync("docker", ["info"], { encoding: "utf8" }).status === 0;
  const composePlugin = spawnSync("docker", ["compose", "version"], { encoding: "utf8" }).status === 0;

  // A cold build can take longer than the suite's 3 minutes per test (scripts/test-watchdog.mjs):
  // run this file alone with PICCOLO_TEST_TIMEOUT_MS=900000 the first time.
  it("builds the image and runs the cluster", { timeout: 15 * 60_000 }, (t) => {
    if (!daemon || !composePlugin)
      return t.skip(`no Docker here (daemon: ${daemon ? "yes" : "no"}, compose: ${composePlugin ? "yes" : "no"})`);
    const dc = (...args: string[]) => {
      const r = spawnSync("docker", ["compose", "-p", "piccolo-test", ...args], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 10 * 60_000,
      });
      assert.equal(r.status, 0, `docker compose ${args.join(" ")}\n${r.stdout}\n${r.stderr}`);
      return r.stdout;
    };
    try {
      dc("up", "--build", "--detach", "--wait");
      const auth = ["--password-file", "/secrets/admin.pass"];
      dc("exec", "-T", "n1", "piccolo", "put", "docker:k", "v", "--server", "n1:7700", ...auth);
      assert.equal(dc("exec", "-T", "n3", "piccolo", "get", "docker:k", "--server", "n3:7700", ...auth), "v\n");
    } finally {
      spawnSync("docker", ["compose", "-p", "piccolo-test", "down", "--volumes"], { cwd: ROOT });
    }
  });
});
