// The compare page's script: one client per transport, all following the server's stream, and
// for each what it received, how late, and what it cost. Served by examples/compare at
// /compare.js; how each figure is obtained is at the foot of the page (index.html).

import { connect } from '/rt/tidings.js';

const NATIVE = ['websocket', 'sse', 'streaming', 'polling'];
const SOCKJS = ['websocket', 'xhr-streaming', 'eventsource', 'xhr-polling'];
/** Tick latencies kept per client. */
const SAMPLES = 5000;
/** How far back the tick column's wire figures reach, ms. */
const WINDOW_MS = 5000;
/** How often the server's counters are fetched, ms. */
const STATS_EVERY_MS = 1000;
/** How often the panels are redrawn, ms. */
const RENDER_EVERY_MS = 250;
/** Ticks that arrive this soon after the page started are not latency samples, ms: the page
 * is busy then, loading scripts and opening eight connections at once. */
const WARMUP_MS = 1000;
/** How long after a client has the whole burst its counts close the burst's wire figures, ms:
 * time for the server to have counted the last bytes it wrote, with a few ticks in between. */
const SETTLE_MS = 200;
/** A burst that has not reached every client by then no longer holds the button, ms. */
const BURST_PATIENCE_MS = 30000;
/** The chart's latency axis: 10^-1 ms to 10^4 ms, log scale. */
const LOG_MIN = -1;
const LOG_MAX = 4;
const BINS = 50;

const $ = (id) => document.getElementById(id);
const now = () => performance.timeOrigin + performance.now();
const started = now();
/** This page's name in metered URLs and in `/stats`, so that pages open at once are apart. */
const pageId = Math.random().toString(36).slice(2, 10);

/**
 * @typedef {object} Counts what the server counted for a client, and what it had received then
 * @property {number} at
 * @property {number} down
 * @property {number} up
 * @property {number} requests
 * @property {number} received
 */

/** One connection of one transport, and its panel. */
class Client {
  /**
   * @param {string} name the client's name in metered URLs: `sse`, `sockjs-xhr-polling`, …
   * @param {string} transport the transport it is limited to
   * @param {HTMLElement} grid where its panel goes
   */
  constructor(name, transport, grid) {
    this.name = name;
    this.transport = transport;
    this.received = 0;
    this.tickCount = 0;
    /** @type {number[]} ring of tick latencies, ms */
    this.tickLatencies = [];
    this.tickNext = 0;
    /** @type {Burst | null} */
    this.burst = null;
    this.lastBurstId = 0;
    this.opens = 0;
    this.gaps = 0;
    this.state = 'connecting';
    this.why = '';
    /** @type {Counts | null} */
    this.counts = null;
    /** @type {Counts[]} snapshots since the last burst, for the tick column */
    this.history = [];
    /** @type {{down: number, up: number, rate: number} | null} */
    this.tickWire = null;
    this.dirty = true;

    const panel = /** @type {HTMLTemplateElement} */ ($('panel')).content.cloneNode(true);
    this.panel = /** @type {HTMLElement} */ (panel.firstElementChild);
    this.panel.dataset.client = name;
    /** @type {Record<string, HTMLElement>} */
    this.fields = {};
    for (const el of this.panel.querySelectorAll('[data-field]')) {
      this.fields[/** @type {HTMLElement} */ (el).dataset.field ?? ''] = /** @type {HTMLElement} */ (el);
    }
    this.fields.name.textContent = transport;
    this.canvas = /** @type {HTMLCanvasElement} */ (this.panel.querySelector('canvas'));
    grid.append(this.panel);
  }

