#!/usr/bin/env node
// `npm run screenshots`: PNGs of each page of the web console, for
// docs/console.md, so the pictures there are of the console as it is built.
// Starts a real three-member cluster (64 partitions) and a gateway on
// 127.0.0.1 from the build, writes a few keys, runs a light load so the
// charts have something to draw, and photographs each view with Debian's
// chromium (playwright-core; nothing is downloaded). Writes docs/console/*.png.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(root, "dist/src/cli/main.js");
const OUT = join(root, "docs/console");
const CHROMIUM = process.env.PICCOLO_CHROMIUM ?? "/usr/bin/chromium";
if (!existsSync(CHROMIUM)) {
  console.error(`chromium is not at ${CHROMIUM}: apt-get install chromium (or set PICCOLO_CHROMIUM)`);
  process.exit(2);
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const children = [];
/** Runs the CLI; resolves with the first stdout match of `ready` (its first group). */
function start(args, ready) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let err = "";
  child.stderr.on("data", (d) => {
    err += d;
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited with ${code}:\n${err}`)));
  });
}

const data = mkdtempSync(join(tmpdir(), "piccolo-screenshots-"));
const stopAll = () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(data, { recursive: true, force: true });
};
process.on("exit", stopAll);

try {
  const peers = await Promise.all([freePort(), freePort(), freePort()]);
  const list = peers.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
  const members = await Promise.all(
    [0, 1, 2].map(async (i) =>
      start(
        [
          "server",
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--resp-port",
          String(await freePort()),
          "--node-id",
          `n${i + 1}`,
          "--cluster",
          list,
          "--data-dir",
          join(data, `n${i + 1}`),
          // Every request in the slow log, so its picture has entries (the default logs 10 ms or more).
          "--slowlog-slower-than",
          "0",
        ],
        /listening on 127\.0\.0\.1:(\d+)/,
      ),
    ),
  );
  const gw = await start(
    [
      "cerializer",
      "--host",
      "127.0.0.1",
      "--http-port",
      "0",
      "--cluster",
      "true",
      "--nodes",
      members.map((m) => `127.0.0.1:${m.port}`).join(","),
    ],
    /cerializer listening on http:\/\/127\.0\.0\.1:(\d+)/,
  );
  const url = `http://127.0.0.1:${gw.port}`;
  for (let i = 0; i < 100 && (await fetch(`${url}/readyz`)).status !== 200; i++) await sleep(200);
  const put = async (key, value, query = "") => {
    for (let i = 0; i < 50; i++) {
      const r = await fetch(`${url}/v1/kv/${encodeURIComponent(key)}${query}`, { method: "PUT", body: value });
      await r.arrayBuffer();
      if (r.ok) return;
      await sleep(100);
    }
    throw new Error(`could not write ${key}`);
  };
  await put("user:1", JSON.stringify({ name: "Ada Lovelace", born: 1815, languages: ["en", "fr"] }));
  await put("user:2", JSON.stringify({ name: "Grace Hopper", born: 1906 }));
  await put("user:3", JSON.stringify({ name: "Edsger Dijkstra", born: 1930 }));
  await put("session:42", "token-7f3a9c", "?ttl=3600000");
  await put("config/feature-flags", "dark-mode=on\nnew-console=on\n");
  await put("blob:thumbnail", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48]));
  for (let i = 0; i < 20; i++) await put(`order:${1000 + i}`, JSON.stringify({ items: i + 1, total: (i + 1) * 9.5 }));

  // A light load, so the Live charts have a line to draw.
  let loading = true;
  const load = (async () => {
    for (let i = 0; loading; i++) {
      await put(`load:${i % 50}`, String(i));
      await (await fetch(`${url}/v1/kv/load:${i % 50}`)).arrayBuffer();
      await sleep(4);
    }
  })();

  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const shot = async (name, theme, hash, prepare) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: theme });
    const page = await context.newPage();
    await page.goto(`${url}/ui${hash}`);
    await prepare(page);
    await page.screenshot({ path: join(OUT, `${name}.png`) });
    console.log(`docs/console/${name}.png`);
    await context.close();
  };
  await shot("keys", "light", "#/keys/user:1", async (page) => {
    await page.locator("#prefix").fill("");
    await page.getByRole("button", { name: "List" }).click();
    await page.getByTestId("value").waitFor();
    await page.getByTestId("key-list").locator("a").first().waitFor();
  });
  await shot("keys-dark", "dark", "#/keys/blob:thumbnail", async (page) => {
    await page.getByTestId("value").waitFor();
    await page.getByTestId("key-list").locator("a").first().waitFor();
  });
  await shot("conflict", "light", "#/keys/user:2", async (page) => {
    await page.getByRole("button", { name: "Edit" }).click();
    await page.locator("#editor").fill(JSON.stringify({ name: "Grace Brewster Hopper", born: 1906 }));
    await put("user:2", JSON.stringify({ name: "Grace Hopper", born: 1906, rank: "Rear Admiral" }));
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByTestId("conflict").waitFor();
    await page.getByTestId("key-list").locator("a").first().waitFor();
  });
  await shot("live", "light", "#/live", async (page) => {
    await page.getByLabel("Key or prefix").fill("order:");
    await page.getByRole("button", { name: "Watch", exact: true }).click();
    await page.getByTestId("watch-state").filter({ hasText: "watching" }).waitFor();
    for (let i = 0; i < 4; i++) await put(`order:${1000 + i}`, JSON.stringify({ items: i + 2, total: (i + 2) * 9.5 }));
    await sleep(12_000);
  });
  await shot("cluster", "light", "#/cluster", async (page) => {
    await page.getByTestId("partition-grid").locator("td[data-state=leader]").nth(63).waitFor();
  });
  await shot("trace", "light", "#/keys/user:3", async (page) => {
    await page.getByTestId("trace-toggle").check();
    await page.getByRole("button", { name: "Edit" }).click();
    await page.locator("#editor").fill(JSON.stringify({ name: "Edsger W. Dijkstra", born: 1930 }));
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByTestId("waterfall").waitFor();
    await page.getByTestId("key-list").locator("a").first().waitFor();
    await page.getByTestId("waterfall").scrollIntoViewIfNeeded();
  });
  // The load stops, so the slow log's newest entries are the traced put and the page's own requests.
  loading = false;
  await load.catch(() => {});
  await put("order:1000", JSON.stringify({ items: 3, total: 28.5 }), "?trace=1");
  await shot("slowlog", "dark", "#/live", async (page) => {
    const entry = page.getByTestId("slowlog-entry").filter({ hasText: "put order:1000" }).first();
    await entry.getByRole("button", { name: /^Show/ }).click();
    await page.getByRole("region", { name: /^Timeline of slow request/ }).waitFor();
    await page.getByRole("region", { name: "Slow log" }).scrollIntoViewIfNeeded();
    await page.evaluate(() =>
      window.scrollBy(0, document.querySelector("[aria-label='Slow log']").getBoundingClientRect().top - 8),
    );
  });
  members[2].child.kill("SIGKILL");
  await shot("cluster-member-down", "dark", "#/cluster", async (page) => {
    await page.getByTestId("member-n3").getByText("down").waitFor();
    await sleep(1500);
  });
  await browser.close();
} finally {
  stopAll();
}
