// A rolling restart under steady load, on a real three-member cluster with
// the defaults users get (64 partitions): each member in turn is stopped
// with SIGTERM (it hands its leaderships over, answers native requests it
// reads meanwhile SHUTTING_DOWN, lets each Redis connection finish what it
// sent and closes it, exits 0), started again with the same flags, and
// waited for. Three kinds of clients run the whole time, each with its
// library's default behaviour: writers and readers on the native cluster
// client; HTTP writers through a Cerializer in front of the cluster; and
// ioredis clients, two on each member's Redis port, doing SET, GET, INCR and
// MULTI/EXEC (ioredis knows one server: it reconnects to it and sends again
// what got no answer). No request may fail, every acknowledged write must
// be read back at the end, and every counter must equal the INCRs
// acknowledged on it: one applied twice (a command the stopping member
// carried out but never answered, then sent again) would show. A subscriber
// on each member must get a message published after the restarts (its
// library subscribes again on the new connection). The time each step took
// is printed. (Decision 0274, docs/cluster.md.)
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { PiccoloClusterClient } from "../../src/client/cluster-client.js";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { freePort, memberList, type RunningNode, startMember, stopAll } from "../support/node.js";

let root: string;
let gateway: RunningGateway;
let ports: number[];

function start(i: number): Promise<RunningNode> {
  return startMember(list, root, i, ["--port", String(ports[i]), "--resp-port", String(ports[i + 3])]);
}
let list: string;
const nodes: RunningNode[] = [];
/** Every ioredis client made, disconnected in after() even when the test fails (they reconnect forever). */
const redisClients: Redis[] = [];

function redis(m: number): Redis {
  const r = new Redis({ host: "127.0.0.1", port: ports[m + 3]! });
  redisClients.push(r);
  return r;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-rolling-"));
  list = await memberList(3);
  // Each member keeps its client ports across restarts, as an operator restarts it with the same flags.
  ports = await Promise.all([0, 1, 2, 3, 4, 5].map(() => freePort()));
  nodes.push(...(await Promise.all([0, 1, 2].map((i) => start(i)))));
  gateway = await startGateway(
    nodes.map((n) => n.port),
    ["--cluster", "true"],
  );
});

after(async () => {
  for (const r of redisClients) r.disconnect();
  await gateway?.stop();
  await stopAll(nodes);
  await rm(root, { recursive: true, force: true });
});

/** Every partition has a leader, as member `n` sees it, and `n` answers. */
async function settled(n: RunningNode): Promise<void> {
  await eventually(
    "every partition has a leader",
    async () => {
      const c = await n.client({ timeoutMs: 5_000 });
      try {
        const info = await c.clusterInfo();
        assert.ok(
          info.members.every((m) => m.connected),
          "every member connected",
        );
        assert.ok(
          info.partitions.every((p) => p.leader !== 0),
          "every partition led",
        );
      } finally {
        await c.close();
      }
    },
    60_000,
  );
}

