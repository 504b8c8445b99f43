//! Messages as topics hold them: encoded once at publish, shared by every recipient.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use tidings_core::CloseCode;
use tidings_core::ids::Id128;
use tidings_core::sockjs::Encoded;

use crate::topic::Topic;

/// An application message, encoded once for every wire format when it is published.
///
/// Cloning is a reference-count increment; every frame that carries the message is assembled
/// from these shared bytes.
#[derive(Clone)]
pub struct Payload(Arc<Inner>);

struct Inner {
    text: ByteString,
    /// Headers the sender gave the message (a STOMP SEND's), passed on by the protocols that
    /// carry headers; empty for most.
    headers: Box<[(String, String)]>,
    sockjs: Encoded,
    /// A form the layer above builds once per message: see [`Payload::shared_form`].
    form: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.text == other.0.text && self.0.headers == other.0.headers
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tuple = f.debug_tuple("Payload");
        tuple.field(&self.text());
        if !self.0.headers.is_empty() {
            tuple.field(&self.0.headers);
        }
        tuple.finish()
    }
}

impl Payload {
    /// Encodes `text`.
    pub fn new(text: impl Into<String>) -> Self {
        let text: String = text.into();
        let sockjs = Encoded::new(&text);
        let frame = sockjs.frame();
        // When escaping changed nothing, the frame is `a["<text>"]`: the text is then a slice of
        // the frame, so every form of the message shares one allocation and one reference
        // count. Fan-out clones these bytes once per recipient, and a second allocation per
        // message cost a measurable share of raw WebSocket throughput (docs/benchmarks.md).
        let text = if frame.len() == text.len() + 5 {
            frame.slice_ref(&frame[3..3 + text.len()])
        } else {
            ByteString::from(text)
        };
        Payload(Arc::new(Inner {
            text,
            headers: Box::default(),
            sockjs,
            form: OnceLock::new(),
        }))
    }

    /// Encodes `text`, with headers for the protocols that carry them (STOMP's MESSAGE frames;
    /// the others deliver the text alone).
    pub fn with_headers(text: impl Into<String>, headers: Vec<(String, String)>) -> Self {
        let mut payload = Payload::new(text);
        if let Some(inner) = Arc::get_mut(&mut payload.0) {
            inner.headers = headers.into_boxed_slice();
        }
        payload
    }

    /// The headers the sender gave the message; empty for most.
    pub fn headers(&self) -> &[(String, String)] {
        &self.0.headers
    }

    /// A form of the message that the layer above the store builds once, with `make`, and
    /// shares with every later caller: for wire types this crate does not know (the `tidings`
    /// crate keeps the message's WebSocket texts here, so that no recipient checks them again).
    /// The payload holds one such form: a caller asking for another type gets `None` and builds
    /// its own.
    pub fn shared_form<T: Any + Send + Sync>(
        &self,
        make: impl FnOnce(&Payload) -> T,
    ) -> Option<&T> {
        self.0
            .form
            .get_or_init(|| Box::new(make(self)))
            .downcast_ref()
    }

    /// The message text.
    pub fn text(&self) -> &str {
        &self.0.text
    }

    /// The text as shared bytes (always UTF-8), for frames that carry it verbatim.
    pub fn text_bytes(&self) -> &Bytes {
        self.0.text.as_bytes()
    }

    /// The SockJS encoding of the message: its escaped JSON string, shared by every frame that
    /// carries it as JSON (SockJS `a[…]`, the native protocol's frames).
    pub fn sockjs(&self) -> &Encoded {
        &self.0.sockjs
    }

