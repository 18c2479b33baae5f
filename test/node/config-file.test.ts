// `piccolo server --config FILE` and `piccolo cerializer --config FILE`
// (issue #20; docs/decisions/0270-config-file.md). The merge of the four
// layers (flag > env > file > default) is checked as a table; then real
// processes on 127.0.0.1 show each step of the precedence by the port they
// listen on, and that a bad file stops the start with exit 2 and a message
// naming the key, the file and its line. Every example in examples/ must
// parse and resolve.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { CERIALIZER_FLAGS } from "../../src/cli/cerializer.js";
import { ConfigError } from "../../src/config-error.js";
import { readServerConfigFile, resolveConfig, SERVER_FLAGS, SERVER_SWITCHES } from "../../src/node/config.js";
import { closestFlag, type ConfigFile, keyType, layered, readConfigFile } from "../../src/node/config-file.js";
import { CLI, freePort } from "../support/node.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLES = {
  single: join(ROOT, "examples/single-node.toml"),
  cluster: [1, 2, 3].map((i) => join(ROOT, `examples/cluster/n${i}.toml`)),
};

const dir = mkdtempSync(join(tmpdir(), "piccolo-config-file-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** Writes a config file (mode 600, as a file with a secret should be) and returns its path. */
function configFile(text: string): string {
  const path = join(dir, `c${++files}.toml`);
  writeFileSync(path, text);
  chmodSync(path, 0o600);
  return path;
}

/** This process's environment without any PICCOLO_ variable (a developer's shell must not change the outcome). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PICCOLO_")) env[k] = v;
  return { ...env, ...extra };
}

interface Outcome {
  /** The exit code; null while it is still running (it started). */
  code: number | null;
  out: string;
  err: string;
}

/**
 * Runs `piccolo <args>` with only `env` added to a clean environment, until it
 * prints a line matching `started` (then it is stopped) or exits.
 */
function run(args: string[], env: Record<string, string> = {}, started = /listening on/): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: cleanEnv(env) });
    let out = "";
    let err = "";
    let up = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`neither started nor exited in 30 s: piccolo ${args.join(" ")}\nstdout: ${out}\nstderr: ${err}`),
      );
    }, 30_000);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!up && started.test(out)) {
        up = true;
        child.kill("SIGTERM");
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      setImmediate(() => resolve({ code: up ? null : code, out, err }));
    });
  });
}

/** The ports of a node's start line: "piccolo listening on 127.0.0.1:P (...), resp on 127.0.0.1:R". */
function ports(o: Outcome): { port: number; resp: number } {
  const m = /piccolo listening on 127\.0\.0\.1:(\d+) .*resp on 127\.0\.0\.1:(\d+)/.exec(o.out);
  assert.ok(m, `a start line; exit ${o.code}\nstdout: ${o.out}\nstderr: ${o.err}`);
  return { port: Number(m[1]), resp: Number(m[2]) };
}

/** A refused start: exit 2 and a message on stderr matching `what`. */
function refused(o: Outcome, what: RegExp): void {
  assert.equal(o.code, 2, `exit 2 (usage); stdout: ${o.out}\nstderr: ${o.err}`);
  assert.match(o.err, what);
}

function read(text: string): ConfigFile {
  return readServerConfigFile(configFile(text));
}

