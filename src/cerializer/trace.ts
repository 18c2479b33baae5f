/**
 * `?trace=1` on the key routes (GET, PUT, DELETE /v1/kv/{key}): the request
 * is traced on its node (docs/tracing.md) and the answer is JSON with the
 * timeline beside it, under `trace`. `?trace=0` or no parameter: as usual.
 * Anything else is 400 `invalid-trace`, as a misspelt consistency is.
 */
import type { RequestTrace } from "../client/client.js";
import { Problem } from "./problems.js";

/** The querystring schema entry (a plain string: a bad value gets our problem, not Ajv's). */
export const traceParam = {
  type: "string",
  description:
    "1: trace the request on its node and answer JSON with its timeline under `trace` " +
    "(stage, where, startUs, durationUs, detail per span; docs/tracing.md).",
} as const;

/** The JSON schema of a timeline, for the OpenAPI document. */
export const traceSchema = {
  type: "object",
  description: "the request's timeline on the node that answered it (docs/tracing.md)",
  properties: {
    node: { type: "string" },
    dropped: { type: "integer" },
    roundTripUs: { type: "integer", description: "the gateway's own measure, from sending to the timeline" },
    spans: {
      type: "array",
      items: {
        type: "object",
        properties: {
          stage: { type: "string" },
          where: { type: "string" },
          startUs: { type: "integer" },
          durationUs: { type: "integer" },
          detail: { type: "string" },
        },
      },
    },
  },
} as const;

/** Whether `?trace=` asks for a trace. */
export function parseTrace(raw: unknown): boolean {
  if (raw === undefined || raw === "0") return false;
  if (raw === "1") return true;
  throw new Problem("invalid-trace", `trace must be 1 or 0; got ${JSON.stringify(raw)}`, { allowed: ["1", "0"] });
}

/** Collects a traced call's timeline (the last one, if the gateway had to retry it on another node). */
export class TraceBox {
  trace: RequestTrace | null = null;
  readonly take = (t: RequestTrace): void => {
    this.trace = t;
  };

  /** The timeline as the answer shows it. */
  json(): Omit<RequestTrace, "id"> | null {
    if (this.trace === null) return null;
    const { id: _id, ...rest } = this.trace;
    return rest;
  }
}
