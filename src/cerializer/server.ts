/**
 * The Cerializer: a JSON/REST gateway in front of Piccolo nodes.
 *
 * The data flow of one request:
 *   HTTP (Fastify: parse, validate against the route's JSON schema)
 *     -> route handler (routes/*.ts: HTTP vocabulary -> store operation)
 *     -> router.ts (which node owns the key)
 *     -> pool.ts (one of that node's pipelined connections; 503 if down)
 *     -> PiccoloClient (Cap'n Proto over TCP) -> node -> back the same way.
 * Every failure on the way becomes an RFC 9457 problem (problems.ts).
 *
 * Before the route, auth.ts decides who the caller is (Basic credentials,
 * a bearer token, or nobody), and every node request of the route is sent
 * on connections authenticated as that caller: the node checks what the
 * caller may do, the gateway does not (docs/decisions/0263). With
 * --tls-cert-file the port speaks HTTPS only; with --node-tls-ca-cert-file
 * every connection to a node is TLS.
 *
 * Fastify was chosen for its schema-first routes: one JSON schema per route
 * validates input (with Ajv), drives fast serialisation of output, and is
 * what @fastify/swagger turns into the OpenAPI document at /openapi.json
 * (docs/decisions/0070-fastify-for-the-cerializer.md).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { ConnectionOptions } from "node:tls";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import { pino } from "pino";
import { ErrorCode, PiccoloError } from "../errors.js";
import { LimitLog } from "../limit-log.js";
import {
  CERIALIZER_CONNECTIONS_PER_NODE,
  CERIALIZER_DEFAULT_BODY_BYTES,
  CERIALIZER_HEADERS_TIMEOUT_MS,
  CERIALIZER_KEEP_ALIVE_TIMEOUT_MS,
  CERIALIZER_MAX_BATCH_OPS,
  CERIALIZER_MAX_CONNECTIONS,
  CERIALIZER_MAX_IN_FLIGHT_PER_NODE,
  CERIALIZER_MAX_LIST_LIMIT,
  CERIALIZER_REQUEST_TIMEOUT_MS,
  CERIALIZER_TIMEOUT_CHECK_INTERVAL_MS,
  CERIALIZER_MAX_WATCHES,
  CERIALIZER_WATCH_KEEPALIVE_MS,
  DEFAULT_CLIENT_TIMEOUT_MS,
  DEFAULT_MAX_VALUE_BYTES,
  MAX_KEY_BYTES,
} from "../limits.js";
import { clientPortOptions, readContext, type TlsFiles } from "../security/tls-files.js";
import { Gatekeeper, OPEN_ROUTES } from "./auth.js";
import { CALLER_REVERIFY_MS, CERIALIZER_MAX_CALLERS, Callers } from "./callers.js";
import type { Gateway, GatewayLimits } from "./context.js";
import { BASIC_CHALLENGE, SCRIPT_CHALLENGE } from "./credentials.js";
import { Metrics } from "./metrics.js";
import { NodeLink } from "./pool.js";
import { isDataRoute, RecentRequests } from "./recent.js";
import { PROBLEM_BASE, Problem, problemFromError } from "./problems.js";
import { authRoutes } from "./routes/auth.js";
import { Router } from "./router.js";
import { batchRoutes } from "./routes/batch.js";
import { clusterRoutes } from "./routes/cluster.js";
import { consoleRoutes } from "./routes/console.js";
import { kvRoutes } from "./routes/kv.js";
import { opsRoutes } from "./routes/ops.js";
import { rpcRoutes } from "./routes/rpc.js";
import { txnRoutes } from "./routes/txn.js";
import { watchRoutes } from "./routes/watch.js";
import { AuthThrottle, THROTTLE_DEFAULTS } from "./throttle.js";
import { DEFAULT_TOKEN_TTL_SECONDS, Tokens } from "./tokens.js";
import { KV_PREFIX } from "./url.js";
import { listenFailure } from "../start-failure.js";

export interface CerializerOptions {
  /** host:port of each node. */
  nodes: { host: string; port: number }[];
  host: string;
  /** 0: any free port. */
  httpPort: number;
  limits?: Partial<GatewayLimits>;
  connectionsPerNode?: number;
  maxInFlightPerNode?: number;
  /** Per-request deadline toward the node; over it: 504. */
  timeoutMs?: number;
  /**
   * The gateway's own identity toward the nodes (--user, --password-file):
   * used for its own traffic only (probes, the cluster view's polling),
   * never for an HTTP caller's request.
   */
  user?: string;
  password?: string;
  /** HTTPS (--tls-cert-file ...): the port then speaks TLS only. */
  tls?: TlsFiles;
  /** TLS toward the nodes (--node-tls-*): the CA to trust, and a client certificate if they ask for one. */
  nodeTls?: ConnectionOptions;
  /** Lifetime of a bearer token from POST /v1/auth/token. */
  tokenTtlSeconds?: number;
  /** Refuse requests without credentials from other machines when bound to a non-loopback host (default true). */
  protectedMode?: boolean;
  /** Credential sets kept with connections of their own (LRU). */
  maxCallers?: number;
  /** The delay before the 401 of a first failed authentication from an address; doubled per failure. */
  authFailureDelayMs?: number;
  /** The nodes are members of one cluster: any of them serves any key. */
  cluster?: boolean;
  /** Open HTTP connections; over it a new one is closed at once (logged). */
  maxConnections?: number;
  /** The time a client has to send one whole request; over it: 408, closed. */
  requestTimeoutMs?: number;
  /** Open watch streams (GET /v1/watch); over it 503 too-many-watches. */
  maxWatches?: number;
  /** A keepalive comment on an idle watch stream this often. */
  watchKeepaliveMs?: number;
  logLevel?: string;
}

