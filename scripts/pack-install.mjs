#!/usr/bin/env node
// Installs Piccolo as a user outside the clone would, and checks it works there.
//
//   node scripts/pack-install.mjs [--no-build] [--keep]
//
// 1. `npm pack` this clone into a temporary folder (npm runs `prepare`, which
//    builds dist/; --no-build packs the dist/ already built, as the test does,
//    so it never rewrites dist/ under other running tests).
// 2. Checks the tarball's contents: the CLI, the client's entry and types, the
//    worker files the node loads at run time, the schema; no tests, benchmarks
//    or source maps.
// 3. In an empty folder: `npm init -y`, `npm install <tarball>` (from npm's
//    cache when it can: --prefer-offline), then `npx --no piccolo --version` (must print package.json's version), a node
//    started from the installed package on a free 127.0.0.1 port, and a
//    script that imports { PiccoloClient } from "piccolo" and puts and gets.
// 4. `npm install -g --prefix <folder> <tarball>`, and `piccolo --version`
//    from that prefix's bin/ (what `npm install -g` does, without touching
//    this machine's global folder).
//
// Prints one line per step with its time, and "pack-install: ok" at the end;
// any failure prints what went wrong (with the command's output) and exits 1.
// The temporary folder is removed unless --keep.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const build = !process.argv.includes("--no-build");
const keep = process.argv.includes("--keep");

/** Files the installed package cannot work without. */
const MUST_HAVE = [
  "package.json",
  "README.md",
  "dist/src/cli/main.js",
  "dist/src/index.js",
  "dist/src/index.d.ts",
  "dist/src/shard/worker.js",
  "dist/src/cluster/group-worker.js",
  "dist/console/index.html",
  "dist/console/app.js",
  "dist/console/app.css",
  "schema/piccolo.capnp",
];
/** Nothing of the development tree: tests, benchmarks, TypeScript sources, source maps. */
const MUST_NOT = [/^dist\/test\//, /^dist\/bench\//, /^test\//, /^bench\//, /^src\//, /\.map$/, /\.tsbuildinfo$/];

class StepError extends Error {}

/** Runs a command to its end; resolves with its output, rejects (with the output) on a non-zero exit. */
function run(cmd, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      if (code === 0) resolve({ out, err });
      else
        reject(
          new StepError(`${cmd} ${args.join(" ")} exited ${signal ?? code}\n--- stdout\n${out}\n--- stderr\n${err}`),
        );
    });
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts `piccolo server` from the installed package; resolves once it listens, with a stop function. */
function startNode(cwd, port, respPort) {
  const child = spawn(
    NPM,
    [
      "exec",
      "--no",
      "--",
      "piccolo",
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--resp-port",
      String(respPort),
      "--data-dir",
      join(cwd, "data"),
    ],
    { cwd, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => {
    err += d;
  });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      // npm exec runs the node in a child of its own: signal the whole group.
      process.kill(-child.pid, "SIGTERM");
      setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid, "SIGKILL");
      }, 10_000).unref();
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new StepError(`the installed node did not listen in 30 s\n--- stdout\n${out}\n--- stderr\n${err}`));
    }, 30_000);
    child.stdout.on("data", (d) => {
      out += d;
      if (/listening on 127\.0\.0\.1:\d+/.test(out)) {
        clearTimeout(timer);
        resolve({ stop, output: () => out + err });
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new StepError(`the installed node exited ${signal ?? code}\n--- stdout\n${out}\n--- stderr\n${err}`));
    });
  });
}

const CLIENT_SCRIPT = `
import { PiccoloClient } from "piccolo";
const [host, port] = process.argv.slice(2);
const db = await PiccoloClient.connect({ host, port: Number(port) });
const version = await db.put("installed:greeting", "hello from the tarball");
const entry = await db.get("installed:greeting");
await db.close();
if (entry === null || entry.value.toString() !== "hello from the tarball" || entry.version !== version) {
  console.error("round trip failed:", entry);
  process.exit(1);
}
console.log("round trip ok, version", version);
`;

