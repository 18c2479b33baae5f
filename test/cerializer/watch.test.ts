// GET /v1/watch through a real Cerializer in front of real nodes: Server-Sent
// Events read by a plain http.get and a parser that follows the WHATWG rules
// an EventSource follows (an id-only block sets the last event id without an
// event). Events in order for a prefix and a key; resuming with Last-Event-ID
// missing nothing and repeating nothing (also when cut off in the middle of a
// batch: nothing missed); compacted (a stream not read while the history
// moves on, and a position resumed too late); a client that goes away frees
// its slot and its node connection; keepalive comments; bad input; limits.
import assert from "node:assert/strict";
import { type ClientRequest, get, type IncomingMessage } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { PiccoloClient } from "../../src/client/client.js";
import { P, problem, type RunningGateway, startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface SseEvent {
  event: string;
  data: string;
  /** The stream's last event id when this event was dispatched. */
  lastId: string;
}

interface Sse {
  status: number;
  headers: IncomingMessage["headers"];
  events: SseEvent[];
  /** The last event id (set by id fields, as an EventSource keeps it). */
  lastId: string;
  /** Whether an id was set after the last event (the last event's batch is finished). */
  idAfterLast: boolean;
  comments: number;
  ended: boolean;
  res: IncomingMessage;
  req: ClientRequest;
  /** Waits for `n` events in all (fails after `ms`). */
  until(n: number, ms?: number): Promise<SseEvent[]>;
  close(): void;
}

function openSse(url: string, headers: Record<string, string> = {}): Promise<Sse> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => {
      let buf = "";
      let data: string[] = [];
      let type = "";
      let idBuf = "";
      const s: Sse = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        lastId: "",
        idAfterLast: false,
        comments: 0,
        ended: false,
        res,
        req,
        async until(n, ms = 15_000) {
          const end = Date.now() + ms;
          while (s.events.length < n) {
            if (Date.now() > end) assert.fail(`expected ${n} events within ${ms} ms, got ${s.events.length}`);
            if (s.ended && s.events.length < n) assert.fail(`the stream ended after ${s.events.length} of ${n} events`);
            await sleep(10);
          }
          return s.events.slice(0, n);
        },
        close() {
          req.destroy();
        },
      };
      const line = (l: string): void => {
        if (l === "") {
          // Dispatch, as an EventSource does: the id first, then an event only when there is data.
          s.lastId = idBuf;
          if (data.length === 0) {
            s.idAfterLast = true;
            type = "";
            return;
          }
          s.events.push({ event: type === "" ? "message" : type, data: data.join("\n"), lastId: s.lastId });
          s.idAfterLast = false;
          data = [];
          type = "";
          return;
        }
        if (l.startsWith(":")) {
          s.comments++;
          return;
        }
        const c = l.indexOf(":");
        const field = c < 0 ? l : l.slice(0, c);
        let value = c < 0 ? "" : l.slice(c + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") type = value;
        else if (field === "id") idBuf = value;
      };
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        let i = buf.indexOf("\n");
        while (i >= 0) {
          line(buf.slice(0, i).replace(/\r$/, ""));
          buf = buf.slice(i + 1);
          i = buf.indexOf("\n");
        }
      });
      res.on("end", () => {
        s.ended = true;
      });
      res.on("error", () => {
        s.ended = true;
      });
      resolve(s);
    });
    req.on("error", reject);
  });
}

/** An event's JSON data. */
interface Change {
  kind: string;
  key: string;
  keyEncoding: string;
  value: string | null;
  encoding?: string;
  valueBytes: number;
  version: number;
  expireAtMs: number;
}
const change = (e: SseEvent): Change => {
  assert.equal(e.event, "message", `expected a change, got event: ${e.event} ${e.data}`);
  return JSON.parse(e.data) as Change;
};
const summary = (e: SseEvent): string => {
  const c = change(e);
  return `${c.kind} ${c.key}${c.value === null ? "" : `=${c.value}`}`;
};

