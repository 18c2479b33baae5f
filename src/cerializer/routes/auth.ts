/**
 * /v1/auth/token: bearer tokens (tokens.ts).
 *
 *   POST   /v1/auth/token   with Basic credentials: {token, expiresInSeconds}
 *   DELETE /v1/auth/token   with Authorization: Bearer <token>: revokes it (204)
 *
 *   GET    /v1/auth/whoami  the caller's user and what it may do (the node's answer to whoami)
 *
 * The credentials were checked before the route ran (auth.ts), by the node.
 */
import type { FastifyInstance } from "fastify";
import type { Gateway } from "../context.js";
import { Problem } from "../problems.js";
import type { Tokens } from "../tokens.js";

const problemRef = { $ref: "problem#" };

export function authRoutes(app: FastifyInstance, tokens: Tokens, g: Gateway): void {
  app.get(
    "/v1/auth/whoami",
    {
      schema: {
        summary: "The caller's user and what it may do",
        description:
          "Asks a node, as the caller, who the caller is and which permissions it has (docs/security.md): " +
          "read, write, admin, and whether on every key or only its key patterns. A tool offers only what " +
          "the user may do with it (the web console shows its admin actions to admins only); the node still " +
          "checks every request.",
        response: {
          200: {
            type: "object",
            properties: {
              user: { type: "string" },
              read: { type: "boolean" },
              write: { type: "boolean" },
              admin: { type: "boolean" },
              allKeys: { type: "boolean" },
            },
          },
          401: problemRef,
          503: problemRef,
          504: problemRef,
        },
      },
    },
    async (req, reply) => {
      reply.header("cache-control", "no-store");
      return g.router.anyNode().run(req.caller, (c) => c.whoami());
    },
  );

  app.post(
    "/v1/auth/token",
    {
      schema: {
        summary: "Trade Basic credentials for a bearer token",
        description:
          "Send Authorization: Basic base64(user:password); the answer's token then stands for those credentials " +
          "(Authorization: Bearer <token>) until it expires (expiresInSeconds, --token-ttl-seconds) or is revoked. " +
          "Tokens live in this gateway process's memory only.",
        response: {
          200: {
            type: "object",
            properties: { token: { type: "string" }, expiresInSeconds: { type: "integer" } },
          },
          400: problemRef,
          401: problemRef,
          503: problemRef,
        },
      },
    },
    async (req, reply) => {
      const c = req.caller;
      if (typeof c === "string" || req.bearer !== null)
        throw new Problem(
          "invalid-request",
          "POST /v1/auth/token takes Basic credentials (Authorization: Basic base64(user:password))",
        );
      reply.header("cache-control", "no-store");
      return tokens.issue(c.user, c.password);
    },
  );

  app.delete(
    "/v1/auth/token",
    {
      schema: {
        summary: "Revoke the bearer token the request carries",
        response: { 204: { description: "Revoked", type: "null" }, 400: problemRef, 401: problemRef },
      },
    },
    async (req, reply) => {
      if (req.bearer === null)
        throw new Problem("invalid-request", "send the token to revoke as Authorization: Bearer <token>");
      tokens.revoke(req.bearer);
      return reply.code(204).send();
    },
  );
}
