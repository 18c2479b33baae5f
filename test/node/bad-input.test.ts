// Every kind of bad input on the native protocol, against real nodes in both
// shard layouts. Frames are crafted by hand on raw sockets (capnp-es builds
// the valid parts; the damage is done to the bytes). Each case tells one
// story:
//   - damage the parser can step over (garbage content, an unknown
//     operation, a key or value or batch over its limit) gets an error
//     answer with a stable code, and the same connection goes on serving;
//   - damage it cannot step over (a bad segment table, a frame over the size
//     limit, a stream that stops mid-frame) gets one final error answer with
//     id 0, after the answers to the requests before it, and then the node
//     closes that connection only.
// After every case a bystander (a raw connection opened before any damage,
// and a PiccoloClient) still works and the data written before is intact.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import type { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, errorName, PiccoloError } from "../../src/errors.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { Request, Request_Which, Response, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { MAX_BATCH_KEYS, MAX_FRAME_SEGMENTS, MAX_KEY_BYTES, maxFrameBytes } from "../../src/limits.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";

/** Large enough that MAX_BATCH_KEYS + 1 real keys fit in a frame (so TOO_MANY_KEYS, not FRAME_TOO_LARGE). */
const MAX_VALUE_BYTES = 256 * 1024;
const FRAME_LIMIT_BYTES = maxFrameBytes(MAX_VALUE_BYTES);

interface Answer {
  id: number;
  which: number;
  code: number;
  message: string;
}

const describeAnswer = (a: Answer | undefined) =>
  a === undefined
    ? "none"
    : a.which === Response_Which.ERROR
      ? `#${a.id} ${errorName(a.code)}: ${a.message}`
      : `#${a.id} kind ${a.which}`;

/** A raw connection that decodes every answer (each must be a valid Response) and notices the close. */
class Raw {
  readonly answers: Answer[] = [];
  closed = false;
  private readonly reader = new FrameReader(1 << 26);
  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) =>
      this.reader.push(d, (f) => {
        const r = new capnp.Message(f, false).getRoot(Response);
        const isError = r.which() === Response_Which.ERROR;
        this.answers.push({
          id: Number(r.id),
          which: r.which(),
          code: isError ? r.error.code : 0,
          message: isError ? r.error.message : "",
        });
      }),
    );
    socket.on("close", () => {
      this.closed = true;
    });
    // A write racing the node's close may fail with EPIPE/ECONNRESET: the close is what we check.
    socket.on("error", () => {});
  }

  static async open(port: number): Promise<Raw> {
    const s = connect({ host: "127.0.0.1", port });
    await new Promise((r) => s.once("connect", r));
    return new Raw(s);
  }

  /** Waits (up to 5 s, or until the node closes) for n answers in all, and for the close when asked. */
  async waitFor(n: number, alsoClosed = false): Promise<void> {
    for (let i = 0; i < 500; i++) {
      if (this.answers.length >= n && (!alsoClosed || this.closed)) {
        assert.equal(this.reader.error, null, "the node's answers are well-framed");
        return;
      }
      if (this.closed) break; // 'close' comes after the last 'data': nothing more will arrive
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.fail(
      `expected ${n} answers${alsoClosed ? " and a close" : ""}, got [${this.answers.map(describeAnswer).join(", ")}], closed=${this.closed}`,
    );
  }

  /** The connection still serves: a ping after everything else is answered, and the socket stays open. */
  async stillServes(id: number): Promise<void> {
    const before = this.answers.length;
    this.socket.write(ping(id));
    await this.waitFor(before + 1);
    assert.deepEqual(this.answers[before], { id, which: Response_Which.PONG, code: 0, message: "" });
    assert.equal(this.closed, false, "the connection is still open");
  }
}

/** A framed Request built with the generated code. */
function frame(build: (r: Request) => void): Buffer {
  const m = new capnp.Message();
  build(m.initRoot(Request));
  return Buffer.from(m.toArrayBuffer());
}

const ping = (id: number) =>
  frame((r) => {
    r.id = BigInt(id);
    r.ping = true;
  });

/** A put, which goes to a shard (a worker thread in the threaded layout), so its answer comes back later than a ping's. */
const putFrame = (id: number, key: string) =>
  frame((r) => {
    r.id = BigInt(id);
    const w = r._initPut();
    w._initKey(Buffer.byteLength(key)).copyBuffer(Buffer.from(key));
    w._initValue(1).copyBuffer(Buffer.from("v"));
  });

