// Types of the Tidings native client, `<prefix>/tidings.js`; served beside it at
// `<prefix>/tidings.d.ts`. The wire protocol is docs/protocol.md.
//
// Needs the `dom` lib (or `webworker`) for `EventTarget`, `Event`, `MessageEvent` and
// `CustomEvent`. TypeScript does not resolve a URL such as `/rt/tidings.js`: save this file in
// the project and map a bare specifier to both, e.g. an import map `"tidings": "/rt/tidings.js"`
// in the page and `"paths": { "tidings": ["./types/tidings.d.ts"] }` in tsconfig.json.

/** A transport of the native protocol, in the client's order of preference. */
export type TransportName = 'websocket' | 'sse' | 'streaming' | 'polling';

/** Delays between reconnects that keep failing: jittered, growing exponentially. */
export interface Backoff {
  /** First delay, ms. Default 500. */
  initial?: number;
  /** Largest delay, ms; also how often a client that believes it is offline retries anyway.
   * Default 30000. */
  max?: number;
  /** Growth per retry. Default 2. */
  factor?: number;
  /** 0..1, the share of each delay that is randomised. Default 0.5. */
  jitter?: number;
}

/** Options of {@link connect}. */
export interface Options {
  /** Transports to use, best first; intersected with what the server offers and what this
   * runtime has. Default: all four, in the order of {@link TransportName}. */
  transports?: TransportName[];
  /** Ms a transport has to deliver its `open` frame. Default 5000; polling gets the server's
   * `poll_timeout_ms` on top. */
  openTimeout?: number;
  /** A transport that sends no frame for `heartbeat_ms * silenceFactor + openTimeout` is dead.
   * Default 2. */
  silenceFactor?: number;
  /** Delays between reconnects that keep failing. */
  backoff?: Backoff;
  /** Ms after falling back before the better transports are tried again. Default 60000. */
  retryBetterAfter?: number;
  /** Most messages `send()` holds before they reach the server; past it `send()` throws.
   * Default 1000. */
  maxQueue?: number;
  /** Receives diagnostics (transport failures, reconnects). Default: nothing. */
  log?: (message: string) => void;
  /**
   * Keep the session across reloads of the page, in `sessionStorage` (so per tab): `true`
   * under the key `tidings:<url>` (the service's absolute URL), a string under that key (to
   * keep two connections to one service apart). Default `false`.
   *
   * The token and the position are written after every batch of messages handed on, so a
   * reloaded page's client resumes the same session and receives what the page missed, once
   * each and in order; if the session is gone by then, it starts a new one and dispatches a
   * `gap` with `missed: null`. The record is removed when the connection closes for good (a
   * `close` event), so a page that calls `close()` while unloading keeps nothing.
   */
  persist?: boolean | string;
}

/** `detail` of a `gap` event. */
export interface Gap {
  /** How many messages were lost, or `null` when unknown: the session expired, or the server
   * closed it with a code that says to reconnect, and the client started a new one. */
  missed: number | null;
}

/** The `close` event: the connection is over and will not reconnect. */
export interface TidingsCloseEvent extends Event {
  readonly type: 'close';
  /** The close code: the server's (docs/close-codes.md, or an application code), 1008 for a
   * refusal or when no transport is usable, 1000 for `close()`. */
  readonly code: number;
  /** The server's reason, the refusal's message, or "Normal closure". */
  readonly reason: string;
  /** The server close frame's own `reconnect` flag. The client reconnects by itself after
   * every code that says to (1001, 1002, 1011, 1013, 3001, 3002, 3003), so this is false on
   * every `close` it dispatches. */
  readonly reconnect: boolean;
}

/** The events of a {@link Connection}, by type. */
export interface ConnectionEventMap {
  /** The first transport opened. Reconnects and transport changes underneath do not repeat it. */
  open: Event;
  /** `data` is one message's text. Every message is handed on once, in order, across
   * reconnects, transport changes and (with `persist`) reloads. */
  message: MessageEvent<string>;
  /** `detail` is the transport now delivering. */
  transport: CustomEvent<TransportName>;
  /** Messages were lost: the server no longer held them, or the session was replaced. */
  gap: CustomEvent<Gap>;
  /** The connection is over; see {@link TidingsCloseEvent}. */
  close: TidingsCloseEvent;
}

/**
 * One logical connection: a session on the server, carried by whichever transport works.
 *
 * It reconnects by itself, from the position of the last message handed on: with backoff
 * after failures; not while the browser says it is offline (it waits for `online`, retrying at
 * most every `backoff.max`), and at once on `online`; no faster than every 10–20 s while the
 * page is hidden, and at once when it is shown. A server close whose code says to reconnect
 * starts a new session (a `gap`); any other ends the connection (a `close`).
 */
export class Connection extends EventTarget {
  /** `readyState` until a transport first opens. */
  static readonly CONNECTING: 0;
  /** `readyState` once a transport has opened, across reconnects. */
  static readonly OPEN: 1;
  /** `readyState` once the connection is over. */
  static readonly CLOSED: 3;

  /**
   * @param url the service's prefix, e.g. `'/rt'` or `'https://example.com/rt'`; its query
   *   parameters (`'/rt?user=ann'`) are sent with every request, for the server's auth hook
   */
  constructor(url: string, options?: Options);

  /** `CONNECTING` until a transport first opens, then `OPEN`, then `CLOSED`. */
  readonly readyState: 0 | 1 | 3;
  /** The transport that last opened; null before and after. */
  readonly transport: TransportName | null;
  /** Transports that failed recently and are skipped for now. */
  readonly failedTransports: TransportName[];

  /**
   * Sends one message. Queued until a transport is open; at most `maxQueue` messages wait.
   * On WebSocket it is written to the socket, so messages written just before it breaks can
   * be lost; on the other transports messages are POSTed in order and a failed request is
   * retried, so a message may then arrive twice.
   *
   * @throws {Error} when the connection is closed or the queue is full
   * @throws {RangeError} when the message is over the server's `max_message_size`
   */
  send(text: string): void;

  /**
   * Closes the connection: tells the server (so the session ends now rather than after
   * `resume_ms`), stops every transport and timer, forgets the `persist` record, and
   * dispatches `close` (1000). Queued messages not yet sent are dropped.
   */
  close(): void;

  addEventListener<K extends keyof ConnectionEventMap>(
    type: K,
    listener: (this: Connection, event: ConnectionEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof ConnectionEventMap>(
    type: K,
    listener: (this: Connection, event: ConnectionEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

/**
 * Opens a connection to the Tidings service at `url` (its prefix, e.g. `'/rt'` or
 * `'https://example.com/rt'`): negotiates a session, or resumes the one `persist` kept. Query
 * parameters of `url` are sent with every request, for the server's auth hook.
 */
export function connect(url: string, options?: Options): Connection;
