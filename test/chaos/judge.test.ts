// The chaos harness's judges against servers that lie on purpose: a RESP
// server and an HTTP server on loopback that answer each request with a
// scripted reply. Once the store itself stops lying, the violation paths
// would otherwise never run; these tests keep them honest: a success-shaped
// answer that cannot be is a violation, an error is a failure (a write's
// outcome unknown), and a true answer is ok.
import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Socket } from "node:net";
import { after, describe, it } from "node:test";
import type { ChaosCluster } from "../../src/chaos/cluster.js";
import { httpAdapter } from "../../src/chaos/http.js";
import type { Outcome, Request } from "../../src/chaos/protocol.js";
import { respAdapter } from "../../src/chaos/resp.js";

async function listen(server: {
  listen: (port: number, host: string, cb: () => void) => unknown;
  address: () => unknown;
}) {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as { port: number }).port;
}

describe("chaos judges: RESP", () => {
  // The next reply to send, whatever the command (the harness sends one at a time).
  let next = "+OK\r\n";
  const sockets = new Set<Socket>();
  // ioredis opens a RESP3 connection with HELLO 3: answer it as a server would (a map).
  const hello = "%1\r\n$6\r\nserver\r\n$4\r\nfake\r\n";
  const server = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("data", (d) => s.write(/hello/i.test(d.toString()) ? hello : next));
  });
  after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });

  const ask = async (reply: string, q: Request, variant: number): Promise<Outcome> => {
    const port = await (server.listening ? (server.address() as { port: number }).port : listen(server));
    next = reply;
    const c = respAdapter({ members: [{ respPort: port }], security: null } as unknown as ChaosCluster).open(
      0,
      2_000,
      variant,
    );
    try {
      return await c.run("k", q);
    } finally {
      await c.close();
    }
  };

  const cases: [string, Request, string, Outcome["kind"], unknown?][] = [
    ["SET answered OK", { kind: "write", value: "v" }, "+OK\r\n", "ok"],
    ["plain SET answered nil", { kind: "write", value: "v" }, "$-1\r\n", "violation"],
    ["SET answered an integer", { kind: "write", value: "v" }, ":1\r\n", "violation"],
    [
      "SET answered UNCERTAIN",
      { kind: "write", value: "v" },
      "-UNCERTAIN the write may have been applied\r\n",
      "failed",
    ],
    ["SET NX answered nil (not performed)", { kind: "insert", value: "v" }, "$-1\r\n", "ok", false],
    ["GET answered a value", { kind: "read" }, "$1\r\nv\r\n", "ok", "v"],
    ["GET answered nil", { kind: "read" }, "$-1\r\n", "ok", null],
    ["GET answered RESP3 null", { kind: "read" }, "_\r\n", "ok", null],
    ["plain SET answered RESP3 null", { kind: "write", value: "v" }, "_\r\n", "violation"],
    ["GET answered an integer", { kind: "read" }, ":5\r\n", "violation"],
    ["GET answered TIMEOUT", { kind: "read" }, "-TIMEOUT no answer in time\r\n", "failed"],
    ["DEL answered 1", { kind: "delete" }, ":1\r\n", "ok", true],
    ["DEL answered 7 for one key", { kind: "delete" }, ":7\r\n", "violation"],
  ];
  // Variants 0 and 1 speak RESP3, 2 and 3 RESP2 (src/chaos/resp.ts): try each case with both.
  for (const [name, q, reply, kind, result] of cases)
    for (const variant of [0, 2])
      it(`${name}: ${kind} (variant ${variant})`, async () => {
        const out = await ask(reply, q, variant);
        assert.equal(out.kind, kind, JSON.stringify(out));
        if (out.kind === "ok" && result !== undefined) {
          const r = out.reply;
          const got = r.kind === "read" ? r.value : r.kind === "cas" ? r.ok : r.kind === "delete" ? r.existed : null;
          assert.equal(got, result);
        }
        if (out.kind === "failed") assert.equal(out.label, `-${reply.slice(1).split(" ")[0]}`);
      });

  it("a reply that never comes: a failure (client timeout), not an answer", async () => {
    const port = await (server.listening ? (server.address() as { port: number }).port : listen(server));
    next = ""; // say nothing
    const c = respAdapter({ members: [{ respPort: port }], security: null } as unknown as ChaosCluster).open(0, 200, 0);
    const out = await c.run("k", { kind: "write", value: "v" });
    await c.close();
    assert.deepEqual(out, { kind: "failed", label: "client timeout", sent: true });
  });
});