export interface Cerializer {
  app: FastifyInstance;
  /** The HTTP port once listening. */
  port: number;
  /** "https" with --tls-cert-file. */
  scheme: "http" | "https";
  /** Reads the certificate and key files again for new connections (SIGHUP); throws if they cannot be read. */
  reloadTls(): void;
  stop(): Promise<void>;
}

/** Routes that take JSON bodies only (the others take any bytes as a value). */
const JSON_ONLY = new Set(["/v1/batch", "/v1/rpc", "/v1/txn"]);

export async function startCerializer(o: CerializerOptions): Promise<Cerializer> {
  const logger = pino(
    { level: o.logLevel ?? "warn", base: { pid: process.pid, role: "cerializer" } },
    pino.destination(2),
  );
  const limits: GatewayLimits = {
    maxKeyBytes: Math.min(o.limits?.maxKeyBytes ?? MAX_KEY_BYTES, MAX_KEY_BYTES),
    maxValueBytes: o.limits?.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
    maxBodyBytes: o.limits?.maxBodyBytes ?? CERIALIZER_DEFAULT_BODY_BYTES,
    maxBatchOps: o.limits?.maxBatchOps ?? CERIALIZER_MAX_BATCH_OPS,
    maxListLimit: o.limits?.maxListLimit ?? CERIALIZER_MAX_LIST_LIMIT,
  };
  const newLink = (host: string, port: number): NodeLink =>
    new NodeLink({
      host,
      port,
      connections: o.connectionsPerNode ?? CERIALIZER_CONNECTIONS_PER_NODE,
      maxInFlight: o.maxInFlightPerNode ?? CERIALIZER_MAX_IN_FLIGHT_PER_NODE,
      timeoutMs: o.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS,
      ...(o.password === undefined ? {} : { password: o.password }),
      ...(o.user === undefined ? {} : { user: o.user }),
      ...(o.nodeTls === undefined ? {} : { tls: o.nodeTls }),
      onState: (link, up, reason) => {
        metrics.stateChanges.inc({ node: link.address, state: up ? "up" : "down" });
        if (up) logger.warn({ node: link.address }, "node reachable again");
        else logger.warn({ node: link.address, reason }, "node unreachable; answering 503 and probing");
      },
    });
  const links = o.nodes.map((n) => newLink(n.host, n.port));
  // In a cluster the router learns members beyond --nodes (seeds) and drops those replaced.
  const router = new Router(links, o.cluster ?? false, newLink);
  const metrics = new Metrics(() => router.nodes, 1000);
  const limitLog = new LimitLog((level, message, detail) => logger[level](detail, message));
  const g: Gateway = { router, limits, metrics, recent: new RecentRequests(), startedAt: Date.now() };

  const callers = new Callers({
    maxCallers: o.maxCallers ?? CERIALIZER_MAX_CALLERS,
    reverifyMs: CALLER_REVERIFY_MS,
    verify: (user, password) => verifyWithNode(router, user, password),
    onEvict: (identity) => {
      for (const l of router.nodes) l.dropCaller(identity.id);
    },
  });
  const baseDelayMs = o.authFailureDelayMs ?? THROTTLE_DEFAULTS.baseDelayMs;
  const gatekeeper = new Gatekeeper({
    callers,
    tokens: new Tokens(o.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS),
    throttle: new AuthThrottle({
      ...THROTTLE_DEFAULTS,
      baseDelayMs,
      maxDelayMs: Math.max(baseDelayMs, THROTTLE_DEFAULTS.maxDelayMs),
    }),
    protectedMode: o.protectedMode ?? true,
    boundHost: o.host,
    limitLog,
  });
  const tokens = gatekeeper.tokens;

  // A key in a URL may be up to maxKeyBytes bytes, each percent-encoded as
  // three characters: the request line must fit that.
  const maxHeaderSize = 3 * limits.maxKeyBytes + 32 * 1024;
  const requestTimeoutMs = o.requestTimeoutMs ?? CERIALIZER_REQUEST_TIMEOUT_MS;
  // (Cast: a pino logger instance widens Fastify's logger type parameter.)
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: limits.maxBodyBytes,
    // Memory per connection is bounded by time as much as by bytes: a client
    // that sends its request slowly (slowloris), or opens connections and
    // sends nothing, holds a connection slot and its buffers. Fastify sets
    // these timeouts only on a server it creates itself, so they are set
    // here, on ours (docs/cerializer.md, "Limits").
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
      const httpOptions = {
        maxHeaderSize,
        requestTimeout: requestTimeoutMs,
        headersTimeout: Math.min(CERIALIZER_HEADERS_TIMEOUT_MS, requestTimeoutMs),
        keepAliveTimeout: CERIALIZER_KEEP_ALIVE_TIMEOUT_MS,
        connectionsCheckingInterval: CERIALIZER_TIMEOUT_CHECK_INTERVAL_MS,
      };
      // With a certificate the port speaks TLS only: a plaintext request fails the handshake and is closed.
      const server =
        o.tls === undefined
          ? createServer(httpOptions, handler)
          : createHttpsServer({ ...clientPortOptions(o.tls), ...httpOptions }, handler);
      if (o.tls !== undefined)
        server.on("tlsClientError", (err: Error, socket: { remoteAddress?: string }) =>
          limitLog.hit(
            "tls-handshake",
            "a TLS handshake failed (a plaintext client, an untrusted certificate, a stall)",
            { remote: socket.remoteAddress, error: err.message },
            "info",
          ),
        );
      // Past the cap Node closes a new connection before reading it, and says so with 'drop'.
      server.maxConnections = o.maxConnections ?? CERIALIZER_MAX_CONNECTIONS;
      server.on("drop", (d?: { remoteAddress?: string; remotePort?: number }) =>
        limitLog.hit("max-connections", "refusing an HTTP connection: the gateway is at --max-connections", {
          maxConnections: server.maxConnections,
          remote: `${d?.remoteAddress}:${d?.remotePort}`,
        }),
      );
      return server;
    },
    // Keys are bytes: take /v1/kv/<key> out of the raw URL before the router
    // decodes it as UTF-8 (see url.ts); the route reads request.originalUrl.
    rewriteUrl: (req) => {
      const url = req.url ?? "/";
      if (!url.startsWith(KV_PREFIX)) return url;
      const q = url.indexOf("?");
      return `${KV_PREFIX}_${q < 0 ? "" : url.slice(q)}`;
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, allowUnionTypes: true } },
    frameworkErrors: (err, req, reply) => {
      const p =
        err.code === "FST_ERR_BAD_URL"
          ? new Problem("bad-percent-encoding", `the URL ${JSON.stringify(req.url)} is not valid percent-encoding`)
          : new Problem("invalid-request", err.message);
      void (reply as unknown as FastifyReply).code(p.status).type("application/problem+json").send(p.body());
    },
  }) as unknown as FastifyInstance;

  // Who calls, before anything else: a refused request is never parsed further.
  app.decorateRequest("caller", "anonymous");
  app.decorateRequest("bearer", null);
  app.addHook("onRequest", async (req) => {
    req.bearer = null;
    req.caller = "anonymous";
    if (OPEN_ROUTES.has(req.routeOptions.url ?? "")) return;
    req.caller = await gatekeeper.callerOf(req);
  });

  app.addSchema({
    $id: "problem",
    type: "object",
    description: `An RFC 9457 problem; \`type\` is one of ${PROBLEM_BASE}<name> (docs/cerializer.md lists them)`,
    additionalProperties: true,
    properties: {
      type: { type: "string" },
      title: { type: "string" },
      status: { type: "integer" },
      detail: { type: "string" },
      code: { type: "string" },
    },
  });

  await app.register(swagger, {
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Piccolo Cerializer",
        description: "JSON/REST gateway to Piccolo, a distributed key:value store.",
        version: "1",
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  // Values are bytes: every content type but JSON reaches the handler as a Buffer, untouched.
  app.removeContentTypeParser(["text/plain"]);
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  app.addHook("preValidation", async (req) => {
    if (JSON_ONLY.has(req.routeOptions.url ?? "") && Buffer.isBuffer(req.body))
      throw new Problem(
        "unsupported-media-type",
        `${req.routeOptions.url} takes application/json, got ${req.headers["content-type"] ?? "no content type"}`,
      );
  });

  // A 401 with a Basic challenge makes a browser show its own login dialog, even to a script's fetch().
  // A page that signs in by itself (the web console: bearer tokens) marks its requests the usual way, and
  // gets a Bearer challenge instead, which browsers leave to the page (decision 0305).
  app.addHook("onSend", async (req, reply, payload) => {
    if (
      reply.statusCode === 401 &&
      req.headers["x-requested-with"] === "XMLHttpRequest" &&
      String(reply.getHeader("www-authenticate") ?? "").startsWith("Basic")
    )
      reply.header("www-authenticate", SCRIPT_CHALLENGE);
    return payload;
  });

  app.addHook("onResponse", async (req, reply) => {
    const labels = { method: req.method, route: req.routeOptions.url ?? "unmatched", status: String(reply.statusCode) };
    metrics.requests.inc(labels);
    metrics.duration.observe(labels, reply.elapsedTime / 1000);
    if (isDataRoute(labels.route)) g.recent.record(reply.elapsedTime, reply.statusCode >= 500);
  });

  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    const p = toProblem(err, req.method !== "GET" && req.method !== "HEAD");
    if (p.status >= 500 && p.type === "internal") req.log.error({ err }, "internal error");
    for (const [k, v] of Object.entries(p.headers)) reply.header(k, v);
    if (p.status === 401) {
      // The node refused the caller (NOAUTH): anonymous when its default user needs a password, or
      // credentials no longer good (changed since they were checked): check them again next time.
      if (!("www-authenticate" in p.headers)) reply.header("www-authenticate", BASIC_CHALLENGE);
      if (typeof req.caller !== "string") callers.forget(req.caller);
    }
    return reply
      .code(p.status)
      .type("application/problem+json")
      .send(p.body(req.originalUrl.split("?")[0]));
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.originalUrl.split("?")[0]!;
    // Every /v1/kv/<key> URL reaches the router as /v1/kv/_ (see rewriteUrl).
    const pattern = req.url.startsWith(KV_PREFIX) ? "/v1/kv/:key" : path;
    const allow = ["GET", "PUT", "POST", "DELETE"].filter((m) => app.hasRoute({ method: m as "GET", url: pattern }));
    const p =
      allow.length > 0
        ? new Problem(
            "method-not-allowed",
            `${req.method} is not allowed on ${path}; use ${allow.join(", ")}`,
            {},
            {
              allow: allow.join(", "),
            },
          )
        : new Problem("route-not-found", `no route ${req.method} ${path}; see /docs`);
    for (const [k, v] of Object.entries(p.headers)) reply.header(k, v);
    return reply.code(p.status).type("application/problem+json").send(p.body());
  });

  authRoutes(app, tokens, g);
  kvRoutes(app, g);
  batchRoutes(app, g);
  rpcRoutes(app, g);
  txnRoutes(app, g);
  opsRoutes(app, g);
  clusterRoutes(app, g);
  consoleRoutes(app);
  watchRoutes(app, g, {
    maxWatches: o.maxWatches ?? CERIALIZER_MAX_WATCHES,
    keepaliveMs: o.watchKeepaliveMs ?? CERIALIZER_WATCH_KEEPALIVE_MS,
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  const stop = async (): Promise<void> => {
    g.router.stop();
    await app.close();
    await Promise.all(g.router.nodes.map((l) => l.close()));
  };
  await Promise.all(links.map((l) => l.start()));
  await g.router.start();
  try {
    await app.listen({ host: o.host, port: o.httpPort });
  } catch (err) {
    // Nothing half-started stays behind (decision 0195): the caller exits, or tries again.
    await stop();
    throw listenFailure(err, `${o.host}:${o.httpPort}`, "the HTTP port, --http-port");
  }
  const port = (app.server.address() as { port: number }).port;
  const reloadTls = (): void => {
    if (o.tls === undefined) return;
    (app.server as unknown as HttpsServer).setSecureContext(readContext(o.tls));
  };
  return { app, port, scheme: o.tls === undefined ? "http" : "https", reloadTls, stop };
}

/**
 * Asks a node whether it accepts `user`/`password`: an AUTH on a connection
 * of its own (no AUTH sent at connect), closed after. A refusal is 401; a
 * node that cannot be reached is the usual 503/504.
 */
async function verifyWithNode(router: Router, user: string, password: string): Promise<void> {
  const link = router.anyNode();
  const c = link.newClient(0, "anonymous");
  try {
    await link.run("anonymous", (x) => x.auth(password, user), c);
  } catch (err) {
    if (
      err instanceof PiccoloError &&
      (err.code === ErrorCode.NOAUTH || err.code === ErrorCode.INVALID_ARGUMENT || err.code === ErrorCode.NOPERM)
    )
      throw new Problem("unauthorized", `the node refused the credentials of user "${user}"`);
    throw err;
  } finally {
    void c.close();
  }
}

function toProblem(err: FastifyError | Error, write: boolean): Problem {
  if (err instanceof Problem) return err;
  const f = err as FastifyError;
  if (f.validation !== undefined)
    return new Problem("invalid-request", err.message, {
      errors: f.validation.map((v) => ({ path: v.instancePath, message: v.message })),
    });
  switch (f.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new Problem("body-too-large", "the request body exceeds the gateway's --max-body-bytes");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new Problem("invalid-json", err.message);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new Problem("unsupported-media-type", err.message);
  }
  if (err instanceof SyntaxError) return new Problem("invalid-json", err.message);
  if (typeof f.statusCode === "number" && f.statusCode >= 400 && f.statusCode < 500)
    return new Problem("invalid-request", err.message);
  return problemFromError(err, write);
}
