// A client that pipelines requests whose keys live on different shards gets
// the answers in request order. Checked on the raw wire: one write carries
// many frames, and the answers' ids must come back as 1, 2, 3, ...
// (PiccoloClient matches answers by id, so it would not notice disorder.)
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import * as capnp from "capnp-es";
import { FrameReader } from "../../src/protocol/framing.js";
import { Request, Response, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";

function frame(build: (r: Request) => void): Uint8Array {
  const m = new capnp.Message();
  build(m.initRoot(Request));
  return new Uint8Array(m.toArrayBuffer());
}

for (const layout of [...LAYOUTS, { name: "threaded (--shards 4)", args: ["--shards", "4"] }]) {
  describe(`pipelining order, ${layout.name}`, () => {
    let node: RunningNode;
    before(async () => {
      node = await startNode(layout.args);
    });
    after(async () => {
      await node.stop();
    });

    it("answers 3000 pipelined puts and gets over many shards in request order", async () => {
      const n = 3000;
      const frames: Uint8Array[] = [];
      for (let i = 1; i <= n; i++) {
        const key = Buffer.from(`order-${i % 500}`);
        frames.push(
          frame((r) => {
            r.id = BigInt(i);
            if (i % 3 === 0) {
              r._initGet()._initKey(key.length).copyBuffer(key);
            } else if (i % 7 === 0) {
              // A multi-key request in the middle, spanning shards.
              const list = r._initMget()._initKeys(3);
              for (let j = 0; j < 3; j++) {
                const k = Buffer.from(`order-${(i + j * 97) % 500}`);
                list[j]!._initKey(k.length).copyBuffer(k);
              }
            } else {
              const p = r._initPut();
              p._initKey(key.length).copyBuffer(key);
              const v = Buffer.from(String(i));
              p._initValue(v.length).copyBuffer(v);
            }
          }),
        );
      }
      const socket = connect({ host: "127.0.0.1", port: node.port });
      await new Promise((r) => socket.once("connect", r));
      const ids: number[] = [];
      const kinds: number[] = [];
      const done = new Promise<void>((resolve, reject) => {
        const reader = new FrameReader(1 << 24);
        socket.on("data", (chunk: Buffer) => {
          reader.push(chunk, (f) => {
            const res = new capnp.Message(f, false).getRoot(Response);
            ids.push(Number(res.id));
            kinds.push(res.which());
            if (ids.length === n) resolve();
          });
        });
        socket.once("error", reject);
        socket.once("close", () => reject(new Error(`closed after ${ids.length} answers`)));
      });
      socket.write(Buffer.concat(frames)); // every request in one write
      await done;
      socket.destroy();
      assert.deepEqual(
        ids,
        Array.from({ length: n }, (_, i) => i + 1),
      );
      assert.ok(!kinds.includes(Response_Which.ERROR), "no request failed");
    });
  });
}
