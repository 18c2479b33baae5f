// The hand-written RESP parser against redis-parser (the maintained parser
// used by ioredis) on random commands in random chunkings, and garbage that
// must never throw. Fixed seeds.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import RedisParser from "redis-parser";
import { RespParser } from "../../src/resp/parser.js";

function encode(args: Uint8Array[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) parts.push(Buffer.from(`$${a.length}\r\n`), Buffer.from(a), Buffer.from("\r\n"));
  return Buffer.concat(parts);
}

const commandArb = fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 12 });

function ours(stream: Buffer, cuts: number[]): { commands: string[][]; error: string | null } {
  const p = new RespParser(1 << 20);
  const commands: string[][] = [];
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const n = cuts.length ? cuts[i % cuts.length]! : stream.length;
    p.push(stream.subarray(at, at + n), (args) => commands.push(args.map((a) => Buffer.from(a).toString("hex"))));
    at += n;
  }
  return { commands, error: p.error };
}

function theirs(stream: Buffer): string[][] {
  const out: string[][] = [];
  const parser = new RedisParser({
    returnBuffers: true,
    returnReply: (reply) => out.push((reply as Buffer[]).map((b) => b.toString("hex"))),
    returnError: (e) => {
      throw e;
    },
  });
  parser.execute(stream);
  return out;
}

describe("RESP parser", () => {
  it("agrees with redis-parser on random commands in random chunkings", () => {
    fc.assert(
      fc.property(
        fc.array(commandArb, { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 50 })),
        (cmds, cuts) => {
          const stream = Buffer.concat(cmds.map(encode));
          const got = ours(stream, cuts);
          assert.equal(got.error, null);
          assert.deepEqual(got.commands, theirs(stream));
        },
      ),
      { seed: 11, numRuns: 500 },
    );
  });

  it("parses inline commands, with quotes and escapes, as Redis does", () => {
    const r = ours(Buffer.from("PING\r\nSET k \"a b\\x41\\n\" 'c d'\r\n\r\nGET k\n"), []);
    assert.equal(r.error, null);
    assert.deepEqual(
      r.commands.map((c) => c.map((h) => Buffer.from(h, "hex").toString())),
      [["PING"], ["SET", "k", "a bA\n", "c d"], ["GET", "k"]],
    );
  });

  it("reports protocol errors with Redis's texts", () => {
    const cases: [string, RegExp][] = [
      ["*x\r\n", /invalid multibulk length/],
      ["*1\r\n+OK\r\n", /expected '\$', got '\+'/],
      ["*1\r\n$-5\r\n", /invalid bulk length/],
      [`*1\r\n$${2 ** 21}\r\n`, /invalid bulk length/],
      ['SET "unbalanced\r\n', /unbalanced quotes/],
      [`${"A".repeat(70_000)}`, /too big inline request/],
    ];
    for (const [input, re] of cases)
      assert.match(String(ours(Buffer.from(input), []).error), re, JSON.stringify(input.slice(0, 20)));
  });

  it("never throws on garbage", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.integer({ min: 1, max: 30 })), (bytes, cuts) => {
        ours(Buffer.from(bytes), cuts);
      }),
      { seed: 12, numRuns: 3000 },
    );
  });
});