async function problemOf(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body: await problem(res) };
}

describe("Cerializer /v1/watch (Server-Sent Events)", () => {
  let node: RunningNode;
  let gw: RunningGateway;
  let c: PiccoloClient;
  before(async () => {
    node = await startNode(["--shards", "2"]);
    gw = await startGateway([node.port], ["--watch-keepalive-ms", "200"]);
    c = await node.client();
  });
  after(async () => {
    await c?.close();
    await gw?.stop();
    await stopAll([node]);
  });

  it("a prefix: every change under it, in each key's order, encoded as the other routes encode values", async () => {
    const s = await openSse(`${gw.url}/v1/watch?prefix=cfg%3A`);
    assert.equal(s.status, 200);
    assert.match(String(s.headers["content-type"]), /^text\/event-stream/);
    assert.equal(s.headers["cache-control"], "no-cache, no-transform");
    await eventually("the start position as the first id", async () => assert.match(s.lastId, /^[0-9a-z]+\.\d+,\d+$/));
    const a = await c.put("cfg:a", "1");
    await c.put("other", "x");
    await c.put("cfg:bin", Buffer.from([0xff, 0x00, 0x80]));
    await c.put("cfg:a", "3");
    await c.delete("cfg:bin");
    await c.put("cfg:ttl", "t", { ttlMs: 60_000 });
    await c.expire("cfg:ttl", 120_000);
    const events = await s.until(6);
    const byKey = (k: string) => events.filter((e) => change(e).key === k).map(summary);
    assert.deepEqual(byKey("cfg:a"), ["put cfg:a=1", "put cfg:a=3"]);
    assert.deepEqual(byKey("cfg:bin"), ["put cfg:bin=/wCA", "delete cfg:bin"]);
    assert.deepEqual(byKey("cfg:ttl"), ["put cfg:ttl=t", "expire cfg:ttl"]);
    const first = change(events.find((e) => change(e).key === "cfg:a")!);
    assert.deepEqual(first, {
      kind: "put",
      key: "cfg:a",
      keyEncoding: "utf8",
      value: "1",
      encoding: "utf8",
      valueBytes: 1,
      version: a,
      expireAtMs: 0,
    });
    const bin = change(events.find((e) => change(e).key === "cfg:bin")!);
    assert.equal(bin.encoding, "base64");
    assert.equal(bin.valueBytes, 3);
    const exp = change(events.find((e) => change(e).kind === "expire")!);
    assert.ok(exp.expireAtMs > Date.now() + 100_000, "the new expiry");
    assert.ok(
      events.every((e) => change(e).key.startsWith("cfg:")),
      "nothing outside the prefix",
    );
    await sleep(300);
    assert.equal(s.events.length, 6, "nothing more");
    assert.ok(s.idAfterLast, "the last batch's position was given as an id");
    assert.ok(s.comments >= 1, "keepalive comments while idle (--watch-keepalive-ms 200)");
    s.close();
  });

  it("one key: only its changes", async () => {
    const s = await openSse(`${gw.url}/v1/watch?key=solo`);
    assert.equal(s.status, 200);
    await eventually("started", async () => assert.notEqual(s.lastId, ""));
    await c.put("solo-not", "x");
    await c.put("solo", "1");
    await c.put("sol", "y");
    await c.delete("solo");
    const events = await s.until(2);
    assert.deepEqual(events.map(summary), ["put solo=1", "delete solo"]);
    await sleep(200);
    assert.equal(s.events.length, 2);
    s.close();
  });

  it("resuming with Last-Event-ID: nothing missed, nothing repeated; it wins over ?from=", async () => {
    const s = await openSse(`${gw.url}/v1/watch?prefix=r%3A`);
    await eventually("started", async () => assert.notEqual(s.lastId, ""));
    const start = s.lastId;
    for (let i = 0; i < 10; i++) await c.put(`r:${i % 3}`, `a${i}`);
    await s.until(10);
    await eventually("the last batch's id", async () => assert.ok(s.idAfterLast));
    const last = s.lastId;
    assert.notEqual(last, start);
    s.close();
    for (let i = 0; i < 10; i++) await c.put(`r:${i % 3}`, `b${i}`);
    // ?from= is the start (it would repeat the a's): Last-Event-ID wins, as for an EventSource reconnecting.
    const again = await openSse(`${gw.url}/v1/watch?prefix=r%3A&from=${encodeURIComponent(start)}`, {
      "last-event-id": last,
    });
    assert.equal(again.status, 200);
    const missed = await again.until(10);
    for (const k of ["r:0", "r:1", "r:2"]) {
      const want = Array.from({ length: 10 }, (_, i) => i)
        .filter((i) => `r:${i % 3}` === k)
        .map((i) => `put ${k}=b${i}`);
      assert.deepEqual(missed.filter((e) => change(e).key === k).map(summary), want, `${k}: the b's in order`);
    }
    await c.put("r:x", "later");
    await again.until(11);
    assert.equal(summary(again.events[10]!), "put r:x=later", "then live");
    await sleep(200);
    assert.equal(again.events.length, 11, "nothing repeated");
    again.close();
    // ?from= alone resumes too.
    const fromStart = await openSse(`${gw.url}/v1/watch?prefix=r%3A&from=${encodeURIComponent(start)}`);
    const all = await fromStart.until(21);
    assert.deepEqual(all.filter((e) => change(e).key === "r:0").map(summary), [
      "put r:0=a0",
      "put r:0=a3",
      "put r:0=a6",
      "put r:0=a9",
      "put r:0=b0",
      "put r:0=b3",
      "put r:0=b6",
      "put r:0=b9",
    ]);
    fromStart.close();
  });

  it("resuming when nothing changed since: the stream opens (once the node's parked reads answer), then goes on live", async () => {
    const s = await openSse(`${gw.url}/v1/watch?prefix=quiet%3A`);
    await eventually("started", async () => assert.notEqual(s.lastId, ""));
    await c.put("quiet:a", "1");
    await s.until(1);
    await eventually("the batch's id", async () => assert.ok(s.idAfterLast));
    s.close();
    const t0 = Date.now();
    const again = await openSse(`${gw.url}/v1/watch?prefix=quiet%3A`, { "last-event-id": s.lastId });
    assert.equal(again.status, 200, "not a 504: the setup may wait out a shard's 10 s park");
    assert.ok(Date.now() - t0 < 12_000);
    await c.put("quiet:b", "2");
    assert.deepEqual((await again.until(1)).map(summary), ["put quiet:b=2"]);
    again.close();
  });

  it("cut off in the middle of batches, again and again: nothing missed, and only an unfinished batch comes again", async () => {
    const total = 400;
    let lastId = "";
    const got: { value: string; afterLastId: boolean }[][] = [];
    const seen = new Set<string>();
    const startStream = await openSse(`${gw.url}/v1/watch?prefix=cut%3A`);
    await eventually("started", async () => assert.notEqual(startStream.lastId, ""));
    lastId = startStream.lastId;
    startStream.close();
    let reading = true;
    const writes = (async () => {
      for (let i = 0; i < total; i += 50)
        await Promise.all(Array.from({ length: 50 }, (_, j) => c.put(`cut:${(i + j) % 7}`, `v${i + j}`)));
      // Then a trickle on many keys (so on every shard) while the reader catches up: a resumed
      // watch is set up once each shard has something new (or after its 10 s park).
      for (let i = 0; reading; i++) {
        await c.put(`cut:tail${i % 8}`, `tail${i}`);
        await sleep(250);
      }
    })();
    const main = () => [...seen].filter((v) => !v.startsWith("tail")).length;
    for (let round = 0; main() < total && round < 100; round++) {
      const s = await openSse(`${gw.url}/v1/watch?prefix=cut%3A`, { "last-event-id": lastId });
      assert.equal(s.status, 200);
      // Take a few events, then go as a client that dies after handling its k-th event would (maybe
      // in the middle of a batch): it resumes from the last id it had when it handled that event.
      const k = 5 + ((round * 23) % 90);
      await Promise.race([s.until(k, 1500).catch(() => {}), sleep(1500)]);
      // Every other round reads on to the end of a batch (a resumed stream's first batch is the whole
      // backlog, up to 1 MiB: a client that never gets through one makes no progress).
      const whole = round % 2 === 1;
      if (whole) await eventually("a batch's end", async () => assert.ok(s.idAfterLast), 3000).catch(() => {});
      s.close();
      const handled = whole ? s.events.slice() : s.events.slice(0, k);
      const resumeId = whole || handled.length === 0 ? s.lastId : handled.at(-1)!.lastId;
      const mine = handled.map((e) => ({ value: change(e).value!, afterLastId: e.lastId === resumeId }));
      got.push(mine);
      for (const e of mine) seen.add(e.value);
      lastId = resumeId;
    }
    reading = false;
    await writes;
    // Everything written came through.
    assert.equal(main(), total, `every change seen (got ${main()})`);
    // A change seen twice was, the first time, after the stream's last id (its batch was unfinished).
    const firstRound = new Map<string, { round: number; afterLastId: boolean }>();
    for (const [round, events] of got.entries())
      for (const e of events) {
        const f = firstRound.get(e.value);
        if (f === undefined) firstRound.set(e.value, { round, afterLastId: e.afterLastId });
        else if (f.round !== round)
          assert.ok(f.afterLastId, `${e.value} repeated, though its batch was finished in round ${f.round}`);
        else assert.fail(`${e.value} twice in one stream`);
      }
  });

  it("a client that goes away: its slot and its node connection are freed; the node keeps serving", async () => {
    const one = await startGateway([node.port], ["--max-watches", "1"]);
    try {
      const connections = async () => (await c.stats()).connections;
      await sleep(500); // earlier tests' streams close their node connections
      const before = await connections();
      const s = await openSse(`${one.url}/v1/watch?prefix=`);
      assert.equal(s.status, 200);
      await eventually("a node connection for the stream", async () => assert.equal(await connections(), before + 1));
      const full = await problemOf(`${one.url}/v1/watch?key=k`);
      assert.equal(full.status, 503);
      assert.equal(full.body.type, P("too-many-watches"));
      assert.equal(full.retryAfter, "1");
      s.close();
      await eventually("the node connection closed", async () => assert.equal(await connections(), before));
      const next = await openSse(`${one.url}/v1/watch?key=gone`);
      assert.equal(next.status, 200, "the slot is free again");
      await eventually("started", async () => assert.notEqual(next.lastId, ""));
      await c.put("gone", "1");
      assert.deepEqual((await next.until(1)).map(summary), ["put gone=1"]);
      next.close();
      const put = await one.fetch("/v1/kv/after-watch", { method: "PUT", body: "ok" });
      assert.equal(put.status, 201);
      assert.equal(await (await one.fetch("/v1/kv/after-watch")).text(), "ok");
    } finally {
      await one.stop();
    }
  });

  it("bad input: 400 problems", async () => {
    const cases: [string, Record<string, string>, string][] = [
      ["/v1/watch", {}, "invalid-argument"],
      ["/v1/watch?key=a&prefix=b", {}, "invalid-argument"],
      ["/v1/watch?key=", {}, "invalid-key"],
      ["/v1/watch?key=a&from=yesterday", {}, "invalid-argument"],
      ["/v1/watch?prefix=&from=abc.1%2Cx", {}, "invalid-argument"],
      ["/v1/watch?key=a", { "last-event-id": "not a position" }, "invalid-argument"],
      ["/v1/watch?key=%ZZ", {}, "bad-percent-encoding"],
    ];
    for (const [path, headers, type] of cases) {
      const p = await problemOf(gw.url + path, headers);
      assert.equal(p.status, 400, path);
      assert.equal(p.body.type, P(type), `${path}: ${p.body.detail}`);
    }
    const other = await problemOf(`${gw.url}/v1/watch?key=a&from=zzzz.1%2C2`);
    assert.equal(other.status, 410, "a position from another run: compacted");
    assert.equal(other.body.type, P("compacted"));
  });

  it("the route is in the OpenAPI document", async () => {
    const doc = (await (await gw.fetch("/openapi.json")).json()) as { paths: Record<string, unknown> };
    assert.ok(doc.paths["/v1/watch"] !== undefined);
  });
});

