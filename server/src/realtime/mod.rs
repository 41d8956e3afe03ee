//! Realtime over WebSocket (`/realtime/v1/websocket`): subscriptions to the
//! change feed with per-row authorization, resume from a feed position,
//! broadcast, token refresh and expiry, revoked sessions cut off, and
//! back-pressure. The protocol is in docs/realtime.md.
//!
//! Each replica follows the feed itself (`feed.rs`, woken by
//! `NOTIFY basalt_changes`) and fans changes out from memory (`hub.rs`);
//! broadcasts travel between replicas as `NOTIFY basalt_broadcast`.

pub mod hub;

use crate::authz::routes::subject_of;
use crate::db;
use crate::error::HttpError;
use crate::feed::{self, Page};
use crate::http::resource;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::web::{self, Data, Json};
use actix_web::{HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::parse_condition;
use futures_util::StreamExt;
use hub::{Access, Hub, Identity, Spec};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// The NOTIFY channel broadcasts travel on between replicas.
const BROADCAST_CHANNEL: &str = "basalt_broadcast";
/// The NOTIFY channel presence changes travel on.
const PRESENCE_CHANNEL: &str = "basalt_presence";
/// A replica not seen for this long is dead: its presence is removed.
const REPLICA_TIMEOUT_SECS: f64 = 15.0;
/// NOTIFY payloads are limited to 8000 bytes; a broadcast must fit.
const MAX_BROADCAST_BYTES: usize = 7000;
/// Server pings this often; a client silent for `IDLE` is disconnected.
const PING_EVERY: Duration = Duration::from_secs(25);
const IDLE: Duration = Duration::from_secs(75);

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/realtime/v1/websocket").route(web::get().to(websocket)))
        .service(resource("/realtime/v1/broadcast").route(web::post().to(server_broadcast)));
}

fn identity(caller: &Caller) -> Identity {
    Identity {
        uid: caller.user.map(|(user, _)| user.to_string()),
        role: caller.role.clone(),
        claims: caller.claims.clone(),
    }
}

fn expiry(caller: &Caller) -> Option<tokio::time::Instant> {
    let exp = caller.claims.get("exp")?.as_i64()?;
    let now = chrono::Utc::now().timestamp();
    // At most a year away: a far-future `exp` must not overflow the clock.
    let left = Duration::from_secs(exp.saturating_sub(now).clamp(0, 365 * 86_400) as u64);
    tokio::time::Instant::now().checked_add(left)
}

/// `GET /realtime/v1/websocket?apikey=…[&access_token=…]` (or the headers).
async fn websocket(
    state: Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let pairs = crate::rest::query_pairs(&request);
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let header = request
        .headers()
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let apikey = param("apikey").or(header);
    let token = param("access_token");
    let caller = Caller::from_keys(&state, apikey.as_deref(), token.as_deref())?;
    if !state
        .realtime()
        .reserve(state.config.realtime.max_connections)
    {
        return Err(HttpError::from(
            ApiError::new(ErrorCode::DatabaseUnavailable)
                .with_message("This server holds as many realtime connections as it allows.")
                .with_details("realtime.max_connections reached"),
        )
        .retry_after(5));
    }
    let (response, session, stream) = actix_ws::handle(&request, body).map_err(|error| {
        state.realtime().release();
        HttpError::from(ApiError::new(ErrorCode::InvalidRequest).with_details(error.to_string()))
    })?;
    let state = state.get_ref().clone();
    actix_web::rt::spawn(connection(state, caller, apikey, session, stream));
    Ok(response)
}

#[derive(Deserialize)]
struct ChangeSpec {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    table: String,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Join {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
        topic: String,
        #[serde(default)]
        postgres_changes: Vec<ChangeSpec>,
        #[serde(default)]
        broadcast_self: bool,
        #[serde(default)]
        resume_from: Option<i64>,
    },
    Leave {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
        topic: String,
    },
    Broadcast {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
        topic: String,
        event: String,
        #[serde(default)]
        payload: Value,
    },
    AccessToken {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
        token: String,
    },
    Presence {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
        topic: String,
        /// `track` or `untrack`.
        event: String,
        /// The state to show the other members (for `track`).
        #[serde(default)]
        payload: Value,
        /// Groups one member's connections; default: the user id, or the
        /// connection.
        #[serde(default)]
        key: Option<String>,
    },
    Heartbeat {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    },
}

