// Drives Chromium for tests/browser_native.rs and tests/browser_cluster.rs, one command at a
// time over stdin/stdout.
//
// The Rust test owns the servers, the proxy and the timing (it publishes messages and cuts
// connections itself); this script only opens pages and answers questions about them. Each
// command is one JSON line on stdin; each answer one line on stdout, prefixed with `@@` so
// that anything else printed (warnings) cannot be mistaken for an answer:
//
//   {"cmd":"open","page":"p1","url":"http://…/"}       opens a page (and records its console,
//                                                       errors and failed requests)
//   {"cmd":"eval","page":"p1","expr":"window.chat.messages.length"}
//   {"cmd":"wait","page":"p1","expr":"…","timeout":5000} → true once expr is truthy, false
//                                                       when the timeout passes first
//   {"cmd":"block","page":"p1"}                         every native request of the page
//                                                       fails (HTTP and WebSocket)
//   {"cmd":"unblock","page":"p1"}
//   {"cmd":"note","page":"p1","text":"…"}              adds a line to the page's log
//   {"cmd":"script","page":"p1","path":"/abs/x.js"}    adds a <script> with that file's text
//                                                       to the page (`"type":"module"` too)
//   {"cmd":"log","page":"p1"}                           → what the page's console said, and
//                                                       its failed requests, with times
//   {"cmd":"quit"}
//
// Answers are {"ok":true,"result":…} or {"ok":false,"error":"…"}.

import { createInterface } from 'node:readline';
import { launchBrowser } from './launch.mjs';

const NATIVE = /\/native\/(negotiate|ws|sse|stream|poll|send|close)\b/;

const { context, close } = await launchBrowser();
const started = Date.now();
/** @type {Map<string, {page: import('playwright-core').Page, log: string[], note: (text: string) => void}>} */
const pages = new Map();

function get(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry;
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'open': {
      const page = await context.newPage();
      const log = [];
      const note = (text) => {
        // Bounded: a runaway page must not exhaust memory.
        if (log.length < 20000) log.push(`${((Date.now() - started) / 1000).toFixed(3)} ${text}`);
      };
      page.on('console', (m) => note(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => note(`[pageerror] ${e.message}`));
      page.on('requestfailed', (r) => {
        const u = new URL(r.url());
        note(`[requestfailed] ${r.method()} ${u.pathname} ${r.failure()?.errorText ?? ''}`);
      });
      page.on('request', async (r) => {
        const u = new URL(r.url());
        if (!NATIVE.test(u.pathname)) return;
        // EventSource adds Last-Event-ID itself when it reconnects; show when it did.
        const id = (await r.allHeaders().catch(() => ({})))['last-event-id'];
        note(`[request] ${r.method()} ${u.pathname}${u.search.includes('pos=') ? ' with pos' : ''}${id === undefined ? '' : ` last-event-id=${id}`}`);
      });
      page.on('response', (r) => {
        const u = new URL(r.url());
        if (NATIVE.test(u.pathname)) note(`[response] ${r.status()} ${r.request().method()} ${u.pathname}`);
      });
      page.on('websocket', (ws) => {
        const u = new URL(ws.url());
        note(`[websocket] open ${u.pathname}`);
        ws.on('close', () => note(`[websocket] closed ${u.pathname}`));
        ws.on('socketerror', (e) => note(`[websocket] error ${e}`));
      });
      pages.set(cmd.page, { page, log, note });
      await page.goto(cmd.url, { timeout: 15000 });
      return null;
    }
    case 'eval':
      return await get(cmd.page).page.evaluate(cmd.expr);
    case 'wait': {
      const { page } = get(cmd.page);
      try {
        await page.waitForFunction(cmd.expr, null, { timeout: cmd.timeout ?? 10000, polling: 50 });
        return true;
      } catch (err) {
        if (err?.name === 'TimeoutError') return false;
        throw err;
      }
    }
    case 'note':
      get(cmd.page).note(`[test] ${cmd.text}`);
      return null;
    case 'script':
      await get(cmd.page).page.addScriptTag({ path: cmd.path, type: cmd.type });
      return null;
    case 'block': {
      const { page, note } = get(cmd.page);
      note('[test] blocking the native endpoints');
      await page.route(NATIVE, (route) => route.abort('internetdisconnected'));
      // Not connected to the server: closed at once, as a refused upgrade would be.
      await page.routeWebSocket(NATIVE, (ws) => ws.close({ code: 1011, reason: 'blocked' }));
      return null;
    }
    case 'unblock': {
      const { page, note } = get(cmd.page);
      note('[test] unblocking the native endpoints');
      await page.unrouteAll({ behavior: 'ignoreErrors' });
      // A WebSocket route that lets everything through again.
      await page.routeWebSocket(NATIVE, (ws) => {
        ws.connectToServer();
      });
      return null;
    }
    case 'offline':
      // The whole browser context: `navigator.onLine` and the `online`/`offline` events follow.
      get(cmd.page).note(`[test] network ${cmd.offline ? 'offline' : 'online'}`);
      await context.setOffline(cmd.offline);
      return null;
    case 'log':
      return get(cmd.page).log;
    case 'quit':
      return null;
    default:
      throw new Error(`unknown command ${cmd.cmd}`);
  }
}

function answer(obj) {
  process.stdout.write(`@@${JSON.stringify(obj)}\n`);
}

try {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      answer({ ok: false, error: `bad command: ${err}` });
      continue;
    }
    try {
      answer({ ok: true, result: (await handle(cmd)) ?? null });
    } catch (err) {
      answer({ ok: false, error: String(err?.stack ?? err) });
    }
    if (cmd.cmd === 'quit') break;
  }
} finally {
  await close();
}
process.exit(0);