/** The requests before a fatal frame are all answered, in order, before the final error. */
async function answeredBeforeTheEnd(raw: Raw, other: PiccoloClient, key: string): Promise<void> {
  assert.deepEqual(
    raw.answers.slice(0, 2).map((a) => [a.id, a.which]),
    [
      [1, Response_Which.WRITTEN],
      [2, Response_Which.PONG],
    ],
    "the answers before the bad frame still go out, in order",
  );
  assert.equal((await other.get(key))?.value.toString(), "v", "and the write before it took effect");
}

/**
 * Where the root struct of a one-segment frame sits: its data section (the
 * id, then the union discriminant at byte 8) and its pointer section (the
 * union member's pointer).
 */
function rootStruct(f: Buffer): { dataAt: number; pointersAt: number } {
  assert.equal(f.readUInt32LE(0), 0, "one segment");
  const root = f.readUInt32LE(8);
  assert.equal(root & 3, 0, "the root is a struct pointer");
  const dataAt = 16 + (root >> 2) * 8;
  return { dataAt, pointersAt: dataAt + f.readUInt16LE(12) * 8 };
}

/** A request whose union discriminant is replaced by `which` (an operation this node does not know). */
function withDiscriminant(id: number, which: number): Buffer {
  const f = frame((r) => {
    r.id = BigInt(id);
    r.stats = true;
  });
  const at = rootStruct(f).dataAt + 8;
  assert.equal(f.readUInt16LE(at), Request_Which.STATS, "the discriminant is where the generated code reads it");
  f.writeUInt16LE(which, at);
  return f;
}

/** A frame whose segment table is valid and whose content is garbage: the root pointer points far out of bounds. */
function garbageFrame(): Buffer {
  const b = Buffer.alloc(8 + 16);
  b.writeUInt32LE(0, 0); // one segment
  b.writeUInt32LE(2, 4); // of two words
  b.writeUInt32LE(0x7ffffffc, 8); // struct pointer with a huge offset
  b.writeUInt32LE(0x00010001, 12);
  return b;
}

/** A put whose id is readable but whose member pointer points out of the segment. */
function brokenPut(id: number): Buffer {
  const f = frame((r) => {
    r.id = BigInt(id);
    r._initPut()._initKey(3).copyBuffer(Buffer.from("abc"));
  });
  const at = rootStruct(f).pointersAt;
  f.writeUInt32LE(0x7ffffff0, at);
  return f;
}

/** Only a segment table: `sizes` in words, nothing after it. */
function tableOnly(sizes: number[]): Buffer {
  const n = 4 + 4 * sizes.length;
  const b = Buffer.alloc(n + (n % 8));
  b.writeUInt32LE(sizes.length - 1, 0);
  for (const [i, s] of sizes.entries()) b.writeUInt32LE(s, 4 + 4 * i);
  return b;
}

/** A ping spread over `count` segments: the request in the first, one zero word in each of the others. */
function pingInSegments(id: number, count: number): Buffer {
  const content = ping(id).subarray(8);
  const table = tableOnly([content.length / 8, ...Array<number>(count - 1).fill(1)]);
  return Buffer.concat([table, content, Buffer.alloc(8 * (count - 1))]);
}

/** A ping followed by zero words, so that the whole frame is exactly `totalBytes` long. */
function pingPaddedTo(id: number, totalBytes: number): Buffer {
  const p = ping(id);
  const b = Buffer.alloc(totalBytes);
  p.copy(b);
  b.writeUInt32LE((totalBytes - 8) / 8, 4);
  return b;
}

const keysFrame = (kind: "mget" | "mdel", count: number) =>
  frame((r) => {
    const list = (kind === "mget" ? r._initMget() : r._initMdel())._initKeys(count);
    for (let i = 0; i < count; i++)
      list
        .get(i)
        ._initKey(6)
        .copyBuffer(Buffer.from(`k${String(i).padStart(5, "0")}`));
  });

async function rejectsWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PiccoloError, String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });
}

