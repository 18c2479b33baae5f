/**
 * POST /v1/txn: a transaction, etcd's Txn as JSON.
 *
 *   {"compare": [{"key": "a", "target": "version", "relation": "equal", "version": 0}],
 *    "success": [{"op": "put", "key": "a", "value": "1"}, {"op": "get", "key": "b"}],
 *    "failure": [{"op": "get", "key": "a"}]}
 *
 * `"verdictOnly": true` asks for `succeeded` alone: `results` comes back
 * empty (Redis's MSET promise, for bulk writes that need no version).
 *
 * If every compare holds, the success ops run, else the failure ops; either
 * way as one step on the node, atomic and isolated (docs/protocol.md, "Txn").
 * The answer is 200 {succeeded, results} whichever branch ran: a compare that
 * does not hold is an outcome, not an error. Keys and values are strings,
 * UTF-8 unless `keyEncoding`/`encoding` says base64, as everywhere in the
 * gateway (values.ts); results carry their values the same way.
 *
 * A transaction goes to one node: in a cluster, the member leading its keys'
 * partition, and keys in different partitions are refused there, 409
 * cross-partition (give them one hash tag, {user:1}:a); in front of
 * independent nodes (no --cluster), keys the gateway places on different
 * nodes are refused here, 409 as well. Nothing is applied either way.
 */
import type { FastifyInstance } from "fastify";
import type { TxnCompare, TxnOp, TxnOpResult, TxnRelation } from "../../client/client.js";
import { TXN_MAX_BYTES, TXN_MAX_OPS } from "../../limits.js";
import type { Gateway } from "../context.js";
import { Problem, problemFromError } from "../problems.js";
import { checkKey } from "../url.js";
import { decodeBytes, type Encoding, encodeBytes, parseTtl } from "../values.js";

interface CompareJson {
  key: string;
  keyEncoding?: Encoding;
  target?: "version" | "value";
  relation?: TxnRelation;
  version?: number;
  value?: string;
  encoding?: Encoding;
}

interface OpJson {
  op: "put" | "delete" | "get";
  key: string;
  keyEncoding?: Encoding;
  value?: string;
  encoding?: Encoding;
  ttlMs?: number;
}

interface TxnJson {
  compare?: CompareJson[];
  success?: OpJson[];
  failure?: OpJson[];
  verdictOnly?: boolean;
}

const encodingSchema = { type: "string", enum: ["utf8", "base64"] } as const;

const compareSchema = {
  type: "object",
  required: ["key"],
  additionalProperties: false,
  properties: {
    key: { type: "string" },
    keyEncoding: encodingSchema,
    target: {
      type: "string",
      enum: ["version", "value"],
      description: "what is compared; by default the field given (version or value)",
    },
    relation: { type: "string", enum: ["equal", "notEqual", "less", "greater"], description: "default equal" },
    version: {
      type: "integer",
      minimum: 0,
      description: "target version: the key's version (0 when the key is absent, so 0 means 'does not exist')",
    },
    value: {
      type: "string",
      description: "target value: the key's value, byte for byte (an absent key matches no value compare)",
    },
    encoding: encodingSchema,
  },
} as const;

const opSchema = {
  type: "object",
  required: ["op", "key"],
  additionalProperties: false,
  properties: {
    op: { type: "string", enum: ["put", "delete", "get"] },
    key: { type: "string" },
    keyEncoding: encodingSchema,
    value: { type: "string", description: "put only" },
    encoding: encodingSchema,
    ttlMs: { type: "integer", minimum: 1, description: "put only" },
  },
} as const;

const resultSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    op: { type: "string", enum: ["put", "delete", "get"] },
    version: { type: "integer", description: "put: the new version; get: the key's version (found only)" },
    created: { type: "boolean", description: "put: the key was created" },
    existed: { type: "boolean", description: "delete: the key existed" },
    found: { type: "boolean", description: "get" },
    value: { type: "string", description: "get, when found" },
    encoding: encodingSchema,
    ttlMs: { type: ["integer", "null"], description: "get, when found: milliseconds left to live; null without a TTL" },
  },
} as const;

export function txnRoutes(app: FastifyInstance, g: Gateway): void {
  app.post(
    "/v1/txn",
    {
      schema: {
        summary: "Run a transaction",
        description:
          "If every compare holds, the success ops run, else the failure ops: all or nothing, isolated from " +
          "other requests (etcd's Txn). 200 with `succeeded` saying which branch ran and each op's result in " +
          `order. At most ${TXN_MAX_OPS} compares and ops and ${TXN_MAX_BYTES} bytes of keys and values (413). ` +
          "In a cluster all keys must be in one partition: give them one hash tag, as {user:1}:a and " +
          "{user:1}:b; otherwise 409 cross-partition, nothing applied.",
        body: {
          type: "object",
          additionalProperties: false,
          properties: {
            compare: { type: "array", items: compareSchema },
            success: { type: "array", items: opSchema },
            failure: { type: "array", items: opSchema },
            verdictOnly: {
              type: "boolean",
              description: "answer only which branch ran: results is empty (a bulk write that needs no version)",
            },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              succeeded: { type: "boolean" },
              results: { type: "array", items: resultSchema },
            },
          },
          400: { $ref: "problem#" },
          409: { $ref: "problem#" },
          413: { $ref: "problem#" },
        },
      },
    },
    async (req) => {
      const body = req.body as TxnJson;
      const t = prepare(body, g);
      const keys = [
        ...t.compare.map((c) => c.key as Buffer),
        ...t.success.map((o) => o.key as Buffer),
        ...t.failure.map((o) => o.key as Buffer),
      ];
      const node = keys.length === 0 ? g.router.anyNode() : g.router.nodeFor(keys[0]!);
      // Independent nodes cannot share a transaction; a cluster's member answers CROSS_PARTITION itself.
      if (!g.router.cluster && keys.some((k) => g.router.nodeFor(k) !== node))
        throw new Problem(
          "cross-partition",
          "the transaction's keys are on different nodes (the gateway spreads keys over independent nodes); " +
            "nothing was applied",
        );
      const writes = [...t.success, ...t.failure].some((o) => o.op !== "get");
      try {
        const r = await node.run(req.caller, (c) => c.txn(t));
        return { succeeded: r.succeeded, results: r.results.map(resultJson) };
      } catch (err) {
        throw problemFromError(err, writes);
      }
    },
  );
}

