//! The change feed against a real PostgreSQL: capture of enabled tables,
//! commit order without gaps under out-of-order and concurrent commits,
//! the NOTIFY wake-up, retention and the gap answer, consumer cursors, and
//! tables declared in the config.

use basalt_server::feed::Consumer;
use basalt_tests::{connect, Basalt, PgServer};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// The feed after `after`, as the admin API pages it.
async fn feed(basalt: &Basalt, after: i64) -> Vec<Value> {
    let (status, body) = basalt
        .as_service()
        .call(
            Method::GET,
            &format!("/admin/v1/changes?after={after}&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["changes"].as_array().unwrap().clone()
}

#[tokio::test]
async fn enabled_tables_are_captured_with_old_and_new_rows_in_order() {
    let basalt = Basalt::start().await;
    basalt
        .admin_sql(
            "create table items (id int primary key, name text); create table other (id int)",
        )
        .await;
    let (status, body) = basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/items/realtime", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["sql"]
        .as_str()
        .unwrap()
        .contains("basalt.capture_change()"));
    let (_, body) = basalt
        .as_service()
        .call(Method::GET, "/admin/v1/realtime/tables", None)
        .await;
    // Storage's objects are captured from the start (migration V11).
    assert_eq!(body["tables"], json!(["public.items", "storage.objects"]));
    basalt
        .admin_sql("insert into items values (1, 'a'); update items set name = 'b' where id = 1; insert into other values (1); delete from items where id = 1")
        .await;
    // Through the data API too: the same trigger, whoever writes.
    let (status, _) = basalt
        .as_service()
        .call(
            Method::POST,
            "/rest/v1/items",
            Some(json!({"id": 2, "name": "via api"})),
        )
        .await;
    assert_eq!(status, 201);
    let changes = feed(&basalt, 0).await;
    let summary: Vec<(String, Value, Value)> = changes
        .iter()
        .map(|c| {
            (
                c["operation"].as_str().unwrap().to_owned(),
                c["old"].clone(),
                c["new"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("INSERT".into(), Value::Null, json!({"id": 1, "name": "a"})),
            (
                "UPDATE".into(),
                json!({"id": 1, "name": "a"}),
                json!({"id": 1, "name": "b"})
            ),
            ("DELETE".into(), json!({"id": 1, "name": "b"}), Value::Null),
            (
                "INSERT".into(),
                Value::Null,
                json!({"id": 2, "name": "via api"})
            ),
        ],
        "the untracked table is absent"
    );
    let positions: Vec<i64> = changes
        .iter()
        .map(|c| c["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(changes
        .iter()
        .all(|c| c["table"] == "items" && c["schema"] == "public"));
    assert!(changes.iter().all(|c| c["committed_at"].is_string()));
    // Paging continues after a position.
    let rest = feed(&basalt, positions[1]).await;
    assert_eq!(rest.len(), 2);
    // Disabled: nothing more is captured.
    let (status, _) = basalt
        .as_service()
        .call(Method::DELETE, "/admin/v1/tables/items/realtime", None)
        .await;
    assert_eq!(status, 200);
    basalt.admin_sql("insert into items values (3, 'c')").await;
    assert_eq!(feed(&basalt, positions[3]).await.len(), 0);
    let (status, _) = basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/nope/realtime", None)
        .await;
    assert_eq!(status, 404);
}

/// A transaction that began first but commits last gets the later position:
/// a reader that already read past the other one never misses it.
#[tokio::test]
async fn out_of_order_commits_are_read_in_commit_order_without_gaps() {
    let basalt = Basalt::start().await;
    basalt
        .admin_sql("create table items (id int primary key)")
        .await;
    basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/items/realtime", None)
        .await;
    let url = basalt.database_url().unwrap().to_owned();
    let mut slow = connect(&url).await;
    let fast = connect(&url).await;
    let long = slow.transaction().await.unwrap();
    long.execute("insert into items values (1)", &[])
        .await
        .unwrap();
    fast.execute("insert into items values (2)", &[])
        .await
        .unwrap();
    let first = feed(&basalt, 0).await;
    assert_eq!(
        first.len(),
        1,
        "the open transaction's change is not visible"
    );
    assert_eq!(first[0]["new"]["id"], 2);
    let cursor = first[0]["position"].as_i64().unwrap();
    long.commit().await.unwrap();
    let next = feed(&basalt, cursor).await;
    assert_eq!(next.len(), 1, "the late commit comes after the cursor");
    assert_eq!(next[0]["new"]["id"], 1);
    // An aborted transaction leaves nothing.
    let aborted = slow.transaction().await.unwrap();
    aborted
        .execute("insert into items values (3)", &[])
        .await
        .unwrap();
    aborted.rollback().await.unwrap();
    fast.execute("insert into items values (4)", &[])
        .await
        .unwrap();
    let after = feed(&basalt, next[0]["position"].as_i64().unwrap()).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["new"]["id"], 4);
}

/// Writers committing concurrently, transactions of varying length, a reader
/// paging at the same time: the reader gets every change exactly once.
#[tokio::test]
async fn a_reader_concurrent_with_many_writers_misses_nothing() {
    let basalt = Basalt::start().await;
    basalt
        .admin_sql("create table items (id int primary key, writer int)")
        .await;
    basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/items/realtime", None)
        .await;
    let url = basalt.database_url().unwrap().to_owned();
    const WRITERS: i32 = 6;
    const EACH: i32 = 20;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            for i in 0..EACH {
                let transaction = client.transaction().await.unwrap();
                transaction
                    .execute(
                        "insert into items values ($1, $2)",
                        &[&(writer * 1000 + i), &writer],
                    )
                    .await
                    .unwrap();
                // Transactions of different lengths commit out of start order.
                let pause = ((writer * 7 + i * 3) % 5) as u64;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                transaction.commit().await.unwrap();
            }
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < (WRITERS * EACH) as usize {
        assert!(std::time::Instant::now() < deadline, "got {}", seen.len());
        for change in feed(&basalt, cursor).await {
            let position = change["position"].as_i64().unwrap();
            assert!(position > cursor);
            cursor = position;
            seen.push(change["new"]["id"].as_i64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no change twice");
    assert_eq!(seen.len(), (WRITERS * EACH) as usize, "none missed");
    assert!(feed(&basalt, cursor).await.is_empty());
}

/// Each capturing commit notifies `basalt_changes`, the wake-up of every replica.
#[tokio::test]
async fn every_commit_notifies_the_feed_channel() {
    let basalt = Basalt::start().await;
    basalt.admin_sql("create table items (id int)").await;
    basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/items/realtime", None)
        .await;
    let url = basalt.database_url().unwrap().to_owned();
    let (listener, mut connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let (sender, mut notified) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification.channel().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN basalt_changes")
        .await
        .unwrap();
    let writer = connect(&url).await;
    writer
        .execute("insert into items values (1)", &[])
        .await
        .unwrap();
    let channel = tokio::time::timeout(Duration::from_secs(2), notified.recv())
        .await
        .expect("notified within 2 s");
    assert_eq!(channel.as_deref(), Some("basalt_changes"));
}

/// Old changes are pruned (here: a second server's first sweep, after the
/// changes were aged in SQL); a reader behind the pruned position gets
/// `410 feed_gap`, one at or after it reads on.
#[tokio::test]
async fn retention_prunes_and_a_reader_behind_it_gets_a_gap() {
    let basalt = Basalt::start().await;
    basalt.admin_sql("create table items (id int)").await;
    basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/items/realtime", None)
        .await;
    basalt
        .admin_sql("insert into items values (1); insert into items values (2); insert into items values (3)")
        .await;
    let changes = feed(&basalt, 0).await;
    assert_eq!(changes.len(), 3);
    let second = changes[1]["position"].as_i64().unwrap();
    basalt
        .admin_sql(&format!(
            "update basalt.changes set committed_at = now() - interval '3 days' where position <= {second}"
        ))
        .await;
    let pruner = Basalt::builder()
        .database_url(basalt.database_url().unwrap())
        .env("BASALT_REALTIME_RETENTION_SECS", "86400")
        .start()
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = pruner
            .as_service()
            .call(Method::GET, "/admin/v1/changes?after=0", None)
            .await;
        if status == 410 {
            assert_eq!(body["code"], "feed_gap");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rest = feed(&pruner, second).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["new"]["id"], 3);
}

/// A named consumer starts at the feed's head and keeps its cursor.
#[tokio::test]
async fn named_consumers_keep_their_cursor() {
    let basalt = Basalt::start().await;
    basalt.admin_sql("create table items (id int)").await;
    basalt
        .as_service()
        .call(Method::POST, "/admin/v1/tables/items/realtime", None)
        .await;
    basalt.admin_sql("insert into items values (1)").await;
    let client = connect(basalt.database_url().unwrap()).await;
    let search = Consumer::new("search");
    let start = search.position(&client).await.unwrap();
    assert_eq!(
        start,
        feed(&basalt, 0).await[0]["position"].as_i64().unwrap(),
        "the head"
    );
    basalt.admin_sql("insert into items values (2)").await;
    let next = feed(&basalt, start).await;
    assert_eq!(next.len(), 1);
    let position = next[0]["position"].as_i64().unwrap();
    search.advance(&client, position).await.unwrap();
    search.advance(&client, start).await.unwrap();
    assert_eq!(
        search.position(&client).await.unwrap(),
        position,
        "never moves back"
    );
    assert_eq!(
        Consumer::new("webhooks").position(&client).await.unwrap(),
        position
    );
}

/// Tables listed in `realtime.tables` are captured from start-up.
#[tokio::test]
async fn tables_declared_in_the_config_are_captured() {
    let url = PgServer::shared().fresh_database().await;
    connect(&url)
        .await
        .batch_execute(
            "create table items (id int); create schema app; create table app.logs (id int)",
        )
        .await
        .unwrap();
    let basalt = Basalt::builder()
        .database_url(&url)
        .env("BASALT_REALTIME_TABLES", "items,app.logs")
        .start()
        .await;
    let (_, body) = basalt
        .as_service()
        .call(Method::GET, "/admin/v1/realtime/tables", None)
        .await;
    assert_eq!(
        body["tables"],
        json!(["app.logs", "public.items", "storage.objects"])
    );
    basalt
        .admin_sql("insert into items values (1); insert into app.logs values (2)")
        .await;
    assert_eq!(feed(&basalt, 0).await.len(), 2);
    let bad = Basalt::builder()
        .database_url(&url)
        .env("BASALT_REALTIME_TABLES", "missing")
        .no_wait()
        .start()
        .await;
    let mut bad = bad;
    let status = bad.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    assert!(
        bad.logs()
            .contains("realtime.tables: cannot capture changes of missing"),
        "{}",
        bad.logs()
    );
}
