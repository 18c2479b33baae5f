/**
 * HTTP through the Cerializer: Node's fetch (undici), a per-request timeout
 * with AbortSignal.timeout, against the one gateway in front of all three
 * members. fetch never resends a request that was written to a connection
 * that then failed, so a write's outcome is never hidden.
 *
 *   read    GET /v1/kv/k, Accept: application/json: 200 with the envelope
 *           {key, value, encoding, version} and ETag "<version>", or 404 with
 *           the not-found problem;
 *   write   PUT: 201 (created: the key was absent) or 200 (replaced), each
 *           with {version, created} and ETag "<version>";
 *   cas     PUT If-Match: "<version>": 200, or 412 precondition-failed;
 *   insert  PUT If-None-Match: *: 201, or 412 precondition-failed;
 *   delete  DELETE: 204, or 404 not-found.
 * Any 5xx is "failed or unknown" whatever its problem type (only counted in
 * the summary). Any other status, or a 2xx missing what it must carry, is a
 * violation: the harness sends only valid requests.
 */
import { Agent, fetch as undiciFetch } from "undici";
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

const PROBLEM_BASE = "urn:piccolo:problem:";

interface Answer {
  status: number;
  etag: string | null;
  contentType: string;
  text: string;
}

function json(a: Answer): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(a.text);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The problem type's short name ("not-found"), or null when the answer is not a problem document. */
function problemType(a: Answer): string | null {
  if (!a.contentType.startsWith("application/problem+json")) return null;
  const t = json(a)?.type;
  return typeof t === "string" && t.startsWith(PROBLEM_BASE) ? t.slice(PROBLEM_BASE.length) : null;
}

const show = (what: string, a: Answer) =>
  `${what} answered ${a.status} (${a.contentType || "no content type"}, ETag ${a.etag ?? "none"}): ${a.text.slice(0, 300)}`;

/** A write's 2xx: the body and ETag must carry the version, and `created` must match the status. */
function written(what: string, a: Answer, created: boolean): { version: number } | { bad: string } {
  const b = json(a);
  if (b === null || !isVersion(b.version) || b.created !== created || a.etag !== `"${b.version}"`)
    return { bad: show(what, a) };
  return { version: b.version };
}

function label(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") return "client timeout";
  return `connection: ${e.cause?.code ?? e.cause?.message ?? e.message}`;
}

/**
 * How the adapters reach the gateway: its URL, the fetch to use and the
 * headers every request carries. A secure run (src/chaos/cluster.ts) goes
 * over HTTPS trusting the run's CA (undici's fetch with an Agent holding it:
 * Node 20's global fetch cannot be given a CA) and authenticates as the
 * default user with HTTP Basic.
 */
export interface GatewayLink {
  base: string;
  fetch: (url: string, init: RequestInit) => Promise<Response>;
  headers: Record<string, string>;
}

function gatewayLink(cluster: ChaosCluster): GatewayLink {
  const s = cluster.security;
  if (s === null) return { base: `http://127.0.0.1:${cluster.httpPort}`, fetch, headers: {} };
  const dispatcher = new Agent({ connect: { ca: s.ca } });
  return {
    base: `https://127.0.0.1:${cluster.httpPort}`,
    fetch: (url, init) =>
      undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher }) as unknown as Promise<Response>,
    headers: { authorization: `Basic ${Buffer.from(`default:${s.password}`).toString("base64")}` },
  };
}

class HttpClient implements StoreClient {
  constructor(
    private readonly link: GatewayLink,
    private readonly timeoutMs: number,
  ) {}

  private async send(method: string, key: string, headers: Record<string, string>, body?: string): Promise<Answer> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const res = await this.link.fetch(`${this.link.base}/v1/kv/${encodeURIComponent(key)}`, {
      method,
      headers: { ...this.link.headers, ...headers },
      ...(body === undefined ? {} : { body }),
      signal,
    });
    const text = await res.text();
    return {
      status: res.status,
      etag: res.headers.get("etag"),
      contentType: res.headers.get("content-type") ?? "",
      text,
    };
  }

  async run(key: string, q: Request): Promise<Outcome> {
    let a: Answer;
    const what = `${q.kind} ${key}`;
    try {
      switch (q.kind) {
        case "read":
          a = await this.send("GET", key, { accept: "application/json" });
          break;
        case "write":
          a = await this.send("PUT", key, { "content-type": "text/plain" }, q.value);
          break;
        case "cas":
          a = await this.send("PUT", key, { "content-type": "text/plain", "if-match": `"${q.version}"` }, q.value);
          break;
        case "insert":
          a = await this.send("PUT", key, { "content-type": "text/plain", "if-none-match": "*" }, q.value);
          break;
        case "delete":
          a = await this.send("DELETE", key, {});
          break;
      }
    } catch (err) {
      // A refused connection: the request was never written.
      const refused = (err as { cause?: { code?: string } }).cause?.code === "ECONNREFUSED";
      return failed(refused ? "no connection (not sent)" : label(err), !refused);
    }
    if (a.status >= 500) return failed(`${a.status} ${problemType(a) ?? "(no problem type)"}`);
    const type = problemType(a);
    switch (q.kind) {
      case "read": {
        if (a.status === 404 && type === "not-found") return ok({ kind: "read", value: null });
        const b = a.status === 200 ? json(a) : null;
        if (
          b === null ||
          b.key !== key ||
          typeof b.value !== "string" ||
          b.encoding !== "utf8" ||
          !isVersion(b.version) ||
          a.etag !== `"${b.version}"`
        )
          return violation(show(what, a));
        return ok({ kind: "read", value: b.value, version: b.version });
      }
      case "write": {
        if (a.status !== 200 && a.status !== 201) return violation(show(what, a));
        const w = written(what, a, a.status === 201);
        if ("bad" in w) return violation(w.bad);
        return ok({ kind: "write", version: w.version, created: a.status === 201 });
      }
      case "cas":
      case "insert": {
        if (a.status === 412 && type === "precondition-failed") return ok({ kind: "cas", ok: false });
        // A compare-and-swap replaces (200); an insert creates (201).
        const expected = q.kind === "cas" ? 200 : 201;
        if (a.status !== expected) return violation(show(what, a));
        const w = written(what, a, q.kind === "insert");
        if ("bad" in w) return violation(w.bad);
        return ok({ kind: "cas", ok: true, version: w.version });
      }
      case "delete":
        if (a.status === 204) return ok({ kind: "delete", existed: true });
        if (a.status === 404 && type === "not-found") return ok({ kind: "delete", existed: false });
        return violation(show(what, a));
    }
  }

  async close(): Promise<void> {}
}

