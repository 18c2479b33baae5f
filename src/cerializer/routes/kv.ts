/**
 * /v1/kv: one key per URL, the value as the body, the version as the ETag.
 *
 *   GET    /v1/kv/{key}   the value (octet-stream), or the JSON envelope with
 *                         Accept: application/json; 304 on If-None-Match hit;
 *                         ?consistency=stale for a stale read (consistency.ts)
 *   PUT    /v1/kv/{key}   201 created / 200 replaced; conditions per values.ts
 *   DELETE /v1/kv/{key}   204 / 404 / 412
 *   GET    /v1/kv         a page of keys: ?prefix=&cursor=&limit=&consistency=
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { type Entry, type PiccoloClient, VersionMismatchError } from "../../client/client.js";
import { ErrorCode, PiccoloError } from "../../errors.js";
import { consistencyParam, parseConsistency } from "../consistency.js";
import { parseTrace, TraceBox, traceParam, traceSchema } from "../trace.js";
import type { Gateway } from "../context.js";
import { Problem } from "../problems.js";
import { checkKey, percentDecode, queryBytes, rawKeyOf } from "../url.js";
import { decodeBytes, type Encoding, encodeBytes, etag, parseCondition, parseTtl } from "../values.js";

const problemRef = { $ref: "problem#" };

const keyParam = {
  type: "object",
  properties: {
    key: {
      type: "string",
      description:
        "The key: any bytes, percent-encoded (%FF for byte FF). A literal / is part of the key. " +
        "1 to --max-key-bytes bytes once decoded.",
    },
  },
} as const;

const envelope = {
  type: "object",
  properties: {
    key: { type: "string" },
    keyEncoding: { type: "string", enum: ["utf8", "base64"] },
    value: { type: "string" },
    encoding: { type: "string", enum: ["utf8", "base64"] },
    version: { type: "integer" },
    ttlMs: { type: ["integer", "null"], description: "milliseconds left to live; null without a TTL" },
  },
} as const;

function keyOf(req: FastifyRequest, g: Gateway): Buffer {
  const key = percentDecode(rawKeyOf(req.originalUrl), "key");
  checkKey(key, g.limits.maxKeyBytes);
  return key;
}

function wantsJson(req: FastifyRequest): boolean {
  const a = req.headers.accept;
  return a?.includes("application/json") ?? false;
}

function envelopeOf(key: Buffer, e: Entry): Record<string, unknown> {
  const k = encodeBytes(key);
  const v = encodeBytes(e.value);
  return {
    key: k.text,
    keyEncoding: k.encoding,
    value: v.text,
    encoding: v.encoding,
    version: e.version,
    ttlMs: e.expireAtMs === 0 ? null : Math.max(0, e.expireAtMs - Date.now()),
  };
}

interface PutBody {
  value: Buffer;
  ttlMs: number | undefined;
}

/** The value of a PUT: raw bytes for any content type but JSON, the envelope for JSON. */
function putBody(req: FastifyRequest, key: Buffer): PutBody {
  const ttlQuery = parseTtl((req.query as Record<string, string | undefined>).ttl, "ttl");
  const body = req.body;
  if (body === undefined || body === null) return { value: Buffer.alloc(0), ttlMs: ttlQuery };
  if (Buffer.isBuffer(body)) return { value: body, ttlMs: ttlQuery };
  // application/json: the envelope, already checked against its schema.
  const env = body as { key?: string; keyEncoding?: Encoding; value: string; encoding?: Encoding; ttlMs?: number };
  if (env.key !== undefined && !decodeBytes(env.key, env.keyEncoding, "key").equals(key))
    throw new Problem("invalid-argument", "the envelope's key differs from the key in the URL");
  const ttlBody = parseTtl(env.ttlMs, "ttlMs");
  if (ttlQuery !== undefined && ttlBody !== undefined && ttlQuery !== ttlBody)
    throw new Problem("invalid-argument", "?ttl and the envelope's ttlMs disagree");
  return { value: decodeBytes(env.value, env.encoding, "value"), ttlMs: ttlQuery ?? ttlBody };
}

