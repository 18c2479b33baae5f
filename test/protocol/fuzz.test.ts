// Fuzzing the native protocol's decoder and framer with fast-check, then a
// live node with random and mutated frames while a bystander keeps working.
// Fixed seeds: a failure prints its seed and counterexample to replay.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import fc from "fast-check";
import type { PiccoloClient } from "../../src/client/client.js";
import { decodeRequest } from "../../src/protocol/codec.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { Request } from "../../src/protocol/gen/piccolo.js";
import { type RunningNode, startNode } from "../support/node.js";

/** A valid segment table around arbitrary words. */
function framed(words: Uint8Array): ArrayBuffer {
  const n = Math.ceil(words.length / 8);
  const b = new Uint8Array(8 + n * 8);
  new DataView(b.buffer).setUint32(4, n, true);
  b.set(words, 8);
  return b.buffer;
}

const validRequest = fc
  .record({
    id: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    kind: fc.constantFrom("get", "put", "mget", "cas", "scan", "ping"),
    key: fc.uint8Array({ minLength: 1, maxLength: 40 }),
    value: fc.uint8Array({ maxLength: 100 }),
  })
  .map(({ id, kind, key, value }) => {
    const m = new capnp.Message();
    const r = m.initRoot(Request);
    r.id = id;
    if (kind === "get") r._initGet()._initKey(key.length).copyBuffer(key);
    else if (kind === "put") {
      const p = r._initPut();
      p._initKey(key.length).copyBuffer(key);
      if (value.length) p._initValue(value.length).copyBuffer(value);
    } else if (kind === "mget") r._initMget()._initKeys(2)[0]!._initKey(key.length).copyBuffer(key);
    else if (kind === "cas") r._initCas()._initKey(key.length).copyBuffer(key);
    else if (kind === "scan") r._initScan().count = 5;
    else r.ping = true;
    return new Uint8Array(m.toArrayBuffer());
  });

const mutated = fc
  .tuple(validRequest, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }))
  .map(([frame, flips]) => {
    const b = frame.slice();
    // Leave the segment table alone so the framer can cut the frame; mutate the content.
    for (const [at, v] of flips) if (b.length > 8) b[8 + (at % (b.length - 8))] = v;
    return b;
  });

describe("decoder fuzzing", () => {
  it("decodeRequest never throws on random words in a valid frame", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 512 }), (words) => {
        const op = decodeRequest(framed(words), 1 << 20);
        assert.ok(op.errorCode === 0 || op.errorCode > 0);
      }),
      { seed: 1, numRuns: 2000 },
    );
  });

  it("decodeRequest never throws on mutated valid requests", () => {
    fc.assert(
      fc.property(mutated, (frame) => {
        decodeRequest(frame.slice().buffer, 1 << 20);
      }),
      { seed: 2, numRuns: 2000 },
    );
  });

  it("the framer cuts the same frames whatever the chunking", () => {
    fc.assert(
      fc.property(
        fc.array(validRequest, { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 64 })),
        (frames, cuts) => {
          const stream = Buffer.concat(frames);
          const whole: Buffer[] = [];
          new FrameReader(1 << 20).push(stream, (f) => whole.push(Buffer.from(f)));
          const pieces: Buffer[] = [];
          const reader = new FrameReader(1 << 20);
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = cuts.length ? cuts[i % cuts.length]! : stream.length;
            reader.push(stream.subarray(at, at + n), (f) => pieces.push(Buffer.from(f)));
            at += n;
          }
          assert.equal(whole.length, frames.length);
          assert.deepEqual(pieces, whole);
          assert.deepEqual(
            whole.map((f) => new Uint8Array(f)),
            frames,
          );
        },
      ),
      { seed: 3, numRuns: 300 },
    );
  });
});

describe("a live node under random frames", () => {
  let node: RunningNode;
  let bystander: PiccoloClient;
  before(async () => {
    node = await startNode(["--shards", "2"]);
    bystander = await node.client();
  });
  after(async () => {
    await bystander.close();
    assert.equal(await node.stop(), 0);
  });

  it("answers or closes, never crashes, and the bystander never notices", async () => {
    const frames = fc.sample(fc.oneof(mutated, validRequest, fc.uint8Array({ minLength: 1, maxLength: 64 })), {
      seed: 4,
      numRuns: 400,
    });
    let sent = 0;
    let closes = 0;
    while (sent < frames.length) {
      const s = connect({ host: "127.0.0.1", port: node.port });
      await new Promise((r) => s.once("connect", r));
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      s.on("error", () => {});
      s.on("data", () => {});
      // A burst of frames on this connection, then a half-close.
      const burst = frames.slice(sent, sent + 20);
      sent += burst.length;
      s.end(Buffer.concat(burst));
      await closed;
      closes++;
      // The bystander works between bursts.
      await bystander.put(`fuzz-${sent}`, String(sent));
      assert.equal((await bystander.get(`fuzz-${sent}`))!.value.toString(), String(sent));
    }
    assert.ok(closes >= 20);
    assert.equal(node.process.exitCode, null, `node alive; stderr:\n${node.stderr()}`);
    const stats = await bystander.stats();
    assert.ok(stats.shards.length === 2);
  });
});
