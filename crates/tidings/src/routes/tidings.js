// Tidings native client: resumable delivery over WebSocket, SSE, fetch streaming or polling.
//
// Served by the library at `<prefix>/tidings.js`, its types at `<prefix>/tidings.d.ts`; the
// wire protocol is docs/protocol.md. Plain ES module, no dependencies, no build step. It also
// loads in a worker or Node: every browser global it uses is looked up first.
//
//   import { connect } from '/rt/tidings.js';
//   const conn = connect('/rt', { persist: true });
//   conn.addEventListener('message', (e) => console.log(e.data));
//   conn.send('hello');
//
// With `persist`, the session survives a reload of the page: its token and position are kept
// in `sessionStorage`, and the reloaded page's client resumes the same session, receiving what
// the page missed while it reloaded, once and in order (or a `gap` when the session is gone).
//
// Reconnecting: a failed transport is retried with backoff, but not while the browser says it
// is offline (the client waits for `online`, retrying at most every `backoff.max`), at once on
// `online`, and no faster than every 10–20 s while the page is hidden, at once when it shows.
// A session the server closes with a code that asks for it (`RECONNECT`) is replaced by a new
// one; any other close ends the connection.

/** @typedef {'websocket' | 'sse' | 'streaming' | 'polling'} TransportName */

/**
 * @typedef {object} Backoff
 * @property {number} [initial] first delay, ms (default 500)
 * @property {number} [max] largest delay, ms (default 30000)
 * @property {number} [factor] growth per retry (default 2)
 * @property {number} [jitter] 0..1, share of the delay that is randomised (default 0.5)
 */

/**
 * @typedef {object} Options
 * @property {TransportName[]} [transports] transports to use, best first; intersected with
 *   what the server offers and what this runtime has. Default: all four, in that order.
 * @property {number} [openTimeout] ms a transport has to deliver its `open` frame (default
 *   5000; polling gets the server's `poll_timeout_ms` on top).
 * @property {number} [silenceFactor] a transport that sends no frame for
 *   `heartbeat_ms * silenceFactor + openTimeout` is dead (default 2).
 * @property {Backoff} [backoff] delays between reconnects that keep failing.
 * @property {number} [retryBetterAfter] ms after falling back before the better transports are
 *   tried again (default 60000).
 * @property {number} [maxQueue] most messages `send()` holds before they reach the server
 *   (default 1000); past it `send()` throws.
 * @property {(message: string) => void} [log] receives diagnostics (transport failures,
 *   reconnects); default: nothing.
 * @property {boolean | string} [persist] keep the session across reloads of the page, in
 *   `sessionStorage` (so per tab): `true` under the key `tidings:<url>`, a string under that
 *   key (to keep two connections to one service apart). Default `false`. The record is written
 *   after every batch of messages handed on and removed when the connection closes for good;
 *   a page that calls `close()` while unloading ends its session, and nothing survives.
 */

/**
 * @typedef {object} Frame
 * @property {string} type
 * @property {string} [pos]
 * @property {string[]} [data]
 * @property {number | null} [missed]
 * @property {number} [code]
 * @property {string} [reason]
 * @property {boolean} [reconnect]
 */

/** @typedef {{status?: number, error?: string, message?: string} | null} Failure */

/**
 * @typedef {object} Handle one request or socket of a transport.
 * @property {() => void} stop
 * @property {WebSocket} [ws]
 * @property {number} started when the request was made
 * @property {number} [first] when its first frame arrived
 */

/**
 * @typedef {object} Attempt one transport, from its first request until it is given up.
 * @property {TransportName} name
 * @property {boolean} opened
 * @property {number} openedAt
 * @property {Handle | null} handle
 * @property {ReturnType<typeof setTimeout> | undefined} openTimer
 * @property {ReturnType<typeof setTimeout> | undefined} silenceTimer
 * @property {number} heardAt when its last frame arrived
 */

const ALL = /** @type {TransportName[]} */ (['websocket', 'sse', 'streaming', 'polling']);
/** The version of the native protocol this client speaks, sent with every request. */
const VERSION = 2;
const BACKOFF = { initial: 500, max: 30000, factor: 2, jitter: 0.5 };
/** A streaming response whose first frame took longer than this and whose end came right
 * after it was held back by a buffering proxy. */
const BUFFERED_MS = 1000;
/** A transport that drops sooner than this after opening, three times running, is given up. */
const STABLE_MS = 10000;
const FLAPS = 3;
/** While the page is hidden, a retry waits at least this, jittered up to twice it: tabs nobody
 * looks at must not all come back at once after a server restart. */
const HIDDEN_MS = 10000;