fn ok(reference: &Option<Value>, extra: Value) -> String {
    let mut reply = json!({"type": "reply", "ref": reference, "status": "ok"});
    if let (Some(reply), Value::Object(extra)) = (reply.as_object_mut(), extra) {
        reply.extend(extra);
    }
    reply.to_string()
}

fn error(reference: &Option<Value>, code: ErrorCode, message: String) -> String {
    json!({"type": "reply", "ref": reference, "status": "error", "code": code.code(), "message": message})
        .to_string()
}

/// One connection's loop: client messages, queued deliveries, pings,
/// token expiry, and being cut off.
async fn connection(
    state: AppState,
    mut caller: Caller,
    apikey: Option<String>,
    mut session: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let config = state.config.realtime.clone();
    let mut stream = stream.max_frame_size(config.max_message_bytes as usize);
    let (sender, mut queued) = mpsc::channel::<String>(config.send_buffer as usize);
    let kill = Arc::new(Notify::new());
    let hub = state.realtime().clone();
    let id = hub.connect(
        sender,
        kill.clone(),
        identity(&caller),
        caller.user.map(|(_, session)| session),
    );
    let mut expires = expiry(&caller);
    let mut pings = tokio::time::interval(PING_EVERY);
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    let replies = handle(&state, &hub, id, &mut caller, apikey.as_deref(), &mut expires, &text).await;
                    let mut failed = false;
                    for reply in replies {
                        if session.text(reply).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break None;
                    }
                }
                Some(Ok(Message::Ping(bytes))) => {
                    last_heard = Instant::now();
                    if session.pong(&bytes).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Pong(_))) => last_heard = Instant::now(),
                Some(Ok(Message::Binary(_))) => {
                    let _ = session.text(error(&None, ErrorCode::RealtimeInvalidMessage, "send JSON text frames".into())).await;
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(error)) => {
                    // Too large a frame, or a protocol violation.
                    break Some(CloseReason {
                        code: CloseCode::Size,
                        description: Some(format!("{}: {error}", ErrorCode::RealtimeMessageTooLarge.code())),
                    });
                }
                Some(Ok(_)) => {}
            },
            Some(out) = queued.recv() => {
                if session.text(out).await.is_err() {
                    break None;
                }
            }
            _ = kill.notified() => {
                let reason = hub.reason(id).unwrap_or(ErrorCode::RealtimeClosed).code();
                break Some(CloseReason {
                    code: CloseCode::Policy,
                    description: Some(reason.to_owned()),
                });
            }
            _ = pings.tick() => {
                if last_heard.elapsed() > IDLE {
                    break Some(CloseReason { code: CloseCode::Normal, description: Some(ErrorCode::RealtimeIdle.code().into()) });
                }
                if session.ping(b"").await.is_err() {
                    break None;
                }
            }
            _ = async { tokio::time::sleep_until(expires.expect("guarded")).await }, if expires.is_some() => {
                expires = None;
                hub.pause(id);
                let message = json!({"type": "system", "event": ErrorCode::RealtimeTokenExpired.code(),
                    "message": "Delivery is paused; send a fresh access_token to resume (missed changes are replayed)."});
                if session.text(message.to_string()).await.is_err() {
                    break None;
                }
            }
        }
    };
    hub.disconnect(id);
    hub.release();
    if let Err(problem) = untrack(&state, Some(id), None).await {
        tracing::warn!("cannot remove a closed connection's presence: {problem}");
    }
    let _ = session.close(close).await;
}

