//! The realtime load tool: connects many WebSocket subscribers to a running
//! Basalt, measures its memory per idle connection, then the latency from
//! commit to client and the deliveries per second for inserted rows, and the
//! same for broadcasts. Bounded in connections, messages and time.
//!
//! realtime-load <base URL> <anon key> <service_role key> <server pid> [connections] [messages]
//!
//! Prints a Markdown report. `bench/run` runs it; results are in
//! docs/benchmarks.md.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

async fn admin(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) {
    let response = http
        .post(format!("{base}{path}"))
        .header("apikey", key)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    assert!(
        response.status().is_success() || response.status() == 409,
        "{path}: {}",
        response.text().await.unwrap_or_default()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: realtime-load <base URL> <anon key> <service_role key> <server pid> [connections] [messages]");
        std::process::exit(2);
    }
    let (base, anon, service) = (args[1].clone(), args[2].clone(), args[3].clone());
    let pid: u32 = args[4].parse().expect("a pid");
    let connections: usize = args.get(5).map_or(1000, |n| n.parse().expect("a number"));
    let messages: usize = args.get(6).map_or(100, |n| n.parse().expect("a number"));
    let http = reqwest::Client::new();

    admin(&http, &base, &service, "/admin/v1/sql", json!({"query":
        "create table if not exists load_items (id bigserial primary key, note text); grant select on load_items to anon"})).await;
    admin(
        &http,
        &base,
        &service,
        "/admin/v1/tables/load_items/realtime",
        json!(null),
    )
    .await;
    for (object, action) in [
        ("table:public.load_items", "select"),
        ("channel:load", "subscribe"),
    ] {
        admin(
            &http,
            &base,
            &service,
            "/admin/v1/policies",
            json!({"subject": "anon", "object": object, "action": action}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Idle connections, each joined with one subscription.
    let before = rss_kib(pid);
    let url = format!(
        "{}/realtime/v1/websocket?apikey={anon}",
        base.replacen("http://", "ws://", 1)
    );
    let latencies: Arc<Mutex<Vec<i64>>> = Arc::default();
    let broadcast_latencies: Arc<Mutex<Vec<i64>>> = Arc::default();
    let last_receipt = Arc::new(Mutex::new(Instant::now()));
    let mut readers = Vec::new();
    for _ in 0..connections {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("a connection");
        socket
            .send(Message::Text(
                json!({"type": "join", "ref": 1, "topic": "load",
                       "postgres_changes": [{"event": "INSERT", "table": "load_items"}]})
                .to_string(),
            ))
            .await
            .unwrap();
        // The reply and the presence state.
        for _ in 0..2 {
            let reply = socket.next().await.unwrap().unwrap();
            if let Message::Text(text) = &reply {
                assert!(!text.contains("\"status\":\"error\""), "{text}");
            }
        }
        let (latencies, broadcasts, last) = (
            latencies.clone(),
            broadcast_latencies.clone(),
            last_receipt.clone(),
        );
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let received = now_micros();
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match value["type"].as_str() {
                    Some("postgres_changes") => {
                        let committed = chrono::DateTime::parse_from_rfc3339(
                            value["commit_timestamp"].as_str().unwrap_or_default(),
                        )
                        .map(|t| t.timestamp_micros())
                        .unwrap_or(received);
                        latencies.lock().unwrap().push(received - committed);
                    }
                    Some("broadcast") => {
                        let sent = value["payload"]["sent"].as_i64().unwrap_or(received);
                        broadcasts.lock().unwrap().push(received - sent);
                    }
                    _ => continue,
                }
                *last.lock().unwrap() = Instant::now();
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let per_connection = (after.saturating_sub(before)) as f64 / connections as f64;

    // Changes: one insert every 20 ms, each delivered to every subscriber.
    let started = Instant::now();
    for i in 0..messages {
        http.post(format!("{base}/rest/v1/load_items"))
            .header("apikey", &service)
            .json(&json!({"note": format!("row {i}")}))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = connections * messages;
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = last_receipt.lock().unwrap().duration_since(started);
    let mut changes = latencies.lock().unwrap().clone();
    changes.sort_unstable();

    // Broadcasts through the server API, the same way.
    let started = Instant::now();
    for _ in 0..messages {
        http.post(format!("{base}/realtime/v1/broadcast"))
            .header("apikey", &service)
            .json(&json!({"topic": "load", "event": "tick", "payload": {"sent": now_micros()}}))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while broadcast_latencies.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broadcast_elapsed = last_receipt.lock().unwrap().duration_since(started);
    let mut broadcasts = broadcast_latencies.lock().unwrap().clone();
    broadcasts.sort_unstable();
    for reader in readers {
        reader.abort();
    }

    println!("| work | subscribers | messages | delivered | p50 | p99 | deliveries/s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, got, elapsed) in [
        ("row change, commit → client", &changes, elapsed),
        (
            "broadcast, API call → client",
            &broadcasts,
            broadcast_elapsed,
        ),
    ] {
        println!(
            "| {name} | {connections} | {messages} | {}/{expected} | {:.1} ms | {:.1} ms | {:.0} |",
            got.len(),
            percentile(got, 0.5),
            percentile(got, 0.99),
            got.len() as f64 / elapsed.as_secs_f64()
        );
    }
    println!();
    println!(
        "Server memory: {} MiB before the connections, {} MiB with {connections} joined and idle: {:.1} KiB per connection.",
        before / 1024,
        after / 1024,
        per_connection
    );
}
