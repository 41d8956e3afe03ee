//! Supabase Realtime's protocol (Phoenix channels) as a second dialect of
//! the same socket, so supabase-js's `channel()` works unchanged. A
//! connection speaks it when it asks for a serializer with `?vsn=1.0.0`
//! (frames as JSON objects `{join_ref, ref, topic, event, payload}`) or
//! `?vsn=2.0.0` (JSON arrays `[join_ref, ref, topic, event, payload]`, and
//! binary user broadcasts). Each frame is translated into Basalt's own
//! message and handled by the same code (hub, feed, policies, limits); each
//! answer and delivery is translated back.
//!
//! Topics are `realtime:<name>` here and `<name>` in Basalt. A
//! `postgres_changes` binding gets an id in the join's reply; a change is
//! sent with the ids of the bindings it matches.

use super::*;
use basalt_core::filter::Expr;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The serializer a Phoenix client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serializer {
    /// `vsn=1.0.0`: JSON objects.
    Objects,
    /// `vsn=2.0.0`: JSON arrays (and binary user broadcasts).
    Arrays,
}

impl Serializer {
    /// From the `vsn` query parameter; `None` for Basalt's own protocol.
    pub(super) fn of(vsn: Option<&str>) -> Result<Option<Serializer>, String> {
        match vsn {
            None => Ok(None),
            Some("1.0.0") => Ok(Some(Serializer::Objects)),
            Some("2.0.0") => Ok(Some(Serializer::Arrays)),
            Some(other) => Err(format!("vsn {other} is not 1.0.0 or 2.0.0")),
        }
    }
}

/// One Phoenix message.
#[derive(Debug, Clone, Default)]
pub(super) struct Frame {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// A `postgres_changes` binding of a joined channel.
struct Binding {
    id: u32,
    event: Option<String>,
    schema: String,
    /// A table, or `*` for every captured table of the schema.
    table: String,
    /// The table as the client wrote it (none for every table): the join's
    /// reply echoes it.
    table_text: Option<String>,
    /// As the client wrote it (the join's reply echoes it), and parsed.
    filter_text: Option<String>,
    filter: Option<Expr>,
}

/// What a joined channel needs to translate deliveries.
struct Channel {
    join_ref: Option<String>,
    bindings: Vec<Binding>,
    /// `config.presence.key`: the member this connection tracks as.
    presence_key: Option<String>,
}

/// A connection speaking the Phoenix dialect.
pub(super) struct Phoenix {
    serializer: Serializer,
    channels: HashMap<String, Channel>,
    next_id: u32,
    /// The last change sent, by topic and feed position: the hub delivers a
    /// change once per matching binding, Phoenix once with all their ids.
    last_change: Option<(String, i64)>,
}

/// The Basalt topic of `realtime:<name>`.
fn basalt_topic(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}

/// A string or a number as text (refs are strings in Phoenix, numbers in some clients).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// PostgreSQL's internal type names for the catalog's, which supabase-js's
/// change decoder reads (unknown ones it leaves as they are).
fn udt_name(type_name: &str) -> String {
    if let Some(element) = type_name.strip_suffix("[]") {
        return format!("_{}", udt_name(element));
    }
    let base = type_name.split('(').next().unwrap_or(type_name).trim();
    match base {
        "smallint" => "int2",
        "integer" => "int4",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" => "timestamp",
        "time with time zone" => "timetz",
        "time without time zone" => "time",
        other => other,
    }
    .to_owned()
}

impl Phoenix {
    pub(super) fn new(serializer: Serializer) -> Self {
        Phoenix {
            serializer,
            channels: HashMap::new(),
            next_id: 1,
            last_change: None,
        }
    }

    /// A text frame in the connection's serializer.
    pub(super) fn decode(&self, text_frame: &str) -> Result<Frame, String> {
        let value: Value = serde_json::from_str(text_frame).map_err(|e| e.to_string())?;
        let (join_ref, reference, topic, event, payload) = match (self.serializer, value) {
            (Serializer::Arrays, Value::Array(items)) if items.len() == 5 => {
                let mut items = items.into_iter();
                let mut next = || items.next().unwrap_or(Value::Null);
                (next(), next(), next(), next(), next())
            }
            (Serializer::Objects, Value::Object(mut map)) => {
                let mut take = |key: &str| map.remove(key).unwrap_or(Value::Null);
                (
                    take("join_ref"),
                    take("ref"),
                    take("topic"),
                    take("event"),
                    take("payload"),
                )
            }
            (Serializer::Arrays, _) => {
                return Err("a frame is [join_ref, ref, topic, event, payload]".into())
            }
            (Serializer::Objects, _) => {
                return Err("a frame is {join_ref, ref, topic, event, payload}".into())
            }
        };
        let (Some(topic), Some(event)) = (topic.as_str(), event.as_str()) else {
            return Err("a frame needs a topic and an event".into());
        };
        Ok(Frame {
            join_ref: text(&join_ref),
            reference: text(&reference),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        })
    }

