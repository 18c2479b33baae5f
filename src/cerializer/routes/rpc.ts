/**
 * POST /v1/rpc: the generic path. The body is a JSON object mirroring the
 * schema's Request struct ({"get": {"key": "a"}}); src/protocol/json.ts
 * turns it into the Cap'n Proto message by walking the compiled schema, the
 * node answers, and the Response comes back as JSON the same way
 * ({"id": 0, "value": {"found": true, ...}}). A store error is part of the
 * Response ({"error": {...}}), so the HTTP status is 200 whenever the node
 * answered; 4xx/5xx mean the request never reached it. Except a refusal of
 * the caller (NOAUTH, NOPERM, DENIED): that is HTTP's to say, 401 or 403
 * problem+json as on every other route, so a client, a proxy or a log
 * tells a forbidden admin call from a store error without reading bodies.
 *
 * Two fields are the gateway's, not the caller's: `id` (the gateway numbers
 * requests on its shared connections; a caller's id is echoed back) and
 * `auth` (the gateway sends each caller's requests on connections
 * authenticated as that caller, from its Authorization header: auth.ts).
 * An admin operation (transferLeader, replaceReplica) runs only if the
 * node lets the caller's user run it; else 403 forbidden (NOPERM).
 */
import * as capnp from "capnp-es";
import type { FastifyInstance } from "fastify";
import { ErrorCode, PiccoloError } from "../../errors.js";
import { Request, type Response, Response_Which } from "../../protocol/gen/piccolo.js";
import { fillStruct, JsonSchemaError, structInfo, structToJson } from "../../protocol/json.js";
import type { Gateway } from "../context.js";
import { Problem } from "../problems.js";
import { checkKey } from "../url.js";

const requestInfo = structInfo("Request");
const responseInfo = structInfo("Response");
const memberNames = requestInfo.fields.filter((f) => f.discriminant !== null).map((f) => f.name);

type Dyn = Record<string, unknown>;

/** Error codes that refuse the caller rather than report on the store: answered as 401/403 problems. */
const REFUSALS: ReadonlySet<number> = new Set([ErrorCode.NOAUTH, ErrorCode.NOPERM, ErrorCode.DENIED]);

/**
 * Checks the request against the schema (by building it once) and returns
 * the keys it names, read back through the schema's own encoding of them:
 * every `key` field inside the operation, at any depth (the key of a get,
 * of each element of an mget's `keys` or an mput's `entries`, of each
 * compare and op of a txn).
 */
function keysOf(json: Record<string, unknown>): Uint8Array[] {
  const req = new capnp.Message().initRoot(Request);
  fillStruct(requestInfo, req as unknown as Dyn, json, "", ["id"]);
  const view = structToJson(requestInfo, req as unknown as Dyn);
  const member = memberNames.find((m) => m in view)!;
  const keys: Uint8Array[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) for (const item of v) walk(item);
    else if (v !== null && typeof v === "object")
      for (const [name, field] of Object.entries(v as Dyn)) {
        if (name === "key" && field !== null && typeof field === "object") {
          const k = field as { text: string } | { base64: string };
          keys.push("text" in k ? Buffer.from(k.text, "utf8") : Buffer.from(k.base64, "base64"));
        } else walk(field);
      }
  };
  walk(view[member]);
  return keys;
}

export function rpcRoutes(app: FastifyInstance, g: Gateway): void {
  app.post(
    "/v1/rpc",
    {
      schema: {
        summary: "Send any Request of the Cap'n Proto schema as JSON",
        description:
          "The body mirrors schema/piccolo.capnp's Request: exactly one operation member, e.g. " +
          '{"get": {"key": "a"}} or {"put": {"key": "a", "value": {"base64": "AAE="}, "ttlMs": 1000}}. ' +
          'Data is a string (UTF-8), {"text": ...} or {"base64": ...}; 64-bit integers are numbers or decimal ' +
          `strings. The answer is the Response as JSON. Operations: ${memberNames.join(", ")}. ` +
          "A field that does not fit the schema gets 400 naming it.",
        body: { type: "object", additionalProperties: true, properties: { id: { type: ["integer", "string"] } } },
        response: { 200: { type: "object", additionalProperties: true }, 400: { $ref: "problem#" } },
      },
    },
    async (req) => {
      const json = req.body as Record<string, unknown>;
      if ("auth" in json)
        throw new Problem(
          "invalid-rpc-field",
          "auth: the gateway authenticates each caller from its Authorization header (Basic or Bearer)",
          {
            field: "auth",
          },
        );
      // Streams answer with many frames; /v1/rpc answers one. Each has its own route or tool.
      for (const [member, instead] of [
        ["watch", "GET /v1/watch?key=... or ?prefix=... (server-sent events)"],
        ["backup", "`piccolo backup FILE`, which streams the backup to a file (docs/backup.md)"],
      ] as const)
        if (member in json)
          throw new Problem("invalid-rpc-field", `${member}: a stream, which /v1/rpc does not carry; use ${instead}`, {
            field: member,
          });
      const id = json.id;
      if (
        id !== undefined &&
        !(typeof id === "number" && Number.isSafeInteger(id) && id >= 0) &&
        typeof id !== "string"
      )
        throw new JsonSchemaError("id", "expected a non-negative integer");
      // Validates the whole request against the schema (throws naming the field).
      const keys = keysOf(json);
      for (const k of keys) checkKey(k, g.limits.maxKeyBytes);
      // Keyless operations (ping, stats, scan) go to the first node (in a cluster, the first member up).
      const node = keys.length === 0 ? g.router.anyNode() : g.router.nodeFor(keys[0]!);
      if (!g.router.cluster && keys.some((k) => g.router.nodeFor(k) !== node))
        throw "txn" in json
          ? new Problem("cross-partition", "the transaction's keys are on different nodes; nothing was applied")
          : new Problem(
              "invalid-argument",
              "the keys of this request live on different nodes; send them as a POST /v1/batch instead",
            );
      const res: Response = await node.run(req.caller, (c) =>
        c.raw((r) => fillStruct(requestInfo, r as unknown as Dyn, json, "", ["id"])),
      );
      if (res.which() === Response_Which.ERROR && REFUSALS.has(res.error.code))
        throw new PiccoloError(res.error.code as ErrorCode, res.error.message);
      const out = structToJson(responseInfo, res as unknown as Dyn);
      out.id = id ?? 0;
      return out;
    },
  );
}
