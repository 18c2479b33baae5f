/**
 * What every route of the gateway needs: where keys go, the limits, the
 * metrics. Built once in server.ts and handed to each route module.
 */
import type { Metrics } from "./metrics.js";
import type { RecentRequests } from "./recent.js";
import type { Router } from "./router.js";

export interface GatewayLimits {
  /** Longest key, in bytes. */
  maxKeyBytes: number;
  /** Largest value the gateway passes on (the node may have a lower limit). */
  maxValueBytes: number;
  /** Largest request body. */
  maxBodyBytes: number;
  maxBatchOps: number;
  maxListLimit: number;
}

export interface Gateway {
  router: Router;
  limits: GatewayLimits;
  metrics: Metrics;
  /** Data requests over the last whole second (GET /v1/stats, the console's Live chart). */
  recent: RecentRequests;
  startedAt: number;
}
