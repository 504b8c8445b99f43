// Runs IN THE BROWSER, not in Node: added by tests/browser_cluster.rs (through the `script`
// command of native_driver.mjs) to a page of the cluster's balancer, after sockjs-client's dist
// build, so that sockjs-client runs on the balancer's origin as it would in an app's page.
//
// `window.clusterEcho(url, transport, count)` opens a SockJS connection to `url` with only
// `transport` allowed and echoes `count` messages through it, one at a time: each is sent once
// the one before has come back.
//
// The messages are numbered and padded to 200 to 400 bytes, so that streaming responses reach
// the echo service's 4096-byte limit every dozen messages or so (not always the same number,
// which could keep every stream on one node), and the receiving requests go round the nodes
// too. What the page saw goes to `window.report`: `{ transport, echoed, events, done }`, where
// `events` are short strings (`open`, `echoed <count>`, then how the connection closed, or what
// went wrong first) and `done` is set once the connection has closed.

/** @param {number} i */
const message = (i) => `m${i} ${'x'.repeat(200 + ((i * 37) % 200))}`;

/** The start of a message, for a report that must stay short. */
const brief = (data) => (typeof data === 'string' ? JSON.stringify(data.slice(0, 12)) : typeof data);

window.clusterEcho = (url, transport, count) => {
  const report = { transport: null, echoed: 0, events: [], done: false };
  window.report = report;
  const see = (event) => report.events.push(event);
  window.addEventListener('error', (e) => see(`page error: ${e.message}`));
  // A floor under sockjs-client's open timeout, which it derives from the /info round trip:
  // a machine busy with three nodes and a browser would otherwise miss it.
  const sock = new SockJS(url, null, { transports: [transport], timeout: 10000 });
  sock.onopen = () => {
    report.transport = sock.transport;
    see('open');
    sock.send(message(0));
  };
  sock.onmessage = (e) => {
    if (e.data !== message(report.echoed)) {
      see(`echo ${report.echoed} wrong: ${brief(e.data)}`);
      sock.close();
      return;
    }
    report.echoed += 1;
    if (report.echoed < count) {
      sock.send(message(report.echoed));
      return;
    }
    see(`echoed ${count}`);
    sock.close();
  };
  sock.onclose = (e) => {
    see(`closed: ${e.code} ${e.reason}`);
    report.done = true;
  };
};
