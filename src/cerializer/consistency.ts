/**
 * `?consistency=` on the read routes (GET /v1/kv/{key}, GET /v1/kv):
 *
 *   linearizable  the default: the partition's leader answers after ReadIndex,
 *                 so the read sees every write acknowledged before it began
 *   stale         any member holding a replica of the key's partition answers
 *                 from its own copy, possibly out of date (docs/cluster.md,
 *                 "Stale reads"); on a single node the same as linearizable
 *
 * Anything else is 400 `invalid-consistency`, never a silent fallback: a
 * caller who misspells "stale" must not think it asked for one thing and got
 * another, and one who misspells "linearizable" must not get a stale read.
 * The routes' JSON schemas leave the parameter a plain string on purpose, so
 * a bad value gets this problem type and message rather than Ajv's generic
 * `invalid-request`.
 */
import type { ReadOptions } from "../client/client.js";
import { Problem } from "./problems.js";

export const CONSISTENCY_LEVELS = ["linearizable", "stale"] as const;

/** The querystring schema entry, shared by the routes that take it. */
export const consistencyParam = {
  type: "string",
  description:
    "linearizable (default): the partition's leader answers, after confirming it still leads. " +
    "stale: any member holding a replica answers from its own copy, possibly out of date " +
    "(no leader needed; cluster mode only, a single node treats it as linearizable).",
} as const;

/** The read options for a `consistency` query value (undefined: the default). */
export function parseConsistency(raw: unknown): ReadOptions {
  if (raw === undefined || raw === "linearizable") return {};
  if (raw === "stale") return { stale: true };
  throw new Problem(
    "invalid-consistency",
    `consistency must be one of ${CONSISTENCY_LEVELS.join(", ")}; got ${JSON.stringify(raw)}`,
    { allowed: [...CONSISTENCY_LEVELS] },
  );
}
