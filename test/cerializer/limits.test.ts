// Crowds and slow clients at the Cerializer. With the default flags, 3,000
// idle connections are all held, the gateway's peak RSS stays under the
// bound docs/cerializer.md states (cerializerMemoryBoundBytes in
// src/limits.ts), and another client keeps being served. With a small cap,
// the connections over it are closed at once and logged, and slow clients
// (slowloris, or connections that never send) are cut by the request and
// header timeouts, which gives their slots back.
import assert from "node:assert/strict";
import { Agent, request as httpRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  CERIALIZER_DEFAULT_BODY_BYTES,
  cerializerMemoryBoundBytes,
  DEFAULT_MAX_VALUE_BYTES,
} from "../../src/limits.js";
import { keepServing } from "../support/bystander.js";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { mib, peakRssBytes, resetPeakRss, settledRss } from "../support/memory.js";
import { type RunningNode, startNode } from "../support/node.js";

/** An HTTP client on exactly one keep-alive connection (fetch may open a second one). */
function oneConnectionClient(port: number): {
  request(method: string, path: string, body?: string): Promise<{ status: number; text: string }>;
  close(): void;
} {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return {
    request: (method, path, body) =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port, method, path, agent }, (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            text += d;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on("error", reject);
        req.end(body);
      }),
    close: () => agent.destroy(),
  };
}

interface Raw {
  s: Socket;
  reply: () => string;
  closed: Promise<void>;
  isClosed: () => boolean;
}

/** Opens `n` raw connections, a few hundred at a time; each notices its close and keeps what it is sent. */
async function openMany(port: number, n: number): Promise<Raw[]> {
  const all: Raw[] = [];
  for (let i = 0; i < n; i += 250) {
    const batch = Array.from({ length: Math.min(250, n - i) }, async () => {
      const s = connect({ host: "127.0.0.1", port });
      s.on("error", () => {});
      let reply = "";
      let closed = false;
      s.on("data", (d: Buffer) => {
        reply += d.toString("latin1");
      });
      const done = new Promise<void>((r) =>
        s.once("close", () => {
          closed = true;
          r();
        }),
      );
      await new Promise((r) => s.once("connect", r));
      return { s, reply: () => reply, closed: done, isClosed: () => closed };
    });
    all.push(...(await Promise.all(batch)));
  }
  return all;
}

describe("the Cerializer with 3,000 idle connections (default flags)", () => {
  let node: RunningNode;
  let gw: RunningGateway;
  before(async () => {
    node = await startNode();
    gw = await startGateway([node.port]);
  });
  after(async () => {
    await gw.stop();
    await node.stop();
  });

  it("holds them all, serves another client meanwhile, and stays under its stated bound", async (t) => {
    const pid = gw.process.pid!;
    assert.equal((await gw.fetch("/v1/kv/witness", { method: "PUT", body: "here" })).status, 201);
    const baseline = await settledRss(pid);
    resetPeakRss(pid);
    const other = keepServing(async (i) => {
      const put = await gw.fetch(`/v1/kv/other${i % 10}`, { method: "PUT", body: `v${i}` });
      assert.ok(put.status === 201 || put.status === 200, `PUT answered ${put.status}`);
      const got = await gw.fetch(`/v1/kv/other${i % 10}`);
      assert.equal(await got.text(), `v${i}`);
    });
    const crowd = await openMany(gw.port, 3000);
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(
      crowd.every((c) => !c.isClosed()),
      "every connection under the cap is held (until the header timeout)",
    );
    const served = await other.stop();
    assert.ok(served > 0, "the other client was served meanwhile");
    const peak = peakRssBytes(pid);
    const bound = cerializerMemoryBoundBytes({
      baselineBytes: baseline,
      connections: 3000 + 1,
      requestsInProgress: 1,
      maxBodyBytes: CERIALIZER_DEFAULT_BODY_BYTES,
      maxValueBytes: DEFAULT_MAX_VALUE_BYTES,
    });
    t.diagnostic(
      `peak RSS ${mib(peak)} (baseline ${mib(baseline)}), bound ${mib(bound)}; other client served ${served}x`,
    );
    assert.ok(peak <= bound, `peak RSS ${mib(peak)} is over the stated bound ${mib(bound)}`);
    for (const c of crowd) c.s.destroy();
    assert.equal(await (await gw.fetch("/v1/kv/witness")).text(), "here");
  });
});

describe("the Cerializer's cap and timeouts (--max-connections 100 --request-timeout-ms 2000)", () => {
  let node: RunningNode;
  let gw: RunningGateway;
  before(async () => {
    node = await startNode();
    gw = await startGateway([node.port], ["--max-connections", "100", "--request-timeout-ms", "2000"]);
  });
  after(async () => {
    await gw.stop();
    await node.stop();
  });

  let crowd: Raw[] = [];
  after(() => {
    for (const c of crowd) c.s.destroy();
  });

  it("closes connections over the cap at once, logs it once, and keeps serving a client it holds", async () => {
    // The other client's keep-alive connection is one of the 100.
    const client = oneConnectionClient(gw.port);
    assert.equal((await client.request("PUT", "/v1/kv/k", "v")).status, 201);
    const other = keepServing(async () => {
      assert.equal((await client.request("GET", "/v1/kv/k")).text, "v");
    });
    const held = await openMany(gw.port, 99);
    // A client's connect completes in the kernel's listen queue; let the gateway take these in before more come.
    await new Promise((r) => setTimeout(r, 500));
    const extra = await openMany(gw.port, 20);
    crowd = [...held, ...extra];
    await Promise.race([
      Promise.all(extra.map((c) => c.closed)),
      new Promise((_, reject) => setTimeout(() => reject(new Error("over-cap connections still open")), 5000)),
    ]);
    assert.ok(
      extra.every((c) => c.reply() === ""),
      "closed before a byte is read or written",
    );
    assert.equal(held.filter((c) => c.isClosed()).length, 0, "those under the cap are held");
    assert.ok((await other.stop()) > 0, "the held client was served meanwhile");
    await eventually("the gateway logs the cap", async () => {
      const lines = gw.stderr().match(/"limit":"max-connections"/g) ?? [];
      assert.equal(lines.length, 1, "20 refusals in a moment: one line (rate-limited)");
    });
    // Connections that never send a request are closed by the header timeout, which frees their slots.
    await Promise.race([
      Promise.all(held.map((c) => c.closed)),
      new Promise((_, reject) => setTimeout(() => reject(new Error("idle connections still open after 10 s")), 10_000)),
    ]);
    assert.match(held[0]!.reply(), /^HTTP\/1\.1 408 /);
    client.close();
    assert.equal(await (await gw.fetch("/v1/kv/k")).text(), "v");
  });

  it("a request whose body trickles in (slowloris) gets 408 and is closed once the request timeout passes", async () => {
    const [slow] = await openMany(gw.port, 1);
    slow!.s.write("PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    const trickle = setInterval(() => {
      if (!slow!.isClosed()) slow!.s.write("a");
    }, 200);
    try {
      await Promise.race([
        slow!.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error("still open after 10 s")), 10_000)),
      ]);
    } finally {
      clearInterval(trickle);
    }
    assert.match(slow!.reply(), /^HTTP\/1\.1 408 /);
    assert.equal((await gw.fetch("/v1/kv/slow")).status, 404, "nothing half-applied");
  });
});
