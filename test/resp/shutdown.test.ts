// A node stopping (SIGTERM) with Redis clients on it, seen from raw sockets
// so that every byte and the way the connection ends can be checked
// (decision 0274). Redis has no "go away" and its libraries send again what
// got no answer, so the node must answer every command it read and carry
// out none it does not answer, then close with a FIN after the last answer
// (never a reset, which can lose answers on their way). One durable node,
// five connections, one stop, then a restart on the same data to count what
// was applied:
//   - a client waiting for each answer: closed at once, between two commands;
//   - a client pipelining without pause: never idle, so served for the stop's
//     bound (SHUTDOWN_RESP_IDLE_MAX_MS), then nothing more is read;
//   - a MULTI open at the stop: its EXEC, sent later, still runs;
//   - a MULTI still open after the bound: its EXEC is answered SHUTDOWN;
//   - a subscriber: closed at once (its library subscribes again elsewhere).
// Each INCR answered is counted: the counters read back after the restart
// must equal them exactly (one more would be a command carried out but not
// answered, which a library would apply twice).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import RedisParser from "redis-parser";
import { type RunningNode, startNode } from "../support/node.js";

type Reply = string | number | null | Reply[] | Error;

/** A raw RESP connection: what it sends, every reply in order, and how it ended. */
class Raw {
  readonly replies: Reply[] = [];
  /** The node's FIN arrived (after every reply it sent: TCP delivers in order). */
  ended = false;
  /** A socket error before that FIN (a reset would be one). */
  error: string | null = null;
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];
  private readonly socket: Socket;

  constructor(port: number) {
    const parser = new RedisParser({
      returnReply: (r) => this.push(r as Reply),
      returnError: (e) => this.push(e),
    });
    this.socket = connect({ host: "127.0.0.1", port });
    this.socket.on("data", (d: Buffer) => parser.execute(d));
    this.socket.on("end", () => {
      this.ended = true;
    });
    // Writing after the node's FIN fails (EPIPE and the like): expected; anything before it is not.
    this.socket.on("error", (err) => {
      if (!this.ended && this.error === null) this.error = err.message;
    });
    this.closed = new Promise((r) => this.socket.once("close", () => r()));
  }

  private push(r: Reply): void {
    // A big value is kept as its length.
    this.replies.push(typeof r === "string" && r.length > 1_000 ? r.length : r);
    for (const w of this.waiters.splice(0)) w();
  }

  send(...args: string[]): void {
    if (!this.ended) this.socket.write(encode(args));
  }

  writeRaw(b: Buffer): boolean {
    return this.ended ? false : this.socket.write(b);
  }

  /** Reads one chunk (64 KiB at most), then nothing for `ms`. */
  async readSlowly(ms: number): Promise<void> {
    const chunk = new Promise<void>((r) => {
      const done = (): void => {
        this.socket.off("data", done);
        this.socket.off("close", done);
        r();
      };
      this.socket.on("data", done);
      this.socket.on("close", done);
    });
    this.socket.resume();
    await chunk;
    this.socket.pause();
    await sleep(ms);
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  get writable(): boolean {
    return !this.ended && !this.socket.destroyed;
  }

  onceDrained(): Promise<void> {
    return new Promise((r) => {
      const done = (): void => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        r();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  /** Resolves at the next reply, or when the connection closes. */
  nextReply(): Promise<void> {
    return Promise.race([new Promise<void>((r) => this.waiters.push(r)), this.closed]);
  }

  /** Resolves once `n` replies have come (rejects if the connection closes first). */
  async replyCount(n: number): Promise<void> {
    while (this.replies.length < n) {
      if (this.socket.destroyed) throw new Error(`closed after ${this.replies.length} replies, waiting for ${n}`);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), this.closed]);
    }
  }
}

