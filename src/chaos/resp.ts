/**
 * The Redis protocol's adapter: ioredis, one connection per member, set up
 * so the library never hides an outcome:
 *   - commandTimeout: the client's per-command timeout (a late reply is
 *     matched to the timed-out command and dropped, as RESP replies come in
 *     order);
 *   - no reconnection (retryStrategy returns null), no offline queue, no
 *     retries per request, no resending of unanswered commands after a
 *     reconnect: a command sent on a connection that drops fails, and a
 *     write's outcome stays unknown. The next operation opens a new
 *     connection.
 *
 * Half the clients speak RESP3, half RESP2 (respVersion).
 *
 * Operations: GET (read), SET (write), SET NX (insert: a compare-and-swap
 * from "absent"), DEL (delete). Redis has no compare-and-swap on a version,
 * so RESP clients do none (SET XX, "only if present", is not expressible in
 * the checker's register model, and is left out).
 *
 * What counts as a lie: a plain SET answering nil (in Redis that means "not
 * performed because of NX/XX", which a plain SET never is), any reply of a
 * type the command never has. A GET answering nil for a key that holds a
 * value is left to the linearizability checker, which sees it as a read of
 * "absent" that no order explains.
 */
import { Redis } from "ioredis";
import { assert } from "../assert.js";
import type { ChaosCluster, ChaosSecurity } from "./cluster.js";
import {
  type AuditOutcome,
  type BankClient,
  failed,
  ok,
  type Outcome,
  type ProtocolAdapter,
  type Request,
  type StoreClient,
  type TransferOutcome,
  violation,
} from "./protocol.js";

const CONNECT_TIMEOUT_MS = 1_000;

/**
 * Clients 0 and 1 speak RESP3 (ioredis's default: HELLO 3 on connect), 2 and
 * 3 RESP2 (redis-cli's), and so on: each version with a short and a long
 * timeout (src/chaos/workload.ts alternates those), since the two encode
 * nil and errors differently.
 */
function respVersion(variant: number): 2 | 3 {
  return Math.floor(variant / 2) % 2 === 0 ? 3 : 2;
}

function label(err: unknown): string {
  const e = err as Error;
  // ioredis's ReplyError: the server's error reply; its first word is Redis's error prefix.
  if (e.name === "ReplyError") return `-${e.message.split(" ")[0]}`;
  if (e.message === "Command timed out") return "client timeout";
  return `connection: ${e.message}`;
}

const show = (v: unknown) => JSON.stringify(v) ?? String(v);

/** One ioredis connection at a time, opened on demand. */
class RespConnection {
  protected redis: Redis | null = null;
  private ready: Promise<Redis> | null = null;

  constructor(
    private readonly port: number,
    private readonly timeoutMs: number,
    private readonly protocol: 2 | 3,
    /** A secure run: TLS with the run's CA, AUTH with its password. */
    private readonly security: ChaosSecurity | null,
  ) {}

  protected connection(): Promise<Redis> {
    if (this.redis !== null && this.redis.status === "ready") return Promise.resolve(this.redis);
    if (this.ready !== null) return this.ready;
    this.redis?.disconnect();
    const r = new Redis({
      host: "127.0.0.1",
      port: this.port,
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: this.timeoutMs,
      protocol: this.protocol,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      enableReadyCheck: false,
      disableClientInfo: true,
      reconnectOnError: null,
      ...(this.security === null ? {} : { tls: { ca: this.security.ca }, password: this.security.password }),
    });
    r.on("error", () => {}); // every failure reaches the command that met it
    this.redis = r;
    this.ready = r
      .connect()
      .then(() => r)
      .finally(() => {
        this.ready = null;
      });
    return this.ready;
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
    this.redis = null;
  }
}

class RespClient extends RespConnection implements StoreClient {
  async run(key: string, q: Request): Promise<Outcome> {
    assert(q.kind !== "cas", "RESP clients are never given a compare-and-swap on a version");
    let r: Redis;
    try {
      r = await this.connection();
    } catch (err) {
      // No connection: the command was never sent.
      return failed(`no connection (not sent): ${(err as Error).message}`, false);
    }
    try {
      switch (q.kind) {
        case "read": {
          const v: unknown = await r.get(key);
          if (v === null || typeof v === "string") return ok({ kind: "read", value: v });
          return violation(`GET ${key} answered ${show(v)}`);
        }
        case "write": {
          const v: unknown = await r.set(key, q.value);
          if (v === "OK") return ok({ kind: "write" });
          return violation(`SET ${key} ${q.value} answered ${show(v)} (a plain SET answers OK or an error)`);
        }
        case "insert": {
          const v: unknown = await r.set(key, q.value, "NX");
          if (v === "OK") return ok({ kind: "cas", ok: true });
          if (v === null) return ok({ kind: "cas", ok: false });
          return violation(`SET ${key} ${q.value} NX answered ${show(v)}`);
        }
        case "delete": {
          const v: unknown = await r.del(key);
          if (v === 0 || v === 1) return ok({ kind: "delete", existed: v === 1 });
          return violation(`DEL ${key} answered ${show(v)}`);
        }
      }
    } catch (err) {
      return failed(label(err));
    }
  }
}

