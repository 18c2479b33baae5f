/**
 * Members joined after bootstrap, remembered in the data directory.
 *
 * A member started after the others (`--joined n4=...` on its own command
 * line) introduces itself to members that do not list it (the transport's
 * announcement). They record it here, `<data-dir>/joined.json`, so that a
 * restart with the old flags still knows it: a member list that only grows
 * at runtime would otherwise shrink again on every restart.
 *
 * The file is written whole to a temporary name, fsynced, then renamed over
 * the old one: a crash leaves either version, never half of one.
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Member, PlacementError } from "./placement.js";

const FILE = "joined.json";

export async function loadJoined(dataDir: string): Promise<Member[]> {
  let text: string;
  try {
    text = await readFile(join(dataDir, FILE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed)) throw new PlacementError(`${join(dataDir, FILE)} is not a list of members`);
  return parsed.map((x: unknown) => {
    const m = x as Member;
    if (
      typeof m?.name !== "string" ||
      !Number.isInteger(m.id) ||
      typeof m.host !== "string" ||
      !Number.isInteger(m.port)
    )
      throw new PlacementError(`${join(dataDir, FILE)}: ${JSON.stringify(x)} is not a member`);
    return { name: m.name, id: m.id, host: m.host, port: m.port };
  });
}

export function saveJoined(dataDir: string, members: readonly Member[]): void {
  const tmp = join(dataDir, `${FILE}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, `${JSON.stringify(members, null, 1)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dataDir, FILE));
}

/** The flags' members plus those learned before; a disagreement is a configuration error. */
export function mergeMembers(flags: readonly Member[], learned: readonly Member[]): Member[] {
  const out = [...flags];
  for (const m of learned) {
    const same = out.find((x) => x.id === m.id || x.name === m.name);
    if (same === undefined) {
      out.push(m);
      continue;
    }
    if (same.id !== m.id || same.name !== m.name)
      throw new PlacementError(
        `member ${m.name} (id ${m.id}), learned earlier, conflicts with ${same.name} (id ${same.id}) in the flags`,
      );
    // Same member: the flags' address wins (it may have moved).
  }
  return out.sort((a, b) => a.id - b.id);
}
