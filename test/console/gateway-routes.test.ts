// The gateway's routes behind the web console, over plain HTTP (no browser):
//
//   /ui              the page, script and stylesheet, with a strict CSP, no credentials needed
//   /v1/stats        the last whole second's data requests (the Live chart)
//   /v1/cluster      members and partitions, as the caller: 401 anonymous, 200 for a reader;
//                    501 in words in front of a single node
//   /v1/auth/whoami  the caller's user and permissions: the viewer reads only, the admin
//                    may do everything, anonymous is 401
//   /v1/cluster/transfer-leader, /v1/cluster/replace
//                    admin actions: a reader is refused 403 by the node and nothing moves;
//                    the admin hands a partition over, and moves n3's replicas to a new n4
//
// Real processes on 127.0.0.1: a single node, and a three-member cluster (8
// partitions, to keep the replace short) whose default user has a password,
// with a read-only user "viewer" made on each member with ACL SETUSER.
//
// And, in the browser (chromium, as console.test.ts), what only this cluster
// with users can show: anonymous is told in words to sign in; the viewer
// signs in through the console's form, sees the cluster, is not offered the
// admin actions (the node says it is no admin) and is told why; signs out.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import type { Browser } from "playwright-core";
import { parseMembers, place } from "../../src/cluster/placement.js";
import { initHash } from "../../src/hash.js";
import { basic, secretFile } from "../cerializer/security-gateway.js";
import { guardedPage, launchBrowser, NO_CHROMIUM } from "../support/browser.js";
import { P, problem, type RunningGateway, startGateway } from "../support/cerializer.js";
import { eventually } from "../support/eventually.js";
import { freePort, type RunningNode, startNode } from "../support/node.js";

const PASSWORD = "console-admin-password";
const ADMIN = { authorization: basic("default", PASSWORD) };
const VIEWER = { authorization: basic("viewer", "viewer-pw") };

let root = "";
let browser: Browser | null = null;
let single: RunningNode;
let singleGw: RunningGateway;
const members: RunningNode[] = [];
let gw: RunningGateway;
let bootstrap = "";
let joined = "";
const passwordFile = secretFile(PASSWORD);

function startMember(i: number): Promise<RunningNode> {
  return startNode([
    "--node-id",
    `n${i + 1}`,
    "--cluster",
    bootstrap,
    ...(i === 3 ? ["--joined", joined] : []),
    "--data-dir",
    join(root, `n${i + 1}`),
    "--partitions",
    "8",
    "--requirepass-file",
    passwordFile,
  ]);
}

interface Status {
  self: number;
  members: { id: number; name: string; answered: boolean; asked: boolean; connected: boolean }[];
  partitions: { partition: number; leader: number; term: number; replicas: number[]; learners: number[] }[];
}

async function status(): Promise<Status> {
  const r = await gw.fetch("/v1/cluster", { headers: ADMIN });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as Status;
}

const post = (path: string, body: unknown, headers: Record<string, string>) =>
  gw.fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

before(async () => {
  root = await mkdtemp(join(tmpdir(), "piccolo-console-routes-"));
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  bootstrap = ports
    .slice(0, 3)
    .map((p, i) => `n${i + 1}=127.0.0.1:${p}`)
    .join(",");
  joined = `n4=127.0.0.1:${ports[3]}`;
  const started = await Promise.all([startNode(["--in-memory"]), ...[0, 1, 2].map(startMember)]);
  single = started[0]!;
  members.push(...started.slice(1));
  // Users are per member (docs/security.md): the same read-only user on each.
  for (const m of members) {
    const r = new Redis({ host: "127.0.0.1", port: m.respPort, password: PASSWORD, maxRetriesPerRequest: 1 });
    try {
      await r.call("ACL", "SETUSER", "viewer", "on", ">viewer-pw", "~*", "+@read");
    } finally {
      r.disconnect();
    }
  }
  [singleGw, gw] = await Promise.all([
    startGateway([single.port]),
    startGateway(
      members.map((m) => m.port),
      ["--cluster", "true", "--password-file", passwordFile],
    ),
  ]);
  await eventually(
    "the cluster gateway is ready",
    async () => {
      assert.equal((await gw.fetch("/readyz")).status, 200);
    },
    30_000,
  );
});

after(async () => {
  await browser?.close();
  await Promise.all([singleGw?.stop(), gw?.stop()]);
  await Promise.all([single?.stop(), ...members.map((m) => m.stop())]);
  if (root !== "") await rm(root, { recursive: true, force: true });
});

