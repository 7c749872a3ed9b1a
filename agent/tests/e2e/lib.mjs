// Shared helpers of the browser tests: Debian chromium through playwright-core with a fresh
// profile and no background networking, a guard that aborts (and records) every request
// beyond loopback, axe-core, screenshots, and DOM waits.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

export const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `environment variable ${name} is required (agent/tests/it/web.rs sets it)`);
  return v;
};

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-domain-reliability',
  '--disable-client-side-phishing-detection',
  '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater',
  '--metrics-recording-only',
  '--password-store=basic',
];

/** Headless Debian chromium. Playwright gives it a new, empty `--user-data-dir`. */
export async function launch() {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (bash scripts/setup.sh)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

function loopback(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * A fresh browser context (its own storage) whose every non-loopback request is aborted and
 * recorded, with one page. Page errors, console errors and CSP violations are recorded too.
 */
export async function session(browser, viewport, label) {
  const context = await browser.newContext({ viewport, serviceWorkers: 'block', acceptDownloads: false });
  const problems = { blocked: [], errors: [], csp: [] };
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === 'http:' || url.protocol === 'https:') && loopback(url.hostname)) return route.continue();
    problems.blocked.push(url.href);
    return route.abort('blockedbyclient');
  });
  context.on('request', (req) => {
    const u = req.url();
    if (/^(https?|wss?):/.test(u) && !loopback(new URL(u).hostname)) problems.blocked.push(u);
  });
  const page = await context.newPage();
  page.on('websocket', (ws) => problems.blocked.push(`websocket ${ws.url()}`));
  page.on('pageerror', (e) => problems.errors.push(`${label}: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (/Content.Security.Policy/i.test(text)) problems.csp.push(`${label}: ${text}`);
    else if (m.type() === 'error' && !/status of (401|403|404|409|422)/.test(text)) problems.errors.push(`${label}: console: ${text}`);
  });
  page.setDefaultTimeout(30_000);
  return { context, page, problems };
}

/** Fails on any request beyond loopback, page error or CSP violation seen so far. */
export function assertClean(problems, label) {
  assert.deepEqual(problems.blocked, [], `${label}: the page tried to reach beyond loopback`);
  assert.deepEqual(problems.csp, [], `${label}: Content-Security-Policy violations`);
  assert.deepEqual(problems.errors, [], `${label}: errors in the page`);
}

const AXE = readFileSync(require.resolve('axe-core'), 'utf8');

/**
 * Runs axe-core in the page and fails on any serious or critical violation. The script is
 * evaluated through the DevTools protocol rather than as a `<script>` the page's CSP would
 * (rightly) refuse.
 */
export async function axeCheck(page, label) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe-core (${label}): serious or critical violations`);
  const minor = result.filter((v) => !bad.includes(v));
  if (minor.length) console.log(`axe-core (${label}): minor: ${minor.map((v) => `${v.id} (${v.impact})`).join(', ')}`);
  console.log(`axe-core (${label}): no serious or critical violation`);
}

let shotCount = 0;
export async function shot(page, name, fullPage = true) {
  const dir = env('SCREENSHOT_DIR');
  mkdirSync(dir, { recursive: true });
  shotCount += 1;
  const file = join(dir, `${String(shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage });
  console.log(`screenshot ${file}`);
}

export async function text(page, selector) {
  return (await page.locator(selector).first().textContent()).trim();
}

/** Waits until the element's text matches `re`; the error names what it last saw. */
export async function waitText(page, selector, re, timeout = 30_000) {
  const started = Date.now();
  let last = '';
  for (;;) {
    const loc = page.locator(selector).first();
    if (await loc.count()) {
      last = ((await loc.textContent()) || '').trim();
      if (re.test(last)) return last;
    }
    assert.ok(Date.now() - started < timeout, `waited ${timeout} ms for ${selector} to match ${re}; it says: ${JSON.stringify(last)}`);
    await page.waitForTimeout(100);
  }
}

export async function activeId(page) {
  return page.evaluate(() => (document.activeElement ? document.activeElement.id : ''));
}

/** Presses Tab until the element with `id` has focus (keyboard only). */
export async function tabTo(page, id, max = 80) {
  for (let i = 0; i < max; i++) {
    if ((await activeId(page)) === id) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`#${id} never got the focus by Tab (at ${await activeId(page)})`);
}

export async function noSidewaysScroll(page, width, label) {
  const sizes = await page.evaluate((w) => {
    // The outermost elements that stick out, to name in a failure.
    const wide = [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > w + 0.5 && !(e.parentElement && e.parentElement.getBoundingClientRect().right > w + 0.5))
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}.${e.className} (${Math.round(e.getBoundingClientRect().right)} px)`);
    return { scroll: document.documentElement.scrollWidth, body: document.body.scrollWidth, wide };
  }, width);
  assert.ok(sizes.scroll <= width && sizes.body <= width, `${label}: the page scrolls sideways at ${width} px (${JSON.stringify(sizes)})`);
}