/**
 * Whether a client should reconnect after each close code Tidings sends: the `reconnect`
 * column of `TABLE` in crates/tidings-core/src/close.rs (docs/close-codes.md), row by row; keep
 * the two in step. A code not in it (an application code) follows the close frame's own
 * `reconnect`, which the server sets from the same table (false for application codes).
 *
 * @type {Record<number, boolean>}
 */
const RECONNECT = {
  1000: false,
  1001: true,
  1002: true,
  1007: false,
  1008: false,
  1009: false,
  1011: true,
  1013: true,
  2010: false,
  3000: false,
  3001: true,
  3002: true,
  3003: true,
};

/** @type {RequestInit} */
const GET = { credentials: 'same-origin', cache: 'no-store' };

/** Whether this runtime can run a transport. */
const supported = {
  websocket: () => typeof WebSocket === 'function',
  sse: () => typeof EventSource === 'function',
  streaming: () => typeof fetch === 'function' && typeof ReadableStream === 'function',
  polling: () => typeof fetch === 'function',
};

/**
 * Opens a connection to the Tidings service at `url` (its prefix, e.g. `'/rt'` or
 * `'https://example.com/rt'`). Query parameters of `url` (`'/rt?user=ann'`) are sent with every
 * request, for the server's auth hook.
 *
 * @param {string} url
 * @param {Options} [options]
 * @returns {Connection}
 */
export function connect(url, options) {
  return new Connection(url, options);
}

/**
 * One logical connection: a session on the server, carried by whichever transport works.
 *
 * Events:
 * - `open` (Event): the first transport opened. Reconnects and transport changes underneath
 *   do not repeat it.
 * - `message` (MessageEvent): `event.data` is the message text. Every message is handed on
 *   once, in order, across reconnects and transport changes.
 * - `transport` (CustomEvent): `event.detail` is the name of the transport now delivering.
 * - `gap` (CustomEvent): `event.detail.missed` messages were lost (the server no longer held
 *   them); `null` when the count is unknown (the session expired, or the server closed it with
 *   a code that says to reconnect, and a new one was started).
 * - `close` (Event with `code`, `reason`, `reconnect`): the connection is over. Sent for a
 *   server `close` frame whose code does not say to reconnect (`RECONNECT`), for a refusal
 *   (`1008`, with the server's message), and for `close()` (`1000`). After a code that says to
 *   reconnect the client starts a new session by itself (reporting a `gap`) instead, so
 *   `reconnect` is false on every `close` it sends.
 *
 * Sending: on WebSocket, `send()` writes to the socket, so messages written just before it
 * breaks can be lost. On the other transports messages are POSTed in order, one request at
 * a time, and a failed request is retried, so a message may then arrive twice.
 */