/** The gets of a /v1/txn answer: values and versions (0: absent), or what is wrong with it. */
function txnGets(
  what: string,
  keys: readonly string[],
  a: Answer,
): { values: (string | null)[]; versions: number[] } | string {
  const b = a.status === 200 ? json(a) : null;
  if (b === null || b.succeeded !== true || !Array.isArray(b.results) || b.results.length !== keys.length)
    return show(what, a);
  const values: (string | null)[] = [];
  const versions: number[] = [];
  for (const r of b.results as Record<string, unknown>[]) {
    if (typeof r !== "object" || r === null || r.op !== "get" || typeof r.found !== "boolean") return show(what, a);
    if (!r.found) {
      values.push(null);
      versions.push(0);
      continue;
    }
    if (typeof r.value !== "string" || r.encoding !== "utf8" || !isVersion(r.version)) return show(what, a);
    values.push(r.value);
    versions.push(r.version);
  }
  return { values, versions };
}

/** POST /v1/txn (docs/cerializer.md): a transaction of gets to read, version compares to write. */
class HttpBankClient implements BankClient {
  constructor(
    private readonly link: GatewayLink,
    private readonly timeoutMs: number,
  ) {}

  private async post(body: unknown): Promise<Answer> {
    const res = await this.link.fetch(`${this.link.base}/v1/txn`, {
      method: "POST",
      headers: { ...this.link.headers, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, etag: null, contentType: res.headers.get("content-type") ?? "", text };
  }

  /** The answer, or how the request failed (a refused connection: never sent). */
  private async send(body: unknown): Promise<Answer | { failed: string; sent: boolean }> {
    try {
      const a = await this.post(body);
      if (a.status >= 500) return { failed: `${a.status} ${problemType(a) ?? "(no problem type)"}`, sent: true };
      return a;
    } catch (err) {
      const refused = (err as { cause?: { code?: string } }).cause?.code === "ECONNREFUSED";
      return { failed: refused ? "no connection (not sent)" : label(err), sent: !refused };
    }
  }

  async audit(keys: readonly string[]): Promise<AuditOutcome> {
    const a = await this.send({ success: keys.map((key) => ({ op: "get", key })) });
    if ("failed" in a) return failed(a.failed, a.sent);
    const g = txnGets("audit", keys, a);
    return typeof g === "string" ? violation(g) : { kind: "ok", values: g.values };
  }

  async transfer(
    x: string,
    y: string,
    plan: (vx: string | null, vy: string | null) => [string, string] | null,
  ): Promise<TransferOutcome> {
    const r = await this.send({
      success: [
        { op: "get", key: x },
        { op: "get", key: y },
      ],
    });
    if ("failed" in r) return { kind: "failed", phase: "read", label: r.failed, sent: r.sent };
    const read = txnGets("transfer's read", [x, y], r);
    if (typeof read === "string") return violation(read);
    const next = plan(read.values[0]!, read.values[1]!);
    if (next === null) return { kind: "skipped" };
    const a = await this.send({
      compare: [
        { key: x, version: read.versions[0] },
        { key: y, version: read.versions[1] },
      ],
      success: [
        { op: "put", key: x, value: next[0] },
        { op: "put", key: y, value: next[1] },
      ],
    });
    if ("failed" in a) return { kind: "failed", phase: "commit", label: a.failed, sent: a.sent };
    const b = a.status === 200 ? json(a) : null;
    if (b === null || typeof b.succeeded !== "boolean" || !Array.isArray(b.results))
      return violation(show("transfer", a));
    if (!b.succeeded) return b.results.length === 0 ? { kind: "conflict" } : violation(show("transfer", a));
    const puts = b.results as Record<string, unknown>[];
    if (puts.length !== 2 || puts.some((p) => p?.op !== "put" || !isVersion(p.version) || p.created !== false))
      return violation(show("transfer", a));
    return { kind: "committed" };
  }

  async close(): Promise<void> {}
}

export function httpAdapter(cluster: ChaosCluster): ProtocolAdapter {
  return {
    name: "http",
    kinds: ["read", "write", "cas", "insert", "delete"],
    open: (_member, timeoutMs) => new HttpClient(gatewayLink(cluster), timeoutMs),
    openBank: (_member, timeoutMs) => new HttpBankClient(gatewayLink(cluster), timeoutMs),
  };
}