/// Records `state` as `key`'s presence on `topic` and tells the members.
async fn track(
    state: &AppState,
    id: u64,
    topic: &str,
    key: &str,
    payload: &Value,
) -> Result<(), String> {
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    client
        .execute(
            "INSERT INTO basalt.presence (replica, connection, topic, key, state) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (replica, connection, topic) DO UPDATE SET key = EXCLUDED.key, state = EXCLUDED.state, updated_at = now()",
            &[&state.realtime_replica, &(id as i64), &topic, &key, payload],
        )
        .await
        .map_err(|e| e.to_string())?;
    let diff = json!({"topic": topic, "joins": {key: [payload]}, "leaves": {}}).to_string();
    client
        .execute("SELECT pg_notify($1, $2)", &[&PRESENCE_CHANNEL, &diff])
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Removes presence rows (of one connection, one topic, or whatever the
/// SQL in `gone` selects) and tells the members of each topic who left.
async fn announce_leaves(
    client: &tokio_postgres::Client,
    rows: Vec<tokio_postgres::Row>,
) -> Result<(), String> {
    let mut by_topic: std::collections::BTreeMap<String, serde_json::Map<String, Value>> =
        Default::default();
    for row in rows {
        let leaves = by_topic.entry(row.get(0)).or_default();
        let entry = leaves
            .entry(row.get::<_, String>(1))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(states) = entry {
            states.push(row.get(2));
        }
    }
    for (topic, leaves) in by_topic {
        let diff = json!({"topic": topic, "joins": {}, "leaves": leaves}).to_string();
        client
            .execute("SELECT pg_notify($1, $2)", &[&PRESENCE_CHANNEL, &diff])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Removes a connection's presence (on one topic, or all), telling members.
async fn untrack(state: &AppState, id: Option<u64>, topic: Option<&str>) -> Result<(), String> {
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "DELETE FROM basalt.presence WHERE replica = $1 AND connection = $2 AND ($3::text IS NULL OR topic = $3)
             RETURNING topic, key, state",
            &[&state.realtime_replica, &id.map(|i| i as i64), &topic],
        )
        .await
        .map_err(|e| e.to_string())?;
    announce_leaves(&client, rows).await
}

/// Says this replica is alive every few seconds, and removes the presence
/// of replicas that stopped saying so (they died with their clients).
pub async fn keep_presence(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        let Ok(client) = state.pool.get().await else {
            continue;
        };
        let alive = client
            .execute(
                "INSERT INTO basalt.realtime_replicas (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                &[&state.realtime_replica],
            )
            .await;
        if let Err(problem) = alive {
            tracing::warn!("cannot record this replica as alive: {problem}");
            continue;
        }
        let gone = client
            .query(
                "WITH dead AS (
                    DELETE FROM basalt.realtime_replicas
                     WHERE seen_at < now() - make_interval(secs => $1) RETURNING id
                 )
                 DELETE FROM basalt.presence p USING dead WHERE p.replica = dead.id
                 RETURNING p.topic, p.key, p.state",
                &[&REPLICA_TIMEOUT_SECS],
            )
            .await;
        match gone {
            Ok(rows) if !rows.is_empty() => {
                if let Err(problem) = announce_leaves(&client, rows).await {
                    tracing::warn!("cannot announce a dead replica's leaves: {problem}");
                }
            }
            Ok(_) => {}
            Err(problem) => tracing::warn!("cannot remove dead replicas' presence: {problem}"),
        }
    }
}

/// Delivers presence diffs from every replica to this one's members.
pub async fn relay_presence(state: AppState, pg: tokio_postgres::Config, tls: db::pool::Tls) {
    let (sender, mut payloads) = mpsc::unbounded_channel();
    let listening = db::listen::listen_payloads(pg, tls, PRESENCE_CHANNEL, sender);
    let relaying = async {
        while let Some(payload) = payloads.recv().await {
            let Ok(mut diff) = serde_json::from_str::<Value>(&payload) else {
                continue;
            };
            let Some(topic) = diff["topic"].as_str().map(str::to_owned) else {
                continue;
            };
            diff["type"] = json!("presence_diff");
            state.realtime().broadcast(&topic, &diff.to_string(), None);
        }
    };
    tokio::join!(listening, relaying);
}

/// The caller's access to a table's rows, or why not.
fn table_access(
    state: &AppState,
    caller: &Caller,
    schema: &str,
    table: &str,
) -> Result<Access, String> {
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("table:{schema}.{table}"),
        "select",
    );
    if !decision.allowed {
        return Err(decision.reason);
    }
    Ok(Access {
        grants: decision.grants(),
    })
}

