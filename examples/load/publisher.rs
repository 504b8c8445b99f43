//! The publisher: one WebSocket session (tokio-tungstenite) on a thread of its own, so that
//! however busy the subscribers keep the load program's runtime, the operating system still
//! wakes it on time for its next send. The run drives it through commands: send probes until
//! every subscriber has seen one, then publish the measured messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::run::{Failed, Round, Shared, message_text};
use crate::transport::{STOMP_CONNECT, stomp_send, tcp};

type Ws = WebSocketStream<TcpStream>;

/// How the publisher's WebSocket frames what it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `/broadcast/<server>/<session>/websocket`: JSON arrays of strings.
    SockJs,
    /// `/broadcast/websocket`: one text message per message.
    Raw,
    /// `/stomp/websocket`: a STOMP SEND to [`STOMP_TOPIC`](crate::transport::STOMP_TOPIC)
    /// per message.
    Stomp,
}

enum Command {
    /// Send probes of this round until every subscriber has seen one, or the deadline.
    Probe(Round, Instant, oneshot::Sender<Result<(), String>>),
    /// Send the measured messages.
    Publish,
}

/// The publisher's thread, driven by commands.
pub(crate) struct Publisher {
    /// Whether it connected, once.
    pub(crate) connected: oneshot::Receiver<Result<(), String>>,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    /// Starts the thread; it connects at once and reports on `connected`. It ends when `stop`
    /// is set, or when this handle is dropped.
    pub(crate) fn start(
        addr: String,
        framing: Framing,
        shared: Arc<Shared>,
        rate: u64,
        size: usize,
        mut stop: watch::Receiver<bool>,
    ) -> Publisher {
        let (connected_tx, connected) = oneshot::channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = connected_tx.send(Err(format!("cannot start a runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let work = serve(
                        &addr,
                        framing,
                        &shared,
                        (rate, size),
                        connected_tx,
                        commands_rx,
                    );
                    tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => {}
                        () = work => {}
                    }
                });
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                eprintln!("load: cannot start the publisher thread: {error}");
                None
            }
        };
        Publisher {
            connected,
            commands,
            thread,
        }
    }

    /// Has the publisher send probes of `round` until every subscriber has seen one.
    pub(crate) async fn probe(&self, round: Round, deadline: Instant) -> Result<(), Failed> {
        let (done, result) = oneshot::channel();
        if self
            .commands
            .send(Command::Probe(round, deadline, done))
            .is_err()
        {
            return Err(Failed("the publisher thread ended".into()));
        }
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Failed(error)),
            Err(_) => Err(Failed("the publisher thread ended".into())),
        }
    }

    /// Lets the publisher send the measured messages.
    pub(crate) fn publish(&self) {
        let _ = self.commands.send(Command::Publish);
    }

    /// Waits for the thread to end (the run must have set `stop`).
    pub(crate) async fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::task::spawn_blocking(move || thread.join()),
            )
            .await;
        }
    }
}

async fn serve(
    addr: &str,
    framing: Framing,
    shared: &Shared,
    (rate, size): (u64, usize),
    connected: oneshot::Sender<Result<(), String>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let ws = match connect(addr, framing).await {
        Ok(ws) => {
            let _ = connected.send(Ok(()));
            ws
        }
        Err(error) => {
            let _ = connected.send(Err(error));
            return;
        }
    };
    // The publisher is a session like any other, so it is sent every message too: it must read
    // them, or the server's writes to it would stall its reads of what it publishes.
    let (mut sink, stream) = ws.split();
    tokio::spawn(discard(stream));
    while let Some(command) = commands.recv().await {
        match command {
            Command::Probe(round, deadline, done) => {
                let _ = done.send(probe(&mut sink, framing, shared, round, deadline).await);
            }
            Command::Publish => publish(&mut sink, framing, shared, rate, size).await,
        }
    }
}

async fn connect(addr: &str, framing: Framing) -> Result<Ws, String> {
    let tcp = tcp(addr).await?;
    let path = match framing {
        Framing::Raw => "/broadcast/websocket",
        Framing::SockJs => "/broadcast/000/publisher/websocket",
        Framing::Stomp => "/stomp/websocket",
    };
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    match framing {
        Framing::SockJs => match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "o" => {}
            other => return Err(format!("expected the SockJS open frame, got {other:?}")),
        },
        Framing::Stomp => {
            ws.send(Message::text(STOMP_CONNECT))
                .await
                .map_err(|e| e.to_string())?;
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.starts_with("CONNECTED\n") => {}
                other => return Err(format!("expected STOMP's CONNECTED, got {other:?}")),
            }
        }
        Framing::Raw => {}
    }
    Ok(ws)
}

/// Reads and discards what the server sends the publisher.
async fn discard(mut stream: SplitStream<Ws>) {
    while let Some(Ok(_)) = stream.next().await {}
}

fn encode(text: String, framing: Framing) -> Message {
    match framing {
        Framing::Raw => Message::text(text),
        Framing::SockJs => Message::text(serde_json::Value::from(vec![text]).to_string()),
        Framing::Stomp => Message::text(stomp_send(&text)),
    }
}

/// Sends probes until every subscriber has seen one of `round`.
async fn probe(
    sink: &mut SplitSink<Ws, Message>,
    framing: Framing,
    shared: &Shared,
    round: Round,
    deadline: Instant,
) -> Result<(), String> {
    let subscribers = shared.subscribers;
    let seen = shared.seen(round);
    while seen.load(Ordering::Acquire) < subscribers {
        if Instant::now() >= deadline {
            let seen = seen.load(Ordering::Acquire);
            return Err(format!(
                "timed out: {seen} of {subscribers} subscribers saw a probe"
            ));
        }
        sink.send(encode(format!("{}{}", round.prefix(), shared.tag), framing))
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Sends the measured messages, at `rate` per second or, with 0, as fast as the connection
/// takes them.
async fn publish(
    sink: &mut SplitSink<Ws, Message>,
    framing: Framing,
    shared: &Shared,
    rate: u64,
    size: usize,
) {
    let begin = Instant::now();
    for seq in 0..shared.messages {
        if rate > 0 {
            // Scheduled from the start, not from the previous send, so timer granularity does
            // not slow the rate down: late messages go out back to back.
            let due = begin + Duration::from_secs_f64(seq as f64 / rate as f64);
            if due > Instant::now() {
                sleep_until(due).await;
            }
        }
        if shared.halt.load(Ordering::Acquire) {
            return;
        }
        let now = shared.micros();
        if sink
            .send(encode(message_text(shared, seq, now, size), framing))
            .await
            .is_err()
        {
            return;
        }
        shared.sent(seq, now);
    }
}
