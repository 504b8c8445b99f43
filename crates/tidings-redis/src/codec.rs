//! How records, cursors and channel state are written in Redis, and read back.
//!
//! Everything is text: a record is `m<text>` (a message), `h<json headers>\n<text>` (a message
//! with headers) or `c<json>` (a control), a cursor is
//! `<epoch>:<offset>` in decimal, and a channel is a hash whose fields the scripts in `lua/`
//! document.

use std::collections::BTreeMap;

use redis::Value;
use tidings_core::{CloseCode, Cursor, Epoch, Offset};
use tidings_store::{ChannelId, Creation, Payload, Topic};
use tidings_store::{ChannelState, StoreError};
use tidings_store::{Control, Record};

/// A record as stored.
pub(crate) fn encode_record(record: &Record) -> Result<String, StoreError> {
    match record {
        Record::Message(payload) if payload.headers().is_empty() => {
            Ok(format!("m{}", payload.text()))
        }
        // Headers as a JSON array of pairs (which holds no raw newline), a newline, the text.
        Record::Message(payload) => serde_json::to_string(payload.headers())
            .map(|headers| format!("h{headers}\n{}", payload.text()))
            .map_err(|error| StoreError::Corrupt(format!("cannot encode headers: {error}"))),
        Record::Control(control) => serde_json::to_string(control)
            .map(|json| format!("c{json}"))
            .map_err(|error| StoreError::Corrupt(format!("cannot encode a control: {error}"))),
    }
}

pub(crate) fn decode_record(stored: &str) -> Result<Record, StoreError> {
    if let Some(text) = stored.strip_prefix('m') {
        return Ok(Record::Message(Payload::new(text)));
    }
    if let Some(rest) = stored.strip_prefix('h') {
        let (headers, text) = rest
            .split_once('\n')
            .ok_or_else(|| corrupt("record", stored))?;
        let headers: Vec<(String, String)> =
            serde_json::from_str(headers).map_err(|_| corrupt("headers", headers))?;
        return Ok(Record::Message(Payload::with_headers(text, headers)));
    }
    let control: Control = stored
        .strip_prefix('c')
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| corrupt("record", stored))?;
    Ok(Record::Control(control))
}

pub(crate) fn encode_cursor(cursor: Cursor) -> String {
    format!("{}:{}", cursor.epoch.0, cursor.offset.0)
}

pub(crate) fn decode_cursor(stored: &str) -> Result<Cursor, StoreError> {
    let (epoch, offset) = stored
        .split_once(':')
        .ok_or_else(|| corrupt("cursor", stored))?;
    Ok(Cursor::new(
        Epoch(number(epoch, "epoch")?),
        Offset(number(offset, "offset")?),
    ))
}

pub(crate) fn number(stored: &str, what: &str) -> Result<u64, StoreError> {
    stored.parse().map_err(|_| corrupt(what, stored))
}

/// A channel from a script's `{id, {field, value, …}}` answer; `None` for a nil answer.
pub(crate) fn decode_channel(value: Value) -> Result<Option<ChannelState>, StoreError> {
    let mut parts = match value {
        Value::Nil => return Ok(None),
        Value::Array(parts) if parts.len() == 2 => parts.into_iter(),
        other => return Err(corrupt("channel answer", &format!("{other:?}"))),
    };
    let (Some(id), Some(hash)) = (parts.next(), parts.next()) else {
        return Err(corrupt("channel answer", "missing parts"));
    };
    let id = text(id)?;
    let id: ChannelId = id.parse().map_err(|_| corrupt("channel id", &id))?;
    let mut state = ChannelState {
        id,
        user: None,
        attributes: BTreeMap::new(),
        topics: BTreeMap::new(),
        closed: None,
        alias: None,
        ended: false,
        labels: BTreeMap::new(),
    };
    let fields = texts(hash)?;
    for pair in fields.chunks_exact(2) {
        let (field, value) = (pair[0].as_str(), &pair[1]);
        match field {
            "u" => state.user = Some(value.clone()),
            "a" => state.alias = Some(value.parse().map_err(|_| corrupt("alias", value))?),
            "e" => state.ended = true,
            "x" => {
                state.attributes =
                    serde_json::from_str(value).map_err(|_| corrupt("attributes", value))?;
            }
            "k" => {
                let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
                let code = code
                    .parse()
                    .ok()
                    .and_then(|code| CloseCode::from_stored(code).ok())
                    .ok_or_else(|| corrupt("close", value))?;
                state.closed = Some((code, reason.to_owned()));
            }
            _ => {
                if let Some(topic) = field.strip_prefix("t:") {
                    state
                        .topics
                        .insert(Topic::from_stored(topic), decode_cursor(value)?);
                } else if let Some(topic) = field.strip_prefix("l:") {
                    state
                        .labels
                        .insert(Topic::from_stored(topic), value.clone());
                }
            }
        }
    }
    Ok(Some(state))
}

