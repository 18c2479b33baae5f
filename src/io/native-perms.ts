/**
 * Who may run which native operation: the permission each needs (read,
 * write, admin: src/security/users.ts) and the refusal's text, in Redis's
 * words. Shared by the general request path (native.ts) and the hot one
 * (native-hot.ts).
 */
import { OpKind, type Operation } from "../protocol/codec.js";
import { isWrite } from "../shard/command.js";
import { mayAccess, mayRun, mayWatchPrefix, NOPERM_KEY, nopermCommand, Perm, type User } from "../security/users.js";

const { READ, WRITE, ADMIN } = Perm;

/** "get", "transferLeader"...: an operation's name in NOPERM's text. */
export const kindName: Record<number, string> = {};
for (const [name, kind] of Object.entries(OpKind))
  kindName[kind] = name.toLowerCase().replace(/_(.)/g, (_m, c: string) => c.toUpperCase());

/** The permission each operation needs (src/security/users.ts); a transaction's depends on its ops (txnPerm). */
export const permOfKind: Partial<Record<number, number>> = {
  [OpKind.GET]: READ,
  [OpKind.EXISTS]: READ,
  [OpKind.TTL]: READ,
  [OpKind.MGET]: READ,
  [OpKind.SCAN]: READ,
  [OpKind.WATCH]: READ,
  [OpKind.PUT]: WRITE,
  [OpKind.INSERT]: WRITE,
  [OpKind.UPDATE]: WRITE,
  [OpKind.CAS]: WRITE,
  [OpKind.DELETE]: WRITE,
  [OpKind.EXPIRE]: WRITE,
  [OpKind.PERSIST]: WRITE,
  [OpKind.MPUT]: WRITE,
  [OpKind.MDEL]: WRITE,
  [OpKind.TRANSFER_LEADER]: ADMIN,
  [OpKind.REPLACE_REPLICA]: ADMIN,
  // Every key and value of the node, whatever the user's key patterns: an operator's tool.
  [OpKind.BACKUP]: ADMIN,
  // Sets versions: misused, it could make a compare-and-swap succeed against a version it never read.
  [OpKind.RESTORE_KEYS]: ADMIN,
  [OpKind.FORGET_MEMBER]: ADMIN,
  [OpKind.SLOWLOG]: ADMIN,
};

/**
 * Why `user` may not run `op`, in Redis's words, or null when it may: the
 * operation's category, then each key against the user's patterns (a watch
 * of a prefix: the whole prefix must be within one pattern).
 */
export function nativeRefusal(user: User, op: Operation): string | null {
  let need = permOfKind[op.kind] ?? 0;
  const t = op.txn;
  if (t !== null) {
    if (t.compares.length > 0) need |= READ;
    for (const o of [...t.success, ...t.failure]) need |= isWrite(o.op) ? WRITE : READ;
  }
  if (!mayRun(user, need)) return nopermCommand(user, kindName[op.kind] ?? String(op.kind));
  if (user.keys === null) return null;
  if (op.kind === OpKind.WATCH && op.prefix) return mayWatchPrefix(user, op.keys[0]!) ? null : NOPERM_KEY;
  for (const k of op.keys) if (!mayAccess(user, k)) return NOPERM_KEY;
  if (t !== null) {
    for (const c of t.compares) if (!mayAccess(user, c.key)) return NOPERM_KEY;
    for (const o of [...t.success, ...t.failure]) if (!mayAccess(user, o.key)) return NOPERM_KEY;
  }
  return null;
}

/** Why `user` may not run a single-key operation `kind` on `key` (nativeRefusal's rules for one key), or null. */
export function keyRefusal(user: User, kind: number, key: Uint8Array): string | null {
  if (!mayRun(user, permOfKind[kind] ?? 0)) return nopermCommand(user, kindName[kind] ?? String(kind));
  return user.keys === null || mayAccess(user, key) ? null : NOPERM_KEY;
}
