/**
 * Every error the Cerializer answers, as RFC 9457 problem details
 * (application/problem+json). Each has a stable `type` URI a client can
 * branch on; `title` is fixed per type, `detail` says what happened this
 * time. Where a node error is behind it, `code` carries the store's own
 * stable name (src/errors.ts), the same one the native client and the RESP
 * port report.
 *
 * The catalogue is the contract: types are never renamed or reused.
 */
import { errorName, PiccoloError } from "../errors.js";
import { outcomeOf } from "../outcomes.js";
import { JsonSchemaError } from "../protocol/json.js";

export const PROBLEM_BASE = "urn:piccolo:problem:";

export const PROBLEMS = {
  "not-found": { status: 404, title: "No such key" },
  "precondition-failed": { status: 412, title: "A condition in If-Match or If-None-Match does not hold" },
  "invalid-key": { status: 400, title: "The key is empty, too long, or badly encoded" },
  "bad-percent-encoding": { status: 400, title: "The URL is not valid percent-encoding" },
  "invalid-json": { status: 400, title: "The body is not valid JSON" },
  "invalid-request": { status: 400, title: "The request does not match the API's schema" },
  "invalid-rpc-field": { status: 400, title: "A field of the RPC request does not fit the Cap'n Proto schema" },
  "invalid-argument": { status: 400, title: "An argument is out of range" },
  "invalid-base64": { status: 400, title: "A value marked base64 is not valid base64" },
  "invalid-condition": { status: 400, title: "A conditional header is malformed or unsupported" },
  "invalid-cursor": { status: 400, title: "The listing cursor is not one this gateway issued" },
  "invalid-consistency": { status: 400, title: "The consistency parameter is neither linearizable nor stale" },
  "invalid-trace": { status: 400, title: "The trace parameter is neither 1 nor 0" },
  "value-too-large": { status: 413, title: "The value exceeds the store's limit" },
  "body-too-large": { status: 413, title: "The request body exceeds the gateway's limit" },
  "batch-too-large": { status: 413, title: "The batch has more operations than allowed" },
  "unsupported-media-type": { status: 415, title: "This route takes application/json" },
  "route-not-found": { status: 404, title: "No such route" },
  "method-not-allowed": { status: 405, title: "The route does not take this method" },
  "node-unavailable": { status: 503, title: "The node that owns the key is unreachable" },
  overloaded: { status: 503, title: "Too many requests are in flight to the node" },
  "node-timeout": { status: 504, title: "The node did not answer in time; a write may or may not have been applied" },
  unavailable: {
    status: 503,
    title: "No leader for the key's partition could be reached in time; nothing was applied",
  },
  "storage-failed": {
    status: 507,
    title: "The node cannot write its log (disk full or failing); nothing was applied",
  },
  "cross-partition": {
    status: 409,
    title: "The transaction's keys are in different partitions; give them one hash tag; nothing was applied",
  },
  "transaction-too-large": { status: 413, title: "The transaction has more ops or bytes than allowed" },
  busy: { status: 409, title: "The node is already running one operation of this kind (a backup)" },
  compacted: { status: 410, title: "The watch position is older than the change history kept" },
  "too-many-watches": { status: 503, title: "The gateway has as many watch streams open as --max-watches allows" },
  "not-implemented": { status: 501, title: "The gateway does not serve this request in its configuration" },
  "node-error": { status: 502, title: "The node refused the request" },
  unauthorized: { status: 401, title: "Credentials are missing or wrong" },
  forbidden: { status: 403, title: "The user may not do this" },
  "too-many-tokens": { status: 503, title: "The gateway holds as many bearer tokens as it keeps" },
  internal: { status: 500, title: "Internal error in the gateway" },
} as const;

export type ProblemType = keyof typeof PROBLEMS;

/** A problem to answer with; thrown by handlers, rendered by the error handler. */
export class Problem extends Error {
  override name = "Problem";
  constructor(
    readonly type: ProblemType,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    /** Extra response headers (Retry-After, ETag). */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
  get status(): number {
    return PROBLEMS[this.type].status;
  }
  body(instance?: string): Record<string, unknown> {
    return {
      type: PROBLEM_BASE + this.type,
      title: PROBLEMS[this.type].title,
      status: this.status,
      detail: this.detail,
      ...(instance === undefined ? {} : { instance }),
      ...this.extra,
    };
  }
}

/** Seconds a client should wait before retrying after a 503. */
export const RETRY_AFTER_SECONDS = 1;

/**
 * A store error as a problem, by the outcome table (src/outcomes.ts): each
 * node error code has its problem type, and the body carries the code's
 * stable name in `code`. Condition failures (NOT_FOUND on a conditional
 * write, ALREADY_EXISTS, VERSION_MISMATCH) are the caller's to map where
 * the route gives them another meaning (404 or 412).
 *
 * For a write (`write`: the request could change data), every failure whose
 * outcome is unknown, a timeout, a connection lost with the request in
 * flight, an internal error, is answered as node-timeout (504, "a write may
 * or may not have been applied") with `applied: "maybe"`; the others say
 * `applied: "no"`, so a client knows what is safe to retry. A read changed
 * nothing either way.
 */
export function problemFromError(err: unknown, write = false): Problem {
  if (err instanceof Problem) return err;
  if (err instanceof JsonSchemaError) return new Problem("invalid-rpc-field", err.message, { field: err.path });
  if (err instanceof PiccoloError) {
    const o = outcomeOf(err.code);
    const maybe = write && o.applied === "maybe" && !err.unsent;
    const type = (maybe ? "node-timeout" : o.problem) as ProblemType;
    const extra = { code: errorName(err.code), ...(write ? { applied: maybe ? "maybe" : "no" } : {}) };
    const retry: Record<string, string> =
      PROBLEMS[type].status === 503 ? { "retry-after": String(RETRY_AFTER_SECONDS) } : {};
    return new Problem(type, err.message, extra, retry);
  }
  return new Problem("internal", "internal error in the gateway; see its log");
}