function failedCondition(detail: string, code: string, currentVersion?: number): Problem {
  return new Problem(
    "precondition-failed",
    detail,
    { code, ...(currentVersion === undefined ? {} : { currentVersion }) },
    currentVersion ? { etag: etag(currentVersion) } : {},
  );
}

export function kvRoutes(app: FastifyInstance, g: Gateway): void {
  app.get(
    "/v1/kv/:key",
    {
      schema: {
        summary: "Read a key",
        description:
          "The value as bytes (application/octet-stream), or with Accept: application/json the envelope " +
          "{key, value, encoding, version, ttlMs}. The ETag is the key's version; If-None-Match with it answers 304. " +
          "?consistency=stale accepts an out-of-date value from any replica (cluster mode). " +
          "?trace=1 answers the JSON envelope with the request's timeline under `trace` (docs/tracing.md).",
        params: keyParam,
        querystring: { type: "object", properties: { consistency: consistencyParam, trace: traceParam } },
        headers: {
          type: "object",
          properties: { accept: { type: "string" }, "if-none-match": { type: "string" } },
        },
        response: {
          200: {
            description: "The value",
            content: {
              "application/octet-stream": { schema: { type: "string", format: "binary" } },
              "application/json": {
                schema: { ...envelope, properties: { ...envelope.properties, trace: traceSchema } },
              },
            },
          },
          304: { description: "Not modified: the version in If-None-Match is current", type: "null" },
          404: problemRef,
        },
      },
    },
    async (req, reply) => {
      const key = keyOf(req, g);
      const cond = parseCondition(req.headers["if-none-match"], "If-None-Match");
      const query = req.query as Record<string, unknown>;
      const read = parseConsistency(query.consistency);
      const traced = parseTrace(query.trace) ? new TraceBox() : null;
      const e = await g.router.runForKey(key, req.caller, (c) =>
        c.get(key, traced === null ? read : { ...read, trace: traced.take }),
      );
      if (e === null) {
        if (traced !== null)
          throw new Problem("not-found", `no key ${JSON.stringify(encodeBytes(key).text)}`, { trace: traced.json() });
        throw new Problem("not-found", `no key ${JSON.stringify(encodeBytes(key).text)}`);
      }
      reply.header("etag", etag(e.version));
      if (cond !== null && cond !== "weak" && (cond.kind === "any" || cond.version === e.version))
        return reply.code(304).send();
      if (e.expireAtMs !== 0) reply.header("x-piccolo-ttl-ms", String(Math.max(0, e.expireAtMs - Date.now())));
      if (traced !== null) return reply.type("application/json").send({ ...envelopeOf(key, e), trace: traced.json() });
      if (wantsJson(req)) return reply.type("application/json").send(envelopeOf(key, e));
      return reply.type("application/octet-stream").send(e.value);
    },
  );

  app.put(
    "/v1/kv/:key",
    {
      schema: {
        summary: "Write a key",
        description:
          "The body is the value: raw bytes for any content type, or with Content-Type: application/json the " +
          'envelope {value, encoding?: "utf8"|"base64", ttlMs?}. If-None-Match: * inserts only if absent; ' +
          'If-Match: * updates only if present; If-Match: "<version>" is a compare-and-swap. ' +
          "201 when the key was created, 200 when replaced, 412 when a condition fails. The new version is the ETag. " +
          "?trace=1 adds the request's timeline under `trace` (docs/tracing.md).",
        params: keyParam,
        querystring: {
          type: "object",
          properties: {
            ttl: { type: "string", pattern: "^[0-9]+$", description: "time to live, milliseconds" },
            trace: traceParam,
          },
        },
        headers: {
          type: "object",
          properties: { "if-match": { type: "string" }, "if-none-match": { type: "string" } },
        },
        body: {
          description: "the value, or the JSON envelope",
          content: {
            // No JSON-schema type for raw bodies: they reach the handler as
            // bytes (a Buffer), which a "string" schema would refuse.
            "application/octet-stream": { schema: { description: "the value's bytes" } },
            "text/plain": { schema: { description: "the value's bytes (not re-encoded)" } },
            "*/*": { schema: { description: "any other content type: the value's bytes" } },
            "application/json": {
              schema: {
                type: "object",
                required: ["value"],
                additionalProperties: false,
                properties: {
                  key: { type: "string" },
                  keyEncoding: { type: "string", enum: ["utf8", "base64"] },
                  value: { type: "string" },
                  encoding: { type: "string", enum: ["utf8", "base64"] },
                  ttlMs: { type: "integer" },
                },
              },
            },
          },
        },
        response: {
          200: {
            description: "Replaced",
            type: "object",
            properties: { version: { type: "integer" }, created: { type: "boolean" }, trace: traceSchema },
          },
          201: {
            description: "Created",
            type: "object",
            properties: { version: { type: "integer" }, created: { type: "boolean" }, trace: traceSchema },
          },
          412: problemRef,
        },
      },
    },
    async (req, reply) => {
      const key = keyOf(req, g);
      const ifMatch = parseCondition(req.headers["if-match"], "If-Match");
      const ifNoneMatch = parseCondition(req.headers["if-none-match"], "If-None-Match");
      if (ifMatch !== null && ifNoneMatch !== null)
        throw new Problem("invalid-condition", "If-Match and If-None-Match together are not supported");
      if (ifNoneMatch !== null && (ifNoneMatch === "weak" || ifNoneMatch.kind !== "any"))
        throw new Problem("invalid-condition", "PUT supports If-None-Match: * only (insert if absent)");
      if (ifMatch === "weak")
        throw failedCondition("a weak entity tag never matches under If-Match's strong comparison", "VERSION_MISMATCH");
      const { value, ttlMs } = putBody(req, key);
      if (value.length > g.limits.maxValueBytes)
        throw new Problem(
          "value-too-large",
          `the value is ${value.length} bytes; the limit is ${g.limits.maxValueBytes}`,
          {
            limit: g.limits.maxValueBytes,
          },
        );
      const traced = parseTrace((req.query as Record<string, unknown>).trace) ? new TraceBox() : null;
      const opts = { ...(ttlMs === undefined ? {} : { ttlMs }), ...(traced === null ? {} : { trace: traced.take }) };
      const run = <T>(f: (c: PiccoloClient) => Promise<T>) => g.router.runForKey(key, req.caller, f);
      let version: number;
      let created: boolean;
      try {
        if (ifNoneMatch !== null) {
          version = await run((c) => c.insert(key, value, opts));
          created = true;
        } else if (ifMatch?.kind === "any") {
          version = await run((c) => c.update(key, value, opts));
          created = false;
        } else if (ifMatch?.kind === "version") {
          version = await run((c) => c.cas(key, value, ifMatch.version, opts));
          created = false;
        } else {
          ({ version, created } = await run((c) => c.upsert(key, value, opts)));
        }
      } catch (err) {
        if (err instanceof VersionMismatchError)
          throw failedCondition(
            err.currentVersion === 0
              ? "the key does not exist"
              : `the key's version is ${err.currentVersion}, not ${(ifMatch as { version: number }).version}`,
            "VERSION_MISMATCH",
            err.currentVersion,
          );
        if (err instanceof PiccoloError && err.code === ErrorCode.ALREADY_EXISTS)
          throw failedCondition("If-None-Match: * and the key exists", "ALREADY_EXISTS");
        if (err instanceof PiccoloError && err.code === ErrorCode.NOT_FOUND)
          throw failedCondition("If-Match: * and the key does not exist", "NOT_FOUND");
        throw err;
      }
      reply.header("etag", etag(version));
      return reply
        .code(created ? 201 : 200)
        .send(traced === null ? { version, created } : { version, created, trace: traced.json() });
    },
  );

  app.delete(
    "/v1/kv/:key",
    {
      schema: {
        summary: "Delete a key",
        description:
          'If-Match: "<version>" deletes only at that version (412 otherwise). ' +
          "?trace=1 answers 200 with {deleted: true, trace} instead of 204 (docs/tracing.md).",
        params: keyParam,
        querystring: { type: "object", properties: { trace: traceParam } },
        headers: { type: "object", properties: { "if-match": { type: "string" } } },
        response: {
          200: {
            description: "Deleted, traced (?trace=1)",
            type: "object",
            properties: { deleted: { type: "boolean" }, trace: traceSchema },
          },
          204: { description: "Deleted", type: "null" },
          404: problemRef,
          412: problemRef,
        },
      },
    },
    async (req, reply) => {
      const key = keyOf(req, g);
      const ifMatch = parseCondition(req.headers["if-match"], "If-Match");
      if (ifMatch === "weak")
        throw failedCondition("a weak entity tag never matches under If-Match's strong comparison", "VERSION_MISMATCH");
      const ifVersion = ifMatch?.kind === "version" ? ifMatch.version : 0;
      const traced = parseTrace((req.query as Record<string, unknown>).trace) ? new TraceBox() : null;
      let deleted: boolean;
      try {
        deleted = await g.router.runForKey(key, req.caller, (c) =>
          c.delete(key, traced === null ? { ifVersion } : { ifVersion, trace: traced.take }),
        );
      } catch (err) {
        if (err instanceof VersionMismatchError) {
          if (err.currentVersion === 0) throw new Problem("not-found", "no such key");
          throw failedCondition(
            `the key's version is ${err.currentVersion}, not ${ifVersion}`,
            "VERSION_MISMATCH",
            err.currentVersion,
          );
        }
        throw err;
      }
      if (!deleted) throw new Problem("not-found", "no such key");
      if (traced !== null) return reply.code(200).send({ deleted: true, trace: traced.json() });
      return reply.code(204).send();
    },
  );

  app.get(
    "/v1/kv",
    {
      schema: {
        summary: "List keys",
        description:
          "A page of keys, optionally only those starting with `prefix` (percent-encoded bytes). Pass the " +
          "returned `cursor` to get the next page; it is null at the end. Keys written or deleted during a listing " +
          "may or may not appear; keys present throughout appear at least once (as Redis SCAN).",
        querystring: {
          type: "object",
          properties: {
            prefix: { type: "string" },
            cursor: { type: "string" },
            limit: { type: "string", pattern: "^[0-9]+$", description: `keys per page, 1 to ${g.limits.maxListLimit}` },
            consistency: consistencyParam,
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              keys: {
                type: "array",
                items: {
                  type: "object",
                  properties: { key: { type: "string" }, encoding: { type: "string", enum: ["utf8", "base64"] } },
                },
              },
              cursor: { type: ["string", "null"] },
            },
          },
        },
      },
    },
    async (req) => {
      const q = req.query as Record<string, string | undefined>;
      const limit = q.limit === undefined ? 100 : Number(q.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > g.limits.maxListLimit)
        throw new Problem("invalid-argument", `limit must be an integer in [1, ${g.limits.maxListLimit}]`);
      const prefix = queryBytes(req.originalUrl, "prefix") ?? undefined;
      const read = parseConsistency(q.consistency);
      let [node, cursor] = parseCursor(q.cursor, g.router.listEnd());
      const keys: { key: string; encoding: Encoding }[] = [];
      // A node's page can be sparse (a scan step visits slots, and a prefix
      // filters them), so take a few steps to fill the page, within bounds.
      for (let steps = 0; steps < 64 && keys.length < limit && node < g.router.listEnd(); steps++) {
        const page = await g.router
          .listNode(node)
          .run(req.caller, (c) =>
            c.scan({ ...read, cursor, count: limit - keys.length, ...(prefix === undefined ? {} : { prefix }) }),
          );
        for (const k of page.keys) {
          const e = encodeBytes(k);
          keys.push({ key: e.text, encoding: e.encoding });
        }
        cursor = page.cursor;
        if (cursor === 0) node++;
      }
      return { keys, cursor: node < g.router.listEnd() ? `${node}.${cursor}` : null };
    },
  );
}

/** "<node index>.<node's cursor>", or the start. */
function parseCursor(raw: string | undefined, nodes: number): [number, number] {
  if (raw === undefined || raw === "") return [0, 0];
  const m = /^(\d{1,4})\.(\d{1,16})$/.exec(raw);
  if (m === null || Number(m[1]) >= nodes || !Number.isSafeInteger(Number(m[2])))
    throw new Problem("invalid-cursor", `"${raw}" is not a cursor from this gateway's listings`);
  return [Number(m[1]), Number(m[2])];
}