    /// A binary frame: supabase-js's user broadcast push (kind 3), with a
    /// JSON payload, or a binary one (an `ArrayBuffer`), carried through
    /// Basalt's JSON broadcasts as `{"$binary": "<base64>"}`.
    pub(super) fn decode_binary(&self, bytes: &[u8]) -> Result<Frame, String> {
        let malformed = || "a binary frame is a user broadcast push (kind 3)".to_owned();
        if bytes.len() < 7 || bytes[0] != 3 {
            return Err(malformed());
        }
        let lengths: Vec<usize> = bytes[1..6].iter().map(|&b| b as usize).collect();
        let encoding = bytes[6];
        let mut offset = 7;
        let mut parts = Vec::new();
        for length in lengths {
            let part = bytes.get(offset..offset + length).ok_or_else(malformed)?;
            parts.push(String::from_utf8_lossy(part).into_owned());
            offset += length;
        }
        let payload: Value = match encoding {
            0 => {
                json!({ BINARY: base64::engine::general_purpose::STANDARD.encode(&bytes[offset..]) })
            }
            1 => serde_json::from_slice(&bytes[offset..]).map_err(|e| format!("payload: {e}"))?,
            _ => return Err("a payload is JSON (1) or binary (0)".into()),
        };
        let some = |text: &String| (!text.is_empty()).then(|| text.clone());
        Ok(Frame {
            join_ref: some(&parts[0]),
            reference: some(&parts[1]),
            topic: parts[2].clone(),
            event: "broadcast".into(),
            payload: json!({"type": "broadcast", "event": parts[3], "payload": payload}),
        })
    }

    /// A frame as text in the connection's serializer.
    pub(super) fn encode(&self, frame: &Frame) -> String {
        match self.serializer {
            Serializer::Arrays => json!([
                frame.join_ref,
                frame.reference,
                frame.topic,
                frame.event,
                frame.payload
            ])
            .to_string(),
            Serializer::Objects => json!({
                "join_ref": frame.join_ref,
                "ref": frame.reference,
                "topic": frame.topic,
                "event": frame.event,
                "payload": frame.payload,
            })
            .to_string(),
        }
    }

    /// The reply to `request`: `phx_reply` with `ok` and `response`, or
    /// `error` and the reason.
    pub(super) fn reply(
        &self,
        request: &Frame,
        outcome: Result<Value, (String, String)>,
    ) -> Outgoing {
        let payload = match outcome {
            Ok(response) => json!({"status": "ok", "response": response}),
            Err((code, reason)) => {
                json!({"status": "error", "response": {"reason": reason, "code": code}})
            }
        };
        Outgoing::Text(self.encode(&Frame {
            join_ref: request.join_ref.clone(),
            reference: request.reference.clone(),
            topic: request.topic.clone(),
            event: "phx_reply".into(),
            payload,
        }))
    }

