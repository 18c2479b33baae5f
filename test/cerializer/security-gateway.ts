// For the security tests (security*.test.ts): a real Cerializer that may
// speak HTTPS, and requests to it with node:https and a chosen CA (Node 20's
// fetch cannot be given a CA without the undici package). Plain-HTTP
// Both start through test/support/cerializer.ts, which reads either start line.
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningGateway, startGateway } from "../support/cerializer.js";

/** A gateway that may speak HTTPS: test/support/cerializer.ts's, which reads either start line. */
export type SecureGateway = RunningGateway;
export const startSecureGateway = (
  nodes: string[],
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<SecureGateway> => startGateway(nodes, args, env);

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown>;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** https: the CA file to trust (PEM path); without it nothing is trusted but the system's roots. */
  ca?: string;
  /** https: a client certificate and key (PEM paths). */
  cert?: { cert: string; key: string };
}

/** One request; resolves with the answer, rejects with the socket's or the handshake's error. */
export function call(scheme: string, port: number, path: string, o: RequestOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options = {
      host: "127.0.0.1",
      port,
      path,
      method: o.method ?? "GET",
      headers: {
        ...(o.body === undefined ? {} : { "content-length": String(Buffer.byteLength(o.body)) }),
        ...o.headers,
      },
      agent: false as const,
      timeout: 10_000,
      ...(scheme === "https"
        ? {
            ...(o.ca === undefined ? {} : { ca: readFileSync(o.ca) }),
            ...(o.cert === undefined ? {} : { cert: readFileSync(o.cert.cert), key: readFileSync(o.cert.key) }),
          }
        : {}),
    };
    const req = (scheme === "https" ? httpsRequest : httpRequest)(options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(o.body);
  });
}

export const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** A secret file readable by this user only (a looser one makes the node and gateway log a warning). */
export function secretFile(value: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "piccolo-secret-")), "secret");
  writeFileSync(path, `${value}\n`);
  chmodSync(path, 0o600);
  return path;
}

/** The problem+json body of an answer, checked to be one. */
export function problemOf(a: Answer): { type: string; status: number; detail: string } & Record<string, unknown> {
  const ct = String(a.headers["content-type"] ?? "");
  if (!ct.startsWith("application/problem+json"))
    throw new Error(`expected application/problem+json, got ${ct} (${a.status}): ${a.text}`);
  return a.json() as { type: string; status: number; detail: string };
}
