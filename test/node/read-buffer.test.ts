// Client sockets read into one buffer shared by every connection (src/io/read-buffer.ts,
// decision 0012). Checked here: that this Node's accepted sockets take it (else the node silently
// falls back to a buffer per read: slower, and the memory figures in docs/benchmarks.md would not
// hold), that pausing, resuming and the end of the stream behave as with 'data', that a TLS socket
// is left to 'data', and, end to end, that no command reads bytes a later read has overwritten:
// many clients pipelining general-path commands at once to shard workers that answer after an
// fsync, so every command is still in flight when other connections' reads land in the buffer.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { describe, it } from "node:test";
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from "node:tls";
import { readInto } from "../../src/io/read-buffer.js";
import { makeCerts } from "../support/certs.js";
import { type RunningNode, startNode } from "../support/node.js";
import { cmd, redisClient } from "../resp/support.js";

/** A loopback server whose accepted sockets (`event`'s) are handed to `onSocket`; returns the port. */
async function serve(server: Server, event: string, onSocket: (s: Socket) => void): Promise<number> {
  server.on(event, onSocket);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  return address.port;
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the shared read buffer", () => {
  it("an accepted plain socket reads into it: every chunk is a view of the same memory", async () => {
    const chunks: Uint8Array[] = [];
    const texts: string[] = [];
    let taken: boolean | null = null;
    let ended = false;
    let accepted!: Socket;
    const server = createServer({ allowHalfOpen: true });
    const port = await serve(server, "connection", (s) => {
      accepted = s;
      taken = readInto(s, (chunk) => {
        chunks.push(chunk);
        texts.push(Buffer.from(chunk).toString());
      });
      s.on("end", () => {
        ended = true;
        s.end();
      });
    });
    try {
      const c = connect(port, "127.0.0.1");
      await new Promise((r) => c.once("connect", r));
      c.write("hello");
      while (texts.join("") !== "hello") await tick(5);
      assert.equal(taken, true, "this Node's accepted sockets take the shared buffer");
      // Paused, nothing is read into the buffer (it would overwrite a chunk still lent).
      accepted.pause();
      c.write(" world");
      await tick(200);
      assert.equal(texts.join(""), "hello", "a paused socket reads nothing");
      accepted.resume();
      while (texts.join("") !== "hello world") await tick(5);
      assert.ok(chunks.length >= 2);
      for (const chunk of chunks) assert.equal(chunk.buffer, chunks[0]!.buffer, "one buffer for every read");
      // The end of the stream is seen as with 'data'.
      c.end();
      while (!ended) await tick(5);
      c.destroy();
    } finally {
      server.close();
    }
  });

  it("a TLS socket is left to 'data' (its bytes come decrypted from its own layer)", async () => {
    const certs = makeCerts("node");
    const { cert, key } = certs.cert("node");
    let taken: boolean | null = null;
    let got = "";
    const server = createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) });
    const port = await serve(server, "secureConnection", (s) => {
      taken = readInto(s, () => {});
      s.on("data", (d: Buffer) => {
        got += d.toString();
      });
    });
    try {
      const c: TLSSocket = tlsConnect({ port, host: "127.0.0.1", ca: readFileSync(certs.ca), servername: "node" });
      await new Promise((r) => c.once("secureConnect", r));
      c.write("over tls");
      while (got !== "over tls") await tick(5);
      assert.equal(taken, false);
      c.destroy();
    } finally {
      server.close();
    }
  });
});

/**
 * 64 clients pipelining at once, each command naming its client; returns when every answer is checked,
 * the slow log's entries matched to the clients that sent them, and the keys read back. `hotRuns`: the
 * node serves plain SETs as hot runs (the map on the IO thread), logged as one entry each.
 */
