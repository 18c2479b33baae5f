/**
 * This build's version, from package.json (two folders above this file's
 * compiled place, dist/src/): `piccolo --version`, and the writer named in a
 * backup file's head.
 */
import { readFileSync } from "node:fs";

let cached: string | null = null;

export function packageVersion(): string {
  if (cached === null) {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    cached = pkg.version;
  }
  return cached;
}