interface Prepared {
  compare: TxnCompare[];
  success: TxnOp[];
  failure: TxnOp[];
  verdictOnly: boolean;
}

/** Checks every compare and op, and the transaction's limits, before anything is sent. */
function prepare(body: TxnJson, g: Gateway): Prepared {
  const compares = body.compare ?? [];
  const branches = [body.success ?? [], body.failure ?? []] as const;
  const count = compares.length + branches[0].length + branches[1].length;
  if (count > TXN_MAX_OPS)
    throw new Problem("transaction-too-large", `${count} compares and ops; the limit is ${TXN_MAX_OPS}`, {
      code: "TXN_TOO_LARGE",
      limit: TXN_MAX_OPS,
    });
  let bytes = 0;
  const key = (raw: string, encoding: Encoding | undefined, at: string): Buffer => {
    const k = decodeBytes(raw, encoding, `${at}: key`);
    try {
      checkKey(k, g.limits.maxKeyBytes);
    } catch (err) {
      throw new Problem("invalid-key", `${at}: ${(err as Error).message}`);
    }
    bytes += k.length;
    return k;
  };
  const value = (raw: string, encoding: Encoding | undefined, at: string): Buffer => {
    const v = decodeBytes(raw, encoding, `${at}: value`);
    if (v.length > g.limits.maxValueBytes)
      throw new Problem(
        "value-too-large",
        `${at}: the value is ${v.length} bytes; the limit is ${g.limits.maxValueBytes}`,
      );
    bytes += v.length;
    return v;
  };
  const out: Prepared = { compare: [], success: [], failure: [], verdictOnly: body.verdictOnly === true };
  for (const [i, c] of compares.entries()) {
    const at = `compare ${i}`;
    const target = c.target ?? (c.value !== undefined ? "value" : "version");
    if (target === "version" && c.version === undefined)
      throw new Problem("invalid-request", `${at}: a version compare needs "version"`);
    if (target === "value" && c.value === undefined)
      throw new Problem("invalid-request", `${at}: a value compare needs "value"`);
    if (target === "version" && c.value !== undefined)
      throw new Problem("invalid-request", `${at}: a version compare takes no "value"`);
    if (target === "value" && c.version !== undefined)
      throw new Problem("invalid-request", `${at}: a value compare takes no "version"`);
    const k = key(c.key, c.keyEncoding, at);
    out.compare.push(
      target === "version"
        ? { key: k, target, relation: c.relation ?? "equal", version: c.version! }
        : { key: k, target, relation: c.relation ?? "equal", value: value(c.value!, c.encoding, at) },
    );
  }
  for (const [b, ops] of branches.entries()) {
    const name = b === 0 ? "success" : "failure";
    for (const [i, o] of ops.entries()) {
      const at = `${name} op ${i}`;
      const k = key(o.key, o.keyEncoding, at);
      let op: TxnOp;
      if (o.op === "put") {
        if (o.value === undefined) throw new Problem("invalid-request", `${at}: put needs a value`);
        const ttlMs = parseTtl(o.ttlMs, `${at}: ttlMs`);
        op = { op: "put", key: k, value: value(o.value, o.encoding, at), ...(ttlMs === undefined ? {} : { ttlMs }) };
      } else {
        if (o.value !== undefined || o.ttlMs !== undefined)
          throw new Problem("invalid-request", `${at}: ${o.op} takes no value or ttlMs`);
        op = { op: o.op, key: k };
      }
      (b === 0 ? out.success : out.failure).push(op);
    }
  }
  if (bytes > TXN_MAX_BYTES)
    throw new Problem("transaction-too-large", `${bytes} bytes of keys and values; the limit is ${TXN_MAX_BYTES}`, {
      code: "TXN_TOO_LARGE",
      limit: TXN_MAX_BYTES,
    });
  return out;
}

function resultJson(r: TxnOpResult): Record<string, unknown> {
  switch (r.op) {
    case "put":
      return { op: "put", version: r.version, created: r.created };
    case "delete":
      return { op: "delete", existed: r.existed };
    case "get": {
      if (!r.found) return { op: "get", found: false };
      const v = encodeBytes(r.value!);
      return {
        op: "get",
        found: true,
        value: v.text,
        encoding: v.encoding,
        version: r.version,
        ttlMs: r.expireAtMs === 0 ? null : Math.max(0, r.expireAtMs - Date.now()),
      };
    }
  }
}