describe("the merge: flag > environment > file > default", () => {
  const file: ConfigFile = { path: "f.toml", values: { port: "3", "in-memory": true }, lines: {}, warnings: [] };
  // [flag, env, file?] for --port -> the value and where it came from.
  const cases: { flag?: string; env?: string; inFile: boolean; want: string; from: string }[] = [
    { flag: "1", env: "2", inFile: true, want: "1", from: "flag" },
    { flag: "1", inFile: true, want: "1", from: "flag" },
    { env: "2", inFile: true, want: "2", from: "env" },
    { env: "2", inFile: false, want: "2", from: "env" },
    { inFile: true, want: "3", from: "file" },
    { inFile: false, want: "7700", from: "default" },
  ];
  for (const c of cases)
    it(`flag ${c.flag ?? "-"}, env ${c.env ?? "-"}, file ${c.inFile ? "3" : "-"}: ${c.want} from the ${c.from}`, () => {
      const l = layered(
        SERVER_FLAGS,
        c.flag === undefined ? {} : { port: c.flag },
        c.env === undefined ? {} : { PICCOLO_PORT: c.env },
        c.inFile ? file : null,
      );
      assert.equal(l.pick("port"), c.want);
      assert.equal(l.source("port"), c.from);
    });

  it("a switch: on from a flag; else its environment variable decides ('1': on, anything else: off); else the file", () => {
    assert.equal(layered(SERVER_FLAGS, { "in-memory": true }, { PICCOLO_IN_MEMORY: "0" }, file).on("in-memory"), true);
    assert.equal(layered(SERVER_FLAGS, {}, { PICCOLO_IN_MEMORY: "0" }, file).on("in-memory"), false);
    assert.equal(layered(SERVER_FLAGS, {}, { PICCOLO_IN_MEMORY: "1" }, null).on("in-memory"), true);
    assert.equal(layered(SERVER_FLAGS, {}, {}, file).on("in-memory"), true);
    const off = { ...file, values: { "in-memory": false } };
    assert.equal(layered(SERVER_FLAGS, {}, {}, off).on("in-memory"), false);
    assert.equal(layered(SERVER_FLAGS, {}, {}, null).on("in-memory"), false);
  });

  it("resolveConfig takes the file as the layer under env", () => {
    const f = read('port = 7001\nresp-port = "7002"\nin-memory = true\nshards = 0\nprotected-mode = false\n');
    const c = resolveConfig({ port: "7003" }, { PICCOLO_RESP_PORT: "7004" }, f);
    assert.equal(c.port, 7003);
    assert.equal(c.respPort, 7004);
    assert.equal(c.shards, 0);
    assert.equal(c.durability, null, "in-memory = true");
    assert.equal(c.protectedMode, false, "protected-mode = false is no");
    assert.equal(resolveConfig({}, {}, f).port, 7001);
  });

  it("fsync in a cluster member's file is refused as the flag is", () => {
    const f = read('cluster = "n1=127.0.0.1:1"\nnode-id = "n1"\nfsync = "always"\n');
    assert.throws(() => resolveConfig({}, {}, f), /--fsync and --in-memory are for a single node/);
  });
});

