//! A STOMP client on a WebSocket, for tests that need one beside the client under test: to
//! publish, or to watch what a destination receives.

use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{Ws, next_text, send_text};

/// How long any one answer may take.
const ANSWER: Duration = Duration::from_secs(10);

/// A connected STOMP 1.2 client.
pub struct StompClient {
    ws: Ws,
    receipts: u64,
}

impl StompClient {
    /// Opens `url` (`ws://…/stomp/websocket`, offering `v12.stomp`) and connects with the
    /// extra CONNECT `headers` (each `name:value\n`).
    pub async fn connect(url: &str, headers: &str) -> StompClient {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "v12.stomp".parse().expect("a header value"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let mut client = StompClient { ws, receipts: 0 };
        client
            .send(&format!("CONNECT\naccept-version:1.2\n{headers}\n\0"))
            .await;
        let connected = client.next().await;
        assert!(connected.starts_with("CONNECTED\n"), "{connected:?}");
        client
    }

    /// Sends one frame as it is.
    pub async fn send(&mut self, frame: &str) {
        send_text(&mut self.ws, frame).await;
    }

    /// The next frame that is not a heart-beat. Panics when none comes in time.
    pub async fn next(&mut self) -> String {
        loop {
            let text = tokio::time::timeout(ANSWER, next_text(&mut self.ws))
                .await
                .expect("a STOMP frame in time")
                .expect("the connection is open");
            if text != "\n" {
                return text;
            }
        }
    }

    /// Sends `frame` (a command line, then headers and body) with a receipt, and waits for it.
    pub async fn with_receipt(&mut self, frame: &str) {
        self.receipts += 1;
        let receipt = format!("t-{}", self.receipts);
        let (command, rest) = frame.split_once('\n').expect("a command line");
        self.send(&format!("{command}\nreceipt:{receipt}\n{rest}"))
            .await;
        let answer = self.next().await;
        assert_eq!(answer, format!("RECEIPT\nreceipt-id:{receipt}\n\n\0"));
    }

    /// SENDs `body` to `destination`, and waits until the server has taken it.
    pub async fn publish(&mut self, destination: &str, body: &str) {
        self.with_receipt(&format!("SEND\ndestination:{destination}\n\n{body}\0"))
            .await;
    }

    /// Subscribes to `destination` under the id `id`, once the server has taken it.
    pub async fn subscribe(&mut self, id: &str, destination: &str) {
        self.with_receipt(&format!(
            "SUBSCRIBE\nid:{id}\ndestination:{destination}\n\n\0"
        ))
        .await;
    }

    /// The body of the next MESSAGE.
    pub async fn next_body(&mut self) -> String {
        let frame = self.next().await;
        assert!(frame.starts_with("MESSAGE\n"), "{frame:?}");
        let (_, body) = frame.split_once("\n\n").unwrap_or_default();
        body.trim_end_matches('\0').to_owned()
    }

    /// Whether nothing but heart-beats arrives for `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, next_text(&mut self.ws)).await {
                Err(_) => return true,
                Ok(Some(text)) if text == "\n" => continue,
                Ok(_) => return false,
            }
        }
    }
}