async function pipelineAtOnce(node: RunningNode, hotRuns: boolean): Promise<void> {
  // 49 commands a client: all started at once (within the dispatch window, 64 to begin with: past it a
  // request is held on a copy of its own), all in flight while the other 63 clients' reads land.
  const CLIENTS = 64;
  const ROUNDS = 8;
  const payloads: Buffer[] = [];
  const wants: string[] = [];
  /** Each command sent (its arguments joined), and the client that sent it. */
  const sentBy = new Map<string, number>();
  for (let c = 0; c < CLIENTS; c++) {
    const send = (...args: string[]): Buffer => {
      sentBy.set(args.join(" "), c);
      return cmd(...args);
    };
    const parts: Buffer[] = [];
    let want = "";
    let appended = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const tag = `c${c}r${r}`;
      parts.push(
        // Two plain SETs: a hot run on the IO thread's map (src/resp/hot.ts), logged as one entry. First,
        // so that the first run is read from the shared buffer itself (the parser goes on in a copy of
        // the read once a command takes the general path: RespParser.detach).
        send("SET", `s:${c}:${r}`, `first-${tag}`),
        send("SET", `p:${c}:${r}`, `plain-${tag}`),
        send("APPEND", `app:${c}`, `<${tag}>`),
        send("MSET", `m:${c}:${r}:a`, `a-${tag}`, `m:${c}:${r}:b`, `b-${tag}`),
        send("SETRANGE", `s:${c}:${r}`, "0", "FIRST"),
        send("SET", `g:${c}`, `v-${tag}`, "GET"),
      );
      appended += `<${tag}>`.length;
      const previous = r === 0 ? "$-1" : `$${`v-c${c}r${r - 1}`.length}\r\nv-c${c}r${r - 1}`;
      want += `+OK\r\n+OK\r\n:${appended}\r\n+OK\r\n:${`first-${tag}`.length}\r\n${previous}\r\n`;
    }
    // Last: a RENAME, which holds the commands after it (on copies) until it is done: none here.
    parts.push(send("RENAME", `app:${c}`, `appended:${c}`));
    want += "+OK\r\n";
    payloads.push(Buffer.concat(parts));
    wants.push(want);
  }
  // The slow log from here on holds only the commands below (and the SLOWLOG commands).
  const r = redisClient({ port: node.respPort });
  try {
    await r.call("slowlog", "reset");
    // All clients connect first, then all send at once.
    const sockets = await Promise.all(
      payloads.map(async () => {
        const s = connect(node.respPort, "127.0.0.1");
        await new Promise((r) => s.once("connect", r));
        return s;
      }),
    );
    const clientOf = new Map(sockets.map((s, c) => [`127.0.0.1:${s.localPort}`, c]));
    const replies = await Promise.all(
      sockets.map(
        (s, c) =>
          new Promise<string>((resolve, reject) => {
            let reply = "";
            const timer = setTimeout(() => reject(new Error(`client ${c} timed out: ${reply.slice(-200)}`)), 60_000);
            s.on("data", (d: Buffer) => {
              reply += d.toString("latin1");
              if (reply.length >= wants[c]!.length) {
                clearTimeout(timer);
                resolve(reply);
              }
            });
            s.write(payloads[c]!);
          }),
      ),
    );
    for (const s of sockets) s.destroy();
    for (let c = 0; c < CLIENTS; c++) assert.equal(replies[c], wants[c], `client ${c}'s answers, in order`);
    // The slow log's last 1,024 entries name commands as their clients sent them, not bytes of later reads.
    const entries = (await r.call("slowlog", "get", "1024")) as [number, number, number, string[], string][];
    assert.equal(entries.length, 1024);
    let runs = 0;
    for (const [, , , args, client] of entries) {
      if (args[0]!.toLowerCase() === "slowlog") continue;
      const logged = args.filter((a) => !a.startsWith("(a run of"));
      if (logged.length < args.length) runs++;
      assert.equal(sentBy.get(logged.join(" ")), clientOf.get(client), `${client} sent ${args.join(" ")}`);
    }
    assert.equal(runs > 0, hotRuns, "hot runs logged where the node runs them");
    // And what they wrote is what they sent.
    for (let c = 0; c < CLIENTS; c++) {
      const all = Array.from({ length: ROUNDS }, (_, i) => `<c${c}r${i}>`).join("");
      assert.deepEqual(await r.mget(`app:${c}`, `appended:${c}`), [null, all]);
      assert.equal(await r.get(`g:${c}`), `v-c${c}r${ROUNDS - 1}`);
      for (let i = 0; i < ROUNDS; i++) {
        const tag = `c${c}r${i}`;
        assert.deepEqual(await r.mget(`m:${c}:${i}:a`, `m:${c}:${i}:b`, `s:${c}:${i}`, `p:${c}:${i}`), [
          `a-${tag}`,
          `b-${tag}`,
          `FIRST-${tag}`,
          `plain-${tag}`,
        ]);
      }
    }
  } finally {
    r.disconnect();
  }
}

// Every command goes to the slow log, which reads its arguments again once it is answered.
const SLOW = ["--slowlog-slower-than", "0", "--slowlog-max-len", "1024"];

describe("commands read from the shared buffer, still in flight while other clients' reads land in it", () => {
  it("shard workers, --fsync always: a write is answered after its fsync, many reads later", async () => {
    const node = await startNode(["--shards", "2", "--fsync", "always", ...SLOW]);
    try {
      await pipelineAtOnce(node, false);
    } finally {
      await node.stop();
    }
  });

  it("the map on the IO thread, durable as started by default: answers wait for the turn's journal write", async () => {
    const node = await startNode(["--shards", "0", ...SLOW]);
    try {
      await pipelineAtOnce(node, true);
    } finally {
      await node.stop();
    }
  });
});
