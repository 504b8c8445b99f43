// Opens one test page in Chromium and prints what it saw. The page (served by the Rust test,
// script in echo_page.mjs) runs the real sockjs-client against a Tidings server.
// Usage: node sockjs_echo.mjs <page url>
// Prints one JSON line: the page's report ({ transport, closeTransport, events }) plus `log`,
// what the browser did meanwhile (requests, console, errors), for failure messages.
// Exits 1 when the browser or the page cannot be driven at all.
import { launchBrowser } from './launch.mjs';

const [pageUrl] = process.argv.slice(2);
if (!pageUrl) {
  console.error('usage: node sockjs_echo.mjs <page url>');
  process.exit(2);
}

/** Long URLs (jsonp sends, 100 KiB payloads in query strings) are cut to keep logs short. */
const short = (url) => (url.length > 160 ? `${url.slice(0, 160)}...` : url);

const log = [];
const { context, close } = await launchBrowser();
try {
  const page = await context.newPage();
  // Console messages and responses of the hidden SockJS iframes arrive on the page too.
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text().slice(0, 300)}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  page.on('response', (r) => {
    if (!r.url().endsWith('/favicon.ico')) {
      log.push(`${r.status()} ${r.request().method()} ${short(r.url())}`);
    }
  });
  page.on('requestfailed', (r) => {
    log.push(`failed ${r.method()} ${short(r.url())}: ${r.failure()?.errorText}`);
  });
  page.on('websocket', (ws) => {
    log.push(`websocket ${ws.url()}`);
    ws.on('socketerror', (e) => log.push(`websocket error ${ws.url()}: ${e}`));
    ws.on('close', () => log.push(`websocket closed ${ws.url()}`));
  });

  await page.goto(pageUrl);
  // The page gives itself 30 s; this only guards against a page that never set its report.
  await page.waitForFunction(() => window.tidingsReport !== undefined, null, { timeout: 10000 });
  const report = await page.evaluate(() => window.tidingsReport);
  console.log(JSON.stringify({ ...report, log }));
} catch (err) {
  console.error(`sockjs_echo.mjs: ${err.stack || err}\nbrowser log so far:\n${log.join('\n')}`);
  process.exitCode = 1;
} finally {
  await close();
}
