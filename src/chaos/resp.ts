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
import type { ChaosCluster } from "./cluster.js";
import {
  failed,
  ok,
  type Outcome,
  type ProtocolAdapter,
  type Request,
  type StoreClient,
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

class RespClient implements StoreClient {
  private redis: Redis | null = null;
  private ready: Promise<Redis> | null = null;

  constructor(
    private readonly port: number,
    private readonly timeoutMs: number,
    private readonly protocol: 2 | 3,
  ) {}

  private connection(): Promise<Redis> {
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

  async close(): Promise<void> {
    this.redis?.disconnect();
    this.redis = null;
  }
}

export function respAdapter(cluster: ChaosCluster): ProtocolAdapter {
  return {
    name: "resp",
    kinds: ["read", "write", "insert", "delete"],
    open: (member, timeoutMs, variant) =>
      new RespClient(cluster.members[member]!.respPort, timeoutMs, respVersion(variant)),
    variantName: (variant) => `RESP${respVersion(variant)}`,
  };
}
