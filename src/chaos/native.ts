/**
 * The native protocol's adapter: the project's own PiccoloClient, one per
 * member, with the client's per-call timeout. The client never retries a
 * write behind our back (src/client/client.ts), and reconnects by itself on
 * the next call after a connection drops.
 */
import { PiccoloClient, type TxnResult, VersionMismatchError } from "../client/client.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import type { ChaosCluster } from "./cluster.js";
import {
  type AuditOutcome,
  type BankClient,
  failed,
  isVersion,
  ok,
  type Outcome,
  type ProtocolAdapter,
  type Request,
  type StoreClient,
  type TransferOutcome,
  violation,
} from "./protocol.js";

/** How long a connection may take; a paused member's kernel still accepts, so this rarely fires. */
const CONNECT_TIMEOUT_MS = 1_000;

/** The client's message without the "CODE: " prefix PiccoloError puts in front. */
function text(err: PiccoloError): string {
  const prefix = `${err.codeName}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

function label(err: unknown): string {
  if (err instanceof PiccoloError) {
    if (neverSent(err)) return "no connection (not sent)";
    // The client's own timer, as opposed to the node answering TIMEOUT.
    if (err.code === ErrorCode.TIMEOUT && text(err).startsWith("no answer within")) return "client timeout";
    return err.codeName;
  }
  return `exception: ${(err as Error).message}`;
}

/** The client's own words when it could not open a connection: the request was never written. */
function neverSent(err: unknown): boolean {
  return (
    err instanceof PiccoloError &&
    err.code === ErrorCode.CONNECTION_CLOSED &&
    (text(err).startsWith("cannot connect to") || /^connect to .* timed out$/.test(text(err)))
  );
}

class NativeClient implements StoreClient {
  constructor(private readonly c: PiccoloClient) {}

  async run(key: string, q: Request): Promise<Outcome> {
    try {
      switch (q.kind) {
        case "read": {
          const e = await this.c.get(key);
          if (e === null) return ok({ kind: "read", value: null });
          if (!isVersion(e.version)) return violation(`get answered a value with version ${e.version}`);
          return ok({ kind: "read", value: e.value.toString(), version: e.version });
        }
        case "write": {
          const w = await this.c.upsert(key, q.value);
          if (!isVersion(w.version)) return violation(`put answered version ${w.version}`);
          return ok({ kind: "write", version: w.version, created: w.created });
        }
        case "cas":
          try {
            const v = await this.c.cas(key, q.value, q.version);
            if (!isVersion(v)) return violation(`cas answered version ${v}`);
            return ok({ kind: "cas", ok: true, version: v });
          } catch (err) {
            if (err instanceof VersionMismatchError) return ok({ kind: "cas", ok: false });
            throw err;
          }
        case "insert":
          try {
            const v = await this.c.insert(key, q.value);
            if (!isVersion(v)) return violation(`insert answered version ${v}`);
            return ok({ kind: "cas", ok: true, version: v });
          } catch (err) {
            if (err instanceof PiccoloError && err.code === ErrorCode.ALREADY_EXISTS)
              return ok({ kind: "cas", ok: false });
            throw err;
          }
        case "delete":
          return ok({ kind: "delete", existed: await this.c.delete(key) });
      }
    } catch (err) {
      // The client's check() throws INTERNAL "unexpected response kind" when the node answered a
      // request with another request's kind of answer: not an honest error, a lie.
      if (err instanceof PiccoloError && text(err).startsWith("unexpected response kind"))
        return violation(`${q.kind}: ${err.message}`);
      return failed(label(err), !neverSent(err));
    }
  }

  close(): Promise<void> {
    return this.c.close().catch(() => {});
  }
}

/** A read-only transaction's gets, as values and versions (0: absent), or what is wrong with them. */
function gets(
  what: string,
  keys: readonly string[],
  t: TxnResult,
): { values: (string | null)[]; versions: number[] } | string {
  if (t.succeeded !== true || t.results.length !== keys.length)
    return `${what}: a transaction of ${keys.length} gets and no compares answered succeeded=${t.succeeded} with ${t.results.length} results`;
  const values: (string | null)[] = [];
  const versions: number[] = [];
  for (const [i, r] of t.results.entries()) {
    if (r.op !== "get") return `${what}: result ${i} is a ${r.op}, not a get`;
    if (r.found && (r.value === null || !isVersion(r.version)))
      return `${what}: get ${keys[i]} found with value ${r.value === null ? "null" : "bytes"} and version ${r.version}`;
    values.push(r.found ? r.value!.toString() : null);
    versions.push(r.found ? r.version : 0);
  }
  return { values, versions };
}

/** The client's "unexpected response kind": the node answered with another request's kind of answer, a lie. */
function lie(err: unknown): boolean {
  return err instanceof PiccoloError && text(err).startsWith("unexpected response kind");
}

/** Native transactions: a transaction of gets to read, version compares to write (docs/transactions.md). */
class NativeBankClient implements BankClient {
  constructor(private readonly c: PiccoloClient) {}

  async audit(keys: readonly string[]): Promise<AuditOutcome> {
    try {
      const g = gets("audit", keys, await this.c.txn({ success: keys.map((key) => ({ op: "get" as const, key })) }));
      return typeof g === "string" ? violation(g) : { kind: "ok", values: g.values };
    } catch (err) {
      if (lie(err)) return violation(`audit: ${(err as Error).message}`);
      return failed(label(err), !neverSent(err));
    }
  }

  async transfer(
    a: string,
    b: string,
    plan: (va: string | null, vb: string | null) => [string, string] | null,
  ): Promise<TransferOutcome> {
    let read: ReturnType<typeof gets>;
    try {
      read = gets(
        "transfer's read",
        [a, b],
        await this.c.txn({
          success: [
            { op: "get", key: a },
            { op: "get", key: b },
          ],
        }),
      );
    } catch (err) {
      if (lie(err)) return violation(`transfer's read: ${(err as Error).message}`);
      return { kind: "failed", phase: "read", label: label(err), sent: !neverSent(err) };
    }
    if (typeof read === "string") return violation(read);
    const next = plan(read.values[0]!, read.values[1]!);
    if (next === null) return { kind: "skipped" };
    try {
      const w = await this.c.txn({
        compare: [
          { key: a, version: read.versions[0]! },
          { key: b, version: read.versions[1]! },
        ],
        success: [
          { op: "put", key: a, value: next[0] },
          { op: "put", key: b, value: next[1] },
        ],
      });
      if (!w.succeeded)
        return w.results.length === 0
          ? { kind: "conflict" }
          : violation(`transfer: the failure branch is empty, yet it answered ${w.results.length} results`);
      if (w.results.length !== 2 || w.results.some((r) => r.op !== "put" || !isVersion(r.version) || r.created))
        return violation(`transfer: two puts answered ${JSON.stringify(w.results)}`);
      return { kind: "committed" };
    } catch (err) {
      if (lie(err)) return violation(`transfer: ${(err as Error).message}`);
      return { kind: "failed", phase: "commit", label: label(err), sent: !neverSent(err) };
    }
  }

  close(): Promise<void> {
    return this.c.close().catch(() => {});
  }
}

/** A client of `member` (with the run's CA and password when it is secure). */
function connectTo(cluster: ChaosCluster, member: number, timeoutMs: number): PiccoloClient {
  return new PiccoloClient({
    host: "127.0.0.1",
    port: cluster.members[member]!.clientPort,
    timeoutMs,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    ...cluster.clientOptions(),
  });
}

export function nativeAdapter(cluster: ChaosCluster): ProtocolAdapter {
  return {
    name: "native",
    kinds: ["read", "write", "cas", "insert", "delete"],
    open: (member, timeoutMs) => new NativeClient(connectTo(cluster, member, timeoutMs)),
    openBank: (member, timeoutMs) => new NativeBankClient(connectTo(cluster, member, timeoutMs)),
  };
}
