//! Transports: each turns one kind of connection into reads of a channel's cursor and writes of
//! its incoming messages. They hold no delivery state of their own.

pub(crate) mod http;
pub(crate) mod websocket;
