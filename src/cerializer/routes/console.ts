/**
 * The web console's files, at /ui: index.html, the bundle and its stylesheet,
 * built by `npm run build` into dist/console (scripts/build-console.mjs) from
 * src/console. The gateway only serves them; everything the console shows it
 * reads from the same API any client uses (docs/console.md).
 *
 * Every answer carries a Content-Security-Policy that lets the page load
 * scripts, styles and data from this origin only: no inline script, no
 * eval, no other host. A value or key that somehow reached the DOM as markup
 * could still not run script or send anything elsewhere (the console itself
 * only ever puts keys and values in text nodes). The files need no
 * credentials (they hold no data: OPEN_ROUTES in auth.ts); the API calls the
 * page makes do.
 */
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply } from "fastify";
import { Problem } from "../problems.js";

/** dist/console, beside dist/src where this module is compiled to. */
const DIR = new URL("../../../console/", import.meta.url);

const FILES: Record<string, string> = {
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "app.js.map": "application/json; charset=utf-8",
};

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Read once, on first use (a gateway never asked for the console never reads them). */
const cache = new Map<string, Buffer>();
function file(name: string): Buffer {
  let b = cache.get(name);
  if (b === undefined) {
    try {
      b = readFileSync(new URL(name, DIR));
    } catch {
      throw new Problem(
        "not-implemented",
        `the web console is not built (no dist/console/${name}): run npm run build, which bundles src/console`,
      );
    }
    cache.set(name, b);
  }
  return b;
}

function send(reply: FastifyReply, name: string, type: string): FastifyReply {
  const body = file(name);
  return reply
    .header("content-security-policy", CONSOLE_CSP)
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .header("cache-control", "no-cache")
    .type(type)
    .send(body);
}

export function consoleRoutes(app: FastifyInstance): void {
  const page = { type: "string", description: "the console's HTML page" };
  for (const url of ["/ui", "/ui/"])
    app.get(
      url,
      {
        schema: {
          summary: "The web console (docs/console.md)",
          response: { 200: page, 501: { $ref: "problem#" } },
        },
      },
      async (_req, reply) => send(reply, "index.html", "text/html; charset=utf-8"),
    );
  app.get(
    "/ui/:file",
    {
      schema: {
        summary: "The web console's script and stylesheet",
        params: {
          type: "object",
          required: ["file"],
          properties: { file: { type: "string", enum: Object.keys(FILES) } },
        },
        response: { 200: { type: "string" }, 400: { $ref: "problem#" }, 501: { $ref: "problem#" } },
      },
    },
    async (req, reply) => {
      const name = (req.params as { file: string }).file;
      return send(reply, name, FILES[name]!);
    },
  );
}
