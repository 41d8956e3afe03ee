//! Presence: tracking, untracking, announcing leaves, replica liveness, and relaying presence between replicas.

use super::*;

/// Records `state` as `key`'s presence on `topic` and tells the members.
pub(super) async fn track(
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
pub(super) async fn announce_leaves(
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
pub(super) async fn untrack(
    state: &AppState,
    id: Option<u64>,
    topic: Option<&str>,
) -> Result<(), String> {
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