describe("Cerializer /v1/watch: compacted", () => {
  let node: RunningNode;
  let gw: RunningGateway;
  let c: PiccoloClient;
  before(async () => {
    // One shard: the position a COMPACTED end gives is then one to resume from (with several
    // shards it advances only the shard that answered COMPACTED; see the report of issue #16's SSE step).
    node = await startNode(["--shards", "1", "--watch-history-bytes", String(256 * 1024)]);
    gw = await startGateway([node.port]);
    c = await node.client();
  });
  after(async () => {
    await c?.close();
    await gw?.stop();
    await stopAll([node]);
  });

  const fill = async (prefix: string, n: number, bytes: number) => {
    const big = "v".repeat(bytes);
    for (let i = 0; i < n; i += 100)
      await Promise.all(Array.from({ length: 100 }, (_, j) => c.put(`${prefix}${i + j}`, big)));
  };

  it("a stream not read while the history moves past it: event compacted with the position, then closed", async () => {
    const s = await openSse(`${gw.url}/v1/watch?prefix=fill%3A`);
    await eventually("started", async () => assert.notEqual(s.lastId, ""));
    s.res.pause();
    // ~32 MB: far more than the socket buffers on the way, the stream's 256 events and the 256 KiB history.
    await fill("fill:", 8000, 4000);
    s.res.resume();
    await eventually("the stream ends", async () => assert.ok(s.ended), 60_000);
    const last = s.events.at(-1)!;
    assert.equal(last.event, "compacted", `the last event: ${last.event} ${last.data.slice(0, 200)}`);
    const data = JSON.parse(last.data) as { position: string; message: string };
    assert.match(data.position, /^[0-9a-z]+\.\d+$/);
    assert.match(data.message, /fell behind/);
    const changes = s.events.filter((e) => e.event === "message").length;
    assert.ok(changes < 8000, `it could not have received every change (got ${changes})`);
    // Resuming from the last id: compacted at once (410, so an EventSource stops rather than loops).
    const late = await problemOf(`${gw.url}/v1/watch?prefix=fill%3A`, { "last-event-id": s.lastId });
    assert.equal(late.status, 410);
    assert.equal(late.body.type, P("compacted"));
    // From the position given: watching again works.
    const again = await openSse(`${gw.url}/v1/watch?prefix=fill%3A&from=${encodeURIComponent(data.position)}`);
    again.close();
    if (again.status === 410) {
      // The position is the node's when it cut the watch off, and this stream took its time to read the
      // events queued before the end: the history may have moved past it since. The 410 gives today's.
      const stale = await problemOf(`${gw.url}/v1/watch?prefix=fill%3A&from=${encodeURIComponent(data.position)}`);
      assert.equal(stale.body.type, P("compacted"));
      const now = String(stale.body.position);
      assert.ok(Number(now.split(".")[1]) > Number(data.position.split(".")[1]), `${now} is after ${data.position}`);
      const fresh = await openSse(`${gw.url}/v1/watch?prefix=fill%3A&from=${encodeURIComponent(now)}`);
      assert.equal(fresh.status, 200);
      fresh.close();
    } else assert.equal(again.status, 200);
    assert.equal((await c.get("fill:7999"))!.value.length, 4000, "the node kept serving");
  });

  it("resuming from a position the node no longer keeps: 410 compacted with the current position", async () => {
    const s = await openSse(`${gw.url}/v1/watch?prefix=old%3A`);
    await eventually("started", async () => assert.notEqual(s.lastId, ""));
    const old = s.lastId;
    s.close();
    await fill("old:", 1000, 2000);
    const p = await problemOf(`${gw.url}/v1/watch?prefix=old%3A&from=${encodeURIComponent(old)}`);
    assert.equal(p.status, 410);
    assert.equal(p.body.type, P("compacted"));
    assert.equal(p.body.code, "COMPACTED");
    assert.match(String(p.body.position), /^[0-9a-z]+\.\d+$/);
  });
});

