// `piccolo watch` as a user runs it: against a real node, one line per change
// on stdout, Ctrl-C (SIGINT) cancels and exits 0; a position the node no
// longer keeps exits 6 with a message naming where to go on.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { PiccoloClient } from "../../src/client/client.js";
import { eventually } from "../support/eventually.js";
import { CLI, type RunningNode, startNode, stopAll } from "../support/node.js";

let node: RunningNode;
let c: PiccoloClient;

describe("piccolo watch", () => {
  before(async () => {
    node = await startNode(["--shards", "2"]);
    c = await node.client();
  });
  after(async () => {
    await c.close();
    await stopAll([node]); // a node that served watches takes 5 s to stop (decision 0335)
  });

  it("prints one line per change under a prefix until SIGINT, then exits 0", async () => {
    const child = spawn(process.execPath, [CLI, "watch", "app:", "--prefix", "--server", `127.0.0.1:${node.port}`], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    // The watch is set up once the node has a connection for it.
    await eventually("the CLI's watch is set up", async () => assert.equal((await c.stats()).connections, 2));
    await sleep(200);
    const v = await c.put("app:a", "hello world");
    await c.put("elsewhere", "x");
    await c.put("app:big", Buffer.alloc(70_000, 1));
    await c.expire("app:a", 100_000);
    await c.delete("app:a");
    const lines = await eventually("four lines", async () => {
      const l = out.split("\n").filter((x) => x !== "");
      assert.ok(l.length >= 4, `got ${JSON.stringify(out)} ${err}`);
      return l;
    });
    const position = /^[0-9a-z]+\.\d+,\d+$/;
    const words = lines.map((l) => l.split(" "));
    for (const w of words) assert.match(w[0]!, position);
    assert.deepEqual(
      lines.map((l) => l.slice(l.indexOf(" ") + 1).replace(/expireAtMs=\d+/, "expireAtMs=N")),
      ["put app:a hello world", "put app:big <70000 bytes>", "expire app:a expireAtMs=N", "delete app:a"],
    );
    assert.ok(v > 0);
    child.kill("SIGINT");
    assert.equal(await exited, 0, err);
    assert.equal(out.split("\n").filter((x) => x !== "").length, 4, "nothing else printed");
    // Resuming from the last line's position: only what came after (the set-up may wait out a shard's 10 s park).
    const r = spawn(
      process.execPath,
      [CLI, "watch", "app:", "--prefix", "--from", words[3]![0]!, "--server", `127.0.0.1:${node.port}`],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let rout = "";
    r.stdout.on("data", (d: Buffer) => {
      rout += d.toString();
    });
    const rexit = new Promise<number | null>((resolve) => r.once("exit", (code) => resolve(code)));
    await c.put("app:after", "1");
    await eventually("the new change", async () => assert.match(rout, /put app:after 1\n/), 15_000);
    assert.doesNotMatch(rout, /delete app:a/, "nothing before the position again");
    r.kill("SIGINT");
    assert.equal(await rexit, 0);
  });

  it("a position the node does not keep: exit 6, the message says what to do", () => {
    const r = spawnSync(
      process.execPath,
      [CLI, "watch", "k", "--from", "zzzz.1,2", "--server", `127.0.0.1:${node.port}`],
      { encoding: "utf8", timeout: 20_000 },
    );
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stderr, /read the keys again/);
    assert.equal(r.stdout, "");
  });

  it("usage: a key is needed; the help lists watch", () => {
    assert.equal(spawnSync(process.execPath, [CLI, "watch", "--server", `127.0.0.1:${node.port}`]).status, 2);
    assert.match(spawnSync(process.execPath, [CLI, "--help"], { encoding: "utf8" }).stdout, /piccolo watch <key>/);
  });
});