    /// The size that counts against limits: the text's length in bytes, and its headers'.
    pub fn len(&self) -> usize {
        let headers: usize = self.0.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.0.text.len() + headers
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.text.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_message_holds_the_same_text() {
        for text in [
            "plain",
            "",
            "quote\"",
            "line\nbreak",
            "\u{2028}",
            "caf\u{e9} \u{1f600}",
        ] {
            let payload = Payload::new(text);
            assert_eq!(payload.text(), text);
            assert_eq!(&payload.text_bytes()[..], text.as_bytes());
            let decoded: Vec<String> =
                serde_json::from_str(&payload.sockjs().frame()[1..]).unwrap();
            assert_eq!(decoded, [text]);
        }
    }

    #[test]
    fn a_shared_form_is_built_once_and_holds_one_type() {
        let payload = Payload::new("x");
        let copy = payload.clone();
        let mut built = 0;
        for p in [&payload, &copy] {
            let form = p.shared_form(|p| {
                built += 1;
                p.text().len() * 10
            });
            assert_eq!(form, Some(&10));
        }
        assert_eq!(built, 1);
        assert_eq!(payload.shared_form(|_| "another type"), None);
    }

    #[test]
    fn controls_are_stored_as_plain_json_and_checked_when_read() {
        let close = Control::Close {
            code: CloseCode::GO_AWAY,
            reason: "Go away!".into(),
        };
        let json = serde_json::to_string(&close).expect("encodes");
        assert_eq!(json, r#"{"Close":{"code":3000,"reason":"Go away!"}}"#);
        assert_eq!(
            serde_json::from_str::<Control>(&json).expect("decodes"),
            close
        );
        let holder = Id128::from_bytes([7; 16]);
        let takeover = serde_json::to_string(&Control::Takeover { holder }).expect("encodes");
        assert_eq!(
            serde_json::from_str::<Control>(&takeover).expect("decodes"),
            Control::Takeover { holder }
        );
        for bad in [
            r#"{"Close":{"code":1005,"reason":""}}"#,
            r#"{"Takeover":{"holder":"xyz"}}"#,
        ] {
            assert!(serde_json::from_str::<Control>(bad).is_err(), "{bad}");
        }
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload::new(text)
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload::new(text)
    }
}

/// One entry of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An application message.
    Message(Payload),
    /// An instruction to the channel whose private topic holds it. Controls travel through the
    /// store like messages, so they reach a channel's receiver on whichever node serves it, in
    /// order with the messages around them.
    Control(Control),
}

impl Record {
    /// The size that counts against a topic's byte budget.
    pub fn len(&self) -> usize {
        match self {
            Record::Message(p) => p.len(),
            Record::Control(Control::Reply { text }) => text.len().max(64),
            Record::Control(_) => 64,
        }
    }

    /// Whether the record has no bytes (an empty message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An instruction to one channel, carried on its private topic.
///
/// Stores keep a control as JSON (`serde`), the same text on every node: for example
/// `{"Close":{"code":3000,"reason":"Go away!"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StoredControl", try_from = "StoredControl")]
#[non_exhaustive]
pub enum Control {
    /// Start following a topic, from the cursor the channel's state holds for it.
    Subscribe {
        /// The topic.
        topic: Topic,
    },
    /// Stop following a topic.
    Unsubscribe {
        /// The topic.
        topic: Topic,
    },
    /// Close the channel.
    Close {
        /// The close code.
        code: CloseCode,
        /// The reason sent with it.
        reason: String,
    },
    /// A new receiver (the native protocol's transport connection `holder`) took the channel
    /// over; receivers that started before it stop.
    Takeover {
        /// The new receiver.
        holder: Id128,
    },
    /// A frame of the channel's protocol for its client, written as it is: a STOMP server's
    /// answer (CONNECTED, RECEIPT, ERROR) to a frame that may have reached another node.
    Reply {
        /// The frame.
        text: String,
    },
}

/// A [`Control`] as stored: plain strings and numbers, read back with their checks.
#[derive(Serialize, Deserialize)]
enum StoredControl {
    Subscribe { topic: String },
    Unsubscribe { topic: String },
    Close { code: u16, reason: String },
    Takeover { holder: String },
    Reply { text: String },
}

impl From<Control> for StoredControl {
    fn from(control: Control) -> Self {
        match control {
            Control::Subscribe { topic } => StoredControl::Subscribe {
                topic: topic.as_str().to_owned(),
            },
            Control::Unsubscribe { topic } => StoredControl::Unsubscribe {
                topic: topic.as_str().to_owned(),
            },
            Control::Close { code, reason } => StoredControl::Close {
                code: code.as_u16(),
                reason,
            },
            Control::Takeover { holder } => StoredControl::Takeover {
                holder: holder.to_string(),
            },
            Control::Reply { text } => StoredControl::Reply { text },
        }
    }
}

impl TryFrom<StoredControl> for Control {
    type Error = String;

    fn try_from(stored: StoredControl) -> Result<Self, Self::Error> {
        Ok(match stored {
            StoredControl::Subscribe { topic } => Control::Subscribe {
                topic: Topic::from_stored(&topic),
            },
            StoredControl::Unsubscribe { topic } => Control::Unsubscribe {
                topic: Topic::from_stored(&topic),
            },
            StoredControl::Close { code, reason } => Control::Close {
                code: CloseCode::from_stored(code).map_err(|e| e.to_string())?,
                reason,
            },
            StoredControl::Takeover { holder } => Control::Takeover {
                holder: holder
                    .parse()
                    .map_err(|_| format!("bad holder {holder:?}"))?,
            },
            StoredControl::Reply { text } => Control::Reply { text },
        })
    }
}