    /// The Basalt message for a frame (as the JSON `protocol::handle`
    /// reads), or `None` when the frame is answered here alone.
    pub(super) fn translate(&mut self, frame: &Frame) -> Result<Option<Value>, (String, String)> {
        let invalid =
            |reason: String| (ErrorCode::RealtimeInvalidMessage.code().to_owned(), reason);
        let topic = basalt_topic(&frame.topic).to_owned();
        Ok(Some(match frame.event.as_str() {
            "heartbeat" => return Ok(None),
            "phx_join" => {
                let config = &frame.payload["config"];
                let mut specs = Vec::new();
                let mut bindings = Vec::new();
                for spec in config["postgres_changes"].as_array().into_iter().flatten() {
                    let event = spec["event"].as_str().unwrap_or("*");
                    let schema = spec["schema"].as_str().unwrap_or("public");
                    // No table, or `*`: every captured table of the schema.
                    let table = spec["table"].as_str().unwrap_or("*");
                    let filter = spec["filter"].as_str().filter(|f| !f.is_empty());
                    specs.push(
                        json!({"event": event, "schema": schema, "table": table, "filter": filter}),
                    );
                    bindings.push(Binding {
                        id: self.next_id,
                        event: (event != "*").then(|| event.to_owned()),
                        schema: schema.to_owned(),
                        table: table.to_owned(),
                        table_text: spec["table"].as_str().map(str::to_owned),
                        filter_text: filter.map(str::to_owned),
                        filter: filter.and_then(|f| parse_condition(f).ok()),
                    });
                    self.next_id += 1;
                }
                self.channels.insert(
                    topic.clone(),
                    Channel {
                        join_ref: frame.join_ref.clone().or(frame.reference.clone()),
                        bindings,
                        presence_key: config["presence"]["key"]
                            .as_str()
                            .filter(|key| !key.is_empty())
                            .map(str::to_owned),
                    },
                );
                json!({
                    "type": "join",
                    "topic": topic,
                    "postgres_changes": specs,
                    "broadcast_self": config["broadcast"]["self"].as_bool().unwrap_or(false),
                })
            }
            "phx_leave" => {
                self.channels.remove(&topic);
                json!({"type": "leave", "topic": topic})
            }
            "access_token" => {
                let Some(token) = frame.payload["access_token"].as_str() else {
                    return Err(invalid("access_token needs a token".into()));
                };
                json!({"type": "access_token", "token": token})
            }
            "broadcast" => json!({
                "type": "broadcast",
                "topic": topic,
                "event": frame.payload["event"],
                "payload": frame.payload["payload"],
            }),
            "presence" => {
                let event = frame.payload["event"].as_str().unwrap_or_default();
                let key = self
                    .channels
                    .get(&topic)
                    .and_then(|channel| channel.presence_key.clone());
                json!({
                    "type": "presence",
                    "topic": topic,
                    "event": event,
                    "payload": frame.payload["payload"],
                    "key": key,
                })
            }
            other => {
                return Err(invalid(format!(
                    "`{other}` is not an event this server takes"
                )))
            }
        }))
    }

    /// Forgets a channel whose join was refused.
    pub(super) fn forget(&mut self, topic: &str) {
        self.channels.remove(basalt_topic(topic));
    }

    /// The `response` of a join's reply: the ids given to its bindings,
    /// echoing what the client asked for.
    pub(super) fn joined(&self, topic: &str) -> Value {
        let bindings = self
            .channels
            .get(basalt_topic(topic))
            .map(|channel| &channel.bindings[..])
            .unwrap_or_default();
        json!({"postgres_changes": bindings.iter().map(|b| json!({
            "id": b.id,
            "event": b.event.as_deref().unwrap_or("*"),
            "schema": b.schema,
            "table": b.table_text,
            "filter": b.filter_text,
        })).collect::<Vec<_>>()})
    }

