/**
 * A config file for `piccolo server --config FILE` and `piccolo cerializer
 * --config FILE` (docs/decisions/0270-config-file.md): TOML, flat, one key
 * per flag, named as the flag is (`resp-port = 6380`, `in-memory = true`).
 *
 * The file is one more layer under the flags and the environment:
 *
 *   flag > environment variable > config file > built-in default
 *
 * so a file can be shared by every member and one setting changed for one
 * start without editing it, as etcd's --config-file and redis.conf allow.
 *
 * The file is checked whole before anything starts: a key that is not a
 * flag, or a value of the wrong type, is refused naming the key, the file
 * and its line. A value of the right type but out of range is refused later,
 * by the same checks a flag goes through; `attribute` then adds where the
 * value came from (the file's line, or the environment variable).
 */
import { readGuardedFile } from "../security/secrets.js";
import { parse, TomlError } from "smol-toml";
import { ConfigError } from "../config-error.js";

/** A flags table: SERVER_FLAGS or CERIALIZER_FLAGS. */
export type FlagTable = Record<string, { env: string; help: string; default: string }>;

/** Flag values as `parseArgs` gives them: strings, and `true` for a switch given. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** Where a setting's value came from, highest precedence first. */
export type Source = "flag" | "env" | "file" | "default";

/**
 * What a key may hold in the file. Strings are always accepted where a
 * number or yes/no is expected, as a flag's value is a string.
 *   switch:      a TOML boolean (`in-memory = true`), as the flag takes no value
 *   integer:     a TOML integer or a string holding one (`port = 7700`)
 *   yes-no:      "yes"/"no" (or anything the flag takes), or a TOML boolean
 *   true-false:  "true"/"false", or a TOML boolean
 *   string:      a TOML string
 */
export type KeyType = "switch" | "integer" | "yes-no" | "true-false" | "string";

/** A config file, read and checked: every value as the flag would have given it. */
export interface ConfigFile {
  path: string;
  values: Record<string, string | boolean>;
  /** 1-based line of each key, for messages (0 when it could not be found). */
  lines: Record<string, number>;
  /** Warnings to log once the logger exists (a password inline in a file others can read). */
  warnings: string[];
}

/**
 * The type of a flag's key, from its default: a table's defaults are
 * numbers, yes/no and true/false where the flag takes those (a test checks
 * every default against its type, so a new flag cannot slip past).
 */
export function keyType(table: FlagTable, name: string, switches: readonly string[]): KeyType {
  if (switches.includes(name)) return "switch";
  const d = table[name]!.default;
  if (/^\d+$/.test(d) || d === "auto") return "integer";
  if (d === "yes" || d === "no") return "yes-no";
  if (d === "true" || d === "false") return "true-false";
  return "string";
}

const TYPE_NAMES: Record<KeyType, string> = {
  switch: "a boolean (true or false)",
  integer: 'an integer (or a string holding one, e.g. "7700")',
  "yes-no": 'yes or no: "yes", "no" or a boolean',
  "true-false": "a boolean (true or false)",
  string: "a string (in double quotes)",
};

/** Levenshtein distance, for "did you mean". Keys are short: the O(n*m) table is fine. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The flag name closest to `key`, or null if none is close enough to be a typo. */
export function closestFlag(table: FlagTable, key: string): string | null {
  const k = key.replace(/^-+/, "").replaceAll("_", "-").toLowerCase();
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const name of Object.keys(table)) {
    const d = distance(k, name);
    if (d < bestD) {
      best = name;
      bestD = d;
    }
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

/** The 1-based line where `key` is set (bare or quoted, or as a table header); 0 if not found. */
function lineOf(text: string, key: string): number {
  const k = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(`^\\s*(?:\\[\\s*)?(?:${k}|"${k}"|'${k}')\\s*[=.\\]]`);
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) if (re.test(lines[i]!)) return i + 1;
  return 0;
}

function where(path: string, line: number): string {
  return line > 0 ? `${path}:${line}` : path;
}

/** Converts one TOML value to the flag's string (or boolean, for a switch); null: the wrong type. */
function convert(type: KeyType, v: unknown): string | boolean | null {
  switch (type) {
    case "switch":
      return typeof v === "boolean" ? v : null;
    case "integer":
      if (typeof v === "number") return Number.isInteger(v) ? String(v) : null;
      if (typeof v === "bigint") return String(v);
      return typeof v === "string" ? v : null;
    case "yes-no":
      if (typeof v === "boolean") return v ? "yes" : "no";
      return typeof v === "string" ? v : null;
    case "true-false":
      if (typeof v === "boolean") return v ? "true" : "false";
      return typeof v === "string" ? v : null;
    case "string":
      return typeof v === "string" ? v : null;
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v instanceof Date) return "a date";
  if (typeof v === "object" && v !== null) return "a table";
  if (typeof v === "number" || typeof v === "bigint") return Number.isInteger(Number(v)) ? "an integer" : "a float";
  return `a ${typeof v}`;
}

