/**
 * Drives one page of Debian's Firefox ESR for tests/web/test_web_firefox.py:
 * headless, over WebDriver BiDi with puppeteer-core (no browser download, no
 * geckodriver), with the prefs that give fake media and loopback ICE and keep
 * the profile off the network (../shared/DESIGN.md "Browsers").
 *
 *   node test/firefox-driver.mjs PROFILE_DIR
 *
 * It reads one JSON request per line on stdin, {id, op, args}, and answers
 * each with {id, ok, value} or {id, ok: false, error} on stdout; the page's
 * console messages and uncaught errors come as {event: 'console', type, text}
 * and {event: 'pageerror', text}. The ops mirror the few Playwright Page
 * methods the Chromium test uses (goto, fill, click, evaluate, inputValue,
 * isVisible, textContent, screenshot), so the pytest side shares its checks.
 */

import { createInterface } from 'node:readline';

import puppeteer from 'puppeteer-core';

/** Firefox ESR from Debian (.ci/setup installs it). */
export const FIREFOX = '/usr/bin/firefox-esr';

/** Fake camera and microphone, loopback ICE; nothing in the profile reaches the network. */
export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  // without it fake devices do not count as capturing, and only default-route addresses are gathered
  'media.navigator.permission.fake': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // telemetry and data reporting
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.server': '',
  'datareporting.healthreport.uploadEnabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  // captive portal and connectivity checks
  'network.captive-portal-service.enabled': false,
  'captivedetect.canonicalURL': '',
  'network.connectivity-service.enabled': false,
  // updates (application, add-ons, search engines, remote settings)
  'app.update.disabledForTesting': true,
  'app.update.auto': false,
  'extensions.update.enabled': false,
  'extensions.getAddons.cache.enabled': false,
  'browser.search.update': false,
  'services.settings.server': '',
  // DNS over HTTPS off by choice (mode 5), no resolver address
  'network.trr.mode': 5,
  'network.trr.uri': '',
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
};

const ARROW_OR_FUNCTION = /^\s*(async\s+)?(function\b|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)/;

/** A Playwright-style evaluate: a function's source with its argument, or an expression. */
function evaluate(page, source, arg) {
  if (!ARROW_OR_FUNCTION.test(source)) return page.evaluate(source);
  // eslint-disable-next-line no-new-func -- the test's own function source, run in the page
  const fn = new Function(`return (${source});`)();
  return page.evaluate(fn, arg);
}

const OPS = {
  goto: (page, url) => page.goto(url, { waitUntil: 'load' }).then(() => null),
  fill: async (page, selector, value) => {
    await page.$eval(selector, (el, v) => {
      el.value = v;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    }, value);
    return null;
  },
  click: (page, selector) => page.click(selector).then(() => null),
  evaluate,
  inputValue: (page, selector) => page.$eval(selector, (el) => el.value),
  isVisible: async (page, selector) => {
    const handle = await page.$(selector);
    return handle === null ? false : handle.isVisible();
  },
  textContent: (page, selector) => page.$eval(selector, (el) => el.textContent),
  screenshot: (page, path) => page.screenshot({ path, fullPage: true }).then(() => null),
};

function emit(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function main(profile) {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: FIREFOX_PREFS,
    defaultViewport: { width: 1100, height: 900 },
  });
  const page = await browser.newPage();
  page.on('console', (message) => emit({ event: 'console', type: message.type(), text: message.text() }));
  page.on('pageerror', (error) => emit({ event: 'pageerror', text: String(error?.message ?? error) }));
  emit({ event: 'ready', version: await browser.version() });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const { id, op, args = [] } = JSON.parse(line);
    if (op === 'close') break;
    try {
      if (!(op in OPS)) throw new Error(`unknown op ${op}`);
      emit({ id, ok: true, value: (await OPS[op](page, ...args)) ?? null });
    } catch (error) {
      emit({ id, ok: false, error: String(error?.message ?? error) });
    }
  }
  await browser.close();
  process.exit(0); // stdin stays open: the pytest side waits for this exit
}

// `node --test test/` runs every file under test/: this one is a driver, not a test.
if (!process.env.NODE_TEST_CONTEXT) {
  const profile = process.argv[2];
  if (!profile) {
    process.stderr.write('usage: node test/firefox-driver.mjs PROFILE_DIR (run by tests/web/test_web_firefox.py)\n');
    process.exit(2);
  }
  main(profile).catch((error) => {
    process.stderr.write(`firefox-driver: ${error?.stack ?? error}\n`);
    process.exit(1);
  });
}
