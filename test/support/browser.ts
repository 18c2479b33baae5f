// A real browser for the web console's tests: Debian's chromium, driven by
// playwright-core (which never downloads a browser of its own). Absent
// chromium, browserOrSkip() says so and the caller skips, as the codegen test
// does without capnp; CI installs it (.ci/run).
import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = process.env.PICCOLO_CHROMIUM ?? "/usr/bin/chromium";

export const NO_CHROMIUM = `chromium is not at ${CHROMIUM} (apt-get install chromium, or set PICCOLO_CHROMIUM): the console's browser tests are skipped`;

/** Chromium, headless, or null when it is not installed. */
export async function launchBrowser(): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) return null;
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
}

export interface GuardedPage {
  page: Page;
  /** Every URL the page asked for that was not on `origin` (each was refused). */
  foreign: string[];
  /** console.error lines and uncaught exceptions, except the network lines of the statuses a test expects. */
  errors: string[];
  /** Requests answered with a status of 400 or more: "STATUS METHOD URL". */
  failed: string[];
}

/**
 * A page that may talk to `origin` only: any other request is aborted and
 * recorded. Console errors and page errors are collected. Chromium logs every
 * answer of 400 or more as a console error ("Failed to load resource ...");
 * those are the API's answers the console shows in words, so they are kept in
 * `failed` (for the test to check against what it provoked), not in `errors`.
 */
export async function guardedPage(browser: Browser, origin: string): Promise<GuardedPage> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // Fail a step in 10 s, not Playwright's 30: a story of a dozen steps must not outlast the file's bound.
  page.setDefaultTimeout(10_000);
  const g: GuardedPage = { page, foreign: [], errors: [], failed: [] };
  await page.route("**/*", async (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`) || url.startsWith("data:")) await route.continue();
    else {
      g.foreign.push(url);
      await route.abort("blockedbyclient");
    }
  });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (/^Failed to load resource: the server responded with a status of \d+/.test(m.text())) return;
    g.errors.push(m.text());
  });
  page.on("pageerror", (e) => g.errors.push(`uncaught: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) g.failed.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return g;
}