/// Handles one client message; returns the replies (and replayed changes)
/// to send, in order.
async fn handle(
    state: &AppState,
    hub: &Hub,
    id: u64,
    caller: &mut Caller,
    apikey: Option<&str>,
    expires: &mut Option<tokio::time::Instant>,
    text: &str,
) -> Vec<String> {
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(problem) => {
            return vec![error(
                &None,
                ErrorCode::RealtimeInvalidMessage,
                problem.to_string(),
            )]
        }
    };
    // With an expired token, only a fresh token, heartbeats and leaving.
    let allowed_while_paused = matches!(
        message,
        ClientMessage::AccessToken { .. }
            | ClientMessage::Heartbeat { .. }
            | ClientMessage::Leave { .. }
    );
    if !allowed_while_paused && hub.paused(id) {
        return vec![error(
            &None,
            ErrorCode::RealtimeTokenExpired,
            "send a fresh access_token first".into(),
        )];
    }
    match message {
        ClientMessage::Heartbeat { reference } => vec![ok(&reference, json!({}))],
        ClientMessage::Leave { reference, topic } => {
            hub.leave(id, &topic);
            let _ = untrack(state, Some(id), Some(&topic)).await;
            vec![ok(&reference, json!({"topic": topic}))]
        }
        ClientMessage::Join {
            reference,
            topic,
            postgres_changes,
            broadcast_self,
            resume_from,
        } => {
            join(
                state,
                hub,
                id,
                caller,
                reference,
                topic,
                postgres_changes,
                broadcast_self,
                resume_from,
            )
            .await
        }
        ClientMessage::Broadcast {
            reference,
            topic,
            event,
            payload,
        } => {
            if !hub.joined(id, &topic) {
                return vec![error(
                    &reference,
                    ErrorCode::RealtimeNotJoined,
                    format!("join {topic} first"),
                )];
            }
            match send_broadcast(state, caller, &topic, &event, payload, Some(id)).await {
                Ok(()) => vec![ok(&reference, json!({"topic": topic}))],
                Err(problem) => vec![error(
                    &reference,
                    problem.error.kind,
                    problem.error.details.unwrap_or(problem.error.message),
                )],
            }
        }
        ClientMessage::Presence {
            reference,
            topic,
            event,
            payload,
            key,
        } => {
            if !hub.joined(id, &topic) {
                return vec![error(
                    &reference,
                    ErrorCode::RealtimeNotJoined,
                    format!("join {topic} first"),
                )];
            }
            let decision = state.authz().authorize(
                &subject_of(state, caller),
                &format!("channel:{topic}"),
                "presence",
            );
            if !decision.allowed {
                return vec![error(&reference, ErrorCode::Forbidden, decision.reason)];
            }
            // A key names the member: a user's own keys are prefixed with
            // the user id (no one can appear as someone else); anonymous
            // members are their connection.
            let key = match (caller.user, key) {
                (Some((user, _)), Some(key)) if key.len() <= 100 => format!("{user}:{key}"),
                (Some((user, _)), None) => user.to_string(),
                (None, _) => format!("{}-{id}", state.realtime_replica),
                (Some(_), Some(_)) => {
                    return vec![error(
                        &reference,
                        ErrorCode::RealtimeInvalidKey,
                        "a presence key is at most 100 bytes".into(),
                    )]
                }
            };
            let outcome = match event.as_str() {
                "track" if payload.to_string().len() <= MAX_BROADCAST_BYTES / 2 => {
                    track(state, id, &topic, &key, &payload).await
                }
                "track" => Err(format!(
                    "a presence state is at most {} bytes",
                    MAX_BROADCAST_BYTES / 2
                )),
                "untrack" => untrack(state, Some(id), Some(&topic)).await,
                other => Err(format!("`{other}` is not track or untrack")),
            };
            match outcome {
                Ok(()) => vec![ok(&reference, json!({"topic": topic}))],
                Err(problem) => vec![error(
                    &reference,
                    ErrorCode::RealtimePresenceFailed,
                    problem,
                )],
            }
        }
        ClientMessage::AccessToken { reference, token } => {
            let fresh = match Caller::from_keys(state, apikey, Some(&token)) {
                Ok(fresh) => fresh,
                Err(problem) => {
                    return vec![error(
                        &reference,
                        problem.error.kind,
                        problem.error.details.unwrap_or(problem.error.message),
                    )]
                }
            };
            // A connection opened with the API key alone may sign in with its
            // first token; after that, tokens must stay the same user's.
            if caller.user.is_some()
                && caller.user.map(|(user, _)| user) != fresh.user.map(|(user, _)| user)
            {
                return vec![error(
                    &reference,
                    ErrorCode::RealtimeWrongUser,
                    "a refreshed token must belong to the same user".into(),
                )];
            }
            *caller = fresh;
            *expires = expiry(caller);
            hub.sign_in(id, caller.user.map(|(_, session)| session));
            let (position, replays) = hub.refresh(id, identity(caller), |spec| {
                table_access(state, caller, &spec.schema, &spec.table).ok()
            });
            let mut out = vec![ok(&reference, json!({"position": position}))];
            for (topic, from) in replays {
                out.extend(replay(state, hub, id, &topic, from, position).await);
            }
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn join(
    state: &AppState,
    hub: &Hub,
    id: u64,
    caller: &Caller,
    reference: Option<Value>,
    topic: String,
    specs: Vec<ChangeSpec>,
    broadcast_self: bool,
    resume_from: Option<i64>,
) -> Vec<String> {
    let limit = state.config.realtime.max_channels_per_connection as usize;
    if hub.joined(id, &topic) {
        return vec![error(
            &reference,
            ErrorCode::RealtimeAlreadyJoined,
            format!("{topic} is joined"),
        )];
    }
    if hub.topics(id) >= limit {
        return vec![error(
            &reference,
            ErrorCode::RealtimeTooManyChannels,
            format!(
                "a connection may join {limit} channels (realtime.max_channels_per_connection)"
            ),
        )];
    }
    if !valid_topic(&topic) {
        return vec![error(
            &reference,
            ErrorCode::RealtimeInvalidTopic,
            "a topic is 1 to 255 bytes without control characters".into(),
        )];
    }
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("channel:{topic}"),
        "subscribe",
    );
    if !decision.allowed {
        return vec![error(&reference, ErrorCode::Forbidden, decision.reason)];
    }
    let mut subscriptions = Vec::new();
    for spec in specs {
        let schema = spec
            .schema
            .clone()
            .unwrap_or_else(|| state.config.rest.schema.clone());
        if !state.schema().names().contains(&schema) {
            return vec![error(
                &reference,
                ErrorCode::RealtimeUnknownSchema,
                format!("{schema} is not exposed"),
            )];
        }
        let event = match spec.event.as_deref() {
            None | Some("*") => None,
            Some(event @ ("INSERT" | "UPDATE" | "DELETE")) => Some(event.to_owned()),
            Some(other) => {
                return vec![error(
                    &reference,
                    ErrorCode::RealtimeInvalidEvent,
                    format!("`{other}` is not INSERT, UPDATE, DELETE or *"),
                )]
            }
        };
        let known = crate::rest::snapshot(state, &schema, |s| s.tables.contains_key(&spec.table))
            .await
            .tables
            .contains_key(&spec.table);
        let access = match table_access(state, caller, &schema, &spec.table) {
            Ok(access) => access,
            Err(reason) => return vec![error(&reference, ErrorCode::Forbidden, reason)],
        };
        if !known {
            return vec![error(
                &reference,
                ErrorCode::TableNotFound,
                format!("{schema}.{}", spec.table),
            )];
        }
        let filter = match spec.filter.as_deref().filter(|f| !f.is_empty()) {
            None => None,
            Some(text) => match parse_condition(text) {
                Ok(filter) => match basalt_core::filter::eval::evaluable(&filter) {
                    Ok(()) => Some(filter),
                    Err(problem) => {
                        return vec![error(&reference, ErrorCode::RealtimeInvalidFilter, problem)]
                    }
                },
                Err(problem) => {
                    return vec![error(
                        &reference,
                        ErrorCode::RealtimeInvalidFilter,
                        problem.message,
                    )]
                }
            },
        };
        // A filter may only read columns the caller may read.
        if let (Some(filter), Some(columns)) = (&filter, &access.common_columns()) {
            let used = basalt_core::rest::ReadQuery {
                filters: vec![filter.clone()],
                ..Default::default()
            }
            .named_columns();
            if let Some(hidden) = used.iter().find(|c| !columns.contains(c)) {
                return vec![error(
                    &reference,
                    ErrorCode::Forbidden,
                    format!("the filter reads `{hidden}`, which you may not read"),
                )];
            }
        }
        subscriptions.push((
            Spec {
                event,
                schema,
                table: spec.table,
                filter,
            },
            access,
        ));
    }
    if let Some(from) = resume_from {
        let client = match state.pool.get().await {
            Ok(client) => client,
            Err(problem) => {
                return vec![error(
                    &reference,
                    ErrorCode::DatabaseUnavailable,
                    problem.to_string(),
                )]
            }
        };
        match feed::read_after(&client, from, 1).await {
            Ok(Page::Gap { pruned_through }) => {
                return vec![error(
                    &reference,
                    ErrorCode::FeedGap,
                    format!("changes up to position {pruned_through} are no longer kept; refetch, then join without resume_from"),
                )]
            }
            Ok(_) => {}
            Err(problem) => return vec![error(&reference, ErrorCode::DatabaseUnavailable, problem.to_string())],
        }
    }
    let position = hub.join(id, &topic, broadcast_self, subscriptions, resume_from);
    let mut out = vec![ok(
        &reference,
        json!({"topic": topic, "position": position, "resumed_from": resume_from}),
    )];
    // The channel's presence as it is now; diffs follow.
    if let Ok(client) = state.pool.get().await {
        if let Ok(rows) = client
            .query(
                "SELECT key, jsonb_agg(state ORDER BY updated_at) FROM basalt.presence WHERE topic = $1 GROUP BY key",
                &[&topic],
            )
            .await
        {
            let members: serde_json::Map<String, Value> = rows
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, Value>(1)))
                .collect();
            out.push(json!({"type": "presence_state", "topic": topic, "state": members}).to_string());
        }
    }
    if let Some(from) = resume_from {
        out.extend(replay(state, hub, id, &topic, from, position).await);
    }
    out
}

