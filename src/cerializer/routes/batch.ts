/**
 * POST /v1/batch: many operations in one request, results in the same order.
 *
 * Each operation succeeds or fails on its own, with the status the single-key
 * route would give (200, 201, 204, 404, 412, ...): a batch is a pipeline, not
 * a transaction. Operations on the same key are applied in the order given
 * (they travel on one connection to the one shard that owns the key);
 * operations on different keys run concurrently. A batch that is malformed
 * or over the length limit is refused whole, before anything is applied.
 * The answer says so itself (`"atomic": false`); all-or-nothing is POST
 * /v1/txn (routes/txn.ts).
 */
import type { FastifyInstance } from "fastify";
import { VersionMismatchError } from "../../client/client.js";
import type { PiccoloClient } from "../../client/client.js";
import { ErrorCode, PiccoloError } from "../../errors.js";
import type { Gateway } from "../context.js";
import type { NodeLink } from "../pool.js";
import { Problem, problemFromError } from "../problems.js";
import { checkKey } from "../url.js";
import { decodeBytes, type Encoding, encodeBytes, parseTtl } from "../values.js";

interface Op {
  op: "get" | "put" | "insert" | "update" | "cas" | "delete" | "exists";
  key: string;
  keyEncoding?: Encoding;
  value?: string;
  encoding?: Encoding;
  ttlMs?: number;
  version?: number;
}

type Result = Record<string, unknown> & { status: number };

const opSchema = {
  type: "object",
  required: ["op", "key"],
  additionalProperties: false,
  properties: {
    op: { type: "string", enum: ["get", "put", "insert", "update", "cas", "delete", "exists"] },
    key: { type: "string" },
    keyEncoding: { type: "string", enum: ["utf8", "base64"] },
    value: { type: "string", description: "put, insert, update, cas" },
    encoding: { type: "string", enum: ["utf8", "base64"] },
    ttlMs: { type: "integer", minimum: 1 },
    version: { type: "integer", minimum: 0, description: "cas: the expected version; delete: delete only at it" },
  },
} as const;

export function batchRoutes(app: FastifyInstance, g: Gateway): void {
  app.post(
    "/v1/batch",
    {
      schema: {
        summary: "Run many operations",
        description:
          `Up to ${g.limits.maxBatchOps} operations; results come back in order, each with its own status. ` +
          "Not atomic: each operation is applied on its own, same-key operations in the order given, and a " +
          "failure leaves the others applied (the answer says `atomic: false`). For all or nothing, use POST /v1/txn.",
        body: { type: "array", items: opSchema },
        response: {
          200: {
            type: "object",
            properties: {
              atomic: { type: "boolean", description: "always false: each operation was applied on its own" },
              results: {
                type: "array",
                items: { type: "object", additionalProperties: true, properties: { status: { type: "integer" } } },
              },
            },
          },
          413: { $ref: "problem#" },
        },
      },
    },
    async (req) => {
      const ops = req.body as Op[];
      if (ops.length > g.limits.maxBatchOps)
        throw new Problem(
          "batch-too-large",
          `the batch has ${ops.length} operations; the limit is ${g.limits.maxBatchOps}`,
          {
            limit: g.limits.maxBatchOps,
          },
        );
      // Check every operation before applying any.
      const prepared = ops.map((o, i) => prepare(o, i, g));
      // One connection per node for the whole batch keeps same-key order.
      const conns = new Map<NodeLink, PiccoloClient>();
      const results = await Promise.all(
        prepared.map(async (p): Promise<Result> => {
          const node = g.router.nodeFor(p.key);
          let conn = conns.get(node);
          if (conn === undefined) conns.set(node, (conn = node.pick(req.caller)));
          try {
            return await node.run(req.caller, (c) => apply(c, p), conn);
          } catch (err) {
            return failure(err, p.op !== "get" && p.op !== "exists");
          }
        }),
      );
      return { atomic: false, results };
    },
  );
}

interface Prepared {
  op: Op["op"];
  key: Buffer;
  value: Buffer;
  ttlMs: number | undefined;
  version: number | undefined;
}

function prepare(o: Op, i: number, g: Gateway): Prepared {
  const at = `operation ${i}`;
  const key = decodeBytes(o.key, o.keyEncoding, `${at}: key`);
  try {
    checkKey(key, g.limits.maxKeyBytes);
  } catch (err) {
    throw new Problem("invalid-key", `${at}: ${(err as Error).message}`, { index: i });
  }
  const writes = o.op === "put" || o.op === "insert" || o.op === "update" || o.op === "cas";
  if (writes && o.value === undefined)
    throw new Problem("invalid-request", `${at}: ${o.op} needs a value`, { index: i });
  if (!writes && o.value !== undefined)
    throw new Problem("invalid-request", `${at}: ${o.op} takes no value`, { index: i });
  if (o.op === "cas" && o.version === undefined)
    throw new Problem("invalid-request", `${at}: cas needs the expected version`, { index: i });
  const value = o.value === undefined ? Buffer.alloc(0) : decodeBytes(o.value, o.encoding, `${at}: value`);
  if (value.length > g.limits.maxValueBytes)
    throw new Problem(
      "value-too-large",
      `${at}: the value is ${value.length} bytes; the limit is ${g.limits.maxValueBytes}`,
      {
        index: i,
      },
    );
  return { op: o.op, key, value, ttlMs: parseTtl(o.ttlMs, `${at}: ttlMs`), version: o.version };
}

async function apply(c: PiccoloClient, p: Prepared): Promise<Result> {
  const opts = p.ttlMs === undefined ? {} : { ttlMs: p.ttlMs };
  switch (p.op) {
    case "get": {
      const e = await c.get(p.key);
      if (e === null) return { status: 404 };
      const v = encodeBytes(e.value);
      return {
        status: 200,
        value: v.text,
        encoding: v.encoding,
        version: e.version,
        ttlMs: e.expireAtMs === 0 ? null : Math.max(0, e.expireAtMs - Date.now()),
      };
    }
    case "exists":
      return { status: 200, exists: await c.exists(p.key) };
    case "put": {
      const w = await c.upsert(p.key, p.value, opts);
      return { status: w.created ? 201 : 200, version: w.version, created: w.created };
    }
    case "insert":
      return { status: 201, version: await c.insert(p.key, p.value, opts), created: true };
    case "update":
      return { status: 200, version: await c.update(p.key, p.value, opts), created: false };
    case "cas":
      return { status: 200, version: await c.cas(p.key, p.value, p.version!, opts), created: false };
    case "delete":
      try {
        return (await c.delete(p.key, { ifVersion: p.version ?? 0 })) ? { status: 204 } : { status: 404 };
      } catch (err) {
        if (err instanceof VersionMismatchError && err.currentVersion === 0) return { status: 404 };
        throw err;
      }
  }
}

/** A failed operation as its slot in the results: the problem, flattened. */
function failure(err: unknown, write: boolean): Result {
  let p: Problem;
  if (err instanceof VersionMismatchError)
    p = new Problem("precondition-failed", err.message, {
      code: "VERSION_MISMATCH",
      currentVersion: err.currentVersion,
    });
  else if (err instanceof PiccoloError && (err.code === ErrorCode.ALREADY_EXISTS || err.code === ErrorCode.NOT_FOUND))
    p = new Problem("precondition-failed", err.message, { code: err.codeName });
  else p = problemFromError(err, write);
  return { ...p.body(), status: p.status };
}
