/**
 * ACL: users and their permissions, Redis's command for them (a subset:
 * docs/security.md). WHOAMI is anyone's; the rest are an admin's.
 * The users themselves live in src/security/users.ts.
 */
import { AclError, describe, mayRun, nopermCommand, Perm, type User } from "../security/users.js";
import { lower, text } from "./args.js";
import { allCommands } from "./commands.js";
import * as reply from "./reply.js";
import type { RespRequest } from "./request.js";

const CATEGORIES = ["read", "write", "admin", "dangerous", "all"];

const HELP = [
  "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "WHOAMI -- the current connection's user.",
  "LIST -- every user as a Redis ACL line.",
  "USERS -- every user's name.",
  "GETUSER <username> -- a user's flags, passwords (hashed), commands and keys.",
  "SETUSER <username> [rules ...] -- make or change a user (rules: on off >pw <pw #hash nopass resetpass",
  "    ~pattern allkeys resetkeys +@read +@write +@admin +@all, their -@ forms, allcommands nocommands reset).",
  "DELUSER <username> [...] -- delete users.",
  "CAT [<category>] -- the categories, or a category's commands.",
  "LOAD -- reload the users file.  SAVE -- write it.",
];

export function acl(q: RespRequest): void {
  const a = q.args;
  const sub = lower(a[1]!);
  const s = q.session;
  const users = s.resp.auth.users;
  const me = s.user as User; // connection.ts let no unauthenticated connection this far
  if (sub === "whoami" && a.length === 2) return q.reply(reply.bulk(me.name));
  if (sub === "help") return q.reply(reply.array(HELP.map((l) => reply.simple(l))));
  if (!mayRun(me, Perm.ADMIN)) return q.error(`NOPERM ${nopermCommand(me, `acl|${sub}`)}`);
  try {
    switch (sub) {
      case "list":
        if (a.length !== 2) break;
        return q.reply(reply.array(users.list().map((l) => reply.bulk(l))));
      case "users":
        if (a.length !== 2) break;
        return q.reply(reply.array(users.names().map((n) => reply.bulk(n))));
      case "getuser": {
        if (a.length !== 3) break;
        const u = users.get(text(a[2]!));
        if (u === undefined) return q.reply(reply.nil(q.proto));
        return q.reply(getUser(u, q.proto));
      }
      case "setuser": {
        if (a.length < 3) break;
        const name = text(a[2]!);
        const rules = a.slice(3).map((r) => text(r));
        // Hashing a >password runs on the thread pool; the connection's later commands wait (a barrier).
        void users.setUser(name, rules).then(
          () => q.reply(reply.OK),
          (err: unknown) => q.error(err instanceof AclError ? err.message : `ERR ${(err as Error).message}`),
        );
        return;
      }
      case "deluser":
        if (a.length < 3) break;
        return q.reply(reply.integer(users.delUsers(a.slice(2).map((n) => text(n)))));
      case "cat":
        if (a.length === 2) return q.reply(reply.array(CATEGORIES.map((c) => reply.bulk(c))));
        if (a.length === 3) {
          const c = lower(a[2]!);
          if (!CATEGORIES.includes(c)) return q.error(`ERR Unknown category '${text(a[2]!)}'`);
          return q.reply(reply.array(commandsIn(c).map((n) => reply.bulk(n))));
        }
        break;
      case "load":
        if (a.length !== 2) break;
        users.reload();
        return q.reply(reply.OK);
      case "save":
        if (a.length !== 2) break;
        users.save();
        return q.reply(reply.OK);
    }
  } catch (err) {
    return q.error(err instanceof AclError ? err.message : `ERR ${(err as Error).message}`);
  }
  q.error(`ERR unknown subcommand or wrong number of arguments for '${text(a[1]!)}'. Try ACL HELP.`);
}

function getUser(u: User, proto: reply.Proto): Uint8Array {
  const line = describe(u).split(" ");
  const flags = [u.enabled ? "on" : "off", ...(u.nopass ? ["nopass"] : [])];
  return reply.map(
    [
      [reply.bulk("flags"), reply.array(flags.map((f) => reply.bulk(f)))],
      [reply.bulk("passwords"), reply.array(u.hashes.map((h) => reply.bulk(h)))],
      [reply.bulk("commands"), reply.bulk(line.filter((w) => w.startsWith("+@") || w.startsWith("-@")).join(" "))],
      [reply.bulk("keys"), reply.bulk(line.filter((w) => w.startsWith("~")).join(" "))],
      [reply.bulk("channels"), reply.bulk("&*")],
    ],
    proto,
  );
}

/** The commands a category holds (ACL CAT <category>), read off the command table's permissions. */
function commandsIn(c: string): string[] {
  if (c === "all") return allCommands().map((spec) => spec.name);
  const bit = c === "read" ? Perm.READ : c === "write" ? Perm.WRITE : Perm.ADMIN;
  return allCommands()
    .filter((spec) => (spec.perm & bit) !== 0)
    .map((spec) => spec.name);
}