function encode(args: string[]): Buffer {
  return Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`);
}

/** The pipelining client's counter: a long key, so its commands are long (see the loop below). */
const PIPELINED = `pipelined:${"x".repeat(4096)}`;
let dir: string;
let node: RunningNode;
const respPort = { value: 0 };
/** What each connection saw, filled in by before(). */
const seen = {
  exitCode: null as number | null,
  stopMs: 0,
  /** The client that waits for each answer: INCRs answered, and when its connection ended. */
  waiting: { answered: 0, endedMs: 0, conn: null as Raw | null },
  pipelining: { conn: null as Raw | null, endedMs: 0 },
  openMulti: { conn: null as Raw | null, endedAfterExecMs: 0 },
  lateMulti: { conn: null as Raw | null },
  subscriber: { conn: null as Raw | null, endedMs: 0 },
  /** The counters read back after the restart. */
  after: new Map<string, string | null>(),
};

async function start(): Promise<RunningNode> {
  return startNode(["--data-dir", dir, ...(respPort.value === 0 ? [] : ["--resp-port", String(respPort.value)])]);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "piccolo-resp-stop-"));
  node = await start();
  respPort.value = node.respPort;

  // Waits for each answer (an ioredis or redis-cli user's usual shape), until the node closes the connection.
  const waiting = new Raw(respPort.value);
  seen.waiting.conn = waiting;
  const waitingLoop = (async () => {
    for (let n = 1; waiting.writable; n++) {
      waiting.send("INCR", "waiting");
      try {
        await waiting.replyCount(n);
      } catch {
        break;
      }
      seen.waiting.answered = n;
    }
  })();

  // Pipelines INCRs without a pause in its stream: a command is always half sent. The node takes the
  // first moment it has answered every command read and holds no command half received for the idle one
  // it waits for, so no read of this client's may end between two commands. Each write ends inside a
  // command, and the client keeps at most PIPELINE_AHEAD bytes sent and not answered, so the node's
  // socket never holds more than one read's worth (64 KiB): each read takes all there is and ends where a
  // write ended. (Sending as fast as the socket took it, the node read 64 KiB at a time from a full
  // socket, and a read ended between two commands about once in 4,000 reads even with 4 KiB commands:
  // an idle moment, found in CI under load.)
  const pipelining = new Raw(respPort.value);
  seen.pipelining.conn = pipelining;
  const one = encode(["INCR", PIPELINED]);
  const stream = Buffer.concat(Array.from({ length: 64 }, () => one));
  const PIPELINE_AHEAD = 48 * 1024;
  const pipeliningLoop = (async () => {
    let at = 0;
    let sent = 0;
    while (pipelining.writable) {
      if (sent - pipelining.replies.length * one.length > PIPELINE_AHEAD) {
        await pipelining.nextReply();
        continue;
      }
      let n = 15_000;
      if ((at + n) % one.length === 0) n++;
      const end = at + n;
      const piece =
        end <= stream.length
          ? stream.subarray(at, end)
          : Buffer.concat([stream.subarray(at), stream.subarray(0, end - stream.length)]);
      at = end % stream.length;
      sent += n;
      if (!pipelining.writeRaw(piece)) await pipelining.onceDrained();
    }
  })();

  const openMulti = new Raw(respPort.value);
  seen.openMulti.conn = openMulti;
  openMulti.send("MULTI");
  openMulti.send("INCR", "open-multi");
  const lateMulti = new Raw(respPort.value);
  seen.lateMulti.conn = lateMulti;
  lateMulti.send("MULTI");
  lateMulti.send("INCR", "late-multi");
  const subscriber = new Raw(respPort.value);
  seen.subscriber.conn = subscriber;
  subscriber.send("SUBSCRIBE", "news");
  await Promise.all([openMulti.replyCount(2), lateMulti.replyCount(2), subscriber.replyCount(1)]);
  // Both loops under way.
  await Promise.all([waiting.replyCount(50), pipelining.replyCount(5_000)]);

  const t0 = Date.now();
  const exited = node.stop();
  const endedAt = (c: Raw): Promise<number> => c.closed.then(() => Date.now() - t0);
  const subscriberEnded = endedAt(subscriber);
  const waitingEnded = endedAt(waiting);
  const pipeliningEnded = endedAt(pipelining);
  // The open MULTI's EXEC comes a little after the stop began: it still runs.
  await sleep(300);
  const execSentMs = Date.now();
  openMulti.send("EXEC");
  const openMultiEnded = openMulti.closed.then(() => Date.now() - execSentMs);
  // The late one goes on queueing (a PING every 50 ms: the node, which closes its connections once none has
  // sent anything for 100 ms, keeps it open meanwhile); its EXEC comes after the stop's bound
  // (SHUTDOWN_RESP_IDLE_MAX_MS, 2 s from SIGTERM).
  const lateExecBy = t0 + 2_500;
  while (Date.now() < lateExecBy) {
    lateMulti.send("PING");
    await sleep(50);
  }
  lateMulti.send("EXEC");
  seen.exitCode = await exited;
  seen.stopMs = Date.now() - t0;
  seen.subscriber.endedMs = await subscriberEnded;
  seen.waiting.endedMs = await waitingEnded;
  seen.pipelining.endedMs = await pipeliningEnded;
  seen.openMulti.endedAfterExecMs = await openMultiEnded;
  await Promise.all([waitingLoop, pipeliningLoop, lateMulti.closed]);

  node = await start();
  const reader = new Raw(respPort.value);
  const keys = ["waiting", PIPELINED, "open-multi", "late-multi"];
  for (const k of keys) reader.send("GET", k);
  await reader.replyCount(keys.length);
  for (const [i, k] of keys.entries()) seen.after.set(k, reader.replies[i] as string | null);
  reader.send("QUIT");
  await reader.closed;
});

after(async () => {
  await node?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Every reply is the next integer from 1: an INCR answered out of turn, twice, or not at all would show. */
function assertCounting(replies: Reply[], what: string): void {
  for (let i = 0; i < replies.length; i++)
    if (replies[i] !== i + 1) assert.fail(`${what}: reply ${i} is ${String(replies[i])}, not ${i + 1}`);
}

describe("a node stopping with Redis clients on it", { timeout: 60_000 }, () => {
  it("exits 0", () => {
    assert.equal(seen.exitCode, 0, node.stderr());
  });

  it("closes a client that waits for each answer at once, between two commands, with a FIN", () => {
    const c = seen.waiting.conn!;
    assert.equal(c.error, null, "no socket error (a reset) before the node's FIN");
    assert.ok(c.ended, "the node's FIN came");
    assert.ok(seen.waiting.endedMs < 1_000, `closed ${seen.waiting.endedMs} ms after SIGTERM`);
    assertCounting(c.replies, "waiting");
    // The one INCR sent after the close was never read: not applied, so sending it again is right.
    assert.equal(seen.after.get("waiting"), String(c.replies.length), "applied exactly the INCRs answered");
  });

  it("serves a client that never pauses until the stop's bound, then answers all it read and closes", () => {
    const c = seen.pipelining.conn!;
    assert.equal(c.error, null, "no socket error (a reset) before the node's FIN");
    assert.ok(c.ended, "the node's FIN came");
    assert.ok(seen.pipelining.endedMs >= 1_900, `served through the bound: closed after ${seen.pipelining.endedMs} ms`);
    assertCounting(c.replies, "pipelined");
    assert.equal(seen.after.get(PIPELINED), String(c.replies.length), "applied exactly the INCRs answered");
  });

  it("lets a MULTI open at the stop finish: its EXEC runs, then the connection closes", () => {
    const c = seen.openMulti.conn!;
    assert.deepEqual(c.replies, ["OK", "QUEUED", [1]]);
    assert.equal(c.error, null);
    assert.ok(c.ended, "the node's FIN came");
    assert.ok(seen.openMulti.endedAfterExecMs < 1_000, `closed ${seen.openMulti.endedAfterExecMs} ms after EXEC`);
    assert.equal(seen.after.get("open-multi"), "1");
  });

  it("serves a MULTI still open at the bound no more: SHUTDOWN from then on, EXEC included, nothing applied", () => {
    const c = seen.lateMulti.conn!;
    assert.deepEqual(c.replies.slice(0, 2), ["OK", "QUEUED"]);
    const refused = c.replies.findIndex((r) => r instanceof Error);
    assert.ok(refused > 2, `PINGs queued before the bound (${refused - 2})`);
    assert.ok(
      c.replies.slice(2, refused).every((r) => r === "QUEUED"),
      "queued until the bound",
    );
    const rest = c.replies.slice(refused);
    assert.ok(
      rest.every((r) => r instanceof Error && /^SHUTDOWN /.test(r.message)),
      `SHUTDOWN from the bound on, EXEC last: ${rest.map(String).join(", ")}`,
    );
    assert.ok(c.ended, "the node's FIN came");
    assert.equal(seen.after.get("late-multi"), null);
  });

  it("closes a subscriber at once (its library reconnects and subscribes again)", () => {
    const c = seen.subscriber.conn!;
    assert.deepEqual(c.replies, [["subscribe", "news", 1]]);
    assert.equal(c.error, null);
    assert.ok(c.ended, "the node's FIN came");
    assert.ok(seen.subscriber.endedMs < 1_000, `closed ${seen.subscriber.endedMs} ms after SIGTERM`);
  });
});

// A client that pipelines 80 INCRs and GETs of a 256 KiB value, 20 MiB of answers, and reads them slowly
// (64 KiB at a time): when the node closes the connection, more answers than the kernel's buffers hold
// wait in the node's, for commands it carried out. The node must neither exit nor drop the connection
// before the client has them all.
describe("a node stopping while a Redis client reads its answers slowly", { timeout: 60_000 }, () => {
  const PAIRS = 80;
  let slowDir: string;
  let slowNode: RunningNode;
  let conn: Raw;
  let exitCode: number | null = null;
  let stopMs = 0;
  let applied: string | null = null;

  before(async () => {
    slowDir = await mkdtemp(join(tmpdir(), "piccolo-resp-slow-"));
    slowNode = await startNode(["--data-dir", slowDir]);
    const port = slowNode.respPort;
    const setter = new Raw(port);
    setter.send("SET", "big", "x".repeat(256 * 1024));
    await setter.replyCount(1);
    conn = new Raw(port);
    conn.writeRaw(
      Buffer.concat(Array.from({ length: PAIRS }, () => [encode(["INCR", "slow"]), encode(["GET", "big"])]).flat()),
    );
    const reading = (async () => {
      while (!conn.destroyed) await conn.readSlowly(10);
    })();
    await conn.replyCount(1);
    const t0 = Date.now();
    exitCode = await slowNode.stop();
    stopMs = Date.now() - t0;
    await Promise.all([reading, conn.closed]);
    slowNode = await startNode(["--data-dir", slowDir, "--resp-port", String(port)]);
    const reader = new Raw(port);
    reader.send("GET", "slow");
    await reader.replyCount(1);
    applied = reader.replies[0] as string | null;
  });

  after(async () => {
    await slowNode?.stop();
    await rm(slowDir, { recursive: true, force: true });
  });

  it("gives it every answer before exiting, then closes with a FIN", () => {
    assert.equal(exitCode, 0, slowNode.stderr());
    assert.equal(conn.error, null, "no socket error (a reset) before the node's FIN");
    assert.ok(conn.ended, "the node's FIN came");
    assert.equal(conn.replies.length, 2 * PAIRS, `every answer came (the stop took ${stopMs} ms)`);
    assertCounting(
      conn.replies.filter((_, i) => i % 2 === 0),
      "slow",
    );
    assert.ok(
      conn.replies.every((r, i) => i % 2 === 0 || r === 256 * 1024),
      "every GET answered the value",
    );
    assert.equal(applied, String(PAIRS));
  });
});
