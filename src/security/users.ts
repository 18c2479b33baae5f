/**
 * Users and what each may do: a useful subset of Redis's ACLs, the same on
 * every port (native, RESP, and through the Cerializer, which connects as
 * its caller). docs/security.md explains the model; decisions 0264-0265.
 *
 * A user has
 *   - a switch (on/off) and passwords, kept hashed (scrypt, salted), or
 *     `nopass`: any password is accepted (the default user out of the box);
 *   - permissions in three categories: read, write, admin. A command needs
 *     the category its table entry names (commandPerm below); connection
 *     commands (PING, AUTH, HELLO, QUIT...) need none;
 *   - key patterns (Redis globs): a command's keys must each match one.
 *
 * Rules are Redis's ACL SETUSER words: on off >pw <pw #hash !hash nopass
 * resetpass ~pattern allkeys resetkeys +@all -@all +@read -@read +@write
 * -@write +@admin -@admin (+@dangerous is +@admin) allcommands nocommands
 * &* allchannels resetchannels reset. Anything else is refused with Redis's
 * error text: a rule we do not implement is never silently ignored.
 *
 * The users live in a file of Redis ACL lines (`--aclfile`, by default
 * <data-dir>/users.acl), rewritten atomically on every change, so a restart
 * keeps them. In a cluster, each member has its own file: an operator
 * applies a change on every member (docs/security.md says how; users are
 * not replicated through Raft yet).
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { globMatch } from "../glob.js";

/** Permission categories, as bits: a user holds a set, a command needs one. */
export const Perm = { NONE: 0, READ: 1, WRITE: 2, ADMIN: 4 } as const;
export type Perm = (typeof Perm)[keyof typeof Perm];
export const ALL_PERMS = Perm.READ | Perm.WRITE | Perm.ADMIN;

/** Most users a node keeps, and most passwords and key patterns one user has (explicit limits). */
export const MAX_USERS = 10_000;
export const MAX_PASSWORDS_PER_USER = 16;
export const MAX_KEY_PATTERNS_PER_USER = 256;
/** Longest user name, password and pattern, in bytes. */
export const MAX_ACL_TOKEN_BYTES = 1024;

/**
 * scrypt's cost: N=2^14, r=8 (16 MiB and ~40 ms a hash on this machine's
 * cores): slow enough that a stolen users file does not give passwords up
 * at GPU speed, fast enough to check on connect. It runs on libuv's thread
 * pool, never on the IO thread; a password once verified is remembered (as
 * a keyed digest, in memory) so reconnecting clients do not pay it again.
 */
const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32, saltLen: 16 } as const;

export class AclError extends Error {
  override name = "AclError";
}

export interface User {
  readonly name: string;
  enabled: boolean;
  nopass: boolean;
  /** Encoded hashes: `scrypt$N$r$p$salt$hash` (base64), or 64 hex digits (SHA-256, as Redis writes them). */
  hashes: string[];
  perms: number;
  /** null: every key (allkeys); else the patterns, as bytes. */
  keys: Uint8Array[] | null;
  /** Set when the user is deleted: connections authenticated as it are refused from then on. */
  deleted: boolean;
}

function newUser(name: string): User {
  return { name, enabled: false, nopass: false, hashes: [], perms: 0, keys: [], deleted: false };
}

const enc = new TextEncoder();

/**
 * Whether `user` may run a command needing `need` (Perm bits; 0: none). As
 * in Redis, turning a user off stops new AUTHs, not the connections already
 * authenticated; deleting it stops those too.
 */
export function mayRun(user: User, need: number): boolean {
  return (user.perms & need) === need && !user.deleted;
}

/** Whether `user` may touch `key` (every key for allkeys; else one of its patterns must match). */
export function mayAccess(user: User, key: Uint8Array): boolean {
  const patterns = user.keys;
  if (patterns === null) return true;
  for (const p of patterns) if (globMatch(p, key)) return true;
  return false;
}

/**
 * Whether `user` may watch every key under `prefix`: allkeys, or a pattern
 * that is a literal followed by one `*` and the prefix starts with that
 * literal (a watch streams keys the user may not have named one by one).
 */
export function mayWatchPrefix(user: User, prefix: Uint8Array): boolean {
  if (user.keys === null) return true;
  for (const p of user.keys) {
    const star = p.indexOf(42);
    if (star !== p.length - 1 || hasGlob(p.subarray(0, star))) continue;
    if (prefix.length >= star && Buffer.compare(prefix.subarray(0, star), p.subarray(0, star)) === 0) return true;
  }
  return false;
}

function hasGlob(b: Uint8Array): boolean {
  for (const c of b) if (c === 42 || c === 63 || c === 91 || c === 92) return true;
  return false;
}