describe("reading a file: what is refused, and how it is named", () => {
  it("an unknown key, with the closest flag and the line", () => {
    const path = configFile("port = 1\n\nresp_port = 2\n");
    assert.throws(() => readServerConfigFile(path), {
      name: "ConfigError",
      message: `${path}:3: unknown key "resp_port": did you mean "resp-port"?`,
    });
    assert.throws(() => read("colour = 1\n"), /unknown key "colour": the keys are the flags of piccolo server --help/);
  });

  it("a [section]: the file is flat", () => {
    assert.throws(() => read("[server]\nport = 1\n"), /:1: unknown key "server" \(a table: the file is flat/);
    assert.throws(
      () => read("[cluster]\nnode-id = 1\n"),
      /:1: "cluster" must be a string .*got a table \(the file is flat/,
    );
  });

  it("a value of the wrong type, with the type expected", () => {
    assert.throws(
      () => read('in-memory = "yes"\n'),
      /:1: "in-memory" must be a boolean \(true or false\), got a string/,
    );
    assert.throws(() => read("port = 1.5\n"), /:1: "port" must be an integer .*got a float/);
    assert.throws(() => read("host = 127\n"), /:1: "host" must be a string .*got an integer/);
    assert.throws(() => read('data-dir = ["a"]\n'), /:1: "data-dir" must be a string .*got an array/);
  });

  it("a value out of range: the flag's own check, with the file and line it came from", () => {
    const path = configFile('host = "127.0.0.1"\nport = 70000\n');
    assert.throws(() => resolveConfig({}, {}, readServerConfigFile(path)), {
      message: `${path}:2: port: --port must be an integer in [0, 65535], got "70000"`,
    });
    assert.throws(
      () => resolveConfig({}, { PICCOLO_PORT: "x" }, null),
      /--port must be an integer in \[0, 65535\], got "x" \(from the environment variable PICCOLO_PORT\)/,
    );
  });

  it("TOML that does not parse: the parser's line and a pointer", () => {
    assert.throws(() => read('port = 1\nhost = "a\n'), /:2: not valid TOML/);
  });

  it("a missing file, and a file that names another", () => {
    assert.throws(
      () => readServerConfigFile(join(dir, "absent.toml")),
      /the config file .*absent\.toml cannot be read/,
    );
    assert.throws(() => read('config = "other.toml"\n'), /"config" cannot be set in a config file/);
  });

  it("an inline password in a file others can read is a warning", () => {
    const path = configFile('requirepass = "hunter2hunter2"\n');
    assert.deepEqual(readServerConfigFile(path).warnings, []);
    chmodSync(path, 0o644);
    assert.match(readServerConfigFile(path).warnings[0] ?? "", /holds requirepass and can be read by other users/);
    const c = resolveConfig({}, {}, readServerConfigFile(path));
    assert.equal(c.requirePass, "hunter2hunter2");
    assert.ok(!c.warnings.some((w) => /\(ps\)/.test(w)), "no ps warning: it was not a flag");
  });

  it("every flag has a type its default satisfies, and a typo of each is caught as that flag", () => {
    for (const [table, switches] of [
      [SERVER_FLAGS, SERVER_SWITCHES],
      [CERIALIZER_FLAGS, []],
    ] as const) {
      for (const [name, f] of Object.entries(table)) {
        const t = keyType(table, name, switches);
        if (t === "integer") assert.match(f.default, /^(\d+|auto)$/, name);
        if (t === "switch") assert.equal(f.default, "", name);
        assert.equal(closestFlag(table, name.replaceAll("-", "_")), name);
      }
    }
  });
});

describe("the examples in examples/", () => {
  it("single-node.toml resolves; its commented-out defaults are the defaults", () => {
    const c = resolveConfig({}, {}, readServerConfigFile(EXAMPLES.single));
    assert.equal(c.port, 7700);
    assert.equal(c.respPort, 6380);
    assert.equal(c.cluster, null);
    assert.equal(c.durability?.fsync, "everysec");
    checkCommentedDefaults(EXAMPLES.single);
  });

  it("cluster/n1-n3.toml resolve to three members of one cluster, each with its own ports and data", () => {
    const members = EXAMPLES.cluster.map((p) => resolveConfig({}, {}, readServerConfigFile(p)));
    assert.deepEqual(
      members.map((c) => [c.cluster?.nodeId, c.port, c.respPort, c.cluster?.dataDir]),
      [
        ["n1", 7701, 6381, "./data/n1"],
        ["n2", 7702, 6382, "./data/n2"],
        ["n3", 7703, 6383, "./data/n3"],
      ],
    );
    // What must agree across members does.
    for (const c of members.slice(1)) {
      assert.equal(c.cluster?.members, members[0]!.cluster?.members);
      assert.equal(c.cluster?.partitions, members[0]!.cluster?.partitions);
      assert.equal(c.cluster?.replicas, members[0]!.cluster?.replicas);
    }
    for (const m of members[0]!.cluster!.members.split(","))
      assert.ok(
        members.some((c) => m.startsWith(`${c.cluster?.nodeId}=`)),
        `${m} has a file`,
      );
    for (const p of EXAMPLES.cluster) checkCommentedDefaults(p);
  });

  it("single-node.toml starts a node (ports and data directory overridden by flags)", async () => {
    const resp = await freePort();
    const o = await run([
      "server",
      "--config",
      EXAMPLES.single,
      "--port",
      "0",
      "--resp-port",
      String(resp),
      "--data-dir",
      join(dir, "single"),
    ]);
    assert.equal(ports(o).resp, resp);
  });
});

/** "# key = value" lines in an example: where the key has a default, the value shown is it. */
function checkCommentedDefaults(path: string): void {
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const m = /^#\s*([a-z][a-z-]*)\s*=\s*("[^"]*"|\S+)/.exec(line);
    if (m === null || !Object.hasOwn(SERVER_FLAGS, m[1]!)) continue;
    const d = SERVER_FLAGS[m[1] as keyof typeof SERVER_FLAGS].default;
    if (d === "") continue; // no default: the value is an example
    assert.equal(m[2]!.replace(/^"|"$/g, ""), d, `${path}: ${line}`);
  }
}

describe("piccolo server --config: real starts", () => {
  it("a node started with only --config serves on the file's ports", async () => {
    const [port, resp] = [await freePort(), await freePort()];
    const path = configFile(`host = "127.0.0.1"\nport = ${port}\nresp-port = "${resp}"\nin-memory = true\n`);
    const o = await run(["server", "--config", path]);
    assert.deepEqual(ports(o), { port, resp });
    assert.match(o.out, /in memory only/);
  });

  it("PICCOLO_CONFIG names the file when --config is not given", async () => {
    const [port, resp] = [await freePort(), await freePort()];
    const path = configFile(`port = ${port}\nresp-port = ${resp}\nin-memory = true\n`);
    assert.deepEqual(ports(await run(["server"], { PICCOLO_CONFIG: path })), { port, resp });
  });

  it("precedence, each step by the port it listens on: flag > env > file > default", async () => {
    const [filePort, envPort, flagPort, resp] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const path = configFile(`port = ${filePort}\nresp-port = ${resp}\nin-memory = true\n`);
    const args = ["server", "--config", path];
    // file > default: the file's port, not 7700 (and the file's resp-port, not 6380).
    assert.deepEqual(ports(await run(args)), { port: filePort, resp });
    // env > file: PICCOLO_PORT wins over the file's port; resp-port, unset in the env, still from the file.
    assert.deepEqual(ports(await run(args, { PICCOLO_PORT: String(envPort) })), { port: envPort, resp });
    // flag > env: --port wins over PICCOLO_PORT.
    assert.deepEqual(ports(await run([...args, "--port", String(flagPort)], { PICCOLO_PORT: String(envPort) })), {
      port: flagPort,
      resp,
    });
  });

  it("an unknown key: exit 2, naming it, the file and line, and the flag meant", async () => {
    const path = configFile("in-memory = true\nresp-prot = 1\n");
    refused(
      await run(["server", "--config", path]),
      /piccolo: .*:2: unknown key "resp-prot": did you mean "resp-port"\?/,
    );
  });

  it("a bad value: exit 2, naming the key and the file", async () => {
    const path = configFile("in-memory = true\nmax-connections = 0\n");
    refused(await run(["server", "--config", path]), /:2: max-connections: --max-connections must be an integer in/);
    const typed = configFile('no-pin = "yes"\n');
    refused(await run(["server", "--config", typed]), /:1: "no-pin" must be a boolean/);
  });

  it("a missing file: exit 2", async () => {
    refused(await run(["server", "--config", join(dir, "nope.toml")]), /the config file .*nope\.toml cannot be read/);
    refused(await run(["server"], { PICCOLO_CONFIG: join(dir, "nope.toml") }), /nope\.toml cannot be read/);
  });
});

describe("piccolo cerializer --config", () => {
  it("starts on the file's port; a flag overrides it", async () => {
    const [a, b] = [await freePort(), await freePort()];
    const path = configFile(`nodes = "127.0.0.1:1"\nhttp-port = ${a}\ncluster = false\n`);
    const started = /cerializer listening on http:\/\/127\.0\.0\.1:(\d+)/;
    const first = await run(["cerializer", "--config", path], {}, started);
    assert.equal(Number(started.exec(first.out)?.[1]), a, first.err);
    const second = await run(["cerializer", "--config", path, "--http-port", String(b)], {}, started);
    assert.equal(Number(started.exec(second.out)?.[1]), b, second.err);
    // PICCOLO_CERIALIZER_CONFIG, not the server's PICCOLO_CONFIG.
    const third = await run(["cerializer"], { PICCOLO_CERIALIZER_CONFIG: path }, started);
    assert.equal(Number(started.exec(third.out)?.[1]), a, third.err);
  });

  it("refuses an unknown key and a bad value, exit 2", async () => {
    refused(
      await run(["cerializer", "--config", configFile("http_port = 1\n")]),
      /unknown key "http_port": did you mean "http-port"\?/,
    );
    refused(
      await run(["cerializer", "--config", configFile('timeout = "soon"\n')]),
      /:1: timeout: --timeout must be an integer/,
    );
  });

  it("the table is the gateway's: a server key is unknown", () => {
    const path = configFile("resp-port = 1\n");
    assert.throws(() => readConfigFile(path, CERIALIZER_FLAGS, { command: "piccolo cerializer" }), ConfigError);
  });
});
