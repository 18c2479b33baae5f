#!/usr/bin/env node
// Builds the web console (src/console/) into dist/console/: one JavaScript
// bundle (Preact, htm, uPlot and our code, by esbuild), one stylesheet and
// index.html. The Cerializer serves these files at /ui (src/cerializer/routes/console.ts);
// nothing is fetched from anywhere else at run time. `npm run build` runs this
// after tsc; it first type-checks the console's TypeScript with tsc -p
// src/console (it needs the DOM's types, which the server code must not see).
// docs/console.md, docs/decisions/0300.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "console");

// A checkout whose node_modules predates the console lacks these: say so, rather than let tsc or
// esbuild fail on an import they cannot resolve.
const missing = ["esbuild", "preact", "htm", "uplot", "typescript"].filter(
  (p) => !existsSync(join(root, "node_modules", p, "package.json")),
);
if (missing.length > 0) {
  console.error(
    `build-console: ${missing.join(", ")} not in node_modules: run npm install (the web console's build needs them)`,
  );
  process.exit(1);
}

// Type-check the browser code against the DOM's types (the root tsconfig leaves src/console out).
const tsc = spawnSync(
  process.execPath,
  [join(root, "node_modules/typescript/bin/tsc"), "-p", "src/console/tsconfig.json"],
  {
    cwd: root,
    stdio: "inherit",
  },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const { build } = await import("esbuild");
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(root, "src/console/main.ts")],
  bundle: true,
  format: "esm",
  target: ["chrome115", "firefox115"],
  minify: true,
  sourcemap: "linked",
  legalComments: "eof",
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
// Our stylesheet after uPlot's, so ours wins where both set something.
const css = [
  readFileSync(join(root, "node_modules/uplot/dist/uPlot.min.css"), "utf8"),
  readFileSync(join(root, "src/console/style.css"), "utf8"),
].join("\n");
writeFileSync(join(out, "app.css"), css);
copyFileSync(join(root, "src/console/index.html"), join(out, "index.html"));
