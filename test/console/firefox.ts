// Firefox for the web console's tests: Debian's firefox-esr, driven by
// puppeteer-core over WebDriver BiDi, the W3C protocol stock Firefox speaks
// (Playwright drives only a Firefox it patches and downloads; decision 0306).
// puppeteer-core never downloads a browser. Absent firefox-esr, launchFirefox()
// answers null and the caller skips with NO_FIREFOX; CI installs it (.ci/run).
import { existsSync } from "node:fs";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export const FIREFOX = process.env.PICCOLO_FIREFOX ?? "/usr/bin/firefox-esr";

export const NO_FIREFOX = `firefox-esr is not at ${FIREFOX} (apt-get install firefox-esr, or set PICCOLO_FIREFOX): the console's Firefox tests are skipped`;

/**
 * Firefox, headless, or null when it is not installed. puppeteer makes a fresh
 * profile in the temporary directory for each launch (its own preferences:
 * no first-run pages, no update checks, BiDi on) and removes it on close, so
 * nothing is shared with a person's profile or another test run. Under root
 * in a container nothing more is needed: Firefox, unlike Chromium, has no
 * sandbox that refuses root, and `headless: true` (Firefox's --headless,
 * which is what MOZ_HEADLESS=1 also sets) needs no display.
 */
export async function launchFirefox(): Promise<Browser | null> {
  if (!existsSync(FIREFOX)) return null;
  return puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    // The launch itself takes 3-5 s on a loaded 2-core machine; puppeteer's default bound is 30 s.
    timeout: 60_000,
  });
}

export interface GuardedFirefoxPage {
  page: Page;
  /** Every URL the page asked for that was not on `origin` (each was refused). */
  foreign: string[];
  /** console.error lines and uncaught exceptions. */
  errors: string[];
  /** Requests answered with a status of 400 or more: "STATUS METHOD URL". */
  failed: string[];
}

/**
 * A page that may talk to `origin` only, as test/support/browser.ts's
 * guardedPage() does for Chromium: any other request is aborted and recorded;
 * console errors and uncaught exceptions are collected. (Firefox does not log
 * an answer of 400 or more as a console error, as Chromium does, so nothing
 * needs leaving out of `errors`.)
 */
export async function guardedFirefoxPage(browser: Browser, origin: string): Promise<GuardedFirefoxPage> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  // Fail a step in 10 s, not puppeteer's 30: a story of a dozen steps must not outlast the file's bound.
  page.setDefaultTimeout(10_000);
  const g: GuardedFirefoxPage = { page, foreign: [], errors: [], failed: [] };
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    const url = request.url();
    if (url.startsWith(`${origin}/`) || url.startsWith("data:")) void request.continue();
    else {
      g.foreign.push(url);
      void request.abort("blockedbyclient");
    }
  });
  page.on("console", (m) => {
    if (m.type() === "error") g.errors.push(m.text());
  });
  page.on("pageerror", (e) => g.errors.push(`uncaught: ${(e as Error).message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) g.failed.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return g;
}