    /// A Basalt delivery (a change, a broadcast, presence, a system message)
    /// as the frame supabase-js expects, or `None` when it has no equivalent.
    pub(super) fn delivery(&mut self, message: &str, state: &AppState) -> Option<Outgoing> {
        let message: Value = serde_json::from_str(message).ok()?;
        let topic = message["topic"].as_str().unwrap_or_default().to_owned();
        let channel = self.channels.get(&topic);
        let (event, payload) = match message["type"].as_str()? {
            "postgres_changes" => {
                let channel = channel?;
                let change = (topic.clone(), message["position"].as_i64().unwrap_or(-1));
                if self.last_change.as_ref() == Some(&change) {
                    return None;
                }
                let operation = message["event"].as_str().unwrap_or_default();
                let schema = message["schema"].as_str().unwrap_or_default();
                let table = message["table"].as_str().unwrap_or_default();
                let row = match operation {
                    "DELETE" => &message["old_record"],
                    _ => &message["record"],
                };
                let ids: Vec<u32> = channel
                    .bindings
                    .iter()
                    .filter(|b| b.event.as_deref().is_none_or(|e| e == operation))
                    .filter(|b| b.schema == schema && (b.table == table || b.table == "*"))
                    .filter(|b| match &b.filter {
                        None => true,
                        Some(filter) => {
                            basalt_core::filter::eval::matches(
                                filter,
                                row,
                                &basalt_core::filter::sql::Caller {
                                    uid: None,
                                    role: "",
                                    claims: &Value::Null,
                                },
                            ) == Some(true)
                        }
                    })
                    .map(|b| b.id)
                    .collect();
                if ids.is_empty() {
                    return None;
                }
                let columns = self.columns(state, schema, table, row);
                self.last_change = Some(change);
                (
                    "postgres_changes",
                    json!({"ids": ids, "data": {
                        "schema": schema,
                        "table": table,
                        "commit_timestamp": message["commit_timestamp"],
                        "type": operation,
                        "columns": columns,
                        "record": message["record"],
                        "old_record": message["old_record"],
                        "errors": null,
                    }}),
                )
            }
            "broadcast" => {
                let phoenix_topic = format!("realtime:{topic}");
                let event = message["event"].as_str().unwrap_or_default();
                // A frame's lengths are single bytes: a longer topic or event
                // gets the JSON frame (with the payload's `$binary` object).
                let fits = phoenix_topic.len() <= 255 && event.len() <= 255;
                if let (Serializer::Arrays, Some(bytes), true) =
                    (&self.serializer, binary_payload(&message["payload"]), fits)
                {
                    return Some(Outgoing::Binary(user_broadcast(
                        &phoenix_topic,
                        event,
                        &bytes,
                    )));
                }
                (
                    "broadcast",
                    json!({"type": "broadcast", "event": message["event"], "payload": message["payload"]}),
                )
            }
            "presence_state" => ("presence_state", metas(&message["state"])),
            "presence_diff" => (
                "presence_diff",
                json!({"joins": metas(&message["joins"]), "leaves": metas(&message["leaves"])}),
            ),
            "system" => (
                "system",
                json!({"status": "error", "extension": "system", "message": message["message"],
                       "code": message["event"]}),
            ),
            _ => return None,
        };
        Some(Outgoing::Text(self.encode(&Frame {
            join_ref: channel.and_then(|c| c.join_ref.clone()),
            reference: None,
            topic: format!("realtime:{topic}"),
            event: event.into(),
            payload,
        })))
    }

    /// `[{name, type}]` of the row's columns, types from the schema cache.
    fn columns(&self, state: &AppState, schema: &str, table: &str, row: &Value) -> Value {
        let snapshot = state.schema().profile(schema);
        let types = snapshot
            .as_ref()
            .and_then(|s| s.tables.get(table))
            .map(|t| t.columns.clone())
            .unwrap_or_default();
        let names: Vec<&String> = match row {
            Value::Object(map) => map.keys().collect(),
            _ => Vec::new(),
        };
        Value::Array(
            names
                .into_iter()
                .map(|name| {
                    let type_name = types
                        .iter()
                        .find(|(column, _)| column == name)
                        .map(|(_, t)| udt_name(t))
                        .unwrap_or_else(|| "text".into());
                    json!({"name": name, "type": type_name})
                })
                .collect(),
        )
    }
}

/// The key a binary broadcast payload is carried under in Basalt's JSON.
const BINARY: &str = "$binary";

/// The bytes of a payload that came as binary (`{"$binary": "<base64>"}`).
fn binary_payload(payload: &Value) -> Option<Vec<u8>> {
    match payload {
        Value::Object(map) if map.len() == 1 => base64::engine::general_purpose::STANDARD
            .decode(map.get(BINARY)?.as_str()?)
            .ok(),
        _ => None,
    }
}

/// supabase-js's binary user broadcast (kind 4): lengths of topic, event
/// and metadata (none), the encoding (0, binary), then each and the bytes.
/// The caller makes sure topic and event fit in 255 bytes.
fn user_broadcast(topic: &str, event: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![4, topic.len() as u8, event.len() as u8, 0, 0];
    frame.extend_from_slice(topic.as_bytes());
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Basalt's presence members (`{key: [state, …]}`) as Phoenix's
/// (`{key: {metas: [{phx_ref, …state}]}}`); a meta's `phx_ref` is derived
/// from its key and state, so a leave names the join it ends.
fn metas(members: &Value) -> Value {
    let Value::Object(members) = members else {
        return json!({});
    };
    Value::Object(
        members
            .iter()
            .map(|(key, states)| {
                let metas: Vec<Value> = states
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|state| {
                        let digest = Sha256::digest(format!("{key}\0{state}"));
                        let reference: String =
                            digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                        let mut meta = match state {
                            Value::Object(map) => map.clone(),
                            other => [("state".to_owned(), other.clone())].into_iter().collect(),
                        };
                        meta.insert("phx_ref".into(), Value::String(reference));
                        Value::Object(meta)
                    })
                    .collect();
                (key.clone(), json!({"metas": metas}))
            })
            .collect(),
    )
}
