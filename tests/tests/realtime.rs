//! Realtime with real WebSocket clients (tokio-tungstenite) against the real
//! binary: no race at subscribe, filters, per-row authorization and hidden
//! columns, the DELETE rule, resume and the gap error, token expiry and
//! refresh, revoked sessions, two servers on one database, broadcast, a
//! slow consumer cut off while a fast one keeps receiving, and limits.

use basalt_tests::{Basalt, TEST_JWT_SECRET};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    socket: Socket,
}

impl Client {
    async fn connect(basalt: &Basalt, apikey: &str, token: Option<&str>) -> Client {
        let mut url = basalt
            .url(&format!("/realtime/v1/websocket?apikey={apikey}"))
            .replacen("http://", "ws://", 1);
        if let Some(token) = token {
            url.push_str(&format!("&access_token={token}"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client { socket }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON message (pings are answered by the library), or `None`
    /// when nothing comes within `wait` or the socket closed.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(&text).unwrap())
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Some(json!({"closed": frame.map(|f| f.reason.to_string())}))
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    async fn expect(&mut self) -> Value {
        self.next(Duration::from_secs(5))
            .await
            .expect("a message within 5 s")
    }

    async fn join(&mut self, topic: &str, changes: Value, resume_from: Option<i64>) -> Value {
        let mut message =
            json!({"type": "join", "ref": "j", "topic": topic, "postgres_changes": changes});
        if let Some(from) = resume_from {
            message["resume_from"] = json!(from);
        }
        self.send(message).await;
        let reply = self.expect().await;
        if reply["status"] == "ok" {
            let presence = self.expect().await;
            assert_eq!(presence["type"], "presence_state", "{presence}");
        }
        reply
    }
}

/// A server with an `items` table captured, policies that let signed-in
/// users subscribe to any channel and read their own items (not `secret`),
/// and two users.
async fn setup(basalt: &Basalt) -> Vec<(String, String)> {
    basalt
        .admin_sql("create table items (id serial primary key, owner uuid, name text, secret text, score int);
                    grant select, insert, update, delete on items to authenticated; grant usage on sequence items_id_seq to authenticated")
        .await;
    let service = basalt.as_service();
    service
        .send(Method::POST, "/admin/v1/tables/items/realtime", &[], None)
        .await
        .expect(200);
    for policy in [
        json!({"subject": "authenticated", "object": "channel:*", "action": "*"}),
        json!({"subject": "authenticated", "object": "table:public.items", "action": "select", "condition": "owner=eq.{auth.uid}", "columns": ["id", "owner", "name", "score"]}),
    ] {
        service.policy(policy).await;
    }
    let mut users = Vec::new();
    for name in ["ann", "bob"] {
        let (client, id) =
            basalt_tests::client::Client::user(basalt, &format!("{name}@example.com")).await;
        users.push((id, client.token.unwrap()));
    }
    users
}

fn insert_sql(owner: &str, name: &str, score: i32) -> String {
    format!("insert into items (owner, name, secret, score) values ('{owner}', '{name}', 'hidden', {score})")
}

#[tokio::test]
async fn subscribe_then_insert_delivers_only_allowed_rows_and_columns() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let anon = basalt.keys().anon;
    let (ann, ann_token) = (&users[0].0, &users[0].1);
    let bob = &users[1].0;
    let mut client = Client::connect(&basalt, &anon, Some(ann_token)).await;
    let ack = client
        .join("room", json!([{"event": "*", "table": "items"}]), None)
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let acked = ack["position"].as_i64().unwrap();
    // The very first write after the ack is delivered.
    basalt.admin_sql(&insert_sql(ann, "first", 1)).await;
    let change = client.expect().await;
    assert_eq!(change["type"], "postgres_changes");
    assert_eq!(change["event"], "INSERT");
    assert!(change["position"].as_i64().unwrap() > acked);
    assert_eq!(change["record"]["name"], "first");
    assert!(
        change["record"].get("secret").is_none(),
        "hidden column removed: {change}"
    );
    // Bob's row is not Ann's to see; her next one is.
    basalt.admin_sql(&insert_sql(bob, "bob's", 2)).await;
    basalt.admin_sql(&insert_sql(ann, "second", 3)).await;
    assert_eq!(client.expect().await["record"]["name"], "second");
    // DELETE: delivered only when the old row was hers.
    basalt
        .admin_sql("delete from items where name = 'bob''s'")
        .await;
    basalt
        .admin_sql("delete from items where name = 'first'")
        .await;
    let deleted = client.expect().await;
    assert_eq!(deleted["event"], "DELETE");
    assert_eq!(deleted["old_record"]["name"], "first");
    assert!(
        client.next(Duration::from_millis(300)).await.is_none(),
        "nothing else"
    );
}

#[tokio::test]
async fn filters_and_events_narrow_a_subscription() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let mut client = Client::connect(&basalt, &basalt.keys().anon, Some(token)).await;
    let ack = client
        .join(
            "filtered",
            json!([{"event": "INSERT", "table": "items", "filter": "or=(score.gte.10,name.like.*vip*)"}]),
            None,
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    for (name, score) in [("low", 1), ("high", 20), ("vip low", 2), ("mid", 9)] {
        basalt.admin_sql(&insert_sql(ann, name, score)).await;
    }
    basalt
        .admin_sql("update items set score = 99 where name = 'low'")
        .await;
    let mut names = Vec::new();
    while let Some(message) = client.next(Duration::from_millis(500)).await {
        names.push(message["record"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, vec!["high", "vip low"], "OR filter, INSERT only");
    // A filter on a hidden column, a bad filter, an unknown table: refused.
    for (spec, code) in [
        (
            json!({"table": "items", "filter": "secret=eq.x"}),
            "forbidden",
        ),
        (
            json!({"table": "items", "filter": "score=nope.1"}),
            "invalid_filter",
        ),
        (
            json!({"table": "items", "filter": "name=fts.hello"}),
            "invalid_filter",
        ),
        (json!({"table": "nope"}), "forbidden"),
    ] {
        let reply = client
            .join(&format!("t-{code}-{}", spec["table"]), json!([spec]), None)
            .await;
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
    }
}

#[tokio::test]
async fn resume_replays_missed_changes_exactly_once_and_reports_gaps() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let anon = basalt.keys().anon;
    let mut client = Client::connect(&basalt, &anon, Some(token)).await;
    client.join("room", json!([{"table": "items"}]), None).await;
    basalt.admin_sql(&insert_sql(ann, "seen", 1)).await;
    let last = client.expect().await["position"].as_i64().unwrap();
    drop(client);
    basalt.admin_sql(&insert_sql(ann, "missed 1", 2)).await;
    basalt.admin_sql(&insert_sql(ann, "missed 2", 3)).await;
    let mut client = Client::connect(&basalt, &anon, Some(token)).await;
    let ack = client
        .join("room", json!([{"table": "items"}]), Some(last))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    basalt.admin_sql(&insert_sql(ann, "live", 4)).await;
    let mut got = Vec::new();
    while let Some(message) = client.next(Duration::from_millis(700)).await {
        got.push((
            message["position"].as_i64().unwrap(),
            message["record"]["name"].as_str().unwrap().to_owned(),
        ));
    }
    let names: Vec<&str> = got.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["missed 1", "missed 2", "live"],
        "in order, once"
    );
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    // Past retention: an explicit gap.
    basalt
        .admin_sql(&format!(
            "update basalt.feed_state set pruned_through = {}",
            last + 1
        ))
        .await;
    let mut late = Client::connect(&basalt, &anon, Some(token)).await;
    let reply = late
        .join("room", json!([{"table": "items"}]), Some(last))
        .await;
    assert_eq!(reply["code"], "feed_gap", "{reply}");
}

#[tokio::test]
async fn an_expired_token_pauses_delivery_and_a_refresh_resumes_it() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    // Ann's token, re-signed to expire in two seconds.
    let mut claims: Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    claims["exp"] = json!(chrono_now() + 2);
    let short = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mut client = Client::connect(&basalt, &basalt.keys().anon, Some(&short)).await;
    client.join("room", json!([{"table": "items"}]), None).await;
    let expired = client.expect().await;
    assert_eq!(expired["event"], "token_expired", "{expired}");
    basalt.admin_sql(&insert_sql(ann, "while expired", 1)).await;
    assert!(
        client.next(Duration::from_millis(500)).await.is_none(),
        "paused"
    );
    client
        .send(json!({"type": "access_token", "ref": "r", "token": token}))
        .await;
    let reply = client.expect().await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let replayed = client.expect().await;
    assert_eq!(
        replayed["record"]["name"], "while expired",
        "missed while paused, replayed"
    );
    basalt.admin_sql(&insert_sql(ann, "after", 2)).await;
    assert_eq!(client.expect().await["record"]["name"], "after");
    // Another user's token on this socket: refused.
    client
        .send(json!({"type": "access_token", "ref": "x", "token": users[1].1}))
        .await;
    assert_eq!(client.expect().await["code"], "wrong_user");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_revoked_session_is_cut_off() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let token = &users[0].1;
    let mut client = Client::connect(&basalt, &basalt.keys().anon, Some(token)).await;
    client.join("room", json!([{"table": "items"}]), None).await;
    let (status, _) = basalt
        .as_user(token)
        .call(Method::POST, "/auth/v1/logout", None)
        .await;
    assert_eq!(status, 204);
    let closed = client.expect().await;
    assert_eq!(closed["closed"], "session_revoked", "{closed}");
}

#[tokio::test]
async fn subscribers_on_two_servers_of_one_database_both_receive() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let other = Basalt::builder()
        .database_url(basalt.database_url().unwrap())
        .start()
        .await;
    let mut here = Client::connect(&basalt, &basalt.keys().anon, Some(token)).await;
    let mut there = Client::connect(&other, &other.keys().anon, Some(token)).await;
    assert_eq!(
        here.join("room", json!([{"table": "items"}]), None).await["status"],
        "ok"
    );
    assert_eq!(
        there.join("room", json!([{"table": "items"}]), None).await["status"],
        "ok"
    );
    basalt.admin_sql(&insert_sql(ann, "everywhere", 1)).await;
    assert_eq!(here.expect().await["record"]["name"], "everywhere");
    assert_eq!(there.expect().await["record"]["name"], "everywhere");
    // Broadcast across them, and from the server API.
    here.send(json!({"type": "broadcast", "ref": "b", "topic": "room", "event": "wave", "payload": {"hi": 1}})).await;
    assert_eq!(here.expect().await["status"], "ok");
    let wave = there.expect().await;
    assert_eq!(
        (wave["type"].as_str(), wave["event"].as_str()),
        (Some("broadcast"), Some("wave")),
        "{wave}"
    );
    assert!(
        here.next(Duration::from_millis(300)).await.is_none(),
        "no echo without broadcast_self"
    );
    let (status, body) = basalt
        .as_service()
        .call(
            Method::POST,
            "/realtime/v1/broadcast",
            Some(json!({"topic": "room", "event": "notice", "payload": {}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(here.expect().await["event"], "notice");
    assert_eq!(there.expect().await["event"], "notice");
    // With broadcast_self, the sender receives its own broadcast too.
    here.send(json!({"type": "join", "ref": "e", "topic": "echo", "broadcast_self": true}))
        .await;
    assert_eq!(here.expect().await["status"], "ok");
    assert_eq!(here.expect().await["type"], "presence_state");
    here.send(
        json!({"type": "broadcast", "ref": "b2", "topic": "echo", "event": "ping", "payload": {}}),
    )
    .await;
    assert_eq!(here.expect().await["status"], "ok");
    assert_eq!(here.expect().await["event"], "ping", "its own broadcast");
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_a_fast_one_keeps_receiving() {
    let basalt = Basalt::builder()
        .env("BASALT_REALTIME_SEND_BUFFER", "16")
        .env("BASALT_REALTIME_MAX_CHANNELS_PER_CONNECTION", "2")
        .env("BASALT_REALTIME_MAX_MESSAGE_BYTES", "1024")
        .start()
        .await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let anon = basalt.keys().anon;
    let mut fast = Client::connect(&basalt, &anon, Some(token)).await;
    let mut slow = Client::connect(&basalt, &anon, Some(token)).await;
    fast.join("room", json!([{"table": "items"}]), None).await;
    slow.join("room", json!([{"table": "items"}]), None).await;
    // The slow client stops reading; its TCP buffers fill, then its queue.
    let big = "x".repeat(60_000);
    let writer = tokio::spawn({
        let url = basalt.database_url().unwrap().to_owned();
        let ann = ann.clone();
        let big = big.clone();
        async move {
            let client = basalt_tests::connect(&url).await;
            for i in 0..200 {
                client
                    .execute(
                        "insert into items (owner, name, score) values ($1::text::uuid, $2, $3)",
                        &[&ann, &format!("{i} {big}"), &i],
                    )
                    .await
                    .unwrap();
                // Paced, so a reader that keeps reading keeps up.
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        }
    });
    let mut received = 0;
    while received < 200 {
        let message = fast.expect().await;
        assert_eq!(
            message["type"],
            "postgres_changes",
            "{}",
            &message.to_string()[..200.min(message.to_string().len())]
        );
        received += 1;
    }
    writer.await.unwrap();
    // Now read what the slow one got: it ends with the cut-off.
    let mut reason = None;
    while let Some(message) = slow.next(Duration::from_secs(3)).await {
        if let Some(closed) = message.get("closed") {
            reason = closed.as_str().map(str::to_owned);
            break;
        }
    }
    assert_eq!(reason.as_deref(), Some("slow_consumer"));
    // Limits: channels per connection, message size.
    fast.join("second", json!([]), None).await;
    let reply = fast.join("third", json!([]), None).await;
    assert_eq!(reply["code"], "too_many_channels", "{reply}");
    fast.send(json!({"type": "heartbeat", "ref": "x".repeat(2000)}))
        .await;
    let closed = fast.expect().await;
    assert!(
        closed["closed"]
            .as_str()
            .unwrap_or("")
            .starts_with("message_too_large"),
        "{closed}"
    );
}

#[tokio::test]
async fn joining_needs_the_channel_policy_and_bad_messages_get_errors() {
    let basalt = Basalt::start().await;
    let _ = setup(&basalt).await;
    let anon = basalt.keys().anon;
    let mut client = Client::connect(&basalt, &anon, None).await;
    let reply = client.join("room", json!([]), None).await;
    assert_eq!(
        reply["code"], "forbidden",
        "anon has no channel policy: {reply}"
    );
    client
        .socket
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    assert_eq!(client.expect().await["code"], "invalid_message");
    client.send(json!({"type": "heartbeat", "ref": 7})).await;
    let reply = client.expect().await;
    assert_eq!(
        (reply["status"].as_str(), reply["ref"].as_i64()),
        (Some("ok"), Some(7))
    );
    // No API key: the upgrade itself is refused.
    let url = basalt
        .url("/realtime/v1/websocket")
        .replacen("http://", "ws://", 1);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

/// A topic with a control character (a NUL cannot go through pg_notify and
/// broke presence) is refused at join and at broadcast.
#[tokio::test]
async fn topics_with_control_characters_are_refused() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let anon = basalt.keys().anon;
    let mut client = Client::connect(&basalt, &anon, Some(&users[0].1)).await;
    for topic in ["lobby\u{0}x", "lobby\nx", ""] {
        let reply = client.join(topic, json!([]), None).await;
        assert_eq!(reply["code"], "invalid_topic", "{topic:?}: {reply}");
    }
    assert_eq!(client.join("lobby", json!([]), None).await["status"], "ok");
    let response = basalt
        .http
        .post(basalt.url("/realtime/v1/broadcast"))
        .header("apikey", basalt.keys().service_role)
        .json(&json!({"topic": "lobby\u{0}", "event": "x", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn presence_full_state_on_join_diffs_after_and_cleanup_on_disconnect_and_replica_death() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let anon = basalt.keys().anon;
    let (ann, ann_token) = (&users[0].0, &users[0].1);
    let (bob, bob_token) = (&users[1].0, &users[1].1);
    let mut a = Client::connect(&basalt, &anon, Some(ann_token)).await;
    let mut b = Client::connect(&basalt, &anon, Some(bob_token)).await;
    a.join("lobby", json!([]), None).await;
    b.join("lobby", json!([]), None).await;
    a.send(json!({"type": "presence", "ref": "p", "topic": "lobby", "event": "track", "payload": {"status": "online"}})).await;
    assert_eq!(a.expect().await["status"], "ok");
    // Both members get the diff (the tracker too).
    for client in [&mut a, &mut b] {
        let diff = client.expect().await;
        assert_eq!(diff["type"], "presence_diff", "{diff}");
        assert_eq!(diff["joins"][ann.as_str()], json!([{"status": "online"}]));
    }
    // A later member gets the full state on join.
    let mut c = Client::connect(&basalt, &anon, Some(bob_token)).await;
    c.send(json!({"type": "join", "ref": "j", "topic": "lobby"}))
        .await;
    assert_eq!(c.expect().await["status"], "ok");
    let full = c.expect().await;
    assert_eq!(full["type"], "presence_state");
    assert_eq!(full["state"][ann.as_str()], json!([{"status": "online"}]));
    // An abrupt disconnect: the others see Ann leave.
    drop(a);
    let leave = b.expect().await;
    assert_eq!(
        leave["leaves"][ann.as_str()],
        json!([{"status": "online"}]),
        "{leave}"
    );
    assert_eq!(c.expect().await["type"], "presence_diff");

    // A replica that dies: its members' presence is removed by the others.
    let mut other = Basalt::builder()
        .database_url(basalt.database_url().unwrap())
        .start()
        .await;
    let mut d = Client::connect(&other, &other.keys().anon, Some(bob_token)).await;
    d.join("lobby", json!([]), None).await;
    d.send(json!({"type": "presence", "ref": "p", "topic": "lobby", "event": "track", "key": "bob-phone", "payload": {"on": "phone"}})).await;
    assert_eq!(d.expect().await["status"], "ok");
    let joined = b.expect().await;
    // A user's own key carries their id: no one can appear as someone else.
    let phone_key = format!("{bob}:bob-phone");
    assert_eq!(
        joined["joins"][&phone_key],
        json!([{"on": "phone"}]),
        "{joined}"
    );
    c.expect().await;
    other.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = other.wait_exit(Duration::from_secs(10)).await;
    let leave = b
        .next(Duration::from_secs(30))
        .await
        .expect("the dead replica's members leave");
    assert_eq!(
        leave["leaves"][&phone_key],
        json!([{"on": "phone"}]),
        "{leave}"
    );
}

/// Every operator family a live filter evaluates, with negation and groups.
#[tokio::test]
async fn every_live_filter_operator() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let filters = [
        ("score=eq.5", vec!["e5"]),
        ("score=neq.5", vec!["e1", "e9"]),
        ("score=gt.5", vec!["e9"]),
        ("score=gte.5", vec!["e5", "e9"]),
        ("score=lt.5", vec!["e1"]),
        ("score=lte.5", vec!["e1", "e5"]),
        ("name=like.e_", vec!["e1", "e5", "e9"]),
        ("name=ilike.E*", vec!["e1", "e5", "e9", "enull"]),
        ("score=in.(1,9)", vec!["e1", "e9"]),
        ("score=is.null", vec!["enull"]),
        ("score=isdistinct.5", vec!["e1", "e9", "enull"]),
        ("score=not.eq.5", vec!["e1", "e9"]),
        (
            "or=(score.eq.1,and(score.gt.4,name.like.*9))",
            vec!["e1", "e9"],
        ),
        ("score=gt(any).{8,100}", vec!["e9"]),
    ];
    let mut clients = Vec::new();
    for (i, (filter, _)) in filters.iter().enumerate() {
        let mut client = Client::connect(&basalt, &basalt.keys().anon, Some(token)).await;
        let ack = client
            .join(
                &format!("f{i}"),
                json!([{"event": "INSERT", "table": "items", "filter": filter}]),
                None,
            )
            .await;
        assert_eq!(ack["status"], "ok", "{filter}: {ack}");
        clients.push(client);
    }
    for (name, score) in [("e1", "1"), ("e5", "5"), ("e9", "9"), ("enull", "null")] {
        basalt
            .admin_sql(&format!(
                "insert into items (owner, name, score) values ('{ann}', '{name}', {score})"
            ))
            .await;
    }
    for ((filter, expected), client) in filters.iter().zip(clients.iter_mut()) {
        let mut got = Vec::new();
        while let Some(message) = client.next(Duration::from_millis(400)).await {
            got.push(message["record"]["name"].as_str().unwrap().to_owned());
        }
        assert_eq!(&got, expected, "{filter}");
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let basalt = Basalt::builder()
        .env("BASALT_REALTIME_MAX_CONNECTIONS", "2")
        .start()
        .await;
    let anon = basalt.keys().anon;
    let _first = Client::connect(&basalt, &anon, None).await;
    let second = Client::connect(&basalt, &anon, None).await;
    let url = basalt
        .url(&format!("/realtime/v1/websocket?apikey={anon}"))
        .replacen("http://", "ws://", 1);
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!(
            "a third connection was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // A closed connection frees its place.
    drop(second);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio_tungstenite::connect_async(url.clone()).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signing in with the first message, and changes delivered in commit order
/// when transactions commit out of order.
#[tokio::test]
async fn first_message_sign_in_and_out_of_order_commits() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let mut client = Client::connect(&basalt, &basalt.keys().anon, None).await;
    client
        .send(json!({"type": "access_token", "ref": "a", "token": token}))
        .await;
    let reply = client.expect().await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let ack = client.join("room", json!([{"table": "items"}]), None).await;
    assert_eq!(ack["status"], "ok", "signed in by message: {ack}");
    let url = basalt.database_url().unwrap().to_owned();
    let mut slow = basalt_tests::connect(&url).await;
    let fast = basalt_tests::connect(&url).await;
    let long = slow.transaction().await.unwrap();
    long.batch_execute(&insert_sql(ann, "began first", 1))
        .await
        .unwrap();
    fast.batch_execute(&insert_sql(ann, "committed first", 2))
        .await
        .unwrap();
    let first = client.expect().await;
    assert_eq!(first["record"]["name"], "committed first");
    long.commit().await.unwrap();
    let second = client.expect().await;
    assert_eq!(second["record"]["name"], "began first");
    assert!(second["position"].as_i64() > first["position"].as_i64());
}

/// Two policies combine per row: a broad one with few columns and a narrow
/// one with all columns never show all columns of every row; an update's old
/// row is shown only if it was visible too.
#[tokio::test]
async fn policies_combine_per_row_and_old_rows_stay_hidden() {
    let basalt = Basalt::start().await;
    let users = setup(&basalt).await;
    let (ann, token) = (&users[0].0, &users[0].1);
    let bob = &users[1].0;
    basalt
        .admin_sql("create table notes (id int primary key, owner uuid, body text)")
        .await;
    basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/notes/realtime", None)
        .await;
    for policy in [
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "select", "columns": ["id"]}),
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "select", "condition": "owner=eq.{auth.uid}"}),
    ] {
        let (status, body) = basalt
            .as_service()
            .call(Method::POST, "/admin/v1/policies", Some(policy))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut client = Client::connect(&basalt, &basalt.keys().anon, Some(token)).await;
    assert_eq!(
        client.join("n", json!([{"table": "notes"}]), None).await["status"],
        "ok"
    );
    basalt
        .admin_sql(&format!(
            "insert into notes values (1, '{bob}', 'bob secret')"
        ))
        .await;
    basalt
        .admin_sql(&format!("insert into notes values (2, '{ann}', 'mine')"))
        .await;
    assert_eq!(
        client.expect().await["record"],
        json!({"id": 1}),
        "others' rows: the broad policy's columns"
    );
    let mine = client.expect().await;
    assert_eq!(mine["record"]["body"], "mine", "own rows: every column");
    basalt
        .admin_sql(&format!(
            "update notes set owner = '{ann}', body = 'now mine' where id = 1"
        ))
        .await;
    let moved = client.expect().await;
    assert_eq!(moved["record"]["body"], "now mine");
    assert_eq!(
        moved["old_record"],
        json!({"id": 1}),
        "the old row only as it was visible: {moved}"
    );
}

/// The Phoenix dialect (`vsn=1.0.0`, JSON objects): heartbeats are
/// answered, frames the server cannot read or act on get an error reply on
/// their topic, and the connection survives all of it.
#[tokio::test]
async fn the_phoenix_dialect_answers_every_frame_and_survives_bad_ones() {
    let basalt = Basalt::start().await;
    let anon = basalt.keys().anon;
    let url = basalt
        .url(&format!("/realtime/v1/websocket?apikey={anon}&vsn=1.0.0"))
        .replacen("http://", "ws://", 1);
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client { socket };
    client
        .send(json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}))
        .await;
    let reply = client.expect().await;
    assert_eq!(
        (
            &reply["topic"],
            &reply["event"],
            &reply["ref"],
            &reply["payload"]["status"]
        ),
        (
            &json!("phoenix"),
            &json!("phx_reply"),
            &json!("1"),
            &json!("ok")
        ),
        "{reply}"
    );
    // Not a frame at all.
    client.send(json!([1, 2, 3])).await;
    let reply = client.expect().await;
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    assert_eq!(reply["payload"]["response"]["code"], "invalid_message");
    // A token refresh without a token, an unknown event, a channel no policy allows.
    for (event, payload, code) in [
        ("access_token", json!({}), "invalid_message"),
        ("phx_dance", json!({}), "invalid_message"),
        ("phx_join", json!({"config": {}}), "forbidden"),
    ] {
        client
            .send(json!({"topic": "realtime:room", "event": event, "payload": payload, "ref": "2", "join_ref": "2"}))
            .await;
        let reply = client.expect().await;
        assert_eq!(
            (
                &reply["event"],
                &reply["payload"]["status"],
                &reply["payload"]["response"]["code"]
            ),
            (&json!("phx_reply"), &json!("error"), &json!(code)),
            "{event}: {reply}"
        );
    }
    // Basalt's own protocol is not spoken on this connection, and it is still open.
    client
        .send(json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "3"}))
        .await;
    assert_eq!(client.expect().await["payload"]["status"], "ok");
    // An unknown serializer is refused at the upgrade, as JSON.
    let url = basalt
        .url(&format!("/realtime/v1/websocket?apikey={anon}&vsn=9.9.9"))
        .replacen("http://", "ws://", 1);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}