describe("the console's routes on the gateway", () => {
  it("/ui: the page, its script and stylesheet, with a strict Content-Security-Policy; an unknown file is 400", async () => {
    for (const [path, type] of [
      ["/ui", "text/html"],
      ["/ui/", "text/html"],
      ["/ui/app.js", "text/javascript"],
      ["/ui/app.css", "text/css"],
    ] as const) {
      // No credentials, even on the cluster gateway whose nodes need them: the files hold no data.
      const r = await gw.fetch(path);
      assert.equal(r.status, 200, path);
      assert.ok(r.headers.get("content-type")?.startsWith(type), `${path}: ${r.headers.get("content-type")}`);
      const csp = r.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/, "no inline script, no eval, no other host");
      assert.match(csp, /connect-src 'self'(;|$)/);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
      const body = await r.text();
      if (path === "/ui") assert.match(body, /<script type="module" src="\/ui\/app\.js"><\/script>/);
      if (path === "/ui/app.js") assert.ok(body.length > 10_000, "the bundle");
    }
    // Every asset the page names is served by the gateway itself: no CDN.
    const page = await (await gw.fetch("/ui")).text();
    for (const m of page.matchAll(/(?:src|href)="([^"]+)"/g))
      assert.ok(m[1]!.startsWith("/ui/") || m[1] === "data:,", `the page loads ${m[1]}`);
    const unknown = await gw.fetch("/ui/secrets.txt");
    assert.equal(unknown.status, 400);
    assert.equal((await problem(unknown)).type, P("invalid-request"));
  });

  it("/v1/stats: the last whole second's data requests, with latency percentiles", async () => {
    let writing = true;
    const load = (async () => {
      for (let i = 0; writing; i++) {
        await (await singleGw.fetch(`/v1/kv/stats-${i % 10}`, { method: "PUT", body: "x" })).arrayBuffer();
        await sleep(5);
      }
    })();
    try {
      const last = await eventually("a second with requests", async () => {
        const s = (await (await singleGw.fetch("/v1/stats")).json()) as {
          gateway: { lastSecond: { startMs: number; requests: number; errors: number; p50Ms: number; p99Ms: number } };
        };
        assert.ok(s.gateway.lastSecond.requests > 0, JSON.stringify(s.gateway.lastSecond));
        return s.gateway.lastSecond;
      });
      assert.equal(last.startMs % 1000, 0, "aligned to a second");
      assert.ok(last.startMs <= Date.now() - 1000 && last.startMs > Date.now() - 3000, "the last whole second");
      assert.equal(last.errors, 0);
      assert.ok(last.p50Ms > 0 && last.p99Ms >= last.p50Ms, JSON.stringify(last));
    } finally {
      writing = false;
      await load;
    }
  });

  it("/v1/cluster in front of a single node: 501, saying why", async () => {
    const r = await singleGw.fetch("/v1/cluster");
    assert.equal(r.status, 501);
    const p = await problem(r);
    assert.equal(p.type, P("not-implemented"));
    assert.match(p.detail, /not in front of a cluster/);
  });

  it("/v1/cluster: anonymous is 401; a read-only user sees three members up and every partition led", async () => {
    const anon = await gw.fetch("/v1/cluster");
    assert.equal(anon.status, 401);
    assert.equal((await problem(anon)).type, P("unauthorized"));
    assert.match(anon.headers.get("www-authenticate") ?? "", /^Basic /, "curl and other clients are offered Basic");
    // A script's request (the console's) is offered Bearer: a browser then shows no login dialog of its own.
    const script = await gw.fetch("/v1/cluster", { headers: { "x-requested-with": "XMLHttpRequest" } });
    assert.equal(script.status, 401);
    assert.equal(script.headers.get("www-authenticate"), 'Bearer realm="piccolo"');
    await script.arrayBuffer();
    await eventually("three members, eight partitions, each with a leader", async () => {
      const r = await gw.fetch("/v1/cluster", { headers: VIEWER });
      assert.equal(r.status, 200, await r.clone().text());
      const s = (await r.json()) as Status;
      assert.deepEqual(
        s.members.map((m) => [m.name, m.answered]),
        [
          ["n1", true],
          ["n2", true],
          ["n3", true],
        ],
      );
      assert.equal(s.partitions.length, 8);
      for (const p of s.partitions) {
        assert.ok(p.leader > 0 && p.term > 0, `partition ${p.partition} has a leader`);
        assert.equal(p.replicas.length, 3);
      }
    });
  });

  it("transfer-leader: refused to a read-only user (403, nothing moves); the admin hands partition 0 over", async () => {
    // Rebalancing first hands partition 0 to its preferred leader (after a start, an election may have put it
    // elsewhere): until then its leader can move by itself, and "nothing moved" would mean nothing.
    await initHash();
    const preferred = place(parseMembers(bootstrap), 8)[0]!.preferredLeader;
    await eventually("partition 0 led by its preferred leader", async () => {
      assert.equal((await status()).partitions[0]!.leader, preferred);
    });
    const before = await status();
    const from = before.partitions[0]!.leader;
    const to = before.members.find((m) => m.id !== from)!.id;
    const refused = await post("/v1/cluster/transfer-leader", { partition: 0, member: to }, VIEWER);
    assert.equal(refused.status, 403);
    const p = await problem(refused);
    assert.equal(p.type, P("forbidden"));
    assert.equal(p.code, "NOPERM");
    await sleep(500);
    assert.equal((await status()).partitions[0]!.leader, from, "the refused transfer moved nothing");

    const bad = await post("/v1/cluster/transfer-leader", { partition: "zero", member: to }, ADMIN);
    assert.equal(bad.status, 400);
    assert.equal((await problem(bad)).type, P("invalid-request"));

    await eventually("partition 0 led by the member it was handed to", async () => {
      if ((await status()).partitions[0]!.leader !== to) {
        const ok = await post("/v1/cluster/transfer-leader", { partition: 0, member: to }, ADMIN);
        assert.equal(ok.status, 200, await ok.clone().text());
        await sleep(200);
      }
      assert.equal((await status()).partitions[0]!.leader, to);
    });
  });

  it("/v1/auth/whoami: the caller's user and permissions, as the node knows them; 401 anonymous", async () => {
    const viewer = await gw.fetch("/v1/auth/whoami", { headers: VIEWER });
    assert.equal(viewer.status, 200);
    assert.deepEqual(await viewer.json(), { user: "viewer", read: true, write: false, admin: false, allKeys: true });
    const admin = await gw.fetch("/v1/auth/whoami", { headers: ADMIN });
    assert.deepEqual(await admin.json(), { user: "default", read: true, write: true, admin: true, allKeys: true });
    const anonymous = await gw.fetch("/v1/auth/whoami");
    assert.equal(anonymous.status, 401);
    assert.equal((await problem(anonymous)).code, "NOAUTH");
  });

  it("in the browser: anonymous is told to sign in; the viewer signs in, sees the cluster, is not offered the admin actions and is told why, signs out", async (t) => {
    browser = await launchBrowser();
    if (browser === null) return t.skip(NO_CHROMIUM);
    const g = await guardedPage(browser, gw.url);
    const page = g.page;
    await page.goto(`${gw.url}/ui#/cluster`);
    const error = page.getByTestId("error").first();
    await error.waitFor();
    assert.match((await error.textContent()) ?? "", /^401 /, "the refusal, in words");

    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("User").fill("viewer");
    await page.getByLabel("Password").fill("viewer-pw");
    await page.getByRole("form", { name: "Sign in" }).getByRole("button", { name: "Sign in" }).click();
    await page.getByText("Signed in as").waitFor();
    assert.equal(await page.locator(".user strong").textContent(), "viewer");
    await page.getByTestId("member-n1").getByTestId("member-state").filter({ hasText: "up" }).waitFor();

    // The node says the viewer is no admin (whoami): the admin actions are not offered, and the page says why.
    const needed = page.getByRole("region", { name: "Admin actions" }).getByTestId("admin-needed");
    await needed.waitFor();
    assert.match((await needed.textContent()) ?? "", /need a user with admin permission, which viewer does not have/);
    assert.equal(await page.getByRole("button", { name: "Transfer leadership…" }).count(), 0);

    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByText("anonymous").waitFor();
    assert.deepEqual(g.foreign, [], "requests to other hosts");
    assert.deepEqual(g.errors, [], "console errors");
    for (const f of g.failed) assert.match(f, /^401 GET .*\/v1\/(cluster|auth\/whoami)$/, f);
  });

  it("replace: refused to a read-only user; the admin moves n3's replicas to a new member n4, a step per post", async () => {
    members.push(await startMember(3));
    await eventually(
      "the cluster knows n4",
      async () => assert.ok((await status()).members.some((m) => m.name === "n4" && m.connected)),
      20_000,
    );
    // Before it holds a replica the gateway does not ask it, and says so rather than calling it down.
    const early = (await status()).members.find((m) => m.name === "n4")!;
    assert.ok(!early.answered || early.asked, "a member is shown answering only if the gateway asked it");
    const s = await status();
    const id = (name: string) => s.members.find((m) => m.name === name)!.id;
    const [n3, n4] = [id("n3"), id("n4")];

    const refused = await post("/v1/cluster/replace", { old: n3, new: n4 }, VIEWER);
    assert.equal(refused.status, 403, await refused.clone().text());
    assert.equal((await problem(refused)).code, "NOPERM");
    const unknown = await post("/v1/cluster/replace", { old: n3, new: 99 }, ADMIN);
    assert.equal(unknown.status, 400);
    assert.match((await problem(unknown)).detail, /no member with id 99/);

    let r = (await (await post("/v1/cluster/replace", { old: n3, new: n4 }, ADMIN)).json()) as {
      partitions: number[];
      pending: number[];
      moved: number[];
    };
    assert.equal(r.partitions.length, 8, "n3 holds a replica of every partition");
    const end = Date.now() + 90_000;
    while (r.pending.length > 0) {
      assert.ok(Date.now() < end, `still pending after 90 s: ${r.pending.join(",")}`);
      await sleep(300);
      const res = await post("/v1/cluster/replace", { old: n3, new: n4, partitions: r.partitions }, ADMIN);
      assert.equal(res.status, 200, await res.clone().text());
      r = (await res.json()) as typeof r;
    }
    assert.deepEqual([...r.moved].sort(), [...r.partitions].sort());
    await eventually("the gateway asks n4 once it holds replicas", async () => {
      const n4m = (await status()).members.find((m) => m.name === "n4")!;
      assert.ok(n4m.asked && n4m.answered);
    });
    for (const p of (await status()).partitions) {
      assert.ok(!p.replicas.includes(n3) && !p.learners.includes(n3), `partition ${p.partition} left n3`);
      assert.ok(p.replicas.includes(n4), `partition ${p.partition} has n4`);
    }
  });

  it("drain and forget: refused to a read-only user; forget refused while a member holds replicas; the admin forgets n3 once replaced, and n3 stops", async () => {
    const s = await status();
    const id = (name: string) => s.members.find((m) => m.name === name)!.id;
    const [n1, n3] = [id("n1"), id("n3")];
    for (const path of ["/v1/cluster/drain", "/v1/cluster/forget"]) {
      const refused = await post(path, { member: n1 }, VIEWER);
      assert.equal(refused.status, 403, `${path}: ${await refused.clone().text()}`);
      const unknown = await post(path, { member: 99 }, ADMIN);
      assert.equal(unknown.status, 400);
      assert.match((await problem(unknown)).detail, /no member with id 99/);
    }
    // n1 holds replicas of every partition: nothing changes.
    const holds = (await (await post("/v1/cluster/forget", { member: n1 }, ADMIN)).json()) as {
      holds: number[];
      told: string[];
    };
    assert.equal(holds.holds.length, 8);
    assert.deepEqual(holds.told, []);
    // n3 holds nothing since the replace above: every member asked forgets it, and n3 stops (exit 72).
    const n3Exit = new Promise<number | null>((resolve) => members[2]!.process.once("exit", resolve));
    const res = await post("/v1/cluster/forget", { member: n3 }, ADMIN);
    assert.equal(res.status, 200, await res.clone().text());
    const r = (await res.json()) as { holds: number[]; unknown: number[]; told: string[]; refused: unknown[] };
    assert.deepEqual([r.holds, r.unknown, r.refused], [[], [], []]);
    assert.deepEqual(r.told, ["n1", "n2", "n4"]);
    assert.equal(await n3Exit, 72);
    // Drain one step for n1: it answers the partitions n1 led when asked.
    const d = await post("/v1/cluster/drain", { member: n1 }, ADMIN);
    assert.equal(d.status, 200, await d.clone().text());
    const body = (await d.json()) as { led: number[]; asked: number };
    assert.ok(Array.isArray(body.led) && body.asked <= body.led.length);
  });
});
