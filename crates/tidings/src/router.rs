//! The axum routes of one service.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::error::Error;
use crate::handshake::{Handshake, Identity};
use crate::http_util::{method_not_allowed, not_found, plain};
use crate::native::{self, receive::Kind};
use crate::session::check_user_limit;
use crate::sockjs::callback::Callback;
use crate::sockjs::framing::Framing;
use crate::sockjs::send::{self, Sender};
use crate::sockjs::{cookie, cors, iframe, info, receive};
use crate::tidings::Shared;
use crate::transport::websocket::{self, Flavor, Opening};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let page = Arc::new(iframe::Page::new(&shared.config.sockjs_url));
    Router::new()
        .route("/", any(greeting))
        .route("/info", any(info::serve))
        // Every other single segment: the iframe page under its names, 404 for the rest.
        .route(
            "/{file}",
            any(move |method: Method, uri: Uri, headers: HeaderMap| {
                std::future::ready(page.serve(&method, &uri, &headers))
            }),
        )
        .route("/websocket", any(raw_websocket))
        .route("/tidings.js", any(native::script))
        .route("/native/negotiate", any(native_route(native::negotiate)))
        .route("/native/ws", any(native_route(native::ws)))
        .route("/native/send", any(native_route(native::send)))
        .route("/native/close", any(native_route(native::close)))
        .route(
            "/native/sse",
            any(native_route(|s, r| receive_native(s, Kind::Sse, r))),
        )
        .route(
            "/native/stream",
            any(native_route(|s, r| receive_native(s, Kind::Stream, r))),
        )
        .route(
            "/native/poll",
            any(native_route(|s, r| receive_native(s, Kind::Poll, r))),
        )
        .route("/{server}/{session}/websocket", any(sockjs_websocket))
        .route("/{server}/{session}/{transport}", any(sockjs_session))
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn(doubled_slash))
        .with_state(shared)
}

/// 404 for `<prefix>//…`. `nest_service` strips `<prefix>/` from it just as from `<prefix>/…`,
/// so without this check `<prefix>//` would get the greeting and `<prefix>//info` the info;
/// SockJS wants both to be 404.
async fn doubled_slash(original: OriginalUri, request: Request, next: Next) -> Response {
    let doubled = original
        .path()
        .strip_suffix(request.uri().path())
        .is_some_and(|prefix| prefix.ends_with('/'));
    if doubled {
        return not_found();
    }
    next.run(request).await
}

async fn greeting(method: Method) -> Response {
    match method {
        Method::GET => plain(StatusCode::OK, "Welcome to SockJS!\n"),
        _ => method_not_allowed("GET"),
    }
}

async fn raw_websocket(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    websocket(shared, request, Flavor::Raw).await
}

async fn sockjs_websocket(
    State(shared): State<Arc<Shared>>,
    Path((server, session)): Path<(String, String)>,
    request: Request,
) -> Response {
    if !session_segment(&server) || !session_segment(&session) {
        return not_found();
    }
    websocket(shared, request, Flavor::SockJs).await
}

/// An axum handler for a native endpoint `f(shared, request)`.
fn native_route<F, Fut>(
    f: F,
) -> impl Fn(State<Arc<Shared>>, Request) -> Fut + Clone + Send + Sync + 'static
where
    F: Fn(Arc<Shared>, Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    move |State(shared), request| f(shared, request)
}

async fn receive_native(shared: Arc<Shared>, kind: Kind, request: Request) -> Response {
    native::receive::serve(shared, kind, request).await
}

/// Every SockJS session URL but the WebSocket one.
async fn sockjs_session(
    State(shared): State<Arc<Shared>>,
    Path((server, session, transport)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    if !session_segment(&server) || !session_segment(&session) {
        return not_found();
    }
    let (parts, body) = request.into_parts();
    let framing = match (transport.as_str(), &parts.method) {
        ("xhr", &Method::POST) => Framing::XhrPolling,
        ("xhr_streaming", &Method::POST) => Framing::XhrStreaming,
        ("eventsource", &Method::GET) => Framing::EventSource,
        ("htmlfile" | "jsonp", &Method::GET) => match Callback::from_uri(&parts.uri) {
            Ok(callback) if transport == "htmlfile" => Framing::HtmlFile(callback),
            Ok(callback) => Framing::Jsonp(callback),
            Err(error) => return error.response(),
        },
        ("xhr_send", &Method::POST) => {
            return send::serve(shared, Sender::Xhr, &session, parts.headers, body).await;
        }
        ("jsonp_send", &Method::POST) => {
            return send::serve(shared, Sender::Jsonp, &session, parts.headers, body).await;
        }
        ("xhr" | "xhr_streaming" | "xhr_send", &Method::OPTIONS) => {
            let mut response = cors::preflight(&parts.headers, "OPTIONS, POST");
            cookie::set_jsessionid(&shared.config, &parts.headers, response.headers_mut());
            return response;
        }
        ("xhr" | "xhr_streaming" | "xhr_send", _) => return method_not_allowed("OPTIONS, POST"),
        ("jsonp_send", _) => return method_not_allowed("POST"),
        ("eventsource" | "htmlfile" | "jsonp", _) => return method_not_allowed("GET"),
        _ => return not_found(),
    };
    receive::serve(shared, framing, &session, parts).await
}

/// A `<server>` or `<session>` path segment: non-empty, without `.` (or `/`).
pub(crate) fn session_segment(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains(['.', '/'])
}

async fn websocket(shared: Arc<Shared>, request: Request, flavor: Flavor) -> Response {
    if !shared.config.websocket {
        return not_found();
    }
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(_) => return bad_upgrade(&parts.headers),
    };
    let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
    let identity = match admit(&shared, handshake).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let limit = shared.config.max_message_size;
    upgrade
        .read_buffer_size(websocket::READ_BUFFER)
        // Above our own limit, so an oversized message gets our close code rather than a
        // protocol error from the WebSocket layer; far above it, the layer stops reading.
        .max_message_size(limit.saturating_mul(2).saturating_add(1024))
        .on_upgrade(move |socket| websocket::serve(shared, socket, Opening::New(identity), flavor))
}

/// Runs the checks every channel-opening request passes: origin, auth hook, per-user limit.
pub(crate) async fn admit(shared: &Shared, handshake: Handshake) -> Result<Identity, Response> {
    if !shared.config.origin_allowed(handshake.origin()) {
        return Err(plain(StatusCode::FORBIDDEN, "Origin not allowed\n"));
    }
    let identity = (shared.handlers.auth)(handshake)
        .await
        .map_err(IntoResponse::into_response)?;
    check_user_limit(shared, &identity)
        .await
        .map_err(|e| error_response(&e))?;
    Ok(identity)
}

/// The HTTP answer for an error, as [`Error::status`] maps it.
pub(crate) fn error_response(error: &Error) -> Response {
    plain(error.status(), format!("{error}\n"))
}

fn bad_upgrade(headers: &axum::http::HeaderMap) -> Response {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    let body = if !has(header::UPGRADE, "websocket") {
        "Can \"Upgrade\" only to \"WebSocket\".\n"
    } else if !has(header::CONNECTION, "upgrade") {
        "\"Connection\" must be \"Upgrade\".\n"
    } else {
        "Not a valid websocket request\n"
    };
    plain(StatusCode::BAD_REQUEST, body)
}
