// The HTTP workload of bench:rest and bench:tls: a target (the Cerializer or
// etcd's JSON gateway, over HTTP or HTTPS), a preload of every key, a read
// back, and autocannon runs of GET or PUT on random preloaded keys with
// p50/p99 from every 2xx response's own time.
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import autocannon from "autocannon";
import * as hdr from "hdr-histogram-js";

export const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
export const keyOf = (i: number) => `key-${String(i).padStart(12, "0")}`; // 16 bytes
export const PRELOAD_VALUE = "p".repeat(64);
export const PUT_VALUE = "v".repeat(64);

export interface Req {
  method: "GET" | "PUT" | "POST";
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

export interface HttpTarget {
  name: string;
  /** http://host:port or https://host:port */
  base: string;
  /** The CA that signed an https base's certificate (checked by send(); autocannon never checks, see runHttp). */
  ca?: Buffer;
  get(key: string): Req;
  put(key: string, value: string): Req;
  /** The value in a GET answer's body, or null. */
  valueOf(body: string): string | null;
}

/** The Cerializer: GET/PUT /v1/kv/{key}, the value as the raw body. */
export function cerializerTarget(name: string, base: string, ca?: Buffer): HttpTarget {
  return {
    name,
    base,
    ...(ca ? { ca } : {}),
    get: (k) => ({ method: "GET", path: `/v1/kv/${k}` }),
    put: (k, v) => ({
      method: "PUT",
      path: `/v1/kv/${k}`,
      body: v,
      headers: { "content-type": "application/octet-stream" },
    }),
    valueOf: (body) => body,
  };
}

// A new headers object per request: autocannon writes Content-Length into the one it is given.
const json = () => ({ "content-type": "application/json" });

/** etcd's JSON gateway (grpc-gateway): POST {prefix}/kv/range and {prefix}/kv/put, base64 keys and values. */
export function etcdTarget(name: string, base: string, prefix: string, ca?: Buffer): HttpTarget {
  return {
    name,
    base,
    ...(ca ? { ca } : {}),
    get: (k) => ({
      method: "POST",
      path: `${prefix}/kv/range`,
      body: JSON.stringify({ key: b64(k) }),
      headers: json(),
    }),
    put: (k, v) => ({
      method: "POST",
      path: `${prefix}/kv/put`,
      body: JSON.stringify({ key: b64(k), value: b64(v) }),
      headers: json(),
    }),
    valueOf: (body) => {
      const kv = (JSON.parse(body) as { kvs?: { value?: string }[] }).kvs?.[0];
      return kv?.value === undefined ? null : Buffer.from(kv.value, "base64").toString();
    },
  };
}

const agents = new Map<string, HttpAgent>();
/** One request with node:http(s) on a keep-alive agent per base (https: the target's CA is checked). */
export function send(t: { base: string; ca?: Buffer }, r: Req): Promise<{ status: number; body: string }> {
  const url = new URL(r.path, t.base);
  const tls = url.protocol === "https:";
  let agent = agents.get(t.base);
  if (!agent) {
    agent = tls
      ? new HttpsAgent({ keepAlive: true, maxSockets: 64, ...(t.ca ? { ca: t.ca } : {}) })
      : new HttpAgent({ keepAlive: true, maxSockets: 64 });
    agents.set(t.base, agent);
  }
  const body = r.body === undefined ? undefined : Buffer.from(r.body);
  return new Promise((resolve, reject) => {
    const req = (tls ? httpsRequest : httpRequest)(
      url,
      {
        method: r.method,
        agent,
        headers: { ...(r.headers ?? {}), ...(body ? { "content-length": String(body.length) } : {}) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => parts.push(d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Closes the keep-alive connections send() opened (so a stopped server is not waited on). */
export function closeAgents(): void {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}

/** Puts every key (64 requests at a time) with PRELOAD_VALUE. */
export async function preload(t: HttpTarget, keyCount: number): Promise<void> {
  for (let i = 0; i < keyCount; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, keyCount - i) }, async (_, j) => {
        const { status, body } = await send(t, t.put(keyOf(i + j), PRELOAD_VALUE));
        if (status < 200 || status > 299) throw new Error(`${t.name} preload: ${status} ${body}`);
      }),
    );
  }
}

/** Reads a few keys back: each must hold one of the two values the benchmark writes. */
export async function checkValues(t: HttpTarget, keyCount: number, when: string): Promise<void> {
  for (const i of [0, Math.floor(keyCount / 2), keyCount - 1]) {
    const { status, body } = await send(t, t.get(keyOf(i)));
    const v = status === 200 ? t.valueOf(body) : null;
    if (v !== PRELOAD_VALUE && v !== PUT_VALUE)
      throw new Error(`${t.name}: read back of ${keyOf(i)} ${when}: ${status} ${body.slice(0, 200)}`);
  }
}

export type Workload = "GET" | "PUT";

export interface HttpCell {
  target: string;
  workload: string;
  round: number;
  seconds: number;
  requests: number;
  rps: number;
  /** From every 2xx response's own time (microsecond resolution). */
  p50ms: number;
  p99ms: number;
  maxMs: number;
  /** autocannon's own percentiles (whole milliseconds), for comparison. */
  autocannonP50ms: number;
  autocannonP99ms: number;
  non2xx: number;
  /** Socket errors and timeouts (autocannon counts timeouts among errors). */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

/**
 * autocannon (pipelining 1) for `seconds`: GET or PUT (PUT_VALUE) of a random key of the first `keyCount`.
 * Over https, autocannon connects with the target's CA in tlsOptions but always with rejectUnauthorized
 * false (its httpClient sets it): the handshake and the encryption are the same, the chain is not checked.
 */
export function runHttp(
  t: HttpTarget,
  workload: Workload,
  round: number,
  o: { seconds: number; connections: number; keyCount: number },
): Promise<HttpCell> {
  const h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: t.base,
        connections: o.connections,
        pipelining: 1,
        duration: o.seconds,
        ...(t.ca ? { tlsOptions: { ca: t.ca } } : {}),
        requests: [
          {
            setupRequest: (req) => {
              const k = keyOf(Math.floor(Math.random() * o.keyCount));
              return { ...req, ...(workload === "GET" ? t.get(k) : t.put(k, PUT_VALUE)) } as typeof req;
            },
          },
        ],
      },
      (err, r) => {
        if (err) return reject(err);
        const statusCodes: Record<string, number> = {};
        for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = s.count ?? 0;
        const ok = h.totalCount > 0;
        resolve({
          target: t.name,
          workload,
          round,
          seconds: r.duration,
          requests: r.requests.total,
          rps: r.requests.total / r.duration,
          p50ms: ok ? h.getValueAtPercentile(50) / 1000 : Number.NaN,
          p99ms: ok ? h.getValueAtPercentile(99) / 1000 : Number.NaN,
          maxMs: ok ? h.maxValue / 1000 : Number.NaN,
          autocannonP50ms: r.latency.p50,
          autocannonP99ms: r.latency.p99,
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          statusCodes,
        });
      },
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) h.recordValue(Math.max(1, Math.round(ms * 1000)));
    });
  });
}