async function step(name, fn) {
  const t0 = Date.now();
  const result = await fn();
  console.log(`pack-install: ${name} (${Date.now() - t0} ms)`);
  return result;
}

const dir = mkdtempSync(join(tmpdir(), "piccolo-pack-install-"));
let node = null;
// Stopped from outside (the test's deadline, Ctrl-C): leave no node running and no folder behind.
for (const signal of ["SIGTERM", "SIGINT"])
  process.once(signal, async () => {
    console.error(`pack-install: stopped by ${signal}`);
    if (node !== null) await node.stop();
    if (!keep) rmSync(dir, { recursive: true, force: true });
    process.exit(1);
  });
try {
  const tarball = await step(`npm pack${build ? "" : " --ignore-scripts"}`, async () => {
    const args = ["pack", "--json", "--pack-destination", dir, ...(build ? [] : ["--ignore-scripts"])];
    const { out } = await run(NPM, args, { cwd: ROOT });
    // --json prints the report last; with `prepare`, the build's output comes first.
    const report = JSON.parse(out.slice(out.indexOf("[\n")))[0];
    const files = report.files.map((f) => f.path);
    const missing = MUST_HAVE.filter((f) => !files.includes(f));
    if (missing.length > 0) throw new StepError(`the tarball lacks ${missing.join(", ")}`);
    const extra = files.filter((f) => MUST_NOT.some((re) => re.test(f)));
    if (extra.length > 0) throw new StepError(`the tarball holds development files: ${extra.slice(0, 10).join(", ")}`);
    console.log(
      `pack-install: ${report.filename}: ${files.length} files, ${(report.size / 1024).toFixed(0)} KiB packed`,
    );
    return join(dir, report.filename);
  });

  const project = join(dir, "project");
  await step("npm install <tarball> in an empty project", async () => {
    await run("mkdir", [project]);
    await run(NPM, ["init", "-y"], { cwd: project });
    const { out, err } = await run(NPM, ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], {
      cwd: project,
    });
    const engines = `${out}${err}`.split("\n").filter((l) => /EBADENGINE/.test(l));
    // Reported, not failed: piccolo's `overrides` apply to its own clone only (decision 0271).
    if (engines.length > 0) console.log(`pack-install: npm warned:\n  ${engines.join("\n  ")}`);
  });

  await step("npx piccolo --version", async () => {
    const { out } = await run(NPM, ["exec", "--no", "--", "piccolo", "--version"], { cwd: project });
    if (out.trim() !== VERSION) throw new StepError(`piccolo --version printed "${out.trim()}", expected ${VERSION}`);
  });

  await step("a node from the installed package, and a client round trip", async () => {
    const port = await freePort();
    node = await startNode(project, port, await freePort());
    writeFileSync(join(project, "client.mjs"), CLIENT_SCRIPT);
    const { out } = await run(process.execPath, ["client.mjs", "127.0.0.1", String(port)], { cwd: project });
    process.stdout.write(`pack-install: ${out}`);
    const cli = await run(
      NPM,
      ["exec", "--no", "--", "piccolo", "get", "installed:greeting", "--server", `127.0.0.1:${port}`],
      {
        cwd: project,
      },
    );
    if (cli.out !== "hello from the tarball\n") throw new StepError(`piccolo get printed "${cli.out}"`);
    await node.stop();
    node = null;
  });

  await step("npm install -g --prefix <folder> <tarball>, then piccolo --version", async () => {
    const prefix = join(dir, "global");
    await run(NPM, ["install", "-g", "--prefer-offline", "--no-audit", "--no-fund", "--prefix", prefix, tarball]);
    const { out } = await run(join(prefix, "bin", "piccolo"), ["--version"]);
    if (out.trim() !== VERSION) throw new StepError(`the global piccolo --version printed "${out.trim()}"`);
  });
  console.log("pack-install: ok");
} catch (err) {
  console.error(`pack-install: FAILED: ${err instanceof StepError ? err.message : err.stack}`);
  process.exitCode = 1;
} finally {
  if (node !== null) await node.stop();
  if (keep) console.log(`pack-install: kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