describe("chaos judges: HTTP", () => {
  let next: { status: number; headers: Record<string, string>; body: string } = { status: 200, headers: {}, body: "" };
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(next.status, next.headers);
      res.end(next.body);
    });
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  const problem = (type: string, status: number) => ({
    status,
    headers: { "content-type": "application/problem+json" },
    body: JSON.stringify({ type: `urn:piccolo:problem:${type}`, status, title: "t", detail: "d" }),
  });
  const json = (status: number, body: unknown, etag?: string) => ({
    status,
    headers: { "content-type": "application/json", ...(etag === undefined ? {} : { etag }) },
    body: JSON.stringify(body),
  });

  const cases: [string, Request, typeof next, Outcome["kind"]][] = [
    [
      "PUT 201 with version, created and ETag",
      { kind: "write", value: "v" },
      json(201, { version: 3, created: true }, '"3"'),
      "ok",
    ],
    ["PUT 200 without a version", { kind: "write", value: "v" }, json(200, {}), "violation"],
    [
      "PUT 201 saying created: false",
      { kind: "write", value: "v" },
      json(201, { version: 3, created: false }, '"3"'),
      "violation",
    ],
    [
      "PUT 200 with an ETag other than its version",
      { kind: "write", value: "v" },
      json(200, { version: 3, created: false }, '"4"'),
      "violation",
    ],
    ["PUT 504 node-timeout", { kind: "write", value: "v" }, problem("node-timeout", 504), "failed"],
    [
      "PUT 503 without a problem document",
      { kind: "write", value: "v" },
      { status: 503, headers: {}, body: "" },
      "failed",
    ],
    ["PUT 412 on a plain write", { kind: "write", value: "v" }, problem("precondition-failed", 412), "violation"],
    [
      "CAS 412 precondition-failed",
      { kind: "cas", expected: "a", version: 2, value: "v" },
      problem("precondition-failed", 412),
      "ok",
    ],
    [
      "CAS 201 (a compare-and-swap cannot create)",
      { kind: "cas", expected: "a", version: 2, value: "v" },
      json(201, { version: 3, created: true }, '"3"'),
      "violation",
    ],
    ["GET 404 not-found", { kind: "read" }, problem("not-found", 404), "ok"],
    ["GET 404 route-not-found", { kind: "read" }, problem("route-not-found", 404), "violation"],
    ["GET 200 without a version", { kind: "read" }, json(200, { key: "k", value: "v", encoding: "utf8" }), "violation"],
    [
      "GET 200 with the envelope",
      { kind: "read" },
      json(200, { key: "k", value: "v", encoding: "utf8", version: 5 }, '"5"'),
      "ok",
    ],
    ["GET 502 node-error", { kind: "read" }, problem("node-error", 502), "failed"],
    ["GET 400 for a valid request", { kind: "read" }, problem("invalid-key", 400), "violation"],
    ["DELETE 204", { kind: "delete" }, { status: 204, headers: {}, body: "" }, "ok"],
    ["DELETE 200", { kind: "delete" }, json(200, {}), "violation"],
  ];
  for (const [name, q, answer, kind] of cases)
    it(`${name}: ${kind}`, async () => {
      const port = await (server.listening ? (server.address() as { port: number }).port : listen(server));
      next = answer;
      const c = httpAdapter({ httpPort: port, security: null } as unknown as ChaosCluster).open(0, 2_000, 0);
      const out = await c.run("k", q);
      assert.equal(out.kind, kind, JSON.stringify(out));
    });
});