/** The Redis NOPERM texts (Redis 7.2's own words). */
export function nopermCommand(user: User, command: string): string {
  return `User ${user.name} has no permissions to run the '${command}' command`;
}
export const NOPERM_KEY = "No permissions to access a key";

function scryptAsync(password: Uint8Array, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT.keyLen, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) =>
      err === null ? resolve(key) : reject(err),
    ),
  );
}

/** Hashes a password for storage (async: scrypt runs on the thread pool). */
export async function hashPassword(password: Uint8Array): Promise<string> {
  const salt = randomBytes(SCRYPT.saltLen);
  const key = await scryptAsync(password, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

async function hashMatches(encoded: string, password: Uint8Array): Promise<boolean> {
  if (/^[0-9a-f]{64}$/.test(encoded)) {
    const d = createHash("sha256").update(password).digest();
    return timingSafeEqual(d, Buffer.from(encoded, "hex"));
  }
  const f = encoded.split("$");
  if (f.length !== 6 || f[0] !== "scrypt") return false;
  const want = Buffer.from(f[5]!, "base64");
  const got = await scryptAsync(password, Buffer.from(f[4]!, "base64"), Number(f[1]), Number(f[2]), Number(f[3]));
  return got.length === want.length && timingSafeEqual(got, want);
}

function validHash(encoded: string): boolean {
  if (/^[0-9a-f]{64}$/.test(encoded)) return true;
  const f = encoded.split("$");
  if (f.length !== 6 || f[0] !== "scrypt") return false;
  const [n, r, p] = [Number(f[1]), Number(f[2]), Number(f[3])];
  // Bounded, so a hash in a users file cannot make verification take minutes or gigabytes.
  return (
    Number.isInteger(Math.log2(n)) &&
    n >= 1024 &&
    n <= 2 ** 20 &&
    r >= 1 &&
    r <= 32 &&
    p >= 1 &&
    p <= 4 &&
    Buffer.from(f[4]!, "base64").length >= 8 &&
    Buffer.from(f[5]!, "base64").length === SCRYPT.keyLen
  );
}

/** The users of one node. */
export class Users {
  private readonly users = new Map<string, User>();
  /** Keyed digests of passwords verified since start, per user (cleared when the user changes). */
  private readonly verified = new Map<string, Set<string>>();
  private readonly cacheKey = randomBytes(32);

  /**
   * `file`: where users are kept (null: in memory only). `defaultPassword`:
   * the default user's password from --requirepass (its file or env), which
   * wins over the file's for the default user.
   */
  private constructor(private readonly file: string | null) {}

  static async open(file: string | null, defaultPassword: string | null): Promise<Users> {
    const u = new Users(file);
    if (file !== null && existsSync(file)) u.load(readFileSync(file, "utf8"), file);
    if (!u.users.has("default")) {
      // As Redis: out of the box the default user is on, with every permission and no password.
      const d = newUser("default");
      d.enabled = true;
      d.nopass = true;
      d.perms = ALL_PERMS;
      d.keys = null;
      u.users.set("default", d);
    }
    if (defaultPassword !== null) {
      const d = u.users.get("default")!;
      d.nopass = false;
      d.hashes = [await hashPassword(enc.encode(defaultPassword))];
      d.enabled = true;
      u.remember(d, enc.encode(defaultPassword));
    }
    return u;
  }

  /** Whether a new connection must authenticate (the default user is off or has a password). */
  get authRequired(): boolean {
    const d = this.users.get("default");
    return d === undefined || !d.enabled || !d.nopass;
  }

  /** The user a new connection starts as: default, when it needs no password; else null (AUTH first). */
  initialUser(): User | null {
    return this.authRequired ? null : this.users.get("default")!;
  }

  get(name: string): User | undefined {
    return this.users.get(name);
  }

  names(): string[] {
    return [...this.users.keys()].sort();
  }

  /**
   * Checks `password` for `name`: the user when it is on and the password
   * is one of its own (any, for nopass), else null. Async: a password not
   * seen before is checked with scrypt on the thread pool.
   */
  async verify(name: string, password: Uint8Array): Promise<User | null> {
    const user = this.users.get(name);
    if (user === undefined || !user.enabled) {
      // Same cost for an unknown user as for a wrong password: the timing does not tell which names exist.
      await hashMatches(DUMMY_HASH, password);
      return null;
    }
    if (user.nopass) return user;
    if (this.verified.get(name)?.has(this.digest(password)) === true) return user;
    for (const h of user.hashes) {
      if (await hashMatches(h, password)) {
        if (this.users.get(name) !== user) return null; // replaced meanwhile
        this.remember(user, password);
        return user;
      }
    }
    return null;
  }

  private digest(password: Uint8Array): string {
    return createHash("sha256").update(this.cacheKey).update(password).digest("base64");
  }

  private remember(user: User, password: Uint8Array): void {
    let set = this.verified.get(user.name);
    if (set === undefined) this.verified.set(user.name, (set = new Set()));
    if (set.size < MAX_PASSWORDS_PER_USER) set.add(this.digest(password));
  }

  /**
   * ACL SETUSER: applies `rules` to `name` (made when new), all or nothing,
   * then saves the file. Async: a `>password` rule hashes with scrypt.
   */
  async setUser(name: string, rules: string[]): Promise<void> {
    checkToken(name, "user name");
    const existing = this.users.get(name);
    if (existing === undefined && this.users.size >= MAX_USERS)
      throw new AclError(`ERR a node keeps at most ${MAX_USERS} users`);
    const draft: User = existing === undefined ? newUser(name) : { ...existing, hashes: [...existing.hashes] };
    if (draft.keys !== null) draft.keys = [...draft.keys];
    for (const rule of rules) await applyRule(draft, rule);
    if (draft.hashes.length > MAX_PASSWORDS_PER_USER)
      throw new AclError(`ERR a user has at most ${MAX_PASSWORDS_PER_USER} passwords`);
    if (draft.keys !== null && draft.keys.length > MAX_KEY_PATTERNS_PER_USER)
      throw new AclError(`ERR a user has at most ${MAX_KEY_PATTERNS_PER_USER} key patterns`);
    // Changed in place: connections authenticated as this user see the new rules at their next command (as Redis).
    const target = existing ?? draft;
    Object.assign(target, draft);
    this.users.set(name, target);
    this.verified.delete(name);
    this.save();
  }

  /** ACL DELUSER: how many of `names` existed and were deleted. The default user cannot be. */
  delUsers(names: string[]): number {
    if (names.includes("default")) throw new AclError("ERR The 'default' user cannot be removed");
    let n = 0;
    for (const name of names) {
      const u = this.users.get(name);
      if (u === undefined) continue;
      u.deleted = true;
      this.users.delete(name);
      this.verified.delete(name);
      n++;
    }
    if (n > 0) this.save();
    return n;
  }

  /** ACL LIST: one Redis ACL line per user. */
  list(): string[] {
    return this.names().map((n) => describe(this.users.get(n)!));
  }

  /** ACL LOAD: replaces every user with the file's (all or nothing). */
  reload(): void {
    if (this.file === null)
      throw new AclError("ERR This node has no users file (--aclfile; an in-memory node keeps users in memory)");
    const fresh = new Users(this.file);
    fresh.load(readFileSync(this.file, "utf8"), this.file);
    if (!fresh.users.has("default")) throw new AclError("ERR the users file has no default user");
    for (const [name, u] of this.users) {
      const next = fresh.users.get(name);
      if (next === undefined) u.deleted = true;
      else Object.assign(u, next);
      this.verified.delete(name);
    }
    for (const [name, u] of fresh.users) if (!this.users.has(name)) this.users.set(name, u);
    for (const name of [...this.users.keys()]) if (!fresh.users.has(name)) this.users.delete(name);
  }

  /** Writes the file: to a temporary file, fsynced, renamed over the old one; readable by the owner alone. */
  save(): void {
    if (this.file === null) return;
    const text = `# Piccolo users (Redis ACL lines). Written by the node; edit, then ACL LOAD.\n${this.list().join("\n")}\n`;
    const tmp = join(dirname(this.file), `.users.acl.${process.pid}.tmp`);
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }

  /** Reads ACL lines (`user NAME rules...`; # comments). A bad line is an error naming the file and line. */
  private load(text: string, from: string): void {
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === "" || line.startsWith("#")) continue;
      const words = line.split(/\s+/);
      if (words[0] !== "user" || words.length < 2)
        throw new AclError(`${from}:${i + 1}: a line must be "user NAME rules...", got "${line.slice(0, 80)}"`);
      const u = newUser(words[1]!);
      for (const rule of words.slice(2)) {
        if (rule.startsWith(">"))
          throw new AclError(`${from}:${i + 1}: passwords are stored hashed (#...), not as >password`);
        try {
          applyRuleSync(u, rule);
        } catch (err) {
          throw new AclError(`${from}:${i + 1}: ${(err as Error).message}`);
        }
      }
      this.users.set(u.name, u);
    }
  }
}