/**
 * The bank workload over RESP, as a Redis application does it: an audit is
 * MULTI, GET of every account, EXEC; a transfer is WATCH of both accounts,
 * MGET of both, then MULTI, SET, SET, EXEC (a null EXEC: a watched key
 * changed, nothing applied), or UNWATCH when there is nothing to move. After
 * any failure the connection is dropped, so no WATCH or MULTI state from a
 * sequence cut short is left on the next one (ioredis, as set up here, never
 * reconnects or resends by itself).
 */
class RespBankClient extends RespConnection implements BankClient {
  private fail(phase: "read" | "commit", err: unknown): TransferOutcome {
    void this.close();
    return { kind: "failed", phase, label: label(err), sent: true };
  }

  async audit(keys: readonly string[]): Promise<AuditOutcome> {
    let r: Redis;
    try {
      r = await this.connection();
    } catch (err) {
      return failed(`no connection (not sent): ${(err as Error).message}`, false);
    }
    let res: unknown;
    try {
      const m = r.multi();
      for (const k of keys) m.get(k);
      res = await m.exec();
    } catch (err) {
      void this.close();
      return failed(label(err));
    }
    if (!Array.isArray(res) || res.length !== keys.length)
      return violation(`MULTI, ${keys.length} GETs, EXEC (no WATCH) answered ${show(res)}`);
    const values: (string | null)[] = [];
    for (const [i, [err, v]] of (res as [Error | null, unknown][]).entries()) {
      if (err !== null) {
        void this.close();
        return failed(`EXEC element: ${label(err)}`);
      }
      if (v !== null && typeof v !== "string") return violation(`GET ${keys[i]} inside EXEC answered ${show(v)}`);
      values.push(v);
    }
    return { kind: "ok", values };
  }

  async transfer(
    a: string,
    b: string,
    plan: (va: string | null, vb: string | null) => [string, string] | null,
  ): Promise<TransferOutcome> {
    let r: Redis;
    try {
      r = await this.connection();
    } catch (err) {
      return {
        kind: "failed",
        phase: "read",
        label: `no connection (not sent): ${(err as Error).message}`,
        sent: false,
      };
    }
    let read: unknown;
    try {
      const w: unknown = await r.watch(a, b);
      if (w !== "OK") return violation(`WATCH ${a} ${b} answered ${show(w)}`);
      read = await r.mget(a, b);
    } catch (err) {
      return this.fail("read", err);
    }
    if (!Array.isArray(read) || read.length !== 2 || read.some((v) => v !== null && typeof v !== "string"))
      return violation(`MGET ${a} ${b} answered ${show(read)}`);
    const next = plan(read[0] as string | null, read[1] as string | null);
    if (next === null) {
      try {
        await r.unwatch();
      } catch {
        void this.close();
      }
      return { kind: "skipped" };
    }
    let res: unknown;
    try {
      res = await r.multi().set(a, next[0]).set(b, next[1]).exec();
    } catch (err) {
      return this.fail("commit", err);
    }
    if (res === null) return { kind: "conflict" };
    if (!Array.isArray(res) || res.length !== 2) return violation(`MULTI, SET, SET, EXEC answered ${show(res)}`);
    const errors = (res as [Error | null, unknown][]).filter(([e]) => e !== null);
    // EXEC is one transaction: a SET inside it that fails leaves the outcome unknown (and the audits judge it).
    if (errors.length > 0) return this.fail("commit", errors[0]![0]);
    if ((res as [Error | null, unknown][]).some(([, v]) => v !== "OK"))
      return violation(`MULTI, SET, SET, EXEC answered ${show(res)} (a plain SET answers OK)`);
    return { kind: "committed" };
  }
}

export function respAdapter(cluster: ChaosCluster): ProtocolAdapter {
  return {
    name: "resp",
    kinds: ["read", "write", "insert", "delete"],
    open: (member, timeoutMs, variant) =>
      new RespClient(cluster.members[member]!.respPort, timeoutMs, respVersion(variant), cluster.security),
    openBank: (member, timeoutMs, variant) =>
      new RespBankClient(cluster.members[member]!.respPort, timeoutMs, respVersion(variant), cluster.security),
    variantName: (variant) => `RESP${respVersion(variant)}`,
  };
}