describe("Cerializer /v1/watch behind several independent nodes", () => {
  it("a key watch goes to the key's node; a prefix watch is refused with 501", async () => {
    const a = await startNode(["--shards", "1"]);
    const b = await startNode(["--shards", "1"]);
    const gw = await startGateway([a.port, b.port]);
    try {
      const p = await problemOf(`${gw.url}/v1/watch?prefix=x`);
      assert.equal(p.status, 501);
      assert.equal(p.body.type, P("not-implemented"));
      for (const key of ["k1", "k2", "k3", "k4"]) {
        const s = await openSse(`${gw.url}/v1/watch?key=${key}`);
        assert.equal(s.status, 200);
        await eventually("started", async () => assert.notEqual(s.lastId, ""));
        assert.equal((await gw.fetch(`/v1/kv/${key}`, { method: "PUT", body: `v-${key}` })).status, 201);
        assert.deepEqual((await s.until(1)).map(summary), [`put ${key}=v-${key}`]);
        s.close();
      }
    } finally {
      await gw.stop();
      await stopAll([a, b]);
    }
  });
});

describe("Cerializer /v1/watch in front of a three-member cluster (64 partitions)", () => {
  let root: string;
  const nodes: RunningNode[] = [];
  let gw: RunningGateway;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "piccolo-gw-watch-cluster-"));
    const list = await memberList();
    for (let i = 0; i < 3; i++) nodes.push(await startMember(list, root, i));
    gw = await startGateway(
      nodes.map((n) => n.port),
      ["--cluster", "true"],
    );
  });
  after(async () => {
    await gw?.stop();
    await stopAll(nodes);
    await rm(root, { recursive: true, force: true });
  });

  it("a prefix stream spans every partition; resumed with Last-Event-ID it misses nothing and repeats nothing", async () => {
    const c = await nodes[1]!.client({ timeoutMs: 8000 });
    await eventually("the cluster serves", () => c.put("warm", "up"));
    const first = await openSse(`${gw.url}/v1/watch?prefix=${encodeURIComponent("cw:")}`);
    assert.equal(first.status, 200);
    await eventually("the stream's first id", async () => assert.ok(first.lastId !== ""));
    for (let i = 0; i < 12; i++) await c.put(`cw:${i}`, `a${i}`);
    const seen = await first.until(12);
    assert.deepEqual(seen.map(summary).sort(), Array.from({ length: 12 }, (_, i) => `put cw:${i}=a${i}`).sort());
    await eventually("an id after the batch", async () => assert.ok(first.idAfterLast));
    const lastId = first.lastId;
    first.close();
    for (let i = 0; i < 12; i++) await c.put(`cw:${i}`, `b${i}`);
    const again = await openSse(`${gw.url}/v1/watch?prefix=${encodeURIComponent("cw:")}`, { "last-event-id": lastId });
    assert.equal(again.status, 200);
    const rest = await again.until(12);
    assert.deepEqual(rest.map(summary).sort(), Array.from({ length: 12 }, (_, i) => `put cw:${i}=b${i}`).sort());
    await sleep(300);
    assert.equal(again.events.length, 12, "nothing twice");
    again.close();
    await c.close();
  });
});