  /** @param {string} text */
  receive(text) {
    const at = now();
    this.received += 1;
    this.dirty = true;
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    const latency = at - m.sent;
    if (m.kind === 'tick') {
      this.tickCount += 1;
      // A tick published while a burst was on its way to this page's clients waited behind
      // it, on the wire or in the page's one thread: it tells about the burst.
      if (m.sent >= bursting.from && m.sent < bursting.to) return;
      if (at - started < WARMUP_MS) return;
      this.tickLatencies[this.tickNext] = latency;
      this.tickNext = (this.tickNext + 1) % SAMPLES;
    } else if (m.kind === 'burst') {
      if (m.burst > this.lastBurstId) {
        // A burst this page did not ask for (another page did) has no "before" counts.
        if (!this.burst || this.burst.id !== null) this.burst = new Burst(m.n, null);
        this.burst.id = m.burst;
        this.lastBurstId = m.burst;
      }
      const b = this.burst;
      if (!b || b.id !== m.burst) return;
      b.count += 1;
      b.latencies.push(latency);
      b.start = Math.min(b.start, m.sent);
      if (b.count === b.n) {
        b.took = at - b.start;
        b.doneAt = at;
        // A few ms more: the page's clock is coarsened, and may read a timer as early.
        setTimeout(refreshSoon, SETTLE_MS + 10);
      }
    }
  }

  opened() {
    this.opens += 1;
    this.state = 'open';
    this.why = '';
    this.dirty = true;
  }

  /** @param {string} state @param {string} why */
  lost(state, why) {
    this.state = state;
    this.why = why;
    this.dirty = true;
  }

  /** A burst was asked for: counts from here, and no tick figures until it is through. */
  expectBurst(n) {
    this.burst = new Burst(n, this.counts);
    this.history = [];
  }

  /**
   * The server's counts, asked for at `counts.at`: by then the server had written at least
   * the `counts.received` messages the client had, and usually a few more.
   *
   * @param {Counts} counts
   */
  counted(counts) {
    this.counts = counts;
    this.dirty = true;
    const b = this.burst;
    if (b?.before && !b.wire) {
      // Asked for before the client had the whole burst: part of neither column.
      if (b.doneAt === null || counts.at < b.doneAt + SETTLE_MS) return;
      const messages = Math.max(1, counts.received - b.before.received);
      b.wire = {
        down: (counts.down - b.before.down) / messages,
        up: (counts.up - b.before.up) / messages,
        requests: counts.requests - b.before.requests,
      };
      this.history = [];
    }
    this.history.push(counts);
    while (this.history.length > 2 && counts.at - this.history[1].at >= WINDOW_MS) {
      this.history.shift();
    }
    const first = this.history[0];
    const messages = counts.received - first.received;
    if (this.history.length > 1 && messages > 0) {
      this.tickWire = {
        down: (counts.down - first.down) / messages,
        up: (counts.up - first.up) / messages,
        rate: ((counts.requests - first.requests) * 1000) / (counts.at - first.at),
      };
    }
  }

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    const f = this.fields;
    const reconnects = Math.max(0, this.opens - 1);
    f.state.textContent = this.state;
    f.state.className = `state ${this.state.split(' ')[0]}`;
    f.state.title = this.why;
    f.received.textContent = String(this.received);
    f.requests.textContent = this.counts ? String(this.counts.requests) : '–';
    f.reconnects.textContent = String(reconnects);
    f.gaps.textContent = this.gaps ? ` · ${this.gaps} gaps` : '';

    const ticks = sorted(this.tickLatencies);
    f.ticks.textContent = String(this.tickCount);
    f['tick-p50'].textContent = ms(quantile(ticks, 0.5));
    f['tick-p99'].textContent = ms(quantile(ticks, 0.99));
    const w = this.tickWire;
    f['tick-down'].textContent = w ? w.down.toFixed(0) : '–';
    f['tick-up'].textContent = w ? w.up.toFixed(0) : '–';
    f['tick-requests'].textContent = w ? `${w.rate.toFixed(1)}/s` : '–';

    const b = this.burst;
    const burst = b ? sorted(b.latencies) : [];
    f['burst-count'].textContent = b ? `${b.count} / ${b.n}` : '–';
    f['burst-p50'].textContent = ms(quantile(burst, 0.5));
    f['burst-p99'].textContent = ms(quantile(burst, 0.99));
    f['burst-time'].textContent = b?.took != null ? ms(b.took) : '–';
    f['burst-down'].textContent = b?.wire ? b.wire.down.toFixed(0) : '–';
    f['burst-up'].textContent = b?.wire ? b.wire.up.toFixed(0) : '–';
    f['burst-requests'].textContent = b?.wire ? String(b.wire.requests) : '–';
    draw(this.canvas, ticks, burst);
  }
}

