// ioredis clients for the tests: no endless reconnect loops after a node
// stops, and no unhandled 'error' events.
import { Redis, type RedisOptions } from "ioredis";

export function redisClient(options: RedisOptions): Redis {
  const r = new Redis({ host: "127.0.0.1", retryStrategy: () => null, ...options });
  r.on("error", () => {});
  return r;
}