/// The answer of `create.lua`: `{'created', id, hash}`, `{'existing', id, hash}` or `{'full'}`.
pub(crate) fn decode_creation(value: Value) -> Result<Creation, StoreError> {
    let Value::Array(mut parts) = value else {
        return Err(corrupt("creation", &format!("{value:?}")));
    };
    if parts.is_empty() {
        return Err(corrupt("creation", "empty answer"));
    }
    let status = text(parts.remove(0))?;
    let mut state = || {
        decode_channel(Value::Array(std::mem::take(&mut parts)))?
            .ok_or_else(|| corrupt("creation", "no channel"))
    };
    match status.as_str() {
        "created" => Ok(Creation::Created(state()?)),
        "existing" => Ok(Creation::Existing(state()?)),
        "full" => Ok(Creation::UserFull),
        other => Err(corrupt("creation", other)),
    }
}

/// A list of `{id, hash}` answers.
pub(crate) fn decode_channels(value: Value) -> Result<Vec<ChannelState>, StoreError> {
    let Value::Array(items) = value else {
        return Err(corrupt("channel list", &format!("{value:?}")));
    };
    let mut states = Vec::with_capacity(items.len());
    for item in items {
        states.extend(decode_channel(item)?);
    }
    Ok(states)
}

/// Stream entries as XRANGE returns them: `{{"<offset>-0", {"r", record, "n", size}}, …}`.
pub(crate) fn decode_entries(value: Value) -> Result<Vec<(Offset, Record)>, StoreError> {
    let Value::Array(entries) = value else {
        return Err(corrupt("entries", &format!("{value:?}")));
    };
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(corrupt("entry", &format!("{entry:?}")));
        };
        if parts.len() != 2 {
            return Err(corrupt("entry", &format!("{parts:?}")));
        }
        let fields = texts(parts.pop().unwrap_or(Value::Nil))?;
        let id = text(parts.pop().unwrap_or(Value::Nil))?;
        let offset = id
            .strip_suffix("-0")
            .ok_or_else(|| corrupt("entry id", &id))?;
        let record = match fields.as_slice() {
            [r, record, ..] if r == "r" => decode_record(record)?,
            _ => return Err(corrupt("entry fields", &format!("{fields:?}"))),
        };
        records.push((Offset(number(offset, "entry id")?), record));
    }
    Ok(records)
}

/// A bulk or simple string reply.
pub(crate) fn text(value: Value) -> Result<String, StoreError> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| corrupt("text", "invalid UTF-8"))
        }
        Value::SimpleString(text) => Ok(text),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(corrupt("text", &format!("{other:?}"))),
    }
}

pub(crate) fn texts(value: Value) -> Result<Vec<String>, StoreError> {
    match value {
        Value::Array(items) => items.into_iter().map(text).collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt("list", &format!("{other:?}"))),
    }
}

pub(crate) fn int(value: Value) -> Result<u64, StoreError> {
    match value {
        Value::Int(n) => u64::try_from(n).map_err(|_| corrupt("integer", &n.to_string())),
        other => number(&text(other)?, "integer"),
    }
}

pub(crate) fn corrupt(what: &str, found: &str) -> StoreError {
    let found: String = found.chars().take(120).collect();
    StoreError::Corrupt(format!("unreadable {what}: {found}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for record in [
            Record::Message(Payload::new("")),
            Record::Message(Payload::new("c{not a control}")),
            Record::Message(Payload::new("caf\u{e9} \u{1f600} \n")),
            Record::Control(Control::Close {
                code: CloseCode::GO_AWAY,
                reason: "Go away!".to_owned(),
            }),
            Record::Message(Payload::with_headers(
                "m\nline",
                vec![("a".into(), "b\nc".into()), ("x".into(), String::new())],
            )),
            Record::Control(Control::Reply {
                text: "ERROR\n\n\0".to_owned(),
            }),
        ] {
            let stored = encode_record(&record).unwrap();
            assert_eq!(decode_record(&stored).unwrap(), record);
        }
        assert!(decode_record("x").is_err());
        assert!(decode_record("c{").is_err());
    }

    #[test]
    fn cursors_round_trip_at_full_width() {
        let cursor = Cursor::new(Epoch(u64::MAX), Offset(u64::MAX - 1));
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        assert!(decode_cursor("12").is_err());
        assert!(decode_cursor("a:1").is_err());
    }
}
