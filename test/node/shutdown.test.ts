// SIGTERM while a client has requests in flight: the node stops accepting,
// answers what it has read (what it reads from then on: SHUTTING_DOWN, not
// carried out), tells the client to go away, closes once the client has
// ended its side (it sends nothing more), and exits 0. No call is left
// hanging: each one gets its answer, SHUTTING_DOWN, or (never sent)
// CONNECTION_CLOSED.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import * as capnp from "capnp-es";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { FrameReader } from "../../src/protocol/framing.js";
import { Request, Response, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { LAYOUTS, startNode } from "../support/node.js";

function putFrame(id: number, key: string): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Request);
  r.id = BigInt(id);
  const p = r._initPut();
  const k = Buffer.from(key);
  p._initKey(k.length).copyBuffer(k);
  p._initValue(1).copyBuffer(Buffer.from("v"));
  return new Uint8Array(m.toArrayBuffer());
}

for (const layout of LAYOUTS) {
  describe(`graceful shutdown, ${layout.name}`, () => {
    it("answers or cleanly refuses every in-flight call and exits 0", async () => {
      const node = await startNode(layout.args);
      const c = await node.client({ timeoutMs: 20_000 });
      let answered = 0;
      let refused = 0;
      let unknown = 0;
      const calls = Array.from({ length: 5000 }, (_, i) =>
        c.put(`k${i}`, "v").then(
          () => {
            answered++;
          },
          (err: unknown) => {
            assert.ok(err instanceof PiccoloError, String(err));
            assert.ok(err.code === ErrorCode.SHUTTING_DOWN || err.code === ErrorCode.CONNECTION_CLOSED, err.message);
            if (err.code === ErrorCode.CONNECTION_CLOSED && !err.unsent) unknown++;
            refused++;
          },
        ),
      );
      // Signal as soon as the first answers come back, with most still in flight.
      while (answered === 0) await new Promise((r) => setTimeout(r, 1));
      const exit = node.stop();
      await Promise.all(calls);
      assert.equal(await exit, 0, `exit code; stderr:\n${node.stderr()}`);
      assert.equal(answered + refused, 5000);
      assert.ok(answered > 0);
      // The client ended its side on the "go away", so the node read everything it sent: none is left unknown.
      assert.equal(unknown, 0, "calls that failed CONNECTION_CLOSED after they were sent");
      // And the port is closed: new connections are refused.
      await new Promise<void>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: node.port });
        s.once("connect", () => reject(new Error("still accepting after stop")));
        s.once("error", () => resolve());
      });
    });

    it("reads and answers what a client sends after the go-away until the client ends its side, however late", async () => {
      const node = await startNode(layout.args);
      const socket = connect({ host: "127.0.0.1", port: node.port });
      await new Promise((r) => socket.once("connect", r));
      const answers = new Map<number, number>();
      let goAway = false;
      const reader = new FrameReader(1 << 24);
      const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      socket.on("error", () => {});
      socket.on("data", (chunk: Buffer) =>
        reader.push(chunk, (f) => {
          const res = new capnp.Message(f, false).getRoot(Response);
          const id = Number(res.id);
          if (id === 0) goAway = res.which() === Response_Which.ERROR && res.error.code === ErrorCode.SHUTTING_DOWN;
          else answers.set(id, res.which() === Response_Which.ERROR ? res.error.code : -1);
        }),
      );
      socket.write(putFrame(1, "before"));
      while (!answers.has(1)) await new Promise((r) => setTimeout(r, 1));
      const exit = node.stop();
      while (!goAway) await new Promise((r) => setTimeout(r, 1));
      // A client whose event loop stalls after the go-away arrived: its next request leaves well after a
      // quiet moment. The node must still read it and answer it SHUTTING_DOWN (not carried out), not drop it.
      await new Promise((r) => setTimeout(r, 600));
      socket.write(putFrame(2, "late"));
      socket.end();
      await closed;
      assert.equal(await exit, 0, `exit code; stderr:\n${node.stderr()}`);
      assert.equal(answers.get(1), -1, "the request before the stop was carried out");
      assert.equal(answers.get(2), ErrorCode.SHUTTING_DOWN, "the late request was answered SHUTTING_DOWN");
    });
  });
}
