// Native runs (src/io/native-run.ts, decision 0319): hot requests whose
// frames lie whole in one socket read are answered as a run, into one
// buffer. Their answers must be byte for byte what each request gets on its
// own. Two fresh nodes with the same flags get the same requests: one in a
// single write (runs, general requests between them), the other one frame
// at a time, each cut in two writes a moment apart so no frame lies whole in
// a read (each its own HotRequest or general request). Same requests on the
// same empty store: the same versions, so the answers must be equal bytes,
// and they are checked for what they say too (ids in order, the failures
// where they belong).
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import { encodeGetRequest, encodeWriteRequest } from "../../src/client/hot-wire.js";
import { ErrorCode } from "../../src/errors.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { Request, Request_Which, Response, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { type RunningNode, startNode, stopAll } from "../support/node.js";

const MAX_VALUE = 1024;
/** An hour from now, the same for both nodes. */
const EXPIRE_AT_MS = Date.now() + 3_600_000;

function general(build: (r: Request) => void): Uint8Array {
  const m = new capnp.Message();
  build(m.initRoot(Request));
  return new Uint8Array(m.toArrayBuffer());
}

/** What each request should be answered: a kind, and an error code when it must fail. */
interface Expect {
  which: Response_Which;
  code?: ErrorCode;
}

/** A seeded mix of hot requests (hits, misses, failures) with general ones between them. */
function requests(): { frames: Uint8Array[]; expect: Expect[] } {
  let seed = 19;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const frames: Uint8Array[] = [];
  const expect: Expect[] = [];
  const present = new Set<string>();
  const enc = new TextEncoder();
  for (let id = 1; id <= 400; id++) {
    const name = `run-${rnd(40)}`;
    const key = enc.encode(name);
    const pick = rnd(20);
    if (pick < 6) {
      const value = new Uint8Array(rnd(200)).fill(id % 251);
      // An expiry as a time, not a TTL: a TTL counts from each node's own clock, and the answers would differ.
      const at = rnd(4) === 0 ? EXPIRE_AT_MS : 0;
      frames.push(encodeWriteRequest(id, Request_Which.PUT, key, value, 0, at, rnd(5) === 0));
      expect.push({ which: Response_Which.WRITTEN });
      present.add(name);
    } else if (pick < 11) {
      frames.push(encodeGetRequest(id, key, rnd(6) === 0));
      expect.push({ which: Response_Which.VALUE });
    } else if (pick < 13) {
      frames.push(encodeWriteRequest(id, Request_Which.INSERT, key, enc.encode(`i${id}`), 0, 0, false));
      expect.push(
        present.has(name)
          ? { which: Response_Which.ERROR, code: ErrorCode.ALREADY_EXISTS }
          : { which: Response_Which.WRITTEN },
      );
      present.add(name);
    } else if (pick < 15) {
      frames.push(encodeWriteRequest(id, Request_Which.UPDATE, key, enc.encode(`u${id}`), 0, 0, false));
      expect.push(
        present.has(name)
          ? { which: Response_Which.WRITTEN }
          : { which: Response_Which.ERROR, code: ErrorCode.NOT_FOUND },
      );
    } else if (pick < 17) {
      // A general request between hot ones: the run before it ends, a new one starts after it.
      frames.push(
        general((r) => {
          r.id = BigInt(id);
          r._initDelete()._initKey(key.length).copyBuffer(key);
        }),
      );
      expect.push({ which: Response_Which.DELETED });
      present.delete(name);
    } else if (pick < 18) {
      // Over --max-value-bytes: not hot (readHot refuses it); the general path answers the error.
      frames.push(encodeWriteRequest(id, Request_Which.PUT, key, new Uint8Array(MAX_VALUE + 1), 0, 0, false));
      expect.push({ which: Response_Which.ERROR, code: ErrorCode.VALUE_TOO_LARGE });
    } else {
      frames.push(encodeGetRequest(id, enc.encode(`absent-${id}`), false));
      expect.push({ which: Response_Which.VALUE });
    }
  }
  return { frames, expect };
}

async function open(port: number): Promise<Socket> {
  const s = connect({ host: "127.0.0.1", port });
  s.setNoDelay(true);
  await new Promise((r) => s.once("connect", r));
  return s;
}

/** Collects `n` answers' bytes, each frame as it came. */
function answers(s: Socket, n: number): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const got: Uint8Array[] = [];
    const reader = new FrameReader(1 << 24);
    s.on("data", (chunk: Buffer) =>
      reader.push(chunk, (f) => {
        got.push(new Uint8Array(f));
        if (got.length === n) resolve(got);
      }),
    );
    s.once("error", reject);
    s.once("close", () => reject(new Error(`closed after ${got.length} of ${n} answers`)));
  });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const layout of [
  { name: "durable, the maps on the IO thread (the default on 2 cores)", args: ["--shards", "0"] },
  { name: "in memory, the maps on the IO thread", args: ["--shards", "0", "--in-memory"] },
  { name: "threaded (--shards 2: no runs, results out of order across workers)", args: ["--shards", "2"] },
]) {
  describe(`native runs, ${layout.name}`, () => {
    let runs: RunningNode;
    let alone: RunningNode;
    const threaded = layout.args.includes("2");
    before(async () => {
      const args = [...layout.args, "--max-value-bytes", String(MAX_VALUE)];
      // The slow log takes every request (threshold 0): it shows which came as runs.
      [runs, alone] = await Promise.all([
        startNode([...args, "--slowlog-slower-than=0", "--slowlog-max-len", "1024"]),
        startNode(args),
      ]);
    });
    after(() => stopAll([runs, alone]));

    it("answers a pipelined mix byte for byte as each request alone, in request order", async () => {
      const { frames, expect } = requests();
      // All in one write: the node reads most frames whole, in runs.
      const a = await open(runs.port);
      const gotA = answers(a, frames.length);
      a.write(Buffer.concat(frames));
      const pipelined = await gotA;
      a.destroy();
      // Runs were taken, or (threaded) none was: the slow log describes a run as one request.
      const c = await runs.client();
      const log = await c.slowlog({ count: 1024 });
      await c.close();
      const inRuns = log.entries.filter((e) => e.args.some((a) => a.startsWith("(a run of "))).length;
      if (threaded) assert.equal(inRuns, 0, "no run where results come back out of order");
      else assert.ok(inRuns >= 5, `runs answered the pipeline (${inRuns} in the slow log)`);
      // One at a time, each frame cut in two writes 2 ms apart: no frame lies whole in one read.
      const b = await open(alone.port);
      const gotB = answers(b, frames.length);
      for (const f of frames) {
        b.write(f.subarray(0, 5));
        await pause(2);
        b.write(f.subarray(5));
      }
      const single = await gotB;
      b.destroy();

      for (let i = 0; i < frames.length; i++) {
        const res = new capnp.Message(pipelined[i]!.slice().buffer as ArrayBuffer, false).getRoot(Response);
        assert.equal(Number(res.id), i + 1, "answers in request order");
        assert.equal(res.which(), expect[i]!.which, `request ${i + 1}'s kind`);
        if (expect[i]!.code !== undefined) assert.equal(res.error.code, expect[i]!.code, `request ${i + 1}'s error`);
        assert.deepEqual(pipelined[i], single[i], `request ${i + 1}: the same bytes as alone`);
      }
    });
  });
}