/** The latest burst as one client saw it. */
class Burst {
  /**
   * @param {number} n messages in it
   * @param {Counts | null} before the client's counts when it was asked for
   */
  constructor(n, before) {
    /** @type {number | null} the server's number for it, from its first message */
    this.id = null;
    this.n = n;
    this.count = 0;
    /** @type {number[]} */
    this.latencies = [];
    /** When the server published its first message. */
    this.start = Infinity;
    /** @type {number | null} from `start` until the last message arrived, ms */
    this.took = null;
    /** @type {number | null} when the last message arrived */
    this.doneAt = null;
    this.before = before;
    /** @type {{down: number, up: number, requests: number} | null} */
    this.wire = null;
  }
}

// ---- figures ----

/** @param {number[]} values */
function sorted(values) {
  return Float64Array.from(values).sort();
}

/** Nearest-rank quantile of sorted values; NaN for none. @param {Float64Array | number[]} s */
function quantile(s, q) {
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** @param {number} v */
function ms(v) {
  if (Number.isNaN(v)) return '–';
  const digits = Math.abs(v) < 1 ? 2 : Math.abs(v) < 10 ? 1 : 0;
  return `${v.toFixed(digits)} ms`;
}

/** Counts per log-scale bin. @param {Float64Array} values */
function histogram(values) {
  const bins = new Array(BINS).fill(0);
  for (const v of values) {
    const x = (Math.log10(Math.max(v, 10 ** LOG_MIN)) - LOG_MIN) / (LOG_MAX - LOG_MIN);
    bins[Math.min(BINS - 1, Math.floor(x * BINS))] += 1;
  }
  return bins;
}

/**
 * Both latency distributions on one log axis, each scaled to its own tallest bar.
 *
 * @param {HTMLCanvasElement} canvas
 * @param {Float64Array} ticks
 * @param {Float64Array} burst
 */
function draw(canvas, ticks, burst) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const plot = height - 14;
  const style = getComputedStyle(document.documentElement);
  ctx.font = '10px system-ui, sans-serif';
  ctx.textAlign = 'center';
  const labels = ['0.1 ms', '1 ms', '10 ms', '100 ms', '1 s', '10 s'];
  for (let d = LOG_MIN; d <= LOG_MAX; d += 1) {
    const x = ((d - LOG_MIN) / (LOG_MAX - LOG_MIN)) * (width - 1) + 0.5;
    ctx.fillStyle = '#e4e7ec';
    ctx.fillRect(x, 0, 1, plot);
    ctx.fillStyle = '#667085';
    ctx.textAlign = d === LOG_MIN ? 'left' : d === LOG_MAX ? 'right' : 'center';
    ctx.fillText(labels[d - LOG_MIN], x, height - 2);
  }
  const bar = width / BINS;
  const series = [
    [ticks, style.getPropertyValue('--tick')],
    [burst, style.getPropertyValue('--burst')],
  ];
  ctx.globalAlpha = 0.75;
  for (const [values, color] of series) {
    const bins = histogram(/** @type {Float64Array} */ (values));
    const top = Math.max(...bins);
    if (top === 0) continue;
    ctx.fillStyle = /** @type {string} */ (color);
    bins.forEach((count, i) => {
      const h = Math.max(count ? 1 : 0, (count / top) * (plot - 2));
      ctx.fillRect(i * bar, plot - h, Math.max(1, bar - 1), h);
    });
  }
  ctx.globalAlpha = 1;
}

// ---- the server's counters ----

/** @type {Client[]} */
const clients = [];
/** From the click until every client has the burst (page clock, ms). */
const bursting = { from: Infinity, to: Infinity };
let refreshing = null;
let again = false;

/** Fetches `/stats` and hands every client its counts; one request at a time. */
function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const at = now();
      const received = clients.map((c) => c.received);
      const res = await fetch(`/stats?page=${pageId}`, { cache: 'no-store' });
      const stats = await res.json();
      clients.forEach((c, i) => {
        const s = stats.clients?.[c.name];
        if (s) c.counted({ at, received: received[i], ...s });
      });
    } catch (err) {
      console.warn('stats:', err);
    } finally {
      refreshing = null;
      if (again) {
        again = false;
        refresh();
      }
    }
  })();
  return refreshing;
}

