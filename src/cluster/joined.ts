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
import { type ForgottenMember, isForgotten, type Member, PlacementError } from "./placement.js";

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
  saveWhole(dataDir, FILE, members);
}

/** Written whole to a temporary name, fsynced, renamed over the old file: a crash leaves either version. */
function saveWhole(dataDir: string, file: string, value: unknown): void {
  const tmp = join(dataDir, `${file}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, `${JSON.stringify(value, null, 1)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dataDir, file));
  // The rename itself is durable only once the directory is: without this, a power cut could bring
  // the old file back, and with it a forgotten member.
  const dir = openSync(dataDir, "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

const FORGOTTEN_FILE = "forgotten.json";

/**
 * Members forgotten for good (`piccolo cluster forget`), in
 * `<data-dir>/forgotten.json`, written as joined.json is. This list wins
 * over the flags and over joined.json: a forgotten member of the bootstrap
 * list (`--cluster`, given again on every restart) stays forgotten
 * (removeForgotten).
 */
export async function loadForgotten(dataDir: string): Promise<ForgottenMember[]> {
  const path = join(dataDir, FORGOTTEN_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed)) throw new PlacementError(`${path} is not a list of members`);
  return parsed.map((x: unknown) => {
    const m = x as ForgottenMember;
    if (typeof m?.name !== "string" || !Number.isInteger(m.id))
      throw new PlacementError(`${path}: ${JSON.stringify(x)} is not a forgotten member`);
    return { id: m.id, name: m.name };
  });
}

export function saveForgotten(dataDir: string, forgotten: readonly ForgottenMember[]): void {
  saveWhole(dataDir, FORGOTTEN_FILE, forgotten);
}

/** The members not forgotten (by id or name: see isForgotten). */
export function removeForgotten(members: readonly Member[], forgotten: readonly ForgottenMember[]): Member[] {
  return members.filter((m) => !isForgotten(forgotten, m));
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
