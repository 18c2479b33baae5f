// The one table of outcomes exists twice: in src/outcomes.ts, which every
// port follows, and in docs/protocol.md, which users read. This holds them
// equal, row by row, with the Cerializer's problem statuses.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PROBLEMS } from "../../src/cerializer/problems.js";
import { ErrorCode } from "../../src/errors.js";
import { OUTCOMES, outcomeOf, respErrorText } from "../../src/outcomes.js";

const doc = readFileSync(fileURLToPath(new URL("../../../docs/protocol.md", import.meta.url)), "utf8");

/** The rows of the table after the marker comment: code | name | when | applied | Redis | HTTP. */
function docRows(): string[][] {
  const from = doc.indexOf("<!-- outcomes table");
  assert.ok(from >= 0, "docs/protocol.md has the outcomes table");
  const rows: string[][] = [];
  for (const line of doc.slice(from).split("\n").slice(3)) {
    if (!line.startsWith("|")) break;
    rows.push(
      line
        .split("|")
        .slice(1, -1)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

describe("the outcome table", () => {
  it("docs/protocol.md lists every code once, as src/outcomes.ts says", () => {
    const rows = docRows();
    const codes = Object.entries(ErrorCode).filter(([, c]) => c !== ErrorCode.OK);
    assert.equal(rows.length, codes.length, "one row per code");
    for (const [name, code] of codes) {
      const row = rows.find((r) => r[1] === name);
      assert.ok(row, `a row for ${name}`);
      const [num, , , applied, redis, http] = row;
      const o = OUTCOMES[name as keyof typeof OUTCOMES];
      assert.equal(Number(num), code, `${name}'s number`);
      assert.equal(applied, o.applied, `${name}: applied`);
      assert.equal(redis!.split(" ")[0], o.resp, `${name}: the Redis word`);
      const [type, status] = http!.split(" ");
      assert.equal(type, o.problem, `${name}: the problem type`);
      assert.equal(Number(status), PROBLEMS[o.problem as keyof typeof PROBLEMS].status, `${name}: the HTTP status`);
    }
  });

  it("every row names a problem the Cerializer has, and a Redis reply that is an error with text", () => {
    for (const [name, o] of Object.entries(OUTCOMES)) {
      assert.ok(o.problem in PROBLEMS, `${name}: problem ${o.problem}`);
      assert.match(o.resp, /^[A-Z]+$/, `${name}: Redis word`);
      const code = ErrorCode[name as keyof typeof OUTCOMES];
      const read = respErrorText(code, false);
      const write = respErrorText(code, true);
      assert.match(read, /^[A-Z]+ \S/, `${name}: ${read}`);
      assert.ok(write.startsWith(o.applied === "maybe" ? "UNCERTAIN " : `${o.resp} `), `${name}: ${write}`);
    }
    assert.match(respErrorText(ErrorCode.TIMEOUT, false), /^TIMEOUT /);
    assert.match(respErrorText(ErrorCode.UNAVAILABLE, true, true), /^UNCERTAIN .*CLUSTERDOWN/);
    // A code this build does not know (from a newer peer) is an error whose outcome is unknown.
    assert.equal(outcomeOf(250).applied, "maybe");
  });
});