export class Connection extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;

  #base;
  /** @type {string} the query parameters of the URL given, sent with every request */
  #query;
  #options;
  /** @type {TransportName[]} */
  #order = [];
  /** @type {Record<string, any> | null} the negotiate answer */
  #info = null;
  /** @type {string | null} */
  #token = null;
  /** @type {string | null} the position of the last frame handed on */
  #pos = null;
  #readyState = Connection.CONNECTING;
  /** @type {TransportName | null} */
  #transport = null;
  /** @type {Attempt | null} */
  #attempt = null;
  /** @type {Map<TransportName, number>} when each transport last failed */
  #failed = new Map();
  /** @type {TransportName | null} the transport last given up, told (`fb=`) to the next one */
  #gaveUp = null;
  /** @type {Map<TransportName, number>} consecutive short-lived connections */
  #flaps = new Map();
  /** Backoff steps taken since a transport last opened. */
  #retries = 0;
  /** Whether a transport opened on the current session. */
  #sessionOpened = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #upgradeTimer;
  /** @type {string[]} */
  #queue = [];
  #sending = false;
  #sendRetries = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #sendTimer;
  /** @type {Set<AbortController>} negotiate and send requests in flight */
  #requests = new Set();
  /** @type {(() => void) | null} what `#retryTimer` will run, so that `#wake` can run it now */
  #retry = null;
  /** Server closes that asked for a new session, each soon after the last. */
  #closes = 0;
  /** When the browser last said it went offline. */
  #offlineAt = 0;
  /** Whether the session came from `sessionStorage` and no transport has opened on it yet. */
  #restored = false;
  /** @type {string | null} token and position last written to `sessionStorage` */
  #saved = null;

  /**
   * @param {string} url
   * @param {Options} [options]
   */
  constructor(url, options = {}) {
    super();
    const base = new URL(url, globalThis.location?.href);
    // The URL's own query parameters (say `?user=ann`, or a token) go with every request, for
    // the server's auth hook.
    this.#query = base.search.slice(1);
    base.search = '';
    base.hash = '';
    this.#base = base.href.replace(/\/+$/, '');
    this.#options = {
      transports: options.transports ?? ALL,
      openTimeout: options.openTimeout ?? 5000,
      silenceFactor: options.silenceFactor ?? 2,
      backoff: { ...BACKOFF, ...options.backoff },
      retryBetterAfter: options.retryBetterAfter ?? 60000,
      maxQueue: options.maxQueue ?? 1000,
      log: options.log ?? (() => {}),
      /** @type {string | null} where the session is kept across reloads */
      persist:
        options.persist === true
          ? `tidings:${this.#base}`
          : typeof options.persist === 'string' && options.persist !== ''
            ? options.persist
            : null,
    };
    // A window, and a worker for online/offline; Node has neither.
    if (typeof globalThis.addEventListener === 'function') {
      globalThis.addEventListener('online', this.#onOnline);
      globalThis.addEventListener('offline', this.#onOffline);
    }
    if (typeof document !== 'undefined') {
      document.addEventListener('visibilitychange', this.#onVisibility);
    }
    if (!this.#restore()) this.#negotiate();
  }

  /** `Connection.CONNECTING` until a transport first opens, then `OPEN`, then `CLOSED`. */
  get readyState() {
    return this.#readyState;
  }

  /** @returns {TransportName | null} the transport that last opened; null before and after. */
  get transport() {
    return this.#transport;
  }

  /** @returns {TransportName[]} transports that failed recently and are skipped for now. */
  get failedTransports() {
    return [...this.#failed.keys()];
  }

  /**
   * Sends one message. Queued until a transport is open; at most `maxQueue` messages wait.
   *
   * @param {string} text
   * @throws {Error} when the connection is closed or the queue is full
   * @throws {RangeError} when the message is over the server's `max_message_size`
   */
  send(text) {
    if (this.#readyState === Connection.CLOSED) throw new Error('tidings: connection is closed');
    text = String(text);
    const limit = this.#info?.max_message_size;
    if (limit && byteLength(text) > limit) {
      throw new RangeError(`tidings: message over ${limit} bytes`);
    }
    if (this.#queue.length >= this.#options.maxQueue) {
      throw new Error(`tidings: send queue full (${this.#options.maxQueue} messages)`);
    }
    this.#queue.push(text);
    this.#flush();
  }

  /**
   * Closes the connection: tells the server (`POST <prefix>/native/close`, so the session ends
   * now rather than after `resume_ms`), stops every transport and timer, and dispatches
   * `close` (1000). Queued messages not yet sent are dropped.
   */
  close() {
    if (this.#readyState === Connection.CLOSED) return;
    if (this.#token) {
      // keepalive: the request outlives a page being unloaded.
      const url = this.#base + this.#path('/native/close', false);
      fetch(url, { method: 'POST', credentials: 'same-origin', keepalive: true }).catch(() => {});
    }
    this.#shutdown(1000, 'Normal closure', false);
  }

  // ---- session ----

  #negotiate() {
    if (this.#readyState === Connection.CLOSED) return;
    const extra = this.#query ? `&${this.#query}` : '';
    this.#request('POST', `/native/negotiate?v=${VERSION}${extra}`, '').then(
      async (res) => {
        if (!res) return;
        if (!res.ok) {
          if (this.#refused(await failure(res))) return;
          throw new Error(`HTTP ${res.status}`);
        }
        const info = await res.json();
        if (typeof info?.token !== 'string') throw new Error('negotiate: no token');
        this.#sessionOpened = false;
        if (!this.#adopt(info)) return this.#shutdown(1008, 'No usable transport', false);
        this.#save();
        this.#connect();
      },
    ).catch((err) => {
      this.#log(`negotiate failed: ${err}`);
      if (offline()) return this.#waitOnline(() => this.#negotiate());
      this.#later(() => this.#negotiate(), this.#delay(this.#retries++));
    });
  }

  /**
   * Takes on the session of a negotiate answer, fresh or kept from before a reload.
   *
   * @param {Record<string, any>} info
   * @returns {boolean} whether a transport is left to use
   */
  #adopt(info) {
    const offered = Array.isArray(info.transports) ? info.transports : [];
    this.#info = info;
    this.#token = info.token;
    this.#order = this.#options.transports.filter(
      (t) => ALL.includes(t) && offered.includes(t) && supported[t](),
    );
    return this.#order.length > 0;
  }

  /**
   * Resumes, from its position, the session an earlier page of this tab kept (`persist`). One
   * the server no longer knows answers 404, and the client starts a new one with a `gap`, as
   * after any expiry; one it closed meanwhile answers its `close` frame.
   *
   * @returns {boolean} whether there was one to resume
   */
  #restore() {
    const key = this.#options.persist;
    if (key === null) return false;
    const kept = /** @type {Record<string, any> | null} */ (parse(storage()?.getItem(key) ?? ''));
    const usable =
      kept?.v === VERSION &&
      kept.base === this.#base &&
      typeof kept.info?.token === 'string' &&
      (kept.pos === null || typeof kept.pos === 'string');
    if (!usable || !this.#adopt(kept.info)) {
      // The next negotiate's session replaces the record.
      this.#info = this.#token = null;
      return false;
    }
    this.#pos = kept.pos;
    this.#saved = `${this.#token} ${this.#pos}`;
    // It opened on the earlier page: a 404 now means it expired, not a negotiate loop.
    this.#sessionOpened = true;
    this.#restored = true;
    this.#log('resuming the session kept in sessionStorage');
    this.#connect();
    return true;
  }

  /**
   * Keeps the token and position in `sessionStorage` (`persist`), or removes them once there is
   * no session. Called after every frame that moves the position: one small synchronous write
   * per batch, not per message, and none when nothing changed. Writing less often (on a timer,
   * or on `pagehide`) would let a reload, or a page the browser kills in the background without
   * `pagehide`, resume from an older position and hand messages on twice.
   */
  #save() {
    const key = this.#options.persist;
    if (key === null) return;
    const ended = this.#readyState === Connection.CLOSED || this.#token === null;
    const now = ended ? null : `${this.#token} ${this.#pos}`;
    if (now === this.#saved) return;
    this.#saved = now;
    try {
      const store = storage();
      if (now === null) {
        store?.removeItem(key);
      } else {
        const record = { v: VERSION, base: this.#base, info: this.#info, pos: this.#pos };
        store?.setItem(key, JSON.stringify(record));
      }
    } catch (err) {
      // Full, or blocked by the browser: the session is just not kept.
      this.#log(`sessionStorage: ${err}`);
    }
  }

  /**
   * Answers the HTTP errors that are not a transport's fault: an unknown session (start a new
   * one) and refusals (close with 1008). Returns false for the others (5xx, 408), which the
   * caller treats as a network error.
   *
   * @param {Failure} fail
   * @returns {boolean}
   */
  #refused(fail) {
    const status = fail?.status ?? 0;
    if (status === 404 && fail?.error === 'unknown-session') {
      // A session that 404s before any transport opened on it would loop: back off then.
      const ms = this.#sessionOpened ? 0 : this.#delay(this.#retries++);
      this.#sessionLost('session unknown', ms);
      return true;
    }
    if (status === 403 && fail?.error === 'wrong-user' && this.#restored) {
      // The kept session is the user's who was signed in before the reload: nothing of it was
      // this user's to miss.
      this.#pos = null;
      this.#sessionLost('the kept session is another user\'s', 0);
      return true;
    }
    if (status < 400 || status >= 500 || status === 408) return false;
    this.#shutdown(1008, fail?.message || fail?.error || `HTTP ${status}`, false);
    return true;
  }

  /**
   * The session is gone (its token names none any more, or the server closed it with a code
   * that says to reconnect): start a new one after `ms`, and tell the app what was lost.
   *
   * @param {string} why
   * @param {number} ms
   */
  #sessionLost(why, ms) {
    this.#log(`${why}: negotiating again`);
    this.#stopAttempt();
    this.#token = null;
    this.#restored = false;
    if (this.#pos !== null) {
      this.#pos = null;
      this.dispatchEvent(new CustomEvent('gap', { detail: { missed: null } }));
    }
    this.#save();
    if (this.#readyState !== Connection.CLOSED) this.#later(() => this.#negotiate(), ms);
  }

  // ---- choosing a transport ----

  /** Starts the best transport that has not failed recently. */
  #connect() {
    if (this.#readyState === Connection.CLOSED) return;
    const now = Date.now();
    const name = this.#order.find((t) => {
      const at = this.#failed.get(t);
      return at === undefined || now - at >= this.#options.retryBetterAfter;
    });
    if (name) return this.#start(name);
    this.#log('every transport failed: starting over');
    this.#failed.clear();
    this.#later(() => this.#connect(), this.#delay(this.#retries++));
  }

  /** @param {TransportName} name */
  #start(name) {
    this.#stopAttempt();
    /** @type {Attempt} */
    const a = {
      name,
      opened: false,
      openedAt: 0,
      handle: null,
      openTimer: undefined,
      silenceTimer: undefined,
      heardAt: 0,
    };
    this.#attempt = a;
    const wait = this.#options.openTimeout + (name === 'polling' ? this.#pollTimeout() : 0);
    a.openTimer = setTimeout(() => this.#fail(a, 'no open frame in time'), wait);
    this.#open(a);
    this.#flush();
  }

  /**
   * Gives up a transport for `retryBetterAfter` and goes on with the next.
   *
   * @param {Attempt} a
   * @param {string} why
   */
  #fail(a, why) {
    if (a !== this.#attempt) return;
    this.#log(`${a.name} failed: ${why}`);
    if (offline()) {
      // Not the transport's fault: it is tried again, first, once the network is back.
      this.#stopAttempt();
      return this.#waitOnline(() => this.#start(a.name));
    }
    this.#failed.set(a.name, Date.now());
    this.#gaveUp = a.name;
    this.#flaps.delete(a.name);
    this.#stopAttempt();
    this.#connect();
  }

  /**
   * A connection that had opened ended without `end`: reconnect on the same transport, at once
   * the first time, then with backoff; a transport that keeps dropping soon is given up.
   *
   * @param {Attempt} a
   * @param {string} why
   */
  #dropped(a, why) {
    if (a !== this.#attempt) return;
    this.#log(`${a.name} dropped: ${why}`);
    if (offline()) {
      this.#stopAttempt();
      return this.#waitOnline(() => this.#start(a.name));
    }
    const flaps = Date.now() - a.openedAt >= STABLE_MS ? 0 : (this.#flaps.get(a.name) ?? 0) + 1;
    if (flaps >= FLAPS) return this.#fail(a, 'keeps dropping');
    this.#flaps.set(a.name, flaps);
    this.#stopAttempt();
    this.#later(() => this.#start(a.name), flaps === 0 ? 0 : this.#delay(flaps - 1));
  }

  /**
   * A transport that has not opened errored. WebSocket and EventSource hide the status, so ask
   * the server whether the session is still there before blaming the transport.
   *
   * @param {Attempt} a
   * @param {Failure} fail
   */
  async #notOpened(a, fail) {
    if (fail?.status) {
      if (this.#refused(fail)) return;
      return this.#fail(a, `HTTP ${fail.status} ${fail.message ?? ''}`);
    }
    if ((a.name === 'websocket' || a.name === 'sse') && !offline()) {
      const res = await this.#request('POST', this.#path('/native/send', false), '[]').catch(
        () => null,
      );
      if (a !== this.#attempt) return;
      if (res && !res.ok && this.#refused(await failure(res))) return;
    }
    this.#fail(a, fail?.message ?? 'error before open');
  }

  /** Once a worse transport works, schedules a try of the better ones. */
  #scheduleUpgrade() {
    clearTimeout(this.#upgradeTimer);
    const current = this.#attempt?.name;
    if (!current || this.#order.indexOf(current) === 0) return;
    this.#upgradeTimer = setTimeout(() => {
      const a = this.#attempt;
      if (!a || !a.opened || a.name !== current) return;
      this.#log(`retrying transports better than ${current}`);
      this.#stopAttempt();
      this.#connect();
    }, this.#options.retryBetterAfter);
  }

  // ---- one transport ----

  /**
   * Makes the next request (or socket) of an attempt, from the last position.
   *
   * @param {Attempt} a
   */
  #open(a) {
    const paths = {
      websocket: '/native/ws',
      sse: '/native/sse',
      streaming: '/native/stream',
      polling: '/native/poll',
    };
    let url = this.#base + this.#path(paths[a.name], true);
    // The server counts fallbacks (tidings_transport_fallbacks_total) by what its clients say.
    if (this.#gaveUp !== null && this.#gaveUp !== a.name) url += `&fb=${this.#gaveUp}`;
    this.#gaveUp = null;
    /** @type {Handle} */
    let h;
    const sink = {
      /** @param {Frame} f */
      frame: (f) => {
        if (a === this.#attempt && a.handle === h) this.#frame(a, h, f);
      },
      /** @param {Failure} fail */
      done: (fail) => {
        if (a !== this.#attempt || a.handle !== h) return;
        if (!a.opened) return this.#notOpened(a, fail);
        if (fail?.status && this.#refused(fail)) return;
        this.#dropped(a, fail?.message ?? 'ended without end frame');
      },
    };
    const maxLine = 8 * (this.#info?.max_message_size ?? 1 << 20) + 1024;
    h = transports[a.name](url, sink, maxLine);
    a.handle = h;
  }

  /**
   * @param {Attempt} a
   * @param {Handle} h
   * @param {Frame} f
   */
  #frame(a, h, f) {
    h.first ??= Date.now();
    if (f.type === 'open') {
      if (typeof f.pos === 'string') this.#pos = f.pos;
      this.#save();
      if (!a.opened) this.#opened(a);
    } else if (!a.opened && f.type !== 'close') {
      // A session closed meanwhile answers its `close` frame, without `open`.
      return this.#log(`${a.name}: ${f.type} frame before open, ignored`);
    }
    this.#armSilence(a);
    switch (f.type) {
      case 'messages':
        // A batch is handed on whole, then its position is taken: a client that resumes from
        // it gets exactly what came after the batch.
        if (!Array.isArray(f.data) || typeof f.pos !== 'string') {
          this.#log(`${a.name}: malformed messages frame ignored`);
          break;
        }
        for (const data of f.data) {
          if (this.#readyState === Connection.CLOSED) return; // close() from a handler
          this.dispatchEvent(new MessageEvent('message', { data: String(data) }));
        }
        this.#pos = f.pos;
        this.#save();
        break;
      case 'gap':
        if (typeof f.pos === 'string') this.#pos = f.pos;
        this.dispatchEvent(new CustomEvent('gap', { detail: { missed: f.missed ?? null } }));
        this.#save();
        break;
      case 'end': {
        // The position past the session's own bookkeeping, when the server sends one.
        if (typeof f.pos === 'string' && f.pos !== this.#pos) {
          this.#pos = f.pos;
          this.#save();
        }
        const now = Date.now();
        const late = (h.first ?? now) - h.started > BUFFERED_MS;
        if ((a.name === 'streaming' || a.name === 'sse') && late && now - (h.first ?? now) < 50) {
          return this.#fail(a, 'response arrived in one piece: a proxy buffers it');
        }
        h.stop();
        this.#open(a);
        break;
      }
      case 'close': {
        const code = f.code ?? 1000;
        const reason = f.reason ?? '';
        if (!(RECONNECT[code] ?? f.reconnect === true)) {
          return this.#shutdown(code, reason, Boolean(f.reconnect));
        }
        // A server that closes each new session soon after it opens is not hammered.
        const n = a.opened && Date.now() - a.openedAt >= STABLE_MS ? 0 : this.#closes;
        this.#closes = n + 1;
        this.#sessionLost(`session closed by the server (${code} ${reason})`, this.#delay(n));
        break;
      }
      default: // heartbeat, and frame types of later versions
    }
  }

  /** @param {Attempt} a */
  #opened(a) {
    clearTimeout(a.openTimer);
    a.opened = true;
    a.openedAt = Date.now();
    this.#failed.delete(a.name);
    this.#retries = 0;
    this.#sessionOpened = true;
    this.#restored = false;
    this.#log(`${a.name} open`);
    if (this.#transport !== a.name) {
      this.#transport = a.name;
      this.dispatchEvent(new CustomEvent('transport', { detail: a.name }));
    }
    if (this.#readyState === Connection.CONNECTING && this.#attempt === a) {
      this.#readyState = Connection.OPEN;
      this.dispatchEvent(new Event('open'));
    }
    if (this.#attempt !== a) return;
    this.#scheduleUpgrade();
    this.#flush();
  }

  /** @param {Attempt} a */
  #armSilence(a) {
    a.heardAt = Date.now();
    clearTimeout(a.silenceTimer);
    if (this.#attempt !== a) return;
    const poll = a.name === 'polling' ? this.#pollTimeout() : 0;
    const beat = Math.max(this.#info?.heartbeat_ms ?? 25000, poll);
    const limit = beat * this.#options.silenceFactor + this.#options.openTimeout;
    a.silenceTimer = setTimeout(() => this.#fail(a, `silent for ${limit} ms`), limit);
  }

  #stopAttempt() {
    const a = this.#attempt;
    if (!a) return;
    this.#attempt = null;
    clearTimeout(a.openTimer);
    clearTimeout(a.silenceTimer);
    clearTimeout(this.#upgradeTimer);
    a.handle?.stop();
  }

  // ---- sending ----

  /** Sends what is queued: on an open WebSocket directly, otherwise one POST at a time. */
  #flush() {
    if (this.#sending || !this.#token || this.#queue.length === 0) return;
    if (this.#readyState === Connection.CLOSED) return;
    const a = this.#attempt;
    if (a?.name === 'websocket') {
      const ws = a.handle?.ws;
      if (!a.opened || !ws || ws.readyState !== 1) return; // flushed again once open
      for (const text of this.#queue.splice(0)) ws.send(text);
      return;
    }
    const limit = this.#info?.max_message_size ?? 1 << 20;
    let n = 0;
    let bytes = 2;
    while (n < this.#queue.length) {
      const size = byteLength(JSON.stringify(this.#queue[n])) + 1;
      if (n > 0 && bytes + size > limit) break;
      bytes += size;
      n += 1;
    }
    const batch = this.#queue.slice(0, n);
    const token = this.#token;
    this.#sending = true;
    this.#request('POST', this.#path('/native/send', false), JSON.stringify(batch))
      .then(async (res) => {
        this.#sending = false;
        if (!res) return;
        if (res.ok || res.status === 413 || res.status === 400) {
          if (!res.ok) this.#log(`send refused (${res.status}): ${n} message(s) dropped`);
          this.#queue.splice(0, n);
          this.#sendRetries = 0;
          return this.#flush();
        }
        if (token === this.#token && this.#refused(await failure(res))) return;
        throw new Error(`HTTP ${res.status}`);
      })
      .catch((err) => {
        this.#sending = false;
        this.#log(`send failed: ${err}`);
        clearTimeout(this.#sendTimer);
        // Offline, a failure is not counted: `online` sends at once (#wake).
        const ms = offline() ? this.#options.backoff.max : this.#delay(this.#sendRetries++);
        this.#sendTimer = setTimeout(() => this.#flush(), ms);
      });
  }

  // ---- helpers ----

  /**
   * @param {string} path
   * @param {boolean} withPos
   */
  #path(path, withPos) {
    let q = `${path}?v=${VERSION}&token=${encodeURIComponent(this.#token ?? '')}`;
    if (withPos && this.#pos !== null) q += `&pos=${encodeURIComponent(this.#pos)}`;
    if (this.#query) q += `&${this.#query}`;
    return q;
  }

  /**
   * A fetch that `close()` aborts; resolves to null once aborted.
   *
   * @param {string} method
   * @param {string} path
   * @param {string} body
   * @returns {Promise<Response | null>}
   */
  async #request(method, path, body) {
    const ctrl = new AbortController();
    this.#requests.add(ctrl);
    try {
      return await fetch(this.#base + path, {
        method,
        body,
        credentials: 'same-origin',
        cache: 'no-store',
        signal: ctrl.signal,
      });
    } catch (err) {
      if (ctrl.signal.aborted) return null;
      throw err;
    } finally {
      this.#requests.delete(ctrl);
    }
  }

  #pollTimeout() {
    return this.#info?.poll_timeout_ms ?? 25000;
  }

  /** @param {number} n retries so far */
  #delay(n) {
    const { initial, max, factor, jitter } = this.#options.backoff;
    const d = Math.min(max, initial * factor ** Math.min(n, 30));
    return Math.min(max, d * (1 - jitter + 2 * jitter * Math.random()));
  }

  /**
   * Runs `fn` after `ms`, unless the connection is closed by then. One pending at a time. While
   * the page is hidden it waits at least `HIDDEN_MS`; `#wake` runs it sooner.
   *
   * @param {() => void} fn
   * @param {number} ms
   */
  #later(fn, ms) {
    clearTimeout(this.#retryTimer);
    if (hidden()) ms = Math.max(ms, HIDDEN_MS * (1 + Math.random()));
    this.#retry = fn;
    this.#retryTimer = setTimeout(() => {
      this.#retry = null;
      if (this.#readyState !== Connection.CLOSED) fn();
    }, ms);
  }

  /**
   * Waits for `online` to run `fn`, without counting a retry: failures while offline say
   * nothing about the server or the transport. `navigator.onLine` can be wrong, so `fn` also
   * runs after `backoff.max`.
   *
   * @param {() => void} fn
   */
  #waitOnline(fn) {
    this.#log('offline: waiting for the network');
    this.#later(fn, this.#options.backoff.max);
  }

  /**
   * Runs the pending retry and send now, instead of at the end of their backoff: the network
   * is back, or the page is shown again.
   *
   * @param {string} why
   */
  #wake(why) {
    if (this.#readyState === Connection.CLOSED || offline()) return;
    const fn = this.#retry;
    if (fn) {
      this.#log(`${why}: retrying now`);
      clearTimeout(this.#retryTimer);
      this.#retry = null;
      fn();
    }
    clearTimeout(this.#sendTimer);
    this.#flush();
  }

  #onOnline = () => {
    // A connection that heard nothing since the network went is likely dead (a TCP connection
    // does not survive a change of network) and would only be found so after the silence
    // timeout: resume from the position now instead, which loses and repeats nothing.
    const a = this.#attempt;
    if (a?.opened && a.heardAt < this.#offlineAt) {
      this.#log(`${a.name}: silent since offline, reconnecting`);
      this.#start(a.name);
    }
    this.#wake('online');
  };

  #onOffline = () => {
    this.#offlineAt = Date.now();
  };

  #onVisibility = () => {
    if (!hidden()) this.#wake('visible');
  };

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} reconnect
   */
  #shutdown(code, reason, reconnect) {
    if (this.#readyState === Connection.CLOSED) return;
    this.#readyState = Connection.CLOSED;
    this.#stopAttempt();
    this.#transport = null;
    this.#save();
    if (typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('online', this.#onOnline);
      globalThis.removeEventListener('offline', this.#onOffline);
    }
    if (typeof document !== 'undefined') {
      document.removeEventListener('visibilitychange', this.#onVisibility);
    }
    this.#retry = null;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#upgradeTimer);
    clearTimeout(this.#sendTimer);
    for (const ctrl of this.#requests) ctrl.abort();
    this.#requests.clear();
    this.#queue = [];
    this.dispatchEvent(Object.assign(new Event('close'), { code, reason, reconnect }));
  }

  /** @param {string} message */
  #log(message) {
    this.#options.log(message);
  }
}

// ---- transports: each opens one socket or request and reports frames and its end ----

/**
 * @typedef {object} Sink
 * @property {(f: Frame) => void} frame
 * @property {(fail: Failure) => void} done called once, unless stopped
 */

/** @type {Record<TransportName, (url: string, sink: Sink, maxLine: number) => Handle>} */
const transports = {
  websocket(url, sink) {
    const ws = new WebSocket(url.replace(/^http/, 'ws'));
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') return;
      const f = parse(e.data);
      if (f) sink.frame(f);
    };
    ws.onclose = (e) => sink.done({ message: `websocket closed (${e.code})` });
    return {
      ws,
      started: Date.now(),
      stop() {
        ws.onmessage = ws.onclose = null;
        // A code of our own tells the server the client is moving on, not ending the session
        // (a close without a code, or with 1000, would end it).
        ws.close(4001, 'leaving');
      },
    };
  },

  sse(url, sink) {
    // EventSource would reconnect by itself; closing it on error lets the client choose
    // between reconnecting and falling back.
    const es = new EventSource(url);
    // Every frame is one unnamed event whose data is the frame's JSON.
    es.onmessage = (e) => {
      const f = typeof e.data === 'string' ? parse(e.data) : null;
      if (f) sink.frame(f);
    };
    es.onerror = () => {
      es.close();
      sink.done({ message: 'event stream error' });
    };
    return { started: Date.now(), stop: () => es.close() };
  },

  streaming(url, sink, maxLine) {
    const ctrl = new AbortController();
    const h = { started: Date.now(), stop: () => ctrl.abort() };
    (async () => {
      const res = await fetch(url, { ...GET, signal: ctrl.signal });
      if (!res.ok) return sink.done(await failure(res));
      if (!res.body) return sink.done({ message: 'no response body' });
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (ctrl.signal.aborted) return;
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let i;
        while ((i = buffer.indexOf('\n')) >= 0 && !ctrl.signal.aborted) {
          const line = buffer.slice(0, i).trim();
          buffer = buffer.slice(i + 1);
          const f = line ? parse(line) : null;
          if (f) sink.frame(f);
        }
        if (buffer.length > maxLine) {
          ctrl.abort();
          return sink.done({ message: 'frame too long' });
        }
      }
      sink.done(null);
    })().catch((err) => {
      if (!ctrl.signal.aborted) sink.done({ message: String(err) });
    });
    return h;
  },

  polling(url, sink) {
    const ctrl = new AbortController();
    (async () => {
      const res = await fetch(url, { ...GET, signal: ctrl.signal });
      if (!res.ok) return sink.done(await failure(res));
      const frames = await res.json();
      if (ctrl.signal.aborted) return;
      if (!Array.isArray(frames)) return sink.done({ message: 'poll answer is not an array' });
      for (const f of frames) {
        if (ctrl.signal.aborted) return;
        if (f && typeof f === 'object') sink.frame(f);
      }
      if (!ctrl.signal.aborted) sink.done(null);
    })().catch((err) => {
      if (!ctrl.signal.aborted) sink.done({ message: String(err) });
    });
    return { started: Date.now(), stop: () => ctrl.abort() };
  },
};

/**
 * @param {string} text
 * @returns {Frame | null}
 */
function parse(text) {
  try {
    const f = JSON.parse(text);
    return f && typeof f === 'object' ? f : null;
  } catch {
    return null;
  }
}

/**
 * The status and `{error, message}` body of a failed response.
 *
 * @param {Response} res
 * @returns {Promise<Failure>}
 */
async function failure(res) {
  const body = await res.json().catch(() => ({}));
  return { status: res.status, error: body?.error, message: body?.message ?? res.statusText };
}

/** Whether the browser says there is no network (never in a runtime that cannot tell). */
function offline() {
  return typeof navigator !== 'undefined' && navigator.onLine === false;
}

/** Whether the page is in a background tab or minimised (never outside a page). */
function hidden() {
  return typeof document !== 'undefined' && document.visibilityState === 'hidden';
}

/**
 * The page's `sessionStorage`, or null where there is none: in a worker or Node, and where the
 * browser blocks it (reading the global then throws).
 *
 * @returns {Storage | null}
 */
function storage() {
  try {
    return typeof sessionStorage === 'undefined' ? null : sessionStorage;
  } catch {
    return null;
  }
}

/** @param {string} text */
function byteLength(text) {
  return new TextEncoder().encode(text).length;
}