/// The changes in `(from, to]` for `topic`'s subscriptions, read from the
/// feed; then live delivery resumes (what arrived meanwhile is flushed).
async fn replay(
    state: &AppState,
    hub: &Hub,
    id: u64,
    topic: &str,
    from: i64,
    to: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = from;
    if let Ok(client) = state.pool.get().await {
        'pages: while cursor < to {
            match feed::read_after(&client, cursor, 500).await {
                Ok(Page::Changes(changes)) if !changes.is_empty() => {
                    for change in changes {
                        if change.position > to {
                            break 'pages;
                        }
                        cursor = change.position;
                        out.extend(hub.render_for(id, topic, &change));
                    }
                }
                Ok(Page::Gap { pruned_through }) => {
                    out.push(error(
                        &None,
                        ErrorCode::FeedGap,
                        format!("changes up to position {pruned_through} are no longer kept"),
                    ));
                    hub.cut(id, ErrorCode::FeedGap);
                    return out;
                }
                Ok(_) => break,
                Err(problem) => {
                    // Never go live over a hole: the client resumes later.
                    out.push(error(
                        &None,
                        ErrorCode::DatabaseUnavailable,
                        problem.to_string(),
                    ));
                    hub.cut(id, ErrorCode::RealtimeReplayFailed);
                    return out;
                }
            }
        }
    } else {
        out.push(error(
            &None,
            ErrorCode::DatabaseUnavailable,
            "no database connection".into(),
        ));
        hub.cut(id, ErrorCode::RealtimeReplayFailed);
        return out;
    }
    hub.go_live(id, topic, to);
    out
}

