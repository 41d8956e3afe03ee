//! The documented JSON protocol: the client's messages, replies, and what each message does.

use super::*;

#[derive(Deserialize, Clone)]
pub(super) struct ChangeSpec {
    #[serde(default)]
    pub(super) event: Option<String>,
    #[serde(default)]
    pub(super) schema: Option<String>,
    pub(super) table: String,
    #[serde(default)]
    pub(super) filter: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ClientMessage {
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

pub(super) fn ok(reference: &Option<Value>, extra: Value) -> String {
    let mut reply = json!({"type": "reply", "ref": reference, "status": "ok"});
    if let (Some(reply), Value::Object(extra)) = (reply.as_object_mut(), extra) {
        reply.extend(extra);
    }
    reply.to_string()
}

pub(super) fn error(reference: &Option<Value>, code: ErrorCode, message: String) -> String {
    json!({"type": "reply", "ref": reference, "status": "error", "code": code.code(), "message": message})
        .to_string()
}

/// Handles one client message; returns the replies (and replayed changes)
/// to send, in order.
pub(super) async fn handle(
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