/** A client finished a burst: its counts now close the burst's wire figures. */
function refreshSoon() {
  if (refreshing) again = true;
  else refresh();
}

// ---- connections ----

/** @param {Client} client */
function startNative(client) {
  const conn = connect(`/metered/${pageId}/${client.name}`, {
    transports: [/** @type {any} */ (client.transport)],
    // The client reports transports opening and dropping only here.
    log: (message) => {
      if (message === `${client.transport} open`) client.opened();
      else if (/ (dropped|failed)\b/.test(message)) client.lost('reconnecting', message);
    },
  });
  conn.addEventListener('message', (e) => client.receive(/** @type {MessageEvent} */ (e).data));
  conn.addEventListener('gap', () => {
    client.gaps += 1;
  });
  conn.addEventListener('close', (e) => {
    const { code, reason } = /** @type {Event & {code: number, reason: string}} */ (e);
    client.lost('closed', `${code} ${reason}`);
    setTimeout(() => startNative(client), 1000);
  });
}

/** @param {Client} client @param {string} base */
function startSockjs(client, base) {
  // sockjs-client gives a transport a few /info round trips to open, which a busy machine
  // misses on loopback; 10 s is a floor for that.
  const sock = new window.SockJS(`${base}/metered/${pageId}/${client.name}`, null, {
    transports: [client.transport],
    timeout: 10000,
  });
  sock.onopen = () => client.opened();
  sock.onmessage = (/** @type {MessageEvent} */ e) => client.receive(e.data);
  sock.onclose = (/** @type {CloseEvent} */ e) => {
    client.lost('closed', `${e.code} ${e.reason}`);
    setTimeout(() => startSockjs(client, base), 1000);
  };
}

/** @param {string} src */
function load(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

// ---- the page ----

async function burst(button, n) {
  button.disabled = true;
  try {
    await refresh();
    for (const c of clients) c.expectBurst(n);
    bursting.from = now();
    bursting.to = Infinity;
    const res = await fetch('/burst', { method: 'POST' });
    if (!res.ok) throw new Error(`burst: HTTP ${res.status} ${await res.text()}`);
    const deadline = now() + BURST_PATIENCE_MS;
    while (now() < deadline && clients.some((c) => c.burst?.doneAt == null)) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } catch (err) {
    console.error(err);
  } finally {
    bursting.to = Math.max(bursting.from, ...clients.map((c) => c.burst?.doneAt ?? now()));
    button.disabled = false;
  }
}

async function main() {
  const config = await (await fetch('/config')).json();
  const params = new URLSearchParams(location.search);
  const sockjs = params.get('sockjs');
  $('about').textContent =
    `a tick every ${config.tick_ms} ms · bursts of ${config.burst} · page ${pageId}`;

  // `?only=sse,sockjs-eventsource` opens just those, so that they do not share the page's
  // one thread with the others.
  const only = params.get('only')?.split(',');
  const wanted = (/** @type {string} */ name) => !only || only.includes(name);

  for (const t of NATIVE.filter(wanted)) {
    const c = new Client(t, t, $('native'));
    clients.push(c);
    startNative(c);
  }
  if (sockjs) {
    try {
      await load(sockjs);
      const base = `${location.protocol}//${location.hostname}:${config.sockjs_port}`;
      for (const t of SOCKJS.filter((t) => wanted(`sockjs-${t}`))) {
        const c = new Client(`sockjs-${t}`, t, $('sockjs'));
        clients.push(c);
        startSockjs(c, base);
      }
    } catch (err) {
      $('sockjs-note').hidden = false;
      $('sockjs-note').textContent = String(err);
    }
  } else {
    $('sockjs-note').hidden = false;
  }

  const button = /** @type {HTMLButtonElement} */ ($('burst'));
  button.textContent = `Publish a burst of ${config.burst}`;
  button.disabled = false;
  button.addEventListener('click', () => burst(button, config.burst));
  setInterval(refresh, STATS_EVERY_MS);
  setInterval(() => clients.forEach((c) => c.render()), RENDER_EVERY_MS);
  // For a console, and for tests that want more than the panels show.
  Object.assign(window, { compare: { pageId, clients } });
}

main().catch((err) => {
  $('about').textContent = `failed to start: ${err}`;
});
