//! The WebSocket upgrade (API key and token checked) and the connection loop: client messages, queued deliveries, pings, token expiry, being cut off.

use super::*;

pub(super) fn identity(caller: &Caller) -> Identity {
    Identity {
        uid: caller.user.map(|(user, _)| user.to_string()),
        role: caller.role.clone(),
        claims: caller.claims.clone(),
    }
}

pub(super) fn expiry(caller: &Caller) -> Option<tokio::time::Instant> {
    let exp = caller.claims.get("exp")?.as_i64()?;
    let now = chrono::Utc::now().timestamp();
    // At most a year away: a far-future `exp` must not overflow the clock.
    let left = Duration::from_secs(exp.saturating_sub(now).clamp(0, 365 * 86_400) as u64);
    tokio::time::Instant::now().checked_add(left)
}

/// `GET /realtime/v1/websocket?apikey=…[&access_token=…]` (or the headers).
pub(super) async fn websocket(
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
    // `vsn` asks for Supabase Realtime's Phoenix protocol (supabase-js).
    let dialect = Serializer::of(param("vsn").as_deref()).map_err(|problem| {
        HttpError::from(ApiError::new(ErrorCode::InvalidRequest).with_details(problem))
    })?;
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
    actix_web::rt::spawn(connection(state, caller, apikey, dialect, session, stream));
    Ok(response)
}

/// One connection's loop: client messages, queued deliveries, pings,
/// token expiry, and being cut off.
pub(super) async fn connection(
    state: AppState,
    mut caller: Caller,
    apikey: Option<String>,
    dialect: Option<Serializer>,
    mut session: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let mut phoenix = dialect.map(Phoenix::new);
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
                    let replies = match phoenix.as_mut() {
                        Some(phoenix) => {
                            let frame = phoenix.decode(&text);
                            handle_frame(&state, &hub, id, &mut caller, apikey.as_deref(), &mut expires, phoenix, frame).await
                        }
                        None => handle(&state, &hub, id, &mut caller, apikey.as_deref(), &mut expires, &text)
                            .await
                            .into_iter()
                            .map(Outgoing::Text)
                            .collect(),
                    };
                    if !send_all(&mut session, replies).await {
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
                Some(Ok(Message::Binary(bytes))) => {
                    last_heard = Instant::now();
                    let replies = match phoenix.as_mut() {
                        Some(phoenix) => {
                            let frame = phoenix.decode_binary(&bytes);
                            handle_frame(&state, &hub, id, &mut caller, apikey.as_deref(), &mut expires, phoenix, frame).await
                        }
                        None => vec![Outgoing::Text(error(&None, ErrorCode::RealtimeInvalidMessage, "send JSON text frames".into()))],
                    };
                    if !send_all(&mut session, replies).await {
                        break None;
                    }
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
                let out = match phoenix.as_mut() {
                    Some(phoenix) => phoenix.delivery(&out, &state),
                    None => Some(Outgoing::Text(out)),
                };
                if !send_all(&mut session, out.into_iter().collect()).await {
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
                    "message": "Delivery is paused; send a fresh access_token to resume (missed changes are replayed)."}).to_string();
                let message = match phoenix.as_mut() {
                    Some(phoenix) => phoenix.delivery(&message, &state),
                    None => Some(Outgoing::Text(message)),
                };
                if !send_all(&mut session, message.into_iter().collect()).await {
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

/// One Phoenix frame: translated into Basalt's message, handled as Basalt's
/// own, and the answers translated back (the reply first, then deliveries).
#[allow(clippy::too_many_arguments)]
async fn handle_frame(
    state: &AppState,
    hub: &Hub,
    id: u64,
    caller: &mut Caller,
    apikey: Option<&str>,
    expires: &mut Option<tokio::time::Instant>,
    phoenix: &mut Phoenix,
    frame: Result<Frame, String>,
) -> Vec<Outgoing> {
    let frame = match frame {
        Ok(frame) => frame,
        Err(problem) => {
            // Not even a frame: answered on the `phoenix` topic.
            let unknown = Frame {
                topic: "phoenix".into(),
                ..Frame::default()
            };
            let code = ErrorCode::RealtimeInvalidMessage.code().to_owned();
            return vec![phoenix.reply(&unknown, Err((code, problem)))];
        }
    };
    let message = match phoenix.translate(&frame) {
        Ok(Some(message)) => message,
        Ok(None) => return vec![phoenix.reply(&frame, Ok(json!({})))],
        Err(problem) => return vec![phoenix.reply(&frame, Err(problem))],
    };
    // A join carries the client's access token: sign in with it first.
    if frame.event == "phx_join" {
        if let Some(token) = frame.payload["access_token"].as_str() {
            let signing_in = json!({"type": "access_token", "ref": 0, "token": token}).to_string();
            let answers = handle(state, hub, id, caller, apikey, expires, &signing_in).await;
            if let Some(failure) = refusal(answers.first()) {
                return vec![phoenix.reply(&frame, Err(failure))];
            }
        }
    }
    let mut message = message;
    message["ref"] = json!(1);
    let mut answers = handle(
        state,
        hub,
        id,
        caller,
        apikey,
        expires,
        &message.to_string(),
    )
    .await
    .into_iter();
    let reply = answers.next();
    let mut out = vec![match refusal(reply.as_ref()) {
        Some(failure) => {
            if frame.event == "phx_join" {
                phoenix.forget(&frame.topic);
            }
            phoenix.reply(&frame, Err(failure))
        }
        None if frame.event == "phx_join" => {
            phoenix.reply(&frame, Ok(phoenix.joined(&frame.topic)))
        }
        None => phoenix.reply(&frame, Ok(json!({}))),
    }];
    out.extend(answers.filter_map(|answer| phoenix.delivery(&answer, state)));
    out
}

/// The code and message of a Basalt reply that refused, if it did.
fn refusal(reply: Option<&String>) -> Option<(String, String)> {
    let reply: Value = serde_json::from_str(reply?).ok()?;
    (reply["status"] == "error").then(|| {
        (
            reply["code"].as_str().unwrap_or_default().to_owned(),
            reply["message"].as_str().unwrap_or_default().to_owned(),
        )
    })
}

/// A frame to send: text, or bytes (Phoenix's binary user broadcasts).
pub(super) enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

/// Sends each message in order; false when the connection broke.
async fn send_all(session: &mut actix_ws::Session, messages: Vec<Outgoing>) -> bool {
    for message in messages {
        let sent = match message {
            Outgoing::Text(text) => session.text(text).await,
            Outgoing::Binary(bytes) => session.binary(bytes).await,
        };
        if sent.is_err() {
            return false;
        }
    }
    true
}
