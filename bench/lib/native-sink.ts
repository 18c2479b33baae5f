// A trivially fast native-protocol endpoint, to measure the load generator's
// own ceiling (bench:native --self-test): it reads nothing of a request but
// its length and its operation, and answers a get with a canned Value (found,
// a value of --value-bytes) and anything else with a canned Written, all of a
// read's answers in one write. No map, no rings, no threads: what the
// generator reaches against it is what the generator can do on this machine.
//
//   node dist/bench/lib/native-sink.js --port P [--value-bytes 64]
// Prints "sink listening on 127.0.0.1:P" once it listens.
import { createServer } from "node:net";
import { parseArgs } from "node:util";
import { layoutRootAndChild, writeData } from "../../src/protocol/capnp-words.js";
import { Request_Which, Response_Which } from "../../src/protocol/gen/piccolo.js";
import { frameBytes } from "./capnp-frames.js";

const { values: o } = parseArgs({
  options: { port: { type: "string", default: "0" }, "value-bytes": { type: "string", default: "64" } },
});

/** A Response (3 data words, 1 pointer) whose union is `which`, holding a child struct. */
function response(which: number, dataWords: number, pointers: number, tailBytes: number) {
  const r = layoutRootAndChild(3, dataWords, pointers, tailBytes);
  r.seg.view.setUint16(r.root + 8, which, true);
  return r;
}

const written = response(Response_Which.WRITTEN, 2, 0, 0).out;
const value = (() => {
  const bytes = Number(o["value-bytes"]);
  const r = response(Response_Which.VALUE, 3, 1, bytes);
  r.seg.view.setUint8(r.child, 1); // found
  writeData(r.seg, r.out, r.childPtrs, r.tail, Buffer.alloc(bytes, "x"));
  return r.out;
})();

const server = createServer((sock) => {
  sock.setNoDelay(true);
  let carry: Buffer | null = null;
  sock.on("data", (chunk: Buffer) => {
    const buf = carry === null ? chunk : Buffer.concat([carry, chunk]);
    carry = null;
    const out: Uint8Array[] = [];
    let at = 0;
    for (;;) {
      const size = frameBytes(buf, at);
      if (size < 0 || buf.length - at < size) break;
      // Request: the root at word 1 of one segment (as hot-wire lays it out), its union's discriminant at byte 8.
      out.push(buf.readUInt32LE(at) === 0 && buf.readUInt16LE(at + 24) === Request_Which.GET ? value : written);
      at += size;
    }
    if (at < buf.length) carry = buf.subarray(at);
    if (out.length > 0) sock.write(Buffer.concat(out));
  });
  sock.on("error", () => sock.destroy());
});
server.listen(Number(o.port), "127.0.0.1", () => {
  const a = server.address();
  console.log(`sink listening on 127.0.0.1:${typeof a === "object" && a ? a.port : o.port}`);
});