describe("a rolling restart", { timeout: 240_000 }, () => {
  it("restarts every member under native, HTTP and Redis load: no request fails, no acknowledged write is lost or applied twice", async () => {
    await settled(nodes[0]!);
    const client = await PiccoloClusterClient.connect({
      members: nodes.map((n) => `127.0.0.1:${n.port}`),
      timeoutMs: 10_000,
      refreshMs: 200,
    });
    const acknowledged = new Map<string, number>();
    const failures: string[] = [];
    let ops = 0;
    let running = true;
    // Four writers, each with keys of its own (so the last acknowledged value is the one to read back), and a reader.
    const writers = [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; running; i++) {
        const key = `roll:${w}:${i % 50}`;
        try {
          await client.put(key, String(i));
          acknowledged.set(key, i);
          ops++;
        } catch (err) {
          failures.push(`put ${key}: ${(err as Error).message}`);
        }
      }
    });
    // Two HTTP writers through the gateway.
    const http = [0, 1].map(async (w) => {
      for (let i = 0; running; i++) {
        const key = `roll:http:${w}:${i % 50}`;
        try {
          const res = await gateway.fetch(`/v1/kv/${key}`, { method: "PUT", body: String(i) });
          if (res.status !== 200 && res.status !== 201) failures.push(`PUT ${key}: ${res.status} ${await res.text()}`);
          else {
            await res.arrayBuffer();
            acknowledged.set(key, i);
            ops++;
          }
        } catch (err) {
          failures.push(`PUT ${key}: ${(err as Error).message}`);
        }
      }
    });
    // Redis clients, two per member, with ioredis's defaults (reconnect, resend what got no answer, queue
    // while disconnected). Each has a key range and counters of its own, so its replies say exactly what to expect.
    /** Connection-level 'error' events (ECONNREFUSED while its member is down): counted, not failures. */
    let redisConnectionErrors = 0;
    const respIncrs = new Map<string, number>();
    const resp = [0, 1, 2, 0, 1, 2].map(async (m, c) => {
      const r = redis(m);
      r.on("error", () => redisConnectionErrors++);
      const counter = `resp:ctr:${c}`;
      // A transaction's keys share a hash tag: one partition.
      const txCounter = `{resp:tx:${c}}:ctr`;
      let incrs = 0;
      let txs = 0;
      for (let i = 0; running; i++) {
        const key = `resp:${c}:${i % 50}`;
        try {
          const set = await r.set(key, String(i));
          if (set !== "OK") failures.push(`SET ${key} answered ${set}`);
          else acknowledged.set(key, i);
          const got = await r.get(key);
          if (got !== String(i)) failures.push(`GET ${key} after SET ${i} answered ${got}`);
          const n = await r.incr(counter);
          incrs++;
          // Only this client increments it: anything but the next integer is an INCR applied twice (or lost).
          if (n !== incrs) failures.push(`INCR ${counter} answered ${n} after ${incrs} acknowledged`);
          const tx = await r.multi().incr(txCounter).set(`{resp:tx:${c}}:last`, String(i)).exec();
          txs++;
          if (tx?.[0]?.[1] !== txs || tx?.[1]?.[1] !== "OK")
            failures.push(`MULTI/EXEC ${txCounter} answered ${JSON.stringify(tx)} after ${txs} acknowledged`);
          ops += 4;
        } catch (err) {
          failures.push(`redis on n${m + 1}: ${(err as Error).message}`);
        }
      }
      respIncrs.set(counter, incrs);
      respIncrs.set(txCounter, txs);
    });
    // A subscriber on each member: counts the messages on "roll".
    const received = [0, 0, 0];
    await Promise.all(
      [0, 1, 2].map(async (m) => {
        const s = redis(m);
        s.on("error", () => redisConnectionErrors++);
        s.on("message", () => received[m]!++);
        await s.subscribe("roll");
      }),
    );
    const reader = (async () => {
      for (let i = 0; running; i++) {
        try {
          await client.get(`roll:${i % 4}:${i % 50}`);
          ops++;
        } catch (err) {
          failures.push(`get: ${(err as Error).message}`);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 1_000));
    // A failed step ends the load too: its loops would otherwise run (and fail) until the file's timeout.
    try {
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        const code = await nodes[i]!.stop();
        const stopped = Date.now() - t0;
        assert.equal(code, 0, `n${i + 1} exits 0`);
        nodes[i] = await start(i);
        const started = Date.now() - t0 - stopped;
        await settled(nodes[i]!);
        const back = Date.now() - t0 - stopped - started;
        console.log(
          `n${i + 1}: stopped in ${stopped} ms, started in ${started} ms, every partition led again after ${back} ms; ${ops} operations so far, ${failures.length} failed`,
        );
      }
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      running = false;
    }
    await Promise.all([...writers, ...http, reader, ...resp]);
    console.log(`redis clients: ${redisConnectionErrors} connection errors while their member was down (not failures)`);
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${ops + failures.length} requests failed`);
    assert.ok(ops > 100, `the load ran (${ops} operations)`);
    for (const [key, i] of acknowledged) assert.equal((await client.get(key))?.value.toString(), String(i), key);
    for (const [counter, n] of respIncrs)
      assert.equal((await client.get(counter))?.value.toString(), String(n), `${counter}: one per acknowledged INCR`);
    // Every subscriber is subscribed again: a message published now reaches all three. (Relayed between
    // members fire-and-forget, so it is published until each has one.)
    const before = [...received];
    await eventually(
      "every subscriber gets a message published after the restarts",
      async () => {
        await redisClients[0]!.publish("roll", "after");
        assert.ok(
          received.every((n, m) => n > before[m]!),
          `messages per member since: ${received.map((n, m) => n - before[m]!)}`,
        );
      },
      10_000,
      200,
    );
    await client.close();
  });
});
