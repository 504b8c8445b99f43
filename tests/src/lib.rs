//! Support code for the integration tests: servers on 127.0.0.1 port 0 and clients for them.

use std::net::SocketAddr;

use axum::Router;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// A server running `app` on a free loopback port, stopped when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts `app` on 127.0.0.1 with port 0.
    pub async fn start(app: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Server { addr, task }
    }

    /// `ws://addr<path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects a WebSocket client to `url`.
pub async fn connect(url: &str) -> Ws {
    connect_async(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}")).0
}

/// The next text message, or `None` when the connection ends first (closes are reported as
/// `close:<code>:<reason>`).
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(Some(frame))) => return Some(format!("close:{}:{}", u16::from(frame.code), frame.reason)),
            Ok(Message::Close(None)) => return Some("close".into()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Sends a text message.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}