/**
 * Reads and checks a config file against a flags table. `command` names the
 * command in messages ("piccolo server"); `inlineSecrets` are the keys that
 * hold a secret themselves (not a file's path): set in a file others can
 * read, they are reported as a warning.
 */
export function readConfigFile(
  path: string,
  table: FlagTable,
  options: { command: string; switches?: readonly string[]; inlineSecrets?: readonly string[] },
): ConfigFile {
  const { text, mode } = readGuardedFile(path, `the config file ${path}`);
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError)
      throw new ConfigError(
        `${where(path, err.line)}: not valid TOML: ${err.message.split("\n")[0]}\n${err.codeblock.trimEnd()}`,
      );
    throw err;
  }
  const values: Record<string, string | boolean> = {};
  const lines: Record<string, number> = {};
  const switches = options.switches ?? [];
  for (const [key, v] of Object.entries(doc)) {
    const line = lineOf(text, key);
    if (!Object.hasOwn(table, key)) {
      if (key === "config")
        throw new ConfigError(`${where(path, line)}: "config" cannot be set in a config file (one file, no includes)`);
      const near = closestFlag(table, key);
      const hint = near !== null ? `did you mean "${near}"?` : `the keys are the flags of ${options.command} --help`;
      const table_ = typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
      throw new ConfigError(
        `${where(path, line)}: unknown key "${key}"${table_ ? " (a table: the file is flat, one key per flag)" : ""}: ${hint}`,
      );
    }
    const type = keyType(table, key, switches);
    const s = convert(type, v);
    if (s === null) {
      const flat = describe(v) === "a table" ? " (the file is flat: one key per flag, no [sections])" : "";
      throw new ConfigError(`${where(path, line)}: "${key}" must be ${TYPE_NAMES[type]}, got ${describe(v)}${flat}`);
    }
    values[key] = s;
    lines[key] = line;
  }
  const warnings: string[] = [];
  const inline = (options.inlineSecrets ?? []).filter((k) => typeof values[k] === "string" && values[k] !== "");
  if (inline.length > 0 && (mode & 0o077) !== 0)
    warnings.push(
      `${path} holds ${inline.join(", ")} and can be read by other users of this machine (mode ${(mode & 0o777).toString(8)}): chmod 600 it, or use the -file key`,
    );
  return { path, values, lines, warnings };
}

/**
 * The layers, merged: each setting from the first of flag, environment,
 * file, default that has it. A switch is on when given as a flag, else as
 * its environment variable says ("1": on), else as the file says.
 */
export function layered(table: FlagTable, flags: FlagValues, env: NodeJS.ProcessEnv, file: ConfigFile | null) {
  const source = (name: string): Source => {
    if (flags[name] !== undefined && flags[name] !== false) return "flag";
    if (env[table[name]!.env] !== undefined) return "env";
    if (file !== null && file.values[name] !== undefined) return "file";
    return "default";
  };
  return {
    source,
    /** The setting's value as a string (a switch: "true" or ""). */
    pick(name: string): string {
      switch (source(name)) {
        case "flag":
          return flags[name] === true ? "true" : String(flags[name]);
        case "env":
          return env[table[name]!.env]!;
        case "file": {
          const v = file!.values[name]!;
          return v === true ? "true" : v === false ? "" : v;
        }
        default:
          return table[name]!.default;
      }
    },
    /** A switch's state. */
    on(name: string): boolean {
      switch (source(name)) {
        case "flag":
          return flags[name] === true;
        case "env":
          return env[table[name]!.env] === "1";
        case "file":
          return file!.values[name] === true;
        default:
          return false;
      }
    },
  };
}

/**
 * Runs `resolve`; a ConfigError about one setting (its message starts with
 * "--name") gets where that setting came from: the file and line, or the
 * environment variable. A flag's own message already says it.
 */
export function attribute<T>(
  table: FlagTable,
  layers: ReturnType<typeof layered>,
  file: ConfigFile | null,
  resolve: () => T,
): T {
  try {
    return resolve();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const m = /^--([a-z][a-z0-9-]*)/.exec(err.message);
    const name = m?.[1];
    if (name === undefined || !Object.hasOwn(table, name)) throw err;
    const from = layers.source(name);
    if (from === "file" && file !== null)
      err.message = `${where(file.path, file.lines[name] ?? 0)}: ${name}: ${err.message}`;
    else if (from === "env") err.message = `${err.message} (from the environment variable ${table[name]!.env})`;
    throw err;
  }
}

/** The config file's path: --config, else the environment variable `envName`; null: none. */
export function configPath(flags: FlagValues, env: NodeJS.ProcessEnv, envName: string): string | null {
  const p = typeof flags.config === "string" ? flags.config : env[envName];
  if (p === undefined || p === "") return null;
  return p;
}
