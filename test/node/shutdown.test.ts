// SIGTERM while a client has requests in flight: the node stops accepting,
// answers what it has read (what it reads from then on: SHUTTING_DOWN, not
// carried out), tells the client to go away, closes once the client is
// quiet, and exits 0. No call is left hanging: each one gets its answer,
// SHUTTING_DOWN, or (sent after the close) CONNECTION_CLOSED.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { LAYOUTS, startNode } from "../support/node.js";

for (const layout of LAYOUTS) {
  describe(`graceful shutdown, ${layout.name}`, () => {
    it("answers or cleanly refuses every in-flight call and exits 0", async () => {
      const node = await startNode(layout.args);
      const c = await node.client({ timeoutMs: 20_000 });
      let answered = 0;
      let refused = 0;
      const calls = Array.from({ length: 5000 }, (_, i) =>
        c.put(`k${i}`, "v").then(
          () => {
            answered++;
          },
          (err: unknown) => {
            assert.ok(err instanceof PiccoloError, String(err));
            assert.ok(err.code === ErrorCode.SHUTTING_DOWN || err.code === ErrorCode.CONNECTION_CLOSED, err.message);
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
      // And the port is closed: new connections are refused.
      await new Promise<void>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: node.port });
        s.once("connect", () => reject(new Error("still accepting after stop")));
        s.once("error", () => resolve());
      });
    });
  });
}
