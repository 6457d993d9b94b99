// Drives the berth dashboard in a real browser (Debian's chromium, through
// playwright-core: no browser download) for cli/tests/all/dashboard.rs.
//
//   node scale.mjs URL DEPLOYMENT SCREENSHOT
//
// URL is what `berth dashboard` prints (with ?token=), DEPLOYMENT is
// `namespace/name`. The script opens the page, waits until it shows the
// Deployment with 1 ready replica and prints "SEEN 1"; the test then
// scales it to 3. The script waits until the page shows 3 ready, checks
// that the page was never reloaded or navigated, saves SCREENSHOT and
// prints "SEEN 3". Any failure exits non-zero with the reason on stderr.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const [url, deployment, screenshot] = process.argv.slice(2);
if (!url || !deployment || !screenshot) {
  console.error("usage: node scale.mjs URL NAMESPACE/NAME SCREENSHOT");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
// Generous: the first wait includes the instance starting.
const TIMEOUT_MS = 120_000;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Playwright makes a fresh, empty profile directory for each launch.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  let navigations = 0;
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });

  const response = await page.goto(url, { waitUntil: "load" });
  if (!response || !response.ok()) {
    throw new Error(`GET ${url}: ${response ? response.status() : "no response"}`);
  }
  if (new URL(page.url()).searchParams.has("token")) {
    throw new Error(`the token stayed in the address: ${page.url()}`);
  }
  const card = (ready) =>
    `[data-deployment="${deployment}"][data-ready="${ready}"][data-desired="${ready}"]`;

  await page.waitForSelector(card(1), { timeout: TIMEOUT_MS });
  const loadedOnce = navigations;
  // A marker that only survives if the document is never replaced.
  await page.evaluate(() => {
    window.__berthMarker = "still here";
  });
  console.log("SEEN 1");

  await page.waitForSelector(card(3), { timeout: TIMEOUT_MS });
  const marker = await page.evaluate(() => window.__berthMarker);
  const documents = await page.evaluate(
    () => performance.getEntriesByType("navigation").length,
  );
  if (marker !== "still here" || navigations !== loadedOnce || documents !== 1) {
    throw new Error(
      `the page reloaded (marker ${marker}, navigations ${loadedOnce} then ${navigations}, ` +
        `navigation entries ${documents})`,
    );
  }
  const live = await page.textContent("#connection");
  if (!live || !live.startsWith("live")) {
    throw new Error(`the page is not live: ${live}`);
  }
  if (problems.length) {
    throw new Error(problems.join("; "));
  }
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("SEEN 3");
} catch (e) {
  console.error(`dashboard check failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
