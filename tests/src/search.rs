//! Helpers of the search suites: hit ids, and a server that knows a
//! Meilisearch server and waits for an index to sync.

use super::*;
use serde_json::Value;

/// The ids of a search answer's hits, in order.
pub fn ids(answer: &Value) -> Vec<i64> {
    answer["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {answer}"))
        .iter()
        .map(|hit| hit["id"].as_i64().unwrap())
        .collect()
}

pub fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort();
    ids
}

/// A server that knows the Meilisearch server.
pub async fn with_meili(meili: &MeiliServer) -> Basalt {
    let mut builder = Basalt::builder();
    for (name, value) in meili.env() {
        builder = builder.env(name, value);
    }
    builder.start().await
}

/// Waits until the index is ready, caught up with the feed, and holds
/// `documents` documents (the PostgreSQL backend always is).
pub async fn synced(basalt: &Basalt, name: &str, documents: i64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let described = basalt
            .as_service()
            .get(&format!("/admin/v1/search/indexes/{name}"))
            .await
            .expect(200)
            .json();
        let status = &described["status"];
        if status["state"] == "ready" && status["lag"] == 0 && status["documents"] == documents {
            return described;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not sync: {described}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
