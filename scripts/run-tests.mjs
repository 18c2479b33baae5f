#!/usr/bin/env node
// Runs every compiled test file under dist/test with Node's built-in runner.
// Node 20's `node --test` takes explicit paths (globs arrived in Node 21), so
// we collect the files here. Pass a substring to run a subset:
//   npm test -- ring      runs only test files whose path contains "ring".
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const root = "dist/test";
const filter = process.argv[2] ?? "";
const files = readdirSync(root, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith(".test.js") && f.includes(filter))
  .map((f) => join(root, f))
  .sort();
if (files.length === 0) {
  console.error(`no test files under ${root} matching "${filter}"`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...files], { stdio: "inherit" });
process.exit(result.status ?? 1);