for (const layout of LAYOUTS) {
  describe(`bad input on the native protocol, ${layout.name}`, () => {
    let node: RunningNode;
    let other: PiccoloClient;
    let watcher: Raw;
    let watcherId = 1000;

    before(async () => {
      node = await startNode([...layout.args, "--max-value-bytes", String(MAX_VALUE_BYTES)]);
      other = await node.client();
      await other.put("witness", "still here");
      watcher = await Raw.open(node.port);
      await watcher.stillServes(watcherId++);
    });

    afterEach(async () => {
      // Whatever the case did to its own connection: the connection opened
      // before it still serves, the other client works, the data is intact.
      await watcher.stillServes(watcherId++);
      assert.equal((await other.get("witness"))?.value.toString(), "still here");
      const v = await other.put("after-each", String(watcherId));
      assert.equal((await other.get("after-each"))?.version, v);
      assert.equal(node.process.exitCode, null, `the node is alive; stderr:\n${node.stderr()}`);
    });

    after(async () => {
      try {
        watcher?.socket.destroy();
        await other?.close();
      } finally {
        assert.equal(await node.stop(), 0, "the node exits cleanly");
      }
    });

    it("garbage inside a well-framed message: MALFORMED_FRAME (id 0 when unreadable), and the connection goes on", async () => {
      const raw = await Raw.open(node.port);
      raw.socket.write(Buffer.concat([ping(1), garbageFrame(), ping(3), brokenPut(4), ping(5)]));
      await raw.waitFor(5);
      const [a, b, c, d, e] = raw.answers;
      assert.equal(a!.which, Response_Which.PONG);
      assert.equal(b!.code, ErrorCode.MALFORMED_FRAME, describeAnswer(b));
      assert.equal(b!.id, 0, "no id could be read");
      assert.deepEqual(c, { id: 3, which: Response_Which.PONG, code: 0, message: "" });
      assert.equal(d!.code, ErrorCode.MALFORMED_FRAME, describeAnswer(d));
      assert.equal(d!.id, 4, "the id was readable, so the error carries it");
      assert.deepEqual(e, { id: 5, which: Response_Which.PONG, code: 0, message: "" });
      await raw.stillServes(6);
      raw.socket.destroy();
    });

    // A frame of one empty segment is perfectly delimited (8 bytes; the next
    // frame starts right after it), so like any other garbage content it gets
    // MALFORMED_FRAME and the connection goes on. (The node used to close the
    // connection here; this test found it.)
    it("an empty frame (one segment of zero words): MALFORMED_FRAME, and the connection goes on", async () => {
      const raw = await Raw.open(node.port);
      raw.socket.write(Buffer.concat([ping(1), tableOnly([0]), ping(3)]));
      await raw.waitFor(3);
      assert.equal(raw.answers[1]!.code, ErrorCode.MALFORMED_FRAME, describeAnswer(raw.answers[1]));
      assert.deepEqual(raw.answers[2], { id: 3, which: Response_Which.PONG, code: 0, message: "" });
      await raw.stillServes(4);
      raw.socket.destroy();
    });

    it(`a frame of exactly MAX_FRAME_SEGMENTS (${MAX_FRAME_SEGMENTS}) segments is served`, async () => {
      const raw = await Raw.open(node.port);
      raw.socket.write(pingInSegments(7, MAX_FRAME_SEGMENTS));
      await raw.waitFor(1);
      assert.deepEqual(raw.answers[0], { id: 7, which: Response_Which.PONG, code: 0, message: "" });
      await raw.stillServes(8);
      raw.socket.destroy();
    });

    for (const [name, bad] of [
      ["MAX_FRAME_SEGMENTS + 1", tableOnly(Array<number>(MAX_FRAME_SEGMENTS + 1).fill(1))],
      ["2^32 (the count field at its maximum)", Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])],
    ] as const) {
      it(`a segment table claiming ${name} segments: final MALFORMED_FRAME with id 0, then close`, async () => {
        const raw = await Raw.open(node.port);
        raw.socket.write(Buffer.concat([putFrame(1, `segments ${name}`), ping(2), bad, ping(3)]));
        await raw.waitFor(3, true);
        assert.equal(raw.answers.length, 3, "nothing is read after the bad table");
        await answeredBeforeTheEnd(raw, other, `segments ${name}`);
        assert.equal(raw.answers[2]!.code, ErrorCode.MALFORMED_FRAME, describeAnswer(raw.answers[2]));
        assert.equal(raw.answers[2]!.id, 0);
        assert.match(raw.answers[2]!.message, /segments/);
      });
    }

    it("a frame of exactly maxFrameBytes is served", async () => {
      const raw = await Raw.open(node.port);
      raw.socket.write(pingPaddedTo(9, FRAME_LIMIT_BYTES));
      await raw.waitFor(1);
      assert.deepEqual(raw.answers[0], { id: 9, which: Response_Which.PONG, code: 0, message: "" });
      await raw.stillServes(10);
      raw.socket.destroy();
    });

    for (const [name, table] of [
      ["one word over maxFrameBytes", tableOnly([(FRAME_LIMIT_BYTES - 8) / 8 + 1])],
      ["512 MiB", tableOnly([64 * 1024 * 1024])],
      ["2 x 2^31 words (a sum past 32 bits)", tableOnly([0x80000000, 0x80000000])],
    ] as const) {
      it(`a frame claiming ${name}: final FRAME_TOO_LARGE with id 0 from the table alone, then close`, async () => {
        const raw = await Raw.open(node.port);
        // Only the table is sent: the node must decide before buffering the frame.
        raw.socket.write(Buffer.concat([putFrame(1, `size ${name}`), ping(2), table]));
        await raw.waitFor(3, true);
        assert.equal(raw.answers.length, 3);
        await answeredBeforeTheEnd(raw, other, `size ${name}`);
        assert.equal(raw.answers[2]!.code, ErrorCode.FRAME_TOO_LARGE, describeAnswer(raw.answers[2]));
        assert.equal(raw.answers[2]!.id, 0);
      });
    }

    for (const [name, cut] of [
      ["inside the content", (p: Buffer) => p.subarray(0, p.length - 3)],
      ["inside the segment table", (p: Buffer) => p.subarray(0, 2)],
    ] as const) {
      it(`a frame truncated ${name}, then a half-close: final MALFORMED_FRAME with id 0, then close`, async () => {
        const raw = await Raw.open(node.port);
        raw.socket.end(Buffer.concat([putFrame(1, `truncated ${name}`), ping(2), cut(ping(5))]));
        await raw.waitFor(3, true);
        assert.equal(raw.answers.length, 3);
        await answeredBeforeTheEnd(raw, other, `truncated ${name}`);
        assert.equal(raw.answers[2]!.code, ErrorCode.MALFORMED_FRAME, describeAnswer(raw.answers[2]));
        assert.equal(raw.answers[2]!.id, 0);
        assert.match(raw.answers[2]!.message, /truncated/);
      });
    }

    it("a half-close after whole frames: every answer, then a clean close (no error)", async () => {
      const raw = await Raw.open(node.port);
      raw.socket.end(Buffer.concat([putFrame(1, "half-close"), ping(2)]));
      await raw.waitFor(2, true);
      assert.equal(raw.answers.length, 2, "no error after whole frames");
      await answeredBeforeTheEnd(raw, other, "half-close");
    });

    it("an unknown operation: UNKNOWN_OPERATION with the request's id, and the connection goes on", async () => {
      const firstUnknown = Object.keys(Request_Which).length; // the next ordinal a newer schema would add
      const raw = await Raw.open(node.port);
      raw.socket.write(Buffer.concat([withDiscriminant(21, firstUnknown), withDiscriminant(22, 0xffff), ping(23)]));
      await raw.waitFor(3);
      for (const [i, id] of [21, 22].entries()) {
        assert.equal(raw.answers[i]!.code, ErrorCode.UNKNOWN_OPERATION, describeAnswer(raw.answers[i]));
        assert.equal(raw.answers[i]!.id, id);
      }
      assert.deepEqual(raw.answers[2], { id: 23, which: Response_Which.PONG, code: 0, message: "" });
      await raw.stillServes(24);
      raw.socket.destroy();
    });

    it("limits on keys, values and batches are per request, and the connection goes on", async () => {
      const key = (n: number, fill = 97) => Buffer.alloc(n, fill);
      const cases: [string, Buffer, number][] = [
        ["put with an empty key", frame((r) => r._initPut()._initValue(1)), ErrorCode.INVALID_ARGUMENT],
        ["get with an empty key", frame((r) => r._initGet()), ErrorCode.INVALID_ARGUMENT],
        [
          "put with a key of MAX_KEY_BYTES + 1",
          frame((r) =>
            r
              ._initPut()
              ._initKey(MAX_KEY_BYTES + 1)
              .copyBuffer(key(MAX_KEY_BYTES + 1)),
          ),
          ErrorCode.KEY_TOO_LARGE,
        ],
        [
          "get with a key of MAX_KEY_BYTES + 1",
          frame((r) =>
            r
              ._initGet()
              ._initKey(MAX_KEY_BYTES + 1)
              .copyBuffer(key(MAX_KEY_BYTES + 1)),
          ),
          ErrorCode.KEY_TOO_LARGE,
        ],
        [
          "put with a value of max-value-bytes + 1",
          frame((r) => {
            const w = r._initPut();
            w._initKey(3).copyBuffer(Buffer.from("big"));
            w._initValue(MAX_VALUE_BYTES + 1);
          }),
          ErrorCode.VALUE_TOO_LARGE,
        ],
        [
          "cas with a value of max-value-bytes + 1",
          frame((r) => {
            const w = r._initCas();
            w._initKey(3).copyBuffer(Buffer.from("big"));
            w._initValue(MAX_VALUE_BYTES + 1);
          }),
          ErrorCode.VALUE_TOO_LARGE,
        ],
        ["mget of MAX_BATCH_KEYS + 1 keys", keysFrame("mget", MAX_BATCH_KEYS + 1), ErrorCode.TOO_MANY_KEYS],
        ["mdel of MAX_BATCH_KEYS + 1 keys", keysFrame("mdel", MAX_BATCH_KEYS + 1), ErrorCode.TOO_MANY_KEYS],
        ["mget of no keys", frame((r) => r._initMget()._initKeys(0)), ErrorCode.INVALID_ARGUMENT],
      ];
      for (const [i, [, f]] of cases.entries()) f.writeBigUInt64LE(BigInt(100 + i), rootStruct(f).dataAt);
      assert.ok(
        cases.every(([, f]) => f.length <= FRAME_LIMIT_BYTES),
        "every case fits in a frame",
      );
      const raw = await Raw.open(node.port);
      raw.socket.write(Buffer.concat([...cases.map(([, f]) => f), ping(99)]));
      await raw.waitFor(cases.length + 1);
      for (const [i, [name, , code]] of cases.entries()) {
        assert.equal(raw.answers[i]!.id, 100 + i, name);
        assert.equal(raw.answers[i]!.code, code, `${name}: ${describeAnswer(raw.answers[i])}`);
      }
      assert.equal(raw.answers[cases.length]!.id, 99);
      await raw.stillServes(98);
      raw.socket.destroy();
      assert.equal(await other.get("big"), null, "a refused write writes nothing");
    });

    it("limits through the client: refused requests, boundaries accepted, oversize frame closes and reconnects", async () => {
      const c = await node.client();
      await rejectsWith(c.put("", "v"), ErrorCode.INVALID_ARGUMENT);
      await rejectsWith(c.put(Buffer.alloc(MAX_KEY_BYTES + 1, 97), "v"), ErrorCode.KEY_TOO_LARGE);
      await rejectsWith(c.put("k", Buffer.alloc(MAX_VALUE_BYTES + 1)), ErrorCode.VALUE_TOO_LARGE);
      await rejectsWith(
        c.mput([
          ["a", "1"],
          ["b", Buffer.alloc(MAX_VALUE_BYTES + 1)],
        ]),
        ErrorCode.VALUE_TOO_LARGE,
      );
      assert.equal(await c.get("a"), null, "a refused batch writes nothing");
      const many = Array.from({ length: MAX_BATCH_KEYS + 1 }, (_, i) => `k${i}`);
      await rejectsWith(c.mget(many), ErrorCode.TOO_MANY_KEYS);
      await rejectsWith(c.mdel(many), ErrorCode.TOO_MANY_KEYS);
      await rejectsWith(c.put("k", "v", { ttlMs: 10 ** 13 }), ErrorCode.INVALID_ARGUMENT);
      // The boundaries themselves are accepted.
      assert.equal((await c.mget(many.slice(1))).length, MAX_BATCH_KEYS);
      const bigKey = Buffer.alloc(MAX_KEY_BYTES, 98);
      await c.put(bigKey, Buffer.alloc(MAX_VALUE_BYTES, 1));
      assert.equal((await c.get(bigKey))?.value.length, MAX_VALUE_BYTES);
      // A request bigger than the frame limit cannot be read at all: the node
      // answers FRAME_TOO_LARGE and closes; the client's next call reconnects.
      await rejectsWith(c.put("k", Buffer.alloc(FRAME_LIMIT_BYTES)), ErrorCode.FRAME_TOO_LARGE);
      assert.equal((await c.get(bigKey))?.value.length, MAX_VALUE_BYTES, "the client reconnected");
      assert.equal(await c.get("k"), null);
      await c.close();
    });
  });
}
