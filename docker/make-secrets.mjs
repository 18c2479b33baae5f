#!/usr/bin/env node
// compose.yaml's first service: writes the cluster secret (every member
// proves it holds it: docs/security.md) and the default user's password
// into the shared /secrets volume, once. Both are random, 32 bytes as hex,
// mode 600, owned by the image's user; a second `docker compose up` keeps
// them (rotating the secret needs every member restarted: delete the
// volume, `docker compose down -v`, which deletes the data too).
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2] ?? "/secrets";
for (const name of ["cluster.secret", "admin.pass"]) {
  const path = join(dir, name);
  if (existsSync(path)) {
    console.log(`${path}: kept`);
    continue;
  }
  writeFileSync(path, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  console.log(`${path}: written`);
}
