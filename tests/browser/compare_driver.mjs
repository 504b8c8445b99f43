// Runs the compare page (examples/compare) in Chromium for tests/browser_compare.rs.
// Usage: node compare_driver.mjs <page url> <screenshot path> [ms of ticks]
//
// Waits until every panel has ticks and their latency (and then the given ms more, default 0), clicks the burst button, waits until every panel counts
// the whole burst with a latency and its bytes per message, saves a screenshot of the page,
// and prints one JSON line: { panels: { <client>: { <field>: text } }, log: [...] }, what the
// panels show plus what the browser did meanwhile (console, errors, failed requests).
// A wait that runs out is not an error here: the panels are printed as they were, and the
// Rust test says what is missing. Exits 1 when the browser or the page cannot be driven.

import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { launchBrowser } from './launch.mjs';

const [pageUrl, screenshot, ticksMs = '0'] = process.argv.slice(2);
if (!pageUrl || !screenshot) {
  console.error('usage: node compare_driver.mjs <page url> <screenshot path>');
  process.exit(2);
}

/** Native and SockJS, four transports each, unless the page is told to open `only` some. */
const PANELS = new URL(pageUrl).searchParams.get('only')?.split(',').length ?? 8;

/** Every panel's fields, by client name: what a person sees on the page. */
function panels() {
  const out = {};
  for (const panel of document.querySelectorAll('[data-client]')) {
    const fields = {};
    for (const el of panel.querySelectorAll('[data-field]')) {
      fields[el.dataset.field] = el.textContent;
    }
    out[panel.dataset.client] = fields;
  }
  return out;
}

/** Whether `PANELS` panels exist and `done(fields)` holds for each. */
function every([count, done]) {
  const all = [...document.querySelectorAll('[data-client]')];
  const test = new Function('f', `return ${done}`);
  return (
    all.length === count &&
    all.every((panel) => {
      const f = {};
      for (const el of panel.querySelectorAll('[data-field]')) f[el.dataset.field] = el.textContent;
      return test(f);
    })
  );
}

const log = [];
const { context, close } = await launchBrowser();
try {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1400, height: 900 });
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text().slice(0, 300)}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => log.push(`failed ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));

  const wait = async (what, done, timeout) => {
    const started = Date.now();
    const ok = await page
      .waitForFunction(every, [PANELS, done], { timeout, polling: 100 })
      .then(() => true)
      .catch((err) => {
        if (err?.name !== 'TimeoutError') throw err;
        return false;
      });
    log.push(`${ok ? 'done' : 'timed out'}: ${what} (${Date.now() - started} ms)`);
    return ok;
  };

  await page.goto(pageUrl);
  const ticking = await wait(
    'every panel has ticks and their latency',
    "Number(f.ticks) > 0 && /\\d/.test(f['tick-p50'])",
    20000,
  );
  if (ticking) {
    await page.waitForTimeout(Number(ticksMs));
    await page.click('#burst');
    await wait(
      'every panel has the whole burst, its latency and its bytes',
      "/^(\\d+) \\/ \\1$/.test(f['burst-count']) && /\\d/.test(f['burst-p50']) && /\\d/.test(f['burst-down'])",
      30000,
    );
    // One more stats round and redraw, so the tick column covers the time after the burst.
    await page.waitForTimeout(1500);
  }
  await mkdir(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ panels: await page.evaluate(panels), log }));
} catch (err) {
  console.error(`compare_driver.mjs: ${err.stack || err}\nbrowser log so far:\n${log.join('\n')}`);
  process.exitCode = 1;
} finally {
  await close();
}
