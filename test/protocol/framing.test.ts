// The frame reader's memory follows the bytes that arrived, not the size a
// segment table claims: a header saying 200 MiB followed by a trickle costs
// the trickle (in a buffer that doubles as bytes come), and the frame that
// completes is delivered whole, in a buffer of exactly its size.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FRAME_INITIAL_BYTES } from "../../src/limits.js";
import { FrameReader } from "../../src/protocol/framing.js";

/** A one-segment frame table claiming `words` words, then `fill` for the body. */
function header(words: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(0, 0);
  b.writeUInt32LE(words, 4);
  return b;
}

describe("FrameReader memory", () => {
  it("a header claiming 200 MiB allocates only what arrived, growing by doubling up to the frame's exact size", () => {
    const words = (200 * 1024 * 1024) / 8;
    const total = 8 + words * 8;
    const reader = new FrameReader(256 * 1024 * 1024);
    const frames: ArrayBuffer[] = [];
    reader.push(header(words), (f) => frames.push(f));
    reader.push(Buffer.alloc(1000, 1), (f) => frames.push(f));
    assert.equal(reader.bufferedBytes, FRAME_INITIAL_BYTES, "a first piece, not 200 MiB");
    // Feed 3 MiB in 64 KiB chunks: the buffer stays within twice what arrived.
    let received = 8 + 1000;
    const chunk = Buffer.alloc(64 * 1024, 2);
    for (let i = 0; i < 48; i++) {
      reader.push(chunk, (f) => frames.push(f));
      received += chunk.length;
      assert.ok(reader.bufferedBytes >= received, "what arrived fits");
      assert.ok(
        reader.bufferedBytes <= 2 * received,
        `${reader.bufferedBytes} bytes buffered for ${received} received`,
      );
    }
    assert.equal(frames.length, 0);
    assert.equal(reader.partial, true);
    // The rest, in one piece: the frame completes with exactly its size and its bytes in order.
    reader.push(Buffer.alloc(total - received, 3), (f) => frames.push(f));
    assert.equal(frames.length, 1);
    const f = new Uint8Array(frames[0]!);
    assert.equal(f.length, total, "the buffer is the frame's exact size");
    assert.equal(f[8], 1);
    assert.equal(f[8 + 1000], 2);
    assert.equal(f[total - 1], 3);
    assert.equal(reader.bufferedBytes, 0, "nothing held between frames");
    assert.equal(reader.partial, false);
  });

  it("a small frame gets its exact buffer at once, and frames that follow in the same chunk are cut too", () => {
    const reader = new FrameReader(1024 * 1024);
    const one = Buffer.concat([header(4), Buffer.alloc(32, 9)]);
    const frames: ArrayBuffer[] = [];
    reader.push(Buffer.concat([one, one, one.subarray(0, 20)]), (f) => frames.push(f));
    assert.equal(frames.length, 2);
    assert.ok(frames.every((f) => f.byteLength === 40));
    assert.equal(reader.bufferedBytes, 40, "the partial third frame has its exact (small) buffer");
    reader.push(one.subarray(20), (f) => frames.push(f));
    assert.equal(frames.length, 3);
  });

  it("a frame over the limit is refused from its header alone, before any buffer", () => {
    const reader = new FrameReader(64 * 1024);
    reader.push(header(64 * 1024), () => assert.fail("no frame"));
    assert.equal(reader.error?.code, "FRAME_TOO_LARGE");
    assert.equal(reader.bufferedBytes, 0);
  });

  it("the limit may be raised between frames (the peer transport, after a hello)", () => {
    const reader = new FrameReader(64);
    const small = Buffer.concat([header(4), Buffer.alloc(32)]);
    const big = Buffer.concat([header(100), Buffer.alloc(800)]);
    const sizes: number[] = [];
    reader.push(small, (f) => {
      sizes.push(f.byteLength);
      reader.maxFrameBytes = 1024; // decided by the first frame, as a verified hello does
    });
    reader.push(big, (f) => sizes.push(f.byteLength));
    assert.deepEqual(sizes, [40, 808]);
    assert.equal(reader.error, null);
  });
});
