//! Broadcast (over the socket and POST /realtime/v1/broadcast), following the change feed, relaying broadcasts between replicas, and cutting off revoked sessions.

use super::*;

/// 1 to 255 bytes, no control character (a NUL cannot be stored or sent
/// through `pg_notify`).
pub(super) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 255 && !topic.chars().any(char::is_control)
}

/// Sends a broadcast to every member of `topic` on every replica.
pub(super) async fn send_broadcast(
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
pub(super) struct ServerBroadcast {
    topic: String,
    event: String,
    #[serde(default)]
    payload: Value,
}

/// `POST /realtime/v1/broadcast`: a server (or any caller allowed
/// `broadcast` on the channel) sends to a topic's members.
pub(super) async fn server_broadcast(
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
