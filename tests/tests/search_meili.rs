//! Search on the Meilisearch backend against a real Meilisearch (a SKIP
//! line without one): the sync worker following the change feed in commit
//! order, policies it cannot filter, outages, a pruned feed, rebuilds, two
//! replicas, and injected failures. The permission property on both
//! backends is in `search.rs`.

use basalt_tests::search::{ids, sorted, synced, with_meili};
use basalt_tests::{connect, Basalt, MeiliServer};
use serde_json::{json, Value};

/// Meilisearch's documents of an index, without their ids, by `id`.
async fn meili_documents(meili: &MeiliServer, uid: &str) -> Vec<Value> {
    let answer = meili
        .get(&format!("/indexes/{uid}/documents?limit=10000"))
        .await;
    if answer.status() == 404 {
        return Vec::new();
    }
    let body: Value = answer.json().await.unwrap();
    let mut documents: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.as_object_mut().unwrap().remove("_id");
            d
        })
        .collect();
    documents.sort_by_key(|d| d["id"].to_string());
    documents
}

async fn table_documents(db: &tokio_postgres::Client, table: &str) -> Vec<Value> {
    let mut rows: Vec<Value> = db
        .query(&format!("SELECT to_jsonb(t) FROM {table} t"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    rows.sort_by_key(|d| d["id"].to_string());
    rows
}

/// Waits until the Meilisearch index holds exactly the table's rows.
async fn converged(meili: &MeiliServer, db: &tokio_postgres::Client, table: &str, uid: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (want, have) = (
            table_documents(db, table).await,
            meili_documents(meili, uid).await,
        );
        if want == have {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{uid} did not converge:\ntable: {want:?}\nindex: {have:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const POSTS: &str = "
    CREATE TABLE posts (id int PRIMARY KEY, title text, category text, score int);
    INSERT INTO posts VALUES (1, 'Rust and Postgres', 'guides', 5), (2, 'Postgres tips', 'news', 3),
      (3, 'Gardening', 'news', 8), (4, 'Rust for beginners', 'guides', 1), (5, 'Cooking rice', 'food', 4);
";

async fn meili_posts(basalt: &Basalt, name: &str) {
    connect(basalt.database_url().unwrap())
        .await
        .batch_execute(POSTS)
        .await
        .unwrap();
    let service = basalt.as_service();
    service
        .post("/admin/v1/schema/reload", json!({}))
        .await
        .expect(200);
    service
        .post(
            "/admin/v1/search/indexes",
            json!({
                "name": name, "table": "posts", "backend": "meilisearch",
                "searchable": ["title"], "filterable": ["category", "score"],
                "sortable": ["score"], "facets": ["category"], "typo_tolerance": true,
            }),
        )
        .await
        .expect(201);
}

#[tokio::test]
async fn a_meilisearch_index_follows_its_table_in_commit_order() {
    let Some(meili) = MeiliServer::start("search_meili::a_meilisearch_index_follows").await else {
        return;
    };
    let basalt = with_meili(&meili).await;
    meili_posts(&basalt, "posts").await;
    let db = connect(basalt.database_url().unwrap()).await;
    let service = basalt.as_service();
    synced(&basalt, "posts", 5).await;
    converged(&meili, &db, "posts", "posts").await;
    // The query API answers as the PostgreSQL backend does.
    let found = service
        .get("/search/v1/posts?q=postgres&highlight=title&facets=category&sort=score:desc")
        .await
        .expect(200)
        .json();
    assert_eq!(found["backend"], "meilisearch");
    assert_eq!(ids(&found), vec![1, 2]);
    assert_eq!(
        found["facetDistribution"]["category"],
        json!({"guides": 1, "news": 1})
    );
    assert!(found["hits"][0]["highlights"]["title"]
        .as_str()
        .unwrap()
        .contains("<mark>Postgres</mark>"));
    assert_eq!(found["hits"][0]["document"]["category"], "guides");
    let filtered = service
        .get("/search/v1/posts?q=rust&category=eq.guides&score=gte.2")
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&filtered), vec![1]);
    // Typos are tolerated by Meilisearch's own rules.
    assert_eq!(
        sorted(ids(&service
            .get("/search/v1/posts?q=postgrs")
            .await
            .expect(200)
            .json())),
        vec![1, 2]
    );
    // An operator Meilisearch lacks is refused, never dropped.
    service
        .get("/search/v1/posts?q=rust&category=like.g*")
        .await
        .expect_error(400, "search_filter_unsupported");
    // Writes through the data API and through SQL, a key change, a delete.
    service
        .post(
            "/rest/v1/posts",
            json!({"id": 6, "title": "Rust async", "category": "guides", "score": 7}),
        )
        .await
        .expect(201);
    db.batch_execute(
        "UPDATE posts SET title = 'Gardening in winter' WHERE id = 3;
         UPDATE posts SET id = 100 WHERE id = 1;
         DELETE FROM posts WHERE id = 5;",
    )
    .await
    .unwrap();
    // Commits out of their start order: the later commit wins, as in the table.
    let mut first = connect(basalt.database_url().unwrap()).await;
    let mut second = connect(basalt.database_url().unwrap()).await;
    let early = first.transaction().await.unwrap();
    early
        .execute(
            "INSERT INTO posts VALUES (50, 'started first', 'news', 0)",
            &[],
        )
        .await
        .unwrap();
    let late = second.transaction().await.unwrap();
    late.execute(
        "UPDATE posts SET title = 'committed first' WHERE id = 2",
        &[],
    )
    .await
    .unwrap();
    late.commit().await.unwrap();
    early
        .execute(
            "UPDATE posts SET title = 'committed last' WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    early.commit().await.unwrap();
    converged(&meili, &db, "posts", "posts").await;
    let described = synced(&basalt, "posts", 6).await;
    assert_eq!(described["status"]["last_error"], Value::Null);
    assert_eq!(
        ids(&service
            .get("/search/v1/posts?q=committed")
            .await
            .expect(200)
            .json()),
        vec![2]
    );
    let drift = service
        .post("/admin/v1/search/indexes/posts/drift", json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(drift["drift"], false, "{drift}");
    assert_eq!(drift["table_rows"], 6);
    // Composite keys with any characters make valid, distinct ids.
    db.batch_execute(
        "CREATE TABLE pairs (id text, n int, label text, PRIMARY KEY (id, n));
         INSERT INTO pairs VALUES ('a/b c', 1, 'slash and space'), ('a/b c', 2, 'second'), ('é€', 1, 'unicode');",
    )
    .await
    .unwrap();
    service
        .post("/admin/v1/schema/reload", json!({}))
        .await
        .expect(200);
    service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "pairs", "table": "pairs", "searchable": ["label"], "backend": "meilisearch"}),
        )
        .await
        .expect(201);
    synced(&basalt, "pairs", 3).await;
    let found = service
        .get("/search/v1/pairs?q=second")
        .await
        .expect(200)
        .json();
    assert_eq!(found["hits"][0]["id"], json!(["a/b c", 2]));
    // Deleting the index deletes it in Meilisearch too.
    service
        .delete("/admin/v1/search/indexes/pairs")
        .await
        .expect(204);
    assert_eq!(meili.get("/indexes/pairs").await.status(), 404);
}

#[tokio::test]
async fn policies_meilisearch_cannot_filter_are_refused_never_ignored() {
    let Some(meili) = MeiliServer::start("search_meili::policies_meilisearch_cannot_filter").await
    else {
        return;
    };
    let basalt = with_meili(&meili).await;
    let service = basalt.as_service();
    service
        .policy(json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "condition": "title=ilike.*rust*"}))
        .await;
    connect(basalt.database_url().unwrap())
        .await
        .batch_execute(POSTS)
        .await
        .unwrap();
    service
        .post("/admin/v1/schema/reload", json!({}))
        .await
        .expect(200);
    let refused = service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "posts", "table": "posts", "searchable": ["title"], "backend": "meilisearch"}),
        )
        .await
        .expect_error(400, "invalid_search_index");
    assert!(
        refused.json()["details"]
            .as_str()
            .unwrap()
            .contains("ilike"),
        "{}",
        refused.text
    );
    // A policy added later that Meilisearch cannot express makes searches fail, not leak.
    let policies = service.get("/admin/v1/policies").await.expect(200).json();
    let id = policies["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["condition"] == "title=ilike.*rust*")
        .unwrap()["id"]
        .clone();
    service
        .delete(&format!("/admin/v1/policies/{}", id.as_str().unwrap()))
        .await
        .expect(204);
    service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "posts", "table": "posts", "searchable": ["title"], "backend": "meilisearch"}),
        )
        .await
        .expect(201);
    synced(&basalt, "posts", 5).await;
    service
        .policy(json!({"subject": "authenticated", "object": "table:public.posts", "action": "select", "condition": "title=ilike.*rust*"}))
        .await;
    service
        .policy(json!({"subject": "authenticated", "object": "index:posts", "action": "search"}))
        .await;
    let (user, _) = basalt_tests::client::Client::user(&basalt, "carol@example.com").await;
    user.get("/search/v1/posts?q=postgres")
        .await
        .expect_error(400, "search_filter_unsupported");
}

