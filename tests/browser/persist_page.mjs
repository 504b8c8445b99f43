// Runs IN THE BROWSER, not in Node: the script of the page that tests/browser_chat.rs serves to
// reload under the native client's `persist` option. The server holds this script back while
// the test publishes, so the reloaded page only connects once the page before it is gone.
//
// Query parameter: `transport` (the one transport to allow; all of them without it). What the
// page saw is `window.page`: { messages, gaps, closes, transport }, the messages in the order
// the client handed them on. The page never closes its connection: a reload must leave the
// session to the next page, which resumes it from `sessionStorage`. It tells the server when
// it is left (`POST /left` on `pagehide`): it runs nothing after that, so whatever is published
// from then on is the next page's to receive.

import { connect } from '/rt/tidings.js';

const transport = new URLSearchParams(location.search).get('transport');
const page = (window.page = { messages: [], gaps: [], closes: [], transport: null });
const conn = connect('/rt', {
  persist: true,
  transports: transport ? [transport] : undefined,
  log: (m) => console.debug('tidings:', m),
});
window.conn = conn;
conn.addEventListener('transport', (e) => {
  page.transport = e.detail;
});
conn.addEventListener('message', (e) => {
  page.messages.push(e.data);
});
conn.addEventListener('gap', (e) => {
  page.gaps.push(e.detail.missed);
});
conn.addEventListener('close', (e) => {
  page.closes.push({ code: e.code, reason: e.reason });
  page.transport = null;
});
addEventListener('pagehide', () => {
  navigator.sendBeacon('/left');
});
