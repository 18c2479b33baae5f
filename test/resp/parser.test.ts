// The hand-written RESP parser against redis-parser (the maintained parser
// used by ioredis) on random commands in random chunkings, and garbage that
// must never throw. Fixed seeds.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import RedisParser from "redis-parser";
import { RESP_MAX_ARGS } from "../../src/limits.js";
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
  /** Our parser, fed `cmds` encoded and cut into reads of the drawn sizes, reads what redis-parser reads whole. */
  const agreesWithRedisParser = (
    cmds: fc.Arbitrary<Uint8Array[][]>,
    cuts: fc.Arbitrary<number[]>,
    params: fc.Parameters<[Uint8Array[][], number[]]>,
  ) =>
    fc.assert(
      fc.property(cmds, cuts, (commands, sizes) => {
        const stream = Buffer.concat(commands.map(encode));
        const got = ours(stream, sizes);
        assert.equal(got.error, null);
        assert.deepEqual(got.commands, theirs(stream));
      }),
      params,
    );

  it("agrees with redis-parser on random commands in random chunkings", () => {
    agreesWithRedisParser(
      fc.array(commandArb, { minLength: 1, maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 50 })),
      { seed: 11, numRuns: 500 },
    );
  });

  it("agrees with redis-parser when reads are socket-sized and commands large: a command finished across reads", () => {
    const big = fc.array(fc.uint8Array({ maxLength: 9000 }), { minLength: 1, maxLength: 4 });
    agreesWithRedisParser(
      fc.array(fc.oneof(commandArb, big), { minLength: 1, maxLength: 40 }),
      fc.array(fc.integer({ min: 1, max: 70_000 })),
      { seed: 13, numRuns: 300 },
    );
  });

  it("reads inline and multibulk commands mixed the same in any chunking as in one piece", () => {
    const inlineArb = fc
      .array(fc.stringMatching(/^[a-zA-Z0-9]{1,20}$/), { minLength: 1, maxLength: 6 })
      .map((words) => Buffer.from(`${words.join(" ")}\r\n`));
    const anyArb = fc.oneof(inlineArb, commandArb.map(encode));
    fc.assert(
      fc.property(
        fc.array(anyArb, { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 300 })),
        (parts, cuts) => {
          const stream = Buffer.concat(parts);
          const whole = ours(stream, []);
          assert.equal(whole.error, null);
          assert.equal(whole.commands.length, parts.length);
          assert.deepEqual(ours(stream, cuts), whole);
        },
      ),
      { seed: 14, numRuns: 500 },
    );
  });

  it("copies one command per read of a long pipeline, not the read: its buffer stays a command's size", () => {
    const value = Buffer.alloc(64, "v");
    const stream = Buffer.concat(
      Array.from({ length: 20_000 }, (_, i) =>
        encode([Buffer.from("SET"), Buffer.from(`key:${i}`.padEnd(16, "0")), value]),
      ),
    );
    const p = new RespParser(1 << 20);
    let count = 0;
    let most = 0;
    // 64 KiB reads, as libuv makes them: almost every one ends inside a command.
    for (let at = 0; at < stream.length; at += 65_536) {
      p.push(stream.subarray(at, at + 65_536), () => count++);
      most = Math.max(most, p.bufferedBytes);
    }
    assert.equal(p.error, null);
    assert.equal(count, 20_000);
    assert.equal(p.bufferedBytes, 0, "the stream ends on a command's end: nothing kept");
    assert.ok(most > 0 && most <= 8192, `one partial command's buffer, not a read's: held ${most} bytes at most`);
  });

  it("keeps the bytes of every command handed out while keepsBytes says so, in any chunking", () => {
    fc.assert(
      fc.property(
        fc.array(commandArb, { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 5000 })),
        (cmds, cuts) => {
          const stream = Buffer.concat(cmds.map(encode));
          const p = new RespParser(1 << 20);
          p.keepsBytes = () => true;
          // The views themselves, not copies: each must still read as its command after the last push.
          const views: Uint8Array[][] = [];
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = cuts.length ? cuts[i % cuts.length]! : stream.length;
            p.push(stream.subarray(at, at + n), (args) => views.push([...args]));
            at += n;
          }
          assert.deepEqual(
            views.map((args) => args.map((a) => Buffer.from(a).toString("hex"))),
            cmds.map((args) => args.map((a) => Buffer.from(a).toString("hex"))),
          );
        },
      ),
      { seed: 15, numRuns: 300 },
    );
  });

  it("hands out no view of a lent chunk: kept views read right after the chunk is overwritten, in any chunking", () => {
    fc.assert(
      fc.property(
        fc.array(commandArb, { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 5000 })),
        fc.boolean(),
        (cmds, cuts, takeShort) => {
          const stream = Buffer.concat(cmds.map(encode));
          const p = new RespParser(1 << 20);
          p.keepsBytes = () => true;
          // As src/io/read-buffer.ts lends reads: every chunk in the same buffer, scribbled over after each push.
          const lent = new Uint8Array(5000);
          const views: Uint8Array[][] = [];
          // Hot commands (here: those of at most 2 arguments, when taken) are copied during the call only.
          const taken: string[][] = [];
          let lentHot = 0;
          p.hot = takeShort
            ? (b, start, offsets, argc) => {
                if (argc > 2) return false;
                if (p.lending) lentHot++;
                const args: string[] = [];
                for (let i = 0; i < argc; i++) {
                  const from = start + offsets[2 * i]!;
                  args.push(Buffer.from(b.subarray(from, from + offsets[2 * i + 1]!)).toString("hex"));
                }
                taken.push(args);
                views.push([]);
                return true;
              }
            : null;
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = Math.min(cuts.length ? cuts[i % cuts.length]! : stream.length, stream.length - at);
            lent.set(stream.subarray(at, at + n));
            p.push(lent.subarray(0, n), (args) => views.push([...args]), true);
            lent.fill(0x5a);
            at += n;
          }
          let hot = 0;
          assert.deepEqual(
            views.map((args) => (args.length === 0 ? taken[hot++]! : args.map((a) => Buffer.from(a).toString("hex")))),
            cmds.map((args) => args.map((a) => Buffer.from(a).toString("hex"))),
          );
          if (takeShort && cmds.length > 0 && cmds[0]!.length <= 2 && stream.length <= (cuts[0] ?? stream.length))
            assert.ok(lentHot > 0, "a hot command at the start of a read is offered the lent bytes themselves");
        },
      ),
      { seed: 16, numRuns: 300 },
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

  it("holds no buffer between whole commands, and a partial command's buffer grows with its bytes, not its header", () => {
    const p = new RespParser(16 * 1024 * 1024, 64 * 1024 * 1024);
    const seen: string[] = [];
    p.push(Buffer.from("*1\r\n$4\r\nPING\r\n"), (args) => seen.push(Buffer.from(args[0]!).toString()));
    assert.deepEqual(seen, ["PING"]);
    assert.equal(p.bufferedBytes, 0, "whole commands are parsed where they lie: no buffer kept");
    p.push(Buffer.from(`*2\r\n$3\r\nSET\r\n$${16 * 1024 * 1024}\r\n`), () => assert.fail("incomplete"));
    p.push(Buffer.alloc(1000), () => assert.fail("incomplete"));
    assert.ok(p.bufferedBytes <= 64 * 1024, `a 16 MiB claim holds ${p.bufferedBytes} bytes, not 16 MiB`);
  });

  it("resumes a partial multibulk where it stopped: 60,000 arguments in 7-byte pieces", () => {
    const n = 60_000;
    const stream = Buffer.concat([Buffer.from(`*${n}\r\n`), Buffer.from("$1\r\nx\r\n".repeat(n))]);
    const p = new RespParser(1024);
    let count = -1;
    const t0 = performance.now();
    for (let at = 0; at < stream.length; at += 7) p.push(stream.subarray(at, at + 7), (args) => (count = args.length));
    assert.equal(p.error, null);
    assert.equal(count, n);
    // Re-parsing from the start at every piece would be ~60,000 x 30,000 steps; resuming is linear.
    assert.ok(performance.now() - t0 < 30_000, "generous: linear work finishes in well under a second");
  });

  it("refuses a command over its byte limit, an argument count over RESP_MAX_ARGS, and a bulk over the value limit, each named", () => {
    const cases: [string | Buffer, RegExp, string][] = [
      ["*3\r\n$900\r\n", /command too large \(\d+ bytes; the limit is 2048\)/, "query-buffer"],
      [`*${RESP_MAX_ARGS + 1}\r\n`, /invalid multibulk length/, "args"],
      ["*1\r\n$1025\r\n", /invalid bulk length/, "bulk"],
    ];
    for (const [input, re, limit] of cases) {
      const p = new RespParser(1024, 2048);
      const chunks = typeof input === "string" ? [Buffer.from(input)] : [input];
      // The byte limit: three 900-byte arguments announced; refused when the third header says it cannot fit.
      if (limit === "query-buffer")
        chunks.push(Buffer.from(`${"a".repeat(900)}\r\n$900\r\n${"b".repeat(900)}\r\n$900\r\n`));
      for (const c of chunks) p.push(c, () => assert.fail("no command"));
      assert.match(String(p.error), re, limit);
      assert.equal(p.limit, limit);
    }
    // Malformed input is not a limit.
    const p = new RespParser(1024);
    p.push(Buffer.from("*x\r\n"), () => {});
    assert.equal(p.limit, null);
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
