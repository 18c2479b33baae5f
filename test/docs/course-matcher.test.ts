// The course's matcher on its own (test/docs/course.ts): that it parses the
// experiments as docs/README.md describes them, masks only what varies, and
// fails when a command's output changes shape. Without this, a matcher that
// accepted anything would let test/docs/course.test.ts pass on a stale course.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  ALWAYS,
  captured,
  compare,
  mask,
  parseChapter,
  rewriteOutputs,
  rewritePorts,
  unrewritePorts,
} from "./course.js";

const DOC = [
  "# A chapter",
  "",
  "```console",
  "$ not run: outside the section",
  "```",
  "",
  "## Experiments",
  "",
  "### 1. First",
  "",
  "```console",
  "$ npx piccolo put k v",
  "OK version=1",
  "$ echo a \\",
  "  b",
  "a b",
  "$ true",
  "```",
  "",
  "```sh",
  "$ not run: not a console block",
  "```",
  "",
  "### 2. Second",
  "",
  "```console mask=num,member",
  "$ npx piccolo cluster status",
  "n1: 12 writes led (p50 2.1 ms)",
  "```",
  "",
  "## After",
  "",
  "```console",
  "$ not run either",
  "```",
].join("\n");

describe("the course's matcher", () => {
  it("finds the experiments, their commands and outputs, and nothing outside the section", () => {
    const c = parseChapter("x.md", DOC);
    assert.deepEqual(
      c.experiments.map((e) => e.title),
      ["1. First", "2. Second"],
    );
    const [first, second] = c.experiments;
    assert.deepEqual(
      first!.commands.map((x) => [x.text, x.expected, x.line]),
      [
        ["npx piccolo put k v", ["OK version=1"], 12],
        ["echo a \\\n  b", ["a b"], 14],
        ["true", [], 17],
      ],
    );
    assert.deepEqual(second!.commands[0]!.masks, [...ALWAYS, "num", "member"]);
  });

  it("refuses a malformed block with the line to fix", () => {
    assert.throws(
      () => parseChapter("x.md", "## Experiments\n### a\n```console mask=nope\n$ x\n```"),
      /x\.md:3: unknown mask "nope"/,
    );
    assert.throws(
      () => parseChapter("x.md", "## Experiments\n### a\n```console fast\n$ x\n```"),
      /x\.md:3: unknown console block option "fast"/,
    );
    assert.throws(
      () => parseChapter("x.md", "## Experiments\n### a\n```console\nhello\n```"),
      /x\.md:4: output before/,
    );
    assert.throws(() => parseChapter("x.md", "## Experiments\n### a\n```console\n$ x\n"), /not closed/);
  });

  it("accepts the same output with other times, durations, sizes and process ids", () => {
    const masks = ALWAYS;
    const doc = [
      "piccolo data in ./d (fsync everysec): recovered 8 keys in 37 ms",
      "uptime 8.3s, 2 connection(s)",
      '{"level":40,"time":1796337975017,"pid":8231,"msg":"x"}',
      "0      2           1.0MiB      0",
      "written at 2026-12-03T22:51:09.744Z, sha256 97630cfb5ce6ec09f46556c649b8afee1f713b66057276a4e769daa6dc5cea84",
      "real\t0m1.228s",
    ];
    const run = [
      "piccolo data in ./d (fsync everysec): recovered 8 keys in 1204 ms",
      "uptime 61s, 2 connection(s)",
      '{"level":40,"time":1796999999999,"pid":17,"msg":"x"}',
      "0      2           12.5MiB      0",
      "written at 2027-01-01T00:00:00.001Z, sha256 0000000000000000000000000000000000000000000000000000000000000000",
      "real\t0m0.705s",
    ];
    assert.equal(compare(doc, run, masks), null);
  });

  it("fails when a word, a count or a line changes, and says which line", () => {
    const doc = ["OK version=1", "recovered 8 keys in 37 ms"];
    const wrongWord = compare(doc, ["ERR version=1", "recovered 8 keys in 37 ms"], ALWAYS);
    assert.match(wrongWord ?? "", /line 1 of the output differs/);
    const wrongCount = compare(doc, ["OK version=1", "recovered 9 keys in 37 ms"], ALWAYS);
    assert.match(wrongCount ?? "", /line 2 of the output differs[\s\S]*recovered 9 keys/);
    const missing = compare(doc, ["OK version=1"], ALWAYS);
    assert.match(missing ?? "", /line 2[\s\S]*run: \(no such line\)/);
    const extra = compare(doc, [...doc, "piccolo: INTERNAL: a bug"], ALWAYS);
    assert.match(extra ?? "", /line 3[\s\S]*doc: \(no such line\)/);
  });

  it("masks counters and member names only where a block asks", () => {
    const doc = ["  1        n1        4         3"];
    const run = ["  1        n3        5         4"];
    assert.notEqual(compare(doc, run, ALWAYS), null);
    assert.equal(compare(doc, run, [...ALWAYS, "num", "member"]), null);
    // Still the shape: a missing column is a difference.
    assert.notEqual(compare(doc, ["  1        n3        5"], [...ALWAYS, "num", "member"]), null);
    assert.equal(mask("mx84wef9.0,3 put cfg:a 1", ["position"]), "<run>.0,3 put cfg:a 1");
  });

  it("ignores trailing blank lines, trailing spaces and a column's padding, not indentation", () => {
    assert.equal(compare(["a", "b"], ["a  ", "b", "", ""], ALWAYS), null);
    assert.notEqual(compare(["a"], [" a"], ALWAYS), null);
    assert.equal(compare(["  9         4"], ["  10        4"], [...ALWAYS, "num"]), null);
    assert.notEqual(compare(["  9 4"], ["  9 4 5"], [...ALWAYS, "num"]), null);
  });

  it("fails on a real chapter's experiment whose output is changed", () => {
    const path = fileURLToPath(new URL("../../../docs/protocol.md", import.meta.url));
    const chapter = parseChapter("protocol.md", readFileSync(path, "utf8"));
    const cas = chapter.experiments[0]!.commands.find(
      (c) => c.text.startsWith("npx piccolo cas race") && c.text.includes("bob"),
    );
    assert.ok(cas, "protocol.md's first experiment has the losing cas");
    assert.equal(compare(cas.expected, cas.expected, cas.masks), null);
    const changed = cas.expected.map((l) => l.replace("VERSION_MISMATCH", "OK"));
    assert.notEqual(compare(cas.expected, changed, cas.masks), null);
  });

  it("a capture keeps the doc's lines where only masked parts differ, and writes the rest", () => {
    const doc = ["recovered 8 keys in 37 ms", "OK version=1"];
    const run = ["recovered 8 keys in 1204 ms", "OK version=2", "one more"];
    assert.deepEqual(captured(doc, run, ALWAYS), ["recovered 8 keys in 37 ms", "OK version=2", "one more"]);
    const c = parseChapter("x.md", DOC);
    const outputs = [["OK version=7"], null, ["now it prints"], ["n1: 3 writes led (p50 1.0 ms)"]];
    const text = rewriteOutputs(DOC, c, outputs);
    const again = parseChapter("x.md", text);
    assert.deepEqual(
      again.experiments.flatMap((e) => e.commands.map((x) => x.expected)),
      [["OK version=7"], ["a b"], ["now it prints"], ["n1: 3 writes led (p50 1.0 ms)"]],
    );
  });

  it("rewrites the reader's ports to the test's in commands, and back in outputs", () => {
    const ports = new Map([
      [7700, 41234],
      [8700, 41999],
    ]);
    assert.equal(
      rewritePorts("curl localhost:8700/v1/kv/a; npx piccolo get a --server 127.0.0.1:7700 --timeout 17000", ports),
      "curl localhost:41999/v1/kv/a; npx piccolo get a --server 127.0.0.1:41234 --timeout 17000",
    );
    assert.equal(
      unrewritePorts("listening on 127.0.0.1:41234, 412345 bytes", ports),
      "listening on 127.0.0.1:7700, 412345 bytes",
    );
  });
});