/// 1 to 255 bytes, no control character (a NUL cannot be stored or sent
/// through `pg_notify`).
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 255 && !topic.chars().any(char::is_control)
}

/// Sends a broadcast to every member of `topic` on every replica.
async fn send_broadcast(
    state: &AppState,
    caller: &Caller,
    topic: &str,
    event: &str,
    payload: Value,
    from: Option<u64>,
) -> Result<(), HttpError> {
    if !valid_topic(topic) {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("topic: 1 to 255 bytes without control characters")
            .into());
    }
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("channel:{topic}"),
        "broadcast",
    );
    if !decision.allowed {
        return Err(ApiError::new(ErrorCode::Forbidden)
            .with_details(decision.reason)
            .into());
    }
    let message = json!({
        "topic": topic,
        "replica": state.realtime_replica.to_string(),
        "from": from,
        "message": {"type": "broadcast", "topic": topic, "event": event, "payload": payload},
    })
    .to_string();
    if message.len() > MAX_BROADCAST_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge)
            .with_details(format!(
                "a broadcast is at most {MAX_BROADCAST_BYTES} bytes"
            ))
            .into());
    }
    let client = state.pool.get().await?;
    client
        .execute("SELECT pg_notify($1, $2)", &[&BROADCAST_CHANNEL, &message])
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerBroadcast {
    topic: String,
    event: String,
    #[serde(default)]
    payload: Value,
}