#[tokio::test]
async fn a_meilisearch_index_converges_after_outages_gaps_rebuilds_and_a_killed_replica() {
    let Some(meili) = MeiliServer::start("search_meili::a_meilisearch_index_converges").await
    else {
        return;
    };
    if !meili.local() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIP search_meili::a_meilisearch_index_converges: MEILISEARCH_URL's server cannot be stopped by the test");
        return;
    }
    let basalt = with_meili(&meili).await;
    meili_posts(&basalt, "posts").await;
    let db = connect(basalt.database_url().unwrap()).await;
    let service = basalt.as_service();
    synced(&basalt, "posts", 5).await;
    // An outage: writes go on; the status says what fails; then it converges.
    meili.stop();
    db.batch_execute(
        "INSERT INTO posts SELECT g, 'outage ' || g, 'news', g FROM generate_series(10, 40) g;
         UPDATE posts SET title = 'changed during the outage' WHERE id = 2;
         DELETE FROM posts WHERE id IN (3, 10, 11);",
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let described = service
            .get("/admin/v1/search/indexes/posts")
            .await
            .expect(200)
            .json();
        if described["status"]["last_error"].is_string()
            && described["status"]["lag"].as_i64() > Some(0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error shown: {described}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    service
        .get("/search/v1/posts?q=rust")
        .await
        .expect_error(503, "search_unavailable");
    meili.resume().await;
    converged(&meili, &db, "posts", "posts").await;
    let described = synced(&basalt, "posts", 33).await;
    assert_eq!(described["status"]["last_error"], Value::Null);
    // Changes pruned while Meilisearch was away: the index is rebuilt, and says so.
    meili.stop();
    db.batch_execute(
        "UPDATE posts SET title = 'after the gap' WHERE id = 4; DELETE FROM posts WHERE id = 12;",
    )
    .await
    .unwrap();
    db.batch_execute(
        "UPDATE basalt.feed_state SET pruned_through = (SELECT max(position) FROM basalt.changes);
         DELETE FROM basalt.changes;",
    )
    .await
    .unwrap();
    meili.resume().await;
    converged(&meili, &db, "posts", "posts").await;
    let described = synced(&basalt, "posts", 32).await;
    assert!(
        described["status"]["rebuild_reason"]
            .as_str()
            .unwrap()
            .starts_with("feed_gap"),
        "{described}"
    );
    // A requested rebuild fills a shadow index and swaps it in; searches go on.
    let rebuilt_before = described["status"]["rebuilt_at"].clone();
    service
        .post("/admin/v1/search/indexes/posts/reindex", json!({}))
        .await
        .expect(202);
    service.get("/search/v1/posts?q=outage").await.expect(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let described = synced(&basalt, "posts", 32).await;
        if described["status"]["rebuilt_at"] != rebuilt_before {
            assert_eq!(described["status"]["rebuild_reason"], "requested");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rebuild: {described}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        meili.get("/indexes/posts__rebuild").await.status(),
        404,
        "the shadow is gone"
    );
    converged(&meili, &db, "posts", "posts").await;
    // Two replicas: one syncs; kill it mid-stream and the other takes over.
    let mut builder = Basalt::builder().database_url(basalt.database_url().unwrap());
    for (name, value) in meili.env() {
        builder = builder.env(name, value);
    }
    let second = builder.start().await;
    let leaders = || {
        [&basalt, &second]
            .iter()
            .filter(|b| {
                b.logs()
                    .contains("this replica syncs the Meilisearch indexes")
            })
            .count()
    };
    assert_eq!(leaders(), 1, "exactly one replica leads");
    let leader_is_first = basalt
        .logs()
        .contains("this replica syncs the Meilisearch indexes");
    let writer = tokio::spawn({
        let url = basalt.database_url().unwrap().to_owned();
        async move {
            let db = connect(&url).await;
            for id in 200..400 {
                db.execute(
                    "INSERT INTO posts VALUES ($1, 'replicas', 'news', 1)",
                    &[&id],
                )
                .await
                .unwrap();
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (killed, survivor) = if leader_is_first {
        (&basalt, &second)
    } else {
        (&second, &basalt)
    };
    killed.signal(nix::sys::signal::Signal::SIGKILL);
    writer.await.unwrap();
    converged(&meili, &db, "posts", "posts").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !survivor
        .logs()
        .contains("this replica syncs the Meilisearch indexes")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the survivor did not take over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The sync worker's cursor through failures a healthy Meilisearch never
/// gives on demand, injected by a proxy in front of a real one: document
/// writes answered 503, tasks that never finish (the task timeout), tasks
/// that fail. Each time the cursor stays, the status shows the error, and
/// the index converges once the fault is gone.
#[tokio::test]
async fn the_sync_worker_keeps_its_cursor_through_injected_failures() {
    let Some(meili) = MeiliServer::start("search_meili::the_sync_worker_keeps_its_cursor").await
    else {
        return;
    };
    let proxy = basalt_tests::FaultProxy::start(&meili.url).await;
    let mut builder = Basalt::builder();
    for (name, value) in meili.env() {
        builder = builder.env(name, value);
    }
    let basalt = builder
        .env("BASALT_SEARCH_MEILISEARCH_URL", proxy.url.clone())
        .env("BASALT_SEARCH_TASK_TIMEOUT_SECS", "1")
        .start()
        .await;
    meili_posts(&basalt, "posts").await;
    synced(&basalt, "posts", 5).await;
    let db = connect(basalt.database_url().unwrap()).await;
    let cursor = || async {
        db.query_one(
            "SELECT position FROM basalt.feed_consumers WHERE name = 'search:posts'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    let mut next_id = 1000;
    for (fault, shown) in [
        (
            basalt_tests::Fault::DocumentWrites503,
            "injected by the test proxy",
        ),
        (
            basalt_tests::Fault::TasksNeverFinish,
            "did not succeed in time",
        ),
        (basalt_tests::Fault::TasksFail, "injected failure"),
    ] {
        proxy.set(fault);
        let (before, injected) = (cursor().await, proxy.injected());
        next_id += 1;
        db.execute(
            "INSERT INTO posts VALUES ($1, 'written during a fault', 'news', 1)",
            &[&next_id],
        )
        .await
        .unwrap();
        db.execute(
            "DELETE FROM posts WHERE id = (SELECT min(id) FROM posts)",
            &[],
        )
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let described = basalt
                .as_service()
                .get("/admin/v1/search/indexes/posts")
                .await
                .expect(200)
                .json();
            if described["status"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(shown))
            {
                assert!(
                    described["status"]["lag"].as_i64().unwrap() > 0,
                    "{described}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{fault:?} not shown: {described}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(proxy.injected() > injected, "{fault:?} was injected");
        // Retried, and still not past the failed batch.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(
            cursor().await,
            before,
            "{fault:?}: the cursor moved past a failed batch"
        );
        proxy.set(basalt_tests::Fault::None);
        converged(&meili, &db, "posts", "posts").await;
        let described = synced(&basalt, "posts", 5).await;
        assert_eq!(described["status"]["last_error"], Value::Null);
        assert!(cursor().await > before);
    }
}
