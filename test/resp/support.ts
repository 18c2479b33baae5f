// ioredis clients for the tests: no endless reconnect loops after a node
// stops, and no unhandled 'error' events.
import { connect } from "node:net";
import { Redis, type RedisOptions } from "ioredis";

export function redisClient(options: RedisOptions): Redis {
  const r = new Redis({ host: "127.0.0.1", retryStrategy: () => null, ...options });
  r.on("error", () => {});
  return r;
}

/** One command as a RESP multibulk, as a client library sends it. */
export function cmd(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === "string" ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/**
 * Sends `payload` on a raw socket (in pieces of `piece` bytes when given)
 * and reads until `enough` says the reply is complete; fails after `timeoutMs`
 * with the reply's tail.
 */
export async function exchange(
  port: number,
  payload: Buffer,
  enough: (reply: string) => boolean,
  { piece = 0, timeoutMs = 10_000 }: { piece?: number; timeoutMs?: number } = {},
): Promise<string> {
  const s = connect({ host: "127.0.0.1", port });
  await new Promise((r) => s.once("connect", r));
  let reply = "";
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(reply.slice(-300))}`)), timeoutMs);
    s.on("data", (d: Buffer) => {
      reply += d.toString("latin1");
      if (enough(reply)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  if (piece > 0) for (let i = 0; i < payload.length; i += piece) s.write(payload.subarray(i, i + piece));
  else s.write(payload);
  await done;
  s.destroy();
  return reply;
}
