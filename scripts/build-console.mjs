#!/usr/bin/env node
// Builds the web console (src/console/) into dist/console/: one JavaScript
// bundle (Preact, htm, uPlot and our code, by esbuild), one stylesheet and
// index.html. The Cerializer serves these files at /ui (src/cerializer/routes/console.ts);
// nothing is fetched from anywhere else at run time. `npm run build` runs this
// after tsc; the console's TypeScript is type-checked by tsc -p src/console
// (it needs the DOM's types, which the server code must not see).
// docs/console.md, docs/decisions/0300.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "console");
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
