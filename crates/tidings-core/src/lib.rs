//! Wire formats and pure logic of [Tidings](https://docs.rs/tidings), with no I/O: SockJS frames, STOMP frames
//! and escaping, topic offsets and cursors, identifiers and the close-code table.
//!
//! ```
//! use tidings_core::{close::CloseCode, sockjs};
//!
//! let msg = sockjs::Encoded::new("caf\u{e9} \u{2028}");
//! assert_eq!(&msg.frame()[..], "a[\"caf\u{e9} \\u2028\"]");
//! assert_eq!(sockjs::close_frame(CloseCode::GO_AWAY, "Go away!"), r#"c[3000,"Go away!"]"#);
//! ```

pub mod close;
pub mod escape;
pub mod ids;
pub mod position;
pub mod sockjs;
pub mod stomp;

pub use close::CloseCode;
pub use position::{Cursor, Epoch, Offset, Position, TopicRef};