/// `POST /realtime/v1/broadcast`: a server (or any caller allowed
/// `broadcast` on the channel) sends to a topic's members.
async fn server_broadcast(
    caller: Caller,
    state: Data<AppState>,
    body: Json<ServerBroadcast>,
) -> Result<HttpResponse, HttpError> {
    let body = body.into_inner();
    send_broadcast(
        &state,
        &caller,
        &body.topic,
        &body.event,
        body.payload,
        None,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(json!({"topic": body.topic})))
}

/// Follows the change feed and fans changes out, woken by NOTIFY (and every
/// second, in case a notification was missed).
pub async fn follow_feed(state: AppState, pg: tokio_postgres::Config, tls: db::pool::Tls) {
    let wake = Arc::new(Notify::new());
    let listening = db::listen::listen(pg, tls, feed::CHANNEL, wake.clone());
    let following = async {
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let Ok(client) = state.pool.get().await else {
                continue;
            };
            loop {
                let position = state.realtime().position();
                match feed::read_after(&client, position, 500).await {
                    Ok(Page::Changes(changes)) => {
                        let full = changes.len() == 500;
                        for change in &changes {
                            state.realtime().dispatch(change);
                        }
                        if !full {
                            break;
                        }
                    }
                    Ok(Page::Gap { pruned_through }) => {
                        // Changes were pruned before this replica delivered
                        // them: its subscribers cannot be told which, so they
                        // are disconnected to resynchronize (a resume then
                        // answers feed_gap).
                        tracing::warn!(pruned_through, "realtime fell behind the feed's retention");
                        state.realtime().cut_all(ErrorCode::FeedGap);
                        state.realtime().skip_to(pruned_through);
                    }
                    Err(error) => {
                        tracing::warn!("cannot read the change feed: {error}");
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(listening, following);
}

/// Delivers broadcasts from every replica to this one's members.
pub async fn relay_broadcasts(state: AppState, pg: tokio_postgres::Config, tls: db::pool::Tls) {
    let (sender, mut payloads) = mpsc::unbounded_channel();
    let listening = db::listen::listen_payloads(pg, tls, BROADCAST_CHANNEL, sender);
    let relaying = async {
        while let Some(payload) = payloads.recv().await {
            let Ok(envelope) = serde_json::from_str::<Value>(&payload) else {
                continue;
            };
            let (Some(topic), Some(message)) =
                (envelope["topic"].as_str(), envelope.get("message"))
            else {
                continue;
            };
            let own = envelope["replica"].as_str() == Some(&state.realtime_replica.to_string());
            let from = if own { envelope["from"].as_u64() } else { None };
            state
                .realtime()
                .broadcast(topic, &message.to_string(), from);
        }
    };
    tokio::join!(listening, relaying);
}

/// Cuts off connections whose session was revoked or ended, checking all
/// of this replica's sessions in one query every few seconds.
pub async fn cut_revoked_sessions(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        every.tick().await;
        let sessions = state.realtime().sessions();
        if sessions.is_empty() {
            continue;
        }
        let Ok(client) = state.pool.get().await else {
            continue;
        };
        let ids: Vec<uuid::Uuid> = sessions.iter().map(|(_, s)| *s).collect();
        let Ok(rows) = client
            .query(
                "SELECT s FROM unnest($1::uuid[]) s WHERE NOT EXISTS (
                    SELECT 1 FROM auth.sessions WHERE id = s AND revoked_at IS NULL
                      AND (not_after IS NULL OR not_after > now()))",
                &[&ids],
            )
            .await
        else {
            continue;
        };
        for row in rows {
            let ended: uuid::Uuid = row.get(0);
            for (conn, session) in &sessions {
                if *session == ended {
                    state
                        .realtime()
                        .cut(*conn, ErrorCode::RealtimeSessionRevoked);
                }
            }
        }
    }
}

impl crate::state::AppState {
    /// Realtime connections and subscriptions on this replica.
    pub fn realtime(&self) -> &std::sync::Arc<hub::Hub> {
        self.services.get()
    }
}
