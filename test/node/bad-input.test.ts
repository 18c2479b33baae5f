// Every kind of bad input on the native protocol, against real nodes: each
// gets a clear error with a stable code; a stream that cannot be
// resynchronised is closed after a final error; nothing else is affected.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import type { PiccoloClient } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { Request, Response, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";

interface Answer {
  id: number;
  which: number;
  code: number;
  message: string;
}

/** A raw connection that collects decoded answers and notices the close. */
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
    socket.on("error", () => {});
  }
  static async open(port: number): Promise<Raw> {
    const s = connect({ host: "127.0.0.1", port });
    await new Promise((r) => s.once("connect", r));
    return new Raw(s);
  }
  async waitFor(n: number, alsoClosed = false): Promise<void> {
    for (let i = 0; i < 500; i++) {
      if (this.answers.length >= n && (!alsoClosed || this.closed)) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.fail(
      `expected ${n} answers${alsoClosed ? " and a close" : ""}, got ${this.answers.length}, closed=${this.closed}`,
    );
  }
}

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

/** A frame whose segment table is valid and whose content is garbage (a root pointer far out of bounds). */
function garbageFrame(): Buffer {
  const b = Buffer.alloc(8 + 16);
  b.writeUInt32LE(0, 0); // one segment
  b.writeUInt32LE(2, 4); // of two words
  b.writeUInt32LE(0x7ffffffc, 8); // struct pointer with a huge offset
  b.writeUInt32LE(0x00010001, 12);
  return b;
}

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
    before(async () => {
      node = await startNode([...layout.args, "--max-value-bytes", "1024"]);
      other = await node.client();
      await other.put("witness", "still here");
    });
    after(async () => {
      // Whatever happened, the bystander's data and connection are intact.
      assert.equal((await other.get("witness"))!.value.toString(), "still here");
      await other.close();
      assert.equal(await node.stop(), 0);
    });

    it("garbage inside a well-framed message: MALFORMED_FRAME, and the connection goes on", async () => {
      const raw = await Raw.open(node.port);
      raw.socket.write(Buffer.concat([ping(1), garbageFrame(), ping(3)]));
      await raw.waitFor(3);
      assert.equal(raw.answers[0]!.which, Response_Which.PONG);
      assert.equal(raw.answers[1]!.code, ErrorCode.MALFORMED_FRAME);
      assert.equal(raw.answers[1]!.id, 0, "no id could be read");
      assert.deepEqual(raw.answers[2], { id: 3, which: Response_Which.PONG, code: 0, message: "" });
      assert.equal(raw.closed, false);
      raw.socket.destroy();
    });

    it("a segment table claiming too many segments: final MALFORMED_FRAME, then close", async () => {
      const raw = await Raw.open(node.port);
      const bad = Buffer.alloc(8);
      bad.writeUInt32LE(999, 0);
      raw.socket.write(Buffer.concat([ping(1), bad]));
      await raw.waitFor(2, true);
      assert.equal(raw.answers[0]!.which, Response_Which.PONG, "the answer before the bad frame still goes out");
      assert.equal(raw.answers[1]!.code, ErrorCode.MALFORMED_FRAME);
      assert.match(raw.answers[1]!.message, /segments/);
    });

    it("a frame over the size limit: final FRAME_TOO_LARGE from the header alone, then close", async () => {
      const raw = await Raw.open(node.port);
      const big = Buffer.alloc(8);
      big.writeUInt32LE(0, 0);
      big.writeUInt32LE(64 * 1024 * 1024, 4); // 512 MiB claimed, never sent
      raw.socket.write(big);
      await raw.waitFor(1, true);
      assert.equal(raw.answers[0]!.code, ErrorCode.FRAME_TOO_LARGE);
    });

    it("a truncated frame and a half-close: final MALFORMED_FRAME", async () => {
      const raw = await Raw.open(node.port);
      const p = ping(5);
      raw.socket.end(p.subarray(0, p.length - 3));
      await raw.waitFor(1, true);
      assert.equal(raw.answers[0]!.code, ErrorCode.MALFORMED_FRAME);
      assert.match(raw.answers[0]!.message, /truncated/);
    });

    it("an unknown operation: UNKNOWN_OPERATION with the request's id, connection goes on", async () => {
      // Find the union discriminant by diffing two requests that differ only in it.
      const a = frame((r) => {
        r.id = 9n;
        r.ping = true;
      });
      const b = frame((r) => {
        r.id = 9n;
        r.stats = true;
      });
      const at = [...a].findIndex((x, i) => x !== b[i]);
      assert.ok(at > 0);
      const unknown = Buffer.from(a);
      unknown.writeUInt16LE(999, at);
      const raw = await Raw.open(node.port);
      raw.socket.write(Buffer.concat([unknown, ping(10)]));
      await raw.waitFor(2);
      assert.equal(raw.answers[0]!.id, 9);
      assert.equal(raw.answers[0]!.code, ErrorCode.UNKNOWN_OPERATION);
      assert.equal(raw.answers[1]!.which, Response_Which.PONG);
      raw.socket.destroy();
    });

    it("limits on keys, values and batches are per request", async () => {
      const c = await node.client();
      await rejectsWith(c.put("", "v"), ErrorCode.INVALID_ARGUMENT);
      await rejectsWith(c.put(Buffer.alloc(64 * 1024 + 1, 97), "v"), ErrorCode.KEY_TOO_LARGE);
      await rejectsWith(c.get(Buffer.alloc(64 * 1024 + 1, 97)), ErrorCode.KEY_TOO_LARGE);
      await rejectsWith(c.put("k", Buffer.alloc(1025)), ErrorCode.VALUE_TOO_LARGE);
      await rejectsWith(
        c.mput([
          ["a", "1"],
          ["b", Buffer.alloc(1025)],
        ]),
        ErrorCode.VALUE_TOO_LARGE,
      );
      assert.equal(await c.get("a"), null, "a refused batch writes nothing");
      await rejectsWith(c.mget([]), ErrorCode.INVALID_ARGUMENT);
      await rejectsWith(c.put("k", "v", { ttlMs: 10 ** 13 }), ErrorCode.INVALID_ARGUMENT);
      // The largest allowed key and value still work.
      await c.put(Buffer.alloc(64 * 1024, 98), Buffer.alloc(1024, 1));
      assert.equal((await c.get(Buffer.alloc(64 * 1024, 98)))!.value.length, 1024);
      // A request bigger than the frame limit (value limit + 128 KiB) cannot be
      // read at all: the connection gets FRAME_TOO_LARGE and is closed; the
      // client's next call reconnects.
      const keys = Array.from({ length: 10_001 }, (_, i) => `k${i}`);
      await rejectsWith(c.mget(keys), ErrorCode.FRAME_TOO_LARGE);
      assert.equal((await c.get(Buffer.alloc(64 * 1024, 98)))!.value.length, 1024, "the client reconnected");
      await c.close();
    });
  });
}
