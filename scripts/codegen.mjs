#!/usr/bin/env node
// Regenerates src/protocol/gen from schema/piccolo.capnp.
//
// Needs the Cap'n Proto compiler (`capnp`, Debian package capnproto) and the
// capnp-es plugin from node_modules. Writes:
//   src/protocol/gen/piccolo.ts      the generated code (never edit by hand)
//   src/protocol/gen/schema.sha256   the hash of the schema it came from
// test/protocol/codegen.test.ts fails when either is stale.
//
//   node scripts/codegen.mjs [--out DIR]   (DIR defaults to src/protocol/gen)
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const outIndex = process.argv.indexOf("--out");
const out = outIndex > 0 ? process.argv[outIndex + 1] : "src/protocol/gen";
const schema = "schema/piccolo.capnp";

try {
  execFileSync("capnp", ["--version"], { stdio: "ignore" });
} catch {
  console.error("codegen needs the Cap'n Proto compiler: apt-get install -y capnproto");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const require = createRequire(import.meta.url);
const plugin = join(require.resolve("capnp-es/compiler").replace(/index\.mjs$/, ""), "capnpc-js.mjs");
execFileSync(process.execPath, [plugin, schema, `-ots:${out}`, "--src-prefix=schema"], { stdio: "inherit" });
const hash = createHash("sha256").update(readFileSync(schema)).digest("hex");
writeFileSync(join(out, "schema.sha256"), `${hash}  ${schema}\n`);
console.log(`generated ${join(out, "piccolo.ts")} from ${schema} (${hash.slice(0, 12)})`);
