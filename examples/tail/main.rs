//! `tail`: follows a Tidings service from the command line, the `websocat` of Tidings.
//!
//! ```text
//! cargo run --example tail -- http://127.0.0.1:3000/rt [--transport sse] [--user NAME]
//! ```
//!
//! Prints each message's text on its own line on stdout (a text with newlines keeps them), and
//! on stderr the transport as it opens or changes (`open websocket`), gaps (`gap 12`, `gap
//! unknown`) and the close (`closed 3000 Go away!`). Lines typed on stdin are sent to the
//! service. Ctrl-C closes the session. Exits 0 after the server closed the session or Ctrl-C,
//! 1 on an error (a refusal, a protocol error), 2 on bad arguments.

use std::process::ExitCode;

use clap::Parser;
use futures::StreamExt;
use tidings_client::{Client, Event, Transport};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(about = "Print what a Tidings service sends, one message per line")]
struct Args {
    /// The service's URL, its prefix: `http://127.0.0.1:3000/rt` for the chat demo.
    url: String,
    /// Use only this transport: websocket, sse, streaming or polling (default: the best that
    /// works).
    #[arg(long, value_parser = parse_transport)]
    transport: Option<Transport>,
    /// Connect as this user (`?user=NAME`, as the examples' auth hooks read it).
    #[arg(long)]
    user: Option<String>,
}

fn parse_transport(name: &str) -> Result<Transport, String> {
    Transport::from_name(name)
        .ok_or_else(|| format!("{name}: not websocket, sse, streaming or polling"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = Client::builder(&args.url);
    if let Some(transport) = args.transport {
        builder = builder.transports(&[transport]);
    }
    if let Some(user) = &args.user {
        builder = builder.query("user", user);
    }
    let mut connection = match builder.connect() {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("tail: {error}");
            return ExitCode::from(2);
        }
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut typing = true;
    let stop = tidings::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            event = connection.next() => match event {
                Some(Ok(Event::Message { text, .. })) => println!("{text}"),
                Some(Ok(Event::Open { transport })) => eprintln!("open {transport}"),
                Some(Ok(Event::Gap { missed, .. })) => match missed {
                    Some(missed) => eprintln!("gap {missed}"),
                    None => eprintln!("gap unknown"),
                },
                Some(Ok(Event::Closed { code, reason })) => {
                    eprintln!("closed {code} {reason}");
                    return ExitCode::SUCCESS;
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    eprintln!("tail: {error}");
                    return ExitCode::FAILURE;
                }
                None => return ExitCode::SUCCESS,
            },
            line = stdin.next_line(), if typing => match line {
                Ok(Some(line)) => {
                    if let Err(error) = connection.send(&line).await {
                        eprintln!("tail: could not send: {error}");
                    }
                }
                // End of input: keep following.
                Ok(None) | Err(_) => typing = false,
            },
            () = &mut stop => {
                if let Err(error) = connection.close().await {
                    eprintln!("tail: closing: {error}");
                }
                return ExitCode::SUCCESS;
            }
        }
    }
}