/** A valid scrypt hash of nothing anyone knows: what an unknown user's AUTH is checked against. */
const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${randomBytes(16).toString("base64")}$${randomBytes(32).toString("base64")}`;

/** Names, passwords and patterns: 1 to MAX_ACL_TOKEN_BYTES bytes, no whitespace (the file is space-separated). */
function checkToken(t: string, what: string): void {
  if (t === "" || Buffer.byteLength(t) > MAX_ACL_TOKEN_BYTES || /\s|\0/.test(t))
    throw new AclError(`ERR the ${what} must be 1 to ${MAX_ACL_TOKEN_BYTES} bytes, without spaces`);
}

async function applyRule(u: User, rule: string): Promise<void> {
  if (rule.startsWith(">")) {
    checkToken(rule.slice(1), "password");
    u.hashes.push(await hashPassword(enc.encode(rule.slice(1))));
    u.nopass = false;
    return;
  }
  if (rule.startsWith("<")) {
    const pw = enc.encode(rule.slice(1));
    const keep: string[] = [];
    for (const h of u.hashes) if (!(await hashMatches(h, pw))) keep.push(h);
    if (keep.length === u.hashes.length)
      throw new AclError(`ERR Error in ACL SETUSER modifier '<...': no such password for this user`);
    u.hashes = keep;
    return;
  }
  applyRuleSync(u, rule);
}

const CATEGORIES: Record<string, number> = {
  all: ALL_PERMS,
  read: Perm.READ,
  write: Perm.WRITE,
  admin: Perm.ADMIN,
  dangerous: Perm.ADMIN,
};

/** Every rule but >password and <password (which hash: applyRule). */
function applyRuleSync(u: User, rule: string): void {
  const lower = rule.toLowerCase();
  switch (lower) {
    case "on":
      u.enabled = true;
      return;
    case "off":
      u.enabled = false;
      return;
    case "nopass":
      u.nopass = true;
      u.hashes = [];
      return;
    case "resetpass":
      u.nopass = false;
      u.hashes = [];
      return;
    case "allkeys":
    case "~*":
      u.keys = null;
      return;
    case "resetkeys":
      u.keys = [];
      return;
    case "allcommands":
      u.perms = ALL_PERMS;
      return;
    case "nocommands":
      u.perms = 0;
      return;
    case "allchannels":
    case "&*":
    case "resetchannels":
      // Channels are not restricted (docs/security.md): accepted so Redis's own lines load.
      return;
    case "reset":
      Object.assign(u, { ...newUser(u.name), deleted: u.deleted });
      return;
    case "sanitize-payload":
    case "skip-sanitize-payload":
      return; // a Redis DUMP/RESTORE setting, meaningless here: accepted so Redis's lines load
  }
  if (rule.startsWith("#")) {
    const h = rule.slice(1);
    if (!validHash(h))
      throw new AclError(
        `ERR Error in ACL SETUSER modifier '#...': The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters, or a Piccolo scrypt hash`,
      );
    if (!u.hashes.includes(h)) u.hashes.push(h);
    u.nopass = false;
    return;
  }
  if (rule.startsWith("!")) {
    const h = rule.slice(1);
    if (!u.hashes.includes(h))
      throw new AclError("ERR Error in ACL SETUSER modifier '!...': no such hash for this user");
    u.hashes = u.hashes.filter((x) => x !== h);
    return;
  }
  if (rule.startsWith("~")) {
    checkToken(rule.slice(1), "key pattern");
    if (u.keys !== null) u.keys.push(enc.encode(rule.slice(1)));
    return;
  }
  if ((rule.startsWith("+@") || rule.startsWith("-@")) && CATEGORIES[lower.slice(2)] !== undefined) {
    const bits = CATEGORIES[lower.slice(2)]!;
    u.perms = rule[0] === "+" ? u.perms | bits : u.perms & ~bits;
    return;
  }
  if (rule.startsWith("&"))
    throw new AclError(`ERR Error in ACL SETUSER modifier '${rule}': channel patterns are not supported (only &*)`);
  throw new AclError(
    `ERR Error in ACL SETUSER modifier '${rule}': Syntax error (supported: on off >pw <pw #hash nopass resetpass ~pattern allkeys resetkeys +@read +@write +@admin +@all and their -@ forms, allcommands nocommands reset)`,
  );
}

/** A user as one Redis ACL line. */
export function describe(u: User): string {
  const parts = ["user", u.name, u.enabled ? "on" : "off"];
  if (u.nopass) parts.push("nopass");
  for (const h of u.hashes) parts.push(`#${h}`);
  if (u.keys === null) parts.push("~*");
  else for (const k of u.keys) parts.push(`~${Buffer.from(k).toString()}`);
  parts.push("&*");
  if ((u.perms & ALL_PERMS) === ALL_PERMS) parts.push("+@all");
  else {
    parts.push("-@all");
    if (u.perms & Perm.READ) parts.push("+@read");
    if (u.perms & Perm.WRITE) parts.push("+@write");
    if (u.perms & Perm.ADMIN) parts.push("+@admin");
  }
  return parts.join(" ");
}
