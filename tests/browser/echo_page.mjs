// Runs IN THE BROWSER, not in Node: the script of the test page `/page.html` that
// tests/browser.rs serves, loaded after `<script src="/static/sockjs.min.js">` like any app's.
//
// Query parameters: `server` (the Tidings server's base URL, maybe on another origin than this
// page) and `transport` (the one sockjs-client transport to allow). The page echoes three
// messages through `<server>/echo`, then connects to `<server>/close`, and publishes what it
// saw as `window.tidingsReport`, a promise of
//   { transport, closeTransport, events: [...] }
// where the transports are the `sock.transport` sockjs-client reported once open (null if
// never opened). Events are short strings, so a failing Rust test can print them verbatim.

const params = new URLSearchParams(location.search);
const server = params.get('server');
const transport = params.get('transport');
// sockjs-client gives a transport max(timeout, rto * roundTrips) to open, with the rto derived
// from the /info round trip: on loopback that is about 300 ms for jsonp-polling and 600 ms for
// the others, and a CI machine busy compiling misses it (the transport is abandoned, "2000 All
// transports failed", and the late JSONP script then calls a deleted `_jp.<id>` callback).
// `timeout` is sockjs-client's own option for a floor; a server that never answers still
// fails, just later, within PAGE_TIMEOUT_MS.
const options = { transports: [transport], timeout: 10000 };

// Astral-plane characters and U+2028 exercise SockJS's JSON escaping; 100 KiB spans many
// reads and writes on every transport, and a large part of a streaming response's limit.
const messages = ['plain', 'non-BMP \u{1F600} and \u2028', 'x'.repeat(100 * 1024)];

// Enough for every transport on loopback; the Rust side kills Node well after this.
const PAGE_TIMEOUT_MS = 30000;

/** A message described briefly: a 100 KiB string does not belong in a test failure. */
function describe(data) {
  if (typeof data !== 'string') return `a ${typeof data}`;
  const head = JSON.stringify(data.slice(0, 40));
  return `${data.length} chars ${head}${data.length > 40 ? '...' : ''}`;
}

window.tidingsReport = new Promise((resolve) => {
  const report = { transport: null, closeTransport: null, events: [] };
  const see = (event) => report.events.push(event);
  // Resolving twice is harmless, so every ending may call this.
  const finish = () => resolve(report);

  setTimeout(() => {
    see(`timeout after ${PAGE_TIMEOUT_MS / 1000} s`);
    finish();
  }, PAGE_TIMEOUT_MS);
  window.addEventListener('error', (e) => see(`page error: ${e.message}`));

  if (typeof SockJS !== 'function') {
    see('no SockJS global: /static/sockjs.min.js did not load');
    finish();
    return;
  }

  const echo = new SockJS(`${server}/echo`, null, options);
  let echoed = 0;
  echo.onopen = () => {
    report.transport = echo.transport;
    see('echo open');
    messages.forEach((m) => echo.send(m));
  };
  echo.onmessage = (e) => {
    const i = echoed++;
    if (i >= messages.length) {
      see(`echo extra message: ${describe(e.data)}`);
      return;
    }
    see(e.data === messages[i]
      ? `echo ${i + 1} ok`
      : `echo ${i + 1} wrong: ${describe(e.data)} instead of ${describe(messages[i])}`);
    if (echoed === messages.length) {
      echo.close();
      connectToClose();
    }
  };
  echo.onclose = (e) => {
    if (echoed < messages.length) {
      see(`echo closed early: ${e.code} ${e.reason}`);
      finish();
    }
  };

  function connectToClose() {
    const sock = new SockJS(`${server}/close`, null, options);
    sock.onopen = () => {
      report.closeTransport = sock.transport;
      see('close open');
    };
    sock.onmessage = (e) => see(`close message: ${describe(e.data)}`);
    sock.onclose = (e) => {
      see(`close closed: ${e.code} ${e.reason}`);
      finish();
    };
  }
});
