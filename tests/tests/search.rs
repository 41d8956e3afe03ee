//! Search (`/search/v1`) on the PostgreSQL backend, end to end: the admin
//! API, ranking, the websearch syntax, prefixes, highlights, facets,
//! filters, sorting, paging, typos and accents, hostile input, and the
//! permission property (every hit is a row the data API shows the same
//! caller, with the same columns, found through a column they may read).

use basalt_tests::search::{ids, sorted, synced, with_meili};
use basalt_tests::{connect, Basalt, MeiliServer};
use serde_json::json;

/// Articles: row 1 has "postgres" in its title, row 2 only in its body.
const ARTICLES: &str = "
    CREATE TABLE articles (id int PRIMARY KEY, title text, body text, category text, tags text[], score int, secret text);
    INSERT INTO articles VALUES
      (1, 'Postgres tuning', 'How to make a database fast: indexes and vacuum.', 'guides', '{db,perf}', 9, 'alpha'),
      (2, 'Weekly notes', 'We moved our database from MySQL to Postgres this week.', 'news', '{db}', 4, 'bravo'),
      (3, 'The quick brown fox', 'A quick brown fox jumps over the lazy dog.', 'stories', '{animals}', 7, 'charlie'),
      (4, 'Brown and quick', 'The fox was brown; it was also quick, they say.', 'stories', '{animals}', 2, 'delta'),
      (5, 'Café culture', 'Notes on coffee, crème brûlée and the café scene.', 'news', '{food}', 5, 'echo'),
      (6, 'Cats and dogs', 'Living with a cat is nothing like living with a dog.', 'stories', '{animals,pets}', 6, NULL),
      (7, 'Databases compared', 'A database shootout: MySQL, SQLite, Postgres.', 'guides', '{db}', 8, 'foxtrot');
";

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn articles(basalt: &Basalt) {
    let client = connect(basalt.database_url().unwrap()).await;
    client.batch_execute(ARTICLES).await.unwrap();
    basalt
        .as_service()
        .post("/admin/v1/schema/reload", json!({}))
        .await
        .expect(200);
    basalt
        .as_service()
        .post(
            "/admin/v1/search/indexes",
            json!({
                "name": "articles", "table": "articles",
                "searchable": ["title", "body", "secret"],
                "filterable": ["category", "score"],
                "sortable": ["score"],
                "facets": ["category", "tags"],
                "typo_tolerance": true, "unaccent": true,
            }),
        )
        .await
        .expect(201);
    // The same table without typo tolerance or accent folding.
    basalt
        .as_service()
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "exact", "table": "public.articles", "searchable": ["title", "body"]}),
        )
        .await
        .expect(201);
}

#[tokio::test]
async fn postgres_search_ranks_marks_counts_filters_and_pages() {
    let basalt = Basalt::start().await;
    articles(&basalt).await;
    let service = basalt.as_service();
    let search = |query: String| {
        let service = &service;
        async move {
            service
                .get(&format!("/search/v1/articles?{query}"))
                .await
                .expect(200)
                .json()
        }
    };
    // A title match outranks a body match (weights A > B).
    let found = search("q=postgres".into()).await;
    assert_eq!(ids(&found)[0], 1, "{found}");
    assert_eq!(sorted(ids(&found)), vec![1, 2, 7]);
    assert_eq!(found["estimatedTotalHits"], 3);
    assert_eq!(found["backend"], "postgres");
    assert!(
        found["hits"][0]["rank"].as_f64().unwrap() > found["hits"][2]["rank"].as_f64().unwrap()
    );
    // Phrases, or, and exclusion (websearch_to_tsquery).
    assert_eq!(
        sorted(ids(
            &search(format!("q={}", encode("\"quick brown\""))).await
        )),
        vec![3]
    );
    assert_eq!(
        sorted(ids(&search(format!("q={}", encode("cat or vacuum"))).await)),
        vec![1, 6]
    );
    assert_eq!(
        sorted(ids(
            &search(format!("q={}", encode("database -mysql"))).await
        )),
        vec![1]
    );
    // The last word is a prefix while typing; a space ends it.
    let exact = |query: String| {
        let service = &service;
        async move {
            service
                .get(&format!("/search/v1/exact?{query}"))
                .await
                .expect(200)
                .json()
        }
    };
    assert_eq!(ids(&exact("q=shooto".into()).await), vec![7]);
    assert_eq!(
        ids(&exact(format!("q={}", encode("shooto "))).await),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&exact("q=shooto&prefix=false".into()).await),
        Vec::<i64>::new()
    );
    // Typos (pg_trgm) and accents (unaccent) where the index asks for them.
    assert_eq!(ids(&exact("q=shotout".into()).await), Vec::<i64>::new());
    assert!(ids(&search("q=shotout".into()).await).contains(&7));
    assert_eq!(ids(&exact("q=cafe".into()).await), Vec::<i64>::new());
    assert_eq!(sorted(ids(&search("q=cafe".into()).await)), vec![5]);
    assert_eq!(sorted(ids(&search("q=creme".into()).await)), vec![5]);
    // Highlights, with the default and with custom tags.
    let marked = search("q=fox&highlight=title,body".into()).await;
    let first = &marked["hits"][0]["highlights"];
    assert!(
        first["title"]
            .as_str()
            .unwrap()
            .contains("<mark>fox</mark>"),
        "{marked}"
    );
    assert!(first["body"].as_str().unwrap().contains("<mark>fox</mark>"));
    let custom =
        search("q=vacuum&highlight=body&highlight_pre_tag=%5B&highlight_post_tag=%5D".into()).await;
    assert!(custom["hits"][0]["highlights"]["body"]
        .as_str()
        .unwrap()
        .contains("[vacuum]"));
    // Facets count over every hit (array columns by element).
    let faceted = search("q=database&facets=category,tags".into()).await;
    assert_eq!(
        faceted["facetDistribution"]["category"],
        json!({"guides": 2, "news": 1})
    );
    assert_eq!(
        faceted["facetDistribution"]["tags"],
        json!({"db": 3, "perf": 1})
    );
    // Filters in the data API's grammar, in the query string or as a condition.
    assert_eq!(
        sorted(ids(&search("q=database&category=eq.guides".into()).await)),
        vec![1, 7]
    );
    assert_eq!(
        sorted(ids(&search(format!(
            "q=database&filter={}",
            encode("score=gte.8&category=eq.guides")
        ))
        .await)),
        vec![1, 7]
    );
    assert_eq!(
        sorted(ids(&search("or=(score.lt.3,category.eq.news)".into()).await)),
        vec![2, 4, 5]
    );
    let posted = service
        .post(
            "/search/v1/articles",
            json!({"q": "fox", "filter": "score=lt.5", "select": ["id", "title"]}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&posted), vec![4]);
    assert_eq!(
        posted["hits"][0]["document"],
        json!({"id": 4, "title": "Brown and quick"})
    );
    // Sorting, and an empty query browses every row.
    let by_score = search("sort=score:desc&limit=3".into()).await;
    assert_eq!(ids(&by_score), vec![1, 7, 3]);
    assert_eq!(by_score["estimatedTotalHits"], 7);
    let page = search("sort=score:desc&limit=3&offset=3".into()).await;
    assert_eq!(ids(&page), vec![6, 5, 2]);
    assert_eq!(
        ids(&search("sort=score:asc&limit=2".into()).await),
        vec![4, 2]
    );
    // The document holds every column the caller may read.
    assert_eq!(found["hits"][0]["document"]["secret"], "alpha");
    // Writes reach searches at once, whatever path they take.
    service
        .post("/rest/v1/articles", json!({"id": 8, "title": "Zeppelins", "body": "airships", "category": "news", "score": 1}))
        .await
        .expect(201);
    assert_eq!(ids(&search("q=zeppelins".into()).await), vec![8]);
    let db = connect(basalt.database_url().unwrap()).await;
    db.batch_execute("UPDATE articles SET title = 'Dirigibles', id = 9 WHERE id = 8")
        .await
        .unwrap();
    assert_eq!(ids(&search("q=zeppelins".into()).await), Vec::<i64>::new());
    assert_eq!(ids(&search("q=dirigibles".into()).await), vec![9]);
    db.batch_execute("DELETE FROM articles WHERE id = 9")
        .await
        .unwrap();
    assert_eq!(ids(&search("q=dirigibles".into()).await), Vec::<i64>::new());
    // What the index does not declare is refused with a code and a hint.
    for (query, code) in [
        ("q=x&title=eq.y", "invalid_search"),
        ("sort=title:asc", "invalid_search"),
        ("facets=score", "invalid_search"),
        ("limit=1000", "invalid_search"),
        ("select=nope", "invalid_search"),
    ] {
        let answer = service
            .get(&format!("/search/v1/articles?{query}"))
            .await
            .expect_error(400, code);
        assert!(answer.json()["hint"].is_string(), "{query}");
    }
    service
        .get("/search/v1/nothing?q=x")
        .await
        .expect_error(404, "search_index_not_found");
}

#[tokio::test]
async fn hostile_queries_get_results_or_a_400_never_a_500() {
    let basalt = Basalt::start().await;
    articles(&basalt).await;
    let service = basalt.as_service();
    let long = "database ".repeat(1200);
    let hostile = [
        "'",
        "''",
        "\"",
        "\"\"\"",
        "\\",
        "\\\\'",
        "&",
        "|",
        "!",
        ":",
        "*",
        "(",
        ")",
        "&|!:*()",
        "a & b | !c",
        "foo:*",
        "foo:* & bar",
        "<->",
        "a <-> b",
        "!!!!",
        "-",
        "- -",
        "or",
        "or or",
        "\"unclosed",
        "a\"b\"c",
        "'; DROP TABLE articles; --",
        "😀",
        "日本語",
        "\u{202e}x",
        "%",
        "_",
        "$1",
        "?",
        "\t",
        "\n",
    ];
    for q in hostile {
        for extra in [
            "",
            "&highlight=title,body",
            "&prefix=false",
            "&facets=category",
        ] {
            let answer = service
                .get(&format!("/search/v1/articles?q={}{extra}", encode(q)))
                .await;
            assert_eq!(
                answer.status,
                200,
                "{q:?}{extra}: {}",
                answer.json_or_null()
            );
            let posted = service.post("/search/v1/articles", json!({"q": q})).await;
            assert_eq!(posted.status, 200, "{q:?}");
        }
    }
    for q in ["a\0b", long.as_str()] {
        service
            .get(&format!("/search/v1/articles?q={}", encode(q)))
            .await
            .expect_error(400, "invalid_search");
        service
            .post("/search/v1/articles", json!({"q": q}))
            .await
            .expect_error(400, "invalid_search");
    }
    for filter in ["score=gt.abc", "category=eq.\u{0}", "or=(", "score=gt.1)"] {
        let answer = service
            .get(&format!("/search/v1/articles?filter={}", encode(filter)))
            .await;
        assert_eq!(answer.status, 400, "{filter}: {}", answer.json_or_null());
    }
    // The table is intact.
    let answer = service
        .get("/search/v1/articles?limit=100")
        .await
        .expect(200);
    assert_eq!(answer.json()["estimatedTotalHits"], 7);
}

#[tokio::test]
async fn the_admin_api_creates_describes_changes_reindexes_and_deletes() {
    let basalt = Basalt::start().await;
    articles(&basalt).await;
    let service = basalt.as_service();
    let db = connect(basalt.database_url().unwrap()).await;
    // An index is there when its documents table (`basalt_search.<name>`)
    // is; `…_trgm` is the table's trigram index.
    let gin = |name: &'static str| {
        let db = &db;
        async move {
            let relation = match name.strip_prefix("basalt_search_") {
                Some(index) if !index.ends_with("_trgm") => format!("basalt_search.{index}"),
                _ => format!("public.{name}"),
            };
            db.query_one("SELECT count(to_regclass($1))", &[&relation])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // The documents tables, the trigram index and the table's change capture exist.
    assert_eq!(gin("basalt_search_articles").await, 1);
    assert_eq!(gin("basalt_search_articles_trgm").await, 1);
    assert_eq!(gin("basalt_search_exact_trgm").await, 0);
    let captured: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'basalt_capture' AND tgrelid = 'public.articles'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(captured, 1);
    // Describe, with the status.
    let described = service
        .get("/admin/v1/search/indexes/articles")
        .await
        .expect(200)
        .json();
    assert_eq!(described["searchable"], json!(["title", "body", "secret"]));
    assert_eq!(described["declared"], false);
    assert_eq!(described["status"]["state"], "ready");
    assert_eq!(described["status"]["documents"], 7);
    assert_eq!(described["status"]["lag"], 0);
    let listed = service
        .get("/admin/v1/search/indexes")
        .await
        .expect(200)
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // Bad declarations are refused with the field named.
    for (body, status, code) in [
        (
            json!({"name": "articles", "table": "articles", "searchable": ["title"]}),
            409,
            "already_exists",
        ),
        (
            json!({"name": "Bad Name", "table": "articles", "searchable": ["title"]}),
            400,
            "invalid_search_index",
        ),
        (
            json!({"name": "x", "table": "articles", "searchable": ["nope"]}),
            400,
            "invalid_search_index",
        ),
        (
            json!({"name": "x", "table": "articles", "searchable": []}),
            400,
            "invalid_search_index",
        ),
        (
            json!({"name": "x", "table": "missing", "searchable": ["a"]}),
            404,
            "table_not_found",
        ),
        (
            json!({"name": "x", "table": "auth.users", "searchable": ["email"]}),
            400,
            "invalid_search_index",
        ),
        (
            json!({"name": "x", "table": "articles", "searchable": ["title"], "language": "klingon"}),
            400,
            "invalid_search_index",
        ),
        (
            json!({"name": "x", "table": "articles", "searchable": ["title"], "backend": "meilisearch"}),
            400,
            "invalid_search_index",
        ),
    ] {
        let answer = service.post("/admin/v1/search/indexes", body.clone()).await;
        assert_eq!(
            (answer.status, answer.json()["code"].clone()),
            (status, json!(code)),
            "{body}"
        );
    }
    let unknown_field = service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "x", "table": "articles", "searchable": ["title"], "colour": "red"}),
        )
        .await;
    assert_eq!(unknown_field.status, 400);
    // Only admins manage indexes.
    basalt
        .as_anon()
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "y", "table": "articles", "searchable": ["title"]}),
        )
        .await
        .expect(403);
    // A change takes effect at once: only the title is searched now.
    assert_eq!(
        ids(&service
            .get("/search/v1/articles?q=vacuum")
            .await
            .expect(200)
            .json()),
        vec![1]
    );
    let changed = service
        .patch(
            "/admin/v1/search/indexes/articles",
            json!({"searchable": ["title"], "typo_tolerance": false}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(changed["searchable"], json!(["title"]));
    assert_eq!(
        gin("basalt_search_articles_trgm").await,
        0,
        "typo tolerance off drops its index"
    );
    assert_eq!(
        ids(&service
            .get("/search/v1/articles?q=vacuum")
            .await
            .expect(200)
            .json()),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&service
            .get("/search/v1/articles?q=tuning")
            .await
            .expect(200)
            .json()),
        vec![1]
    );
    service
        .patch(
            "/admin/v1/search/indexes/articles",
            json!({"name": "other"}),
        )
        .await
        .expect_error(400, "invalid_search_index");
    // Reindex rebuilds the GIN index and says when.
    let reindexed = service
        .post("/admin/v1/search/indexes/articles/reindex", json!({}))
        .await
        .expect(200)
        .json();
    assert!(reindexed["status"]["rebuilt_at"].is_string(), "{reindexed}");
    assert_eq!(gin("basalt_search_articles").await, 1);
    let drift = service
        .post("/admin/v1/search/indexes/articles/drift", json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(drift["drift"], false);
    // A view is searched too (without a documents table); it must name its key.
    db.batch_execute(
        "CREATE VIEW guides AS SELECT id, title, body FROM articles WHERE category = 'guides'",
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
            json!({"name": "guides", "table": "guides", "searchable": ["title", "body"]}),
        )
        .await
        .expect_error(400, "invalid_search_index");
    service
        .post("/admin/v1/search/indexes", json!({"name": "guides", "table": "guides", "primary_key": ["id"], "searchable": ["title", "body"]}))
        .await
        .expect(201);
    assert_eq!(gin("basalt_search_guides").await, 0);
    assert_eq!(
        sorted(ids(&service
            .get("/search/v1/guides?q=database")
            .await
            .expect(200)
            .json())),
        vec![1, 7]
    );
    // TRUNCATE empties the documents too.
    db.batch_execute("TRUNCATE articles").await.unwrap();
    assert_eq!(
        ids(&service
            .get("/search/v1/articles?q=tuning")
            .await
            .expect(200)
            .json()),
        Vec::<i64>::new()
    );
    // Delete: the GIN index goes, searches answer 404.
    service
        .delete("/admin/v1/search/indexes/articles")
        .await
        .expect(204);
    assert_eq!(gin("basalt_search_articles").await, 0);
    service
        .get("/search/v1/articles?q=x")
        .await
        .expect_error(404, "search_index_not_found");
    service
        .get("/admin/v1/search/indexes/articles")
        .await
        .expect_error(404, "search_index_not_found");
    // Every change is in the audit log.
    let events: Vec<String> = db
        .query(
            "SELECT event FROM auth.audit_log WHERE event LIKE 'search_index_%' ORDER BY created_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        events,
        [
            "search_index_created",
            "search_index_created",
            "search_index_changed",
            "search_index_reindexed",
            "search_index_created",
            "search_index_deleted"
        ]
    );
}

#[tokio::test]
async fn indexes_declared_in_the_config_file_are_made_at_start_and_read_only() {
    // A first server migrates a database that then gets the table.
    let first = Basalt::start().await;
    let url = first.database_url().unwrap().to_owned();
    connect(&url).await.batch_execute(ARTICLES).await.unwrap();
    drop(first);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("basalt.toml");
    std::fs::write(
        &config,
        "[[search.indexes]]\nname = \"docs\"\ntable = \"articles\"\nsearchable = [\"title\", \"body\"]\nfacets = [\"category\"]\n",
    )
    .unwrap();
    let basalt = Basalt::builder()
        .database_url(url.clone())
        .env("BASALT_CONFIG", config.display().to_string())
        .start()
        .await;
    let service = basalt.as_service();
    let found = service
        .get("/search/v1/docs?q=postgres&facets=category")
        .await
        .expect(200)
        .json();
    assert_eq!(sorted(ids(&found)), vec![1, 2, 7]);
    let described = service
        .get("/admin/v1/search/indexes/docs")
        .await
        .expect(200)
        .json();
    assert_eq!(described["declared"], true);
    service
        .patch(
            "/admin/v1/search/indexes/docs",
            json!({"searchable": ["title"]}),
        )
        .await
        .expect_error(409, "declared_in_config");
    service
        .delete("/admin/v1/search/indexes/docs")
        .await
        .expect_error(409, "declared_in_config");
    service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "docs", "table": "articles", "searchable": ["title"]}),
        )
        .await
        .expect_error(409, "already_exists");
    // A config that names a missing column stops the start with the reason.
    std::fs::write(
        &config,
        "[[search.indexes]]\nname = \"docs\"\ntable = \"articles\"\nsearchable = [\"nope\"]\n",
    )
    .unwrap();
    drop(basalt);
    let mut broken = Basalt::builder()
        .database_url(url)
        .env("BASALT_CONFIG", config.display().to_string())
        .no_wait()
        .start()
        .await;
    let status = broken.wait_exit(std::time::Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(broken.logs().contains("nope"), "{}", broken.logs());
}

/// Words of the permission test: each stems to itself.
const WORDS: &[&str] = &[
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor",
];

#[tokio::test]
async fn every_hit_is_a_row_and_columns_the_data_api_shows_the_same_caller() {
    permission_property(&Basalt::start().await, "postgres").await;
}

#[tokio::test]
async fn every_meilisearch_hit_is_a_row_and_columns_the_data_api_shows_the_same_caller() {
    let Some(meili) = MeiliServer::start("search::every_meilisearch_hit").await else {
        return;
    };
    let basalt = with_meili(&meili).await;
    permission_property(&basalt, "meilisearch").await;
}

async fn permission_property(basalt: &Basalt, backend: &str) {
    let service = basalt.as_service();
    let (alice, alice_id) = basalt_tests::client::Client::user(basalt, "alice@example.com").await;
    let (bob, bob_id) = basalt_tests::client::Client::user(basalt, "bob@example.com").await;
    let anon = basalt.as_anon();
    let db = connect(basalt.database_url().unwrap()).await;
    db.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, owner uuid, public boolean NOT NULL, title text, body text, secret text)")
        .await
        .unwrap();
    // Rows whose words are spread over every column, from a fixed sequence.
    let mut seed: u64 = 7;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    for id in 0..30 {
        let owner = [Some(&alice_id), Some(&bob_id), None][next(3)];
        let public = next(2) == 0;
        let mut words = |count: usize| {
            (0..count)
                .map(|_| WORDS[next(WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (title, body, secret) = (words(1), words(2), words(1));
        db.execute(
            "INSERT INTO notes VALUES ($1, $2::text::uuid, $3, $4, $5, $6)",
            &[&id, &owner, &public, &title, &body, &secret],
        )
        .await
        .unwrap();
    }
    // A word only in one of alice's private secrets.
    db.execute(
        "INSERT INTO notes VALUES (100, $1::text::uuid, false, 'plain', 'plain', 'zeppelin')",
        &[&alice_id],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO notes VALUES (101, $1::text::uuid, true, 'plain', 'plain', 'quasar')",
        &[&alice_id],
    )
    .await
    .unwrap();
    service
        .post("/admin/v1/schema/reload", json!({}))
        .await
        .expect(200);
    for policy in [
        json!({"subject": "anon", "object": "index:notes", "action": "search"}),
        json!({"subject": "authenticated", "object": "index:notes", "action": "search"}),
        json!({"subject": "anon", "object": "table:public.notes", "action": "select", "condition": "public=is.true", "columns": ["id", "title", "public"]}),
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "select", "condition": "owner=eq.{auth.uid}"}),
        json!({"subject": "authenticated", "object": "table:public.notes", "action": "select", "condition": "public=is.true", "columns": ["id", "title", "public"]}),
    ] {
        service.policy(policy).await;
    }
    service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "notes", "table": "notes", "searchable": ["title", "body", "secret"], "filterable": ["public"], "backend": backend}),
        )
        .await
        .expect(201);
    synced(basalt, "notes", 32).await;
    let words: Vec<&str> = WORDS
        .iter()
        .copied()
        .chain(["zeppelin", "quasar", "plain"])
        .collect();
    let variants = [
        "",
        "&select=id,title&on=title",
        "&on=title,body",
        "&select=id,title,body&on=body",
        "&select=id,title&on=title&public=is.true",
    ];
    let mut hits_seen = 0;
    for (who, caller) in [("anon", &anon), ("alice", &alice), ("bob", &bob)] {
        for word in &words {
            for variant in variants {
                let answer = caller
                    .get(&format!("/search/v1/notes?q={word}&limit=100{variant}"))
                    .await;
                if answer.status == 403 || answer.status == 401 {
                    continue;
                }
                assert_eq!(answer.status, 200, "{who} {word}{variant}: {}", answer.text);
                for hit in answer.json()["hits"].as_array().unwrap() {
                    hits_seen += 1;
                    let id = &hit["id"];
                    let document = hit["document"].as_object().unwrap();
                    let columns: Vec<&str> = document.keys().map(String::as_str).collect();
                    // The data API shows this caller the same row with the same columns.
                    let rows = caller
                        .get(&format!(
                            "/rest/v1/notes?id=eq.{id}&select={}",
                            columns.join(",")
                        ))
                        .await
                        .expect(200)
                        .json();
                    assert_eq!(rows, json!([document]), "{who} {word}{variant}");
                    // The word is in a column the caller may read on that row.
                    let mut visible = false;
                    for column in ["title", "body", "secret"] {
                        let row = caller
                            .get(&format!("/rest/v1/notes?id=eq.{id}&select={column}"))
                            .await;
                        if row.status == 200 {
                            let text = row.json()[0][column]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            visible |= text.split_whitespace().any(|w| w == *word);
                        }
                    }
                    assert!(visible, "{who} found {id} by `{word}` through a column hidden from them ({variant})");
                }
            }
        }
    }
    assert!(
        hits_seen > 50,
        "the property needs hits to check: {hits_seen}"
    );
    // Positive and negative controls.
    let own = alice
        .get("/search/v1/notes?q=zeppelin")
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&own), vec![100]);
    let other = bob
        .get("/search/v1/notes?q=zeppelin")
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&other), Vec::<i64>::new());
    // 101 is public, but its secret is not: searching titles finds it, the secret does not.
    let public = bob
        .get("/search/v1/notes?q=quasar&select=id,title&on=title")
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&public), Vec::<i64>::new());
    let public = bob
        .get("/search/v1/notes?q=plain&select=id,title&on=title")
        .await
        .expect(200)
        .json();
    assert_eq!(ids(&public), vec![101]);
    // Without a search policy, nothing.
    service
        .post(
            "/admin/v1/search/indexes",
            json!({"name": "closed", "table": "notes", "searchable": ["title"]}),
        )
        .await
        .expect(201);
    anon.get("/search/v1/closed?q=plain")
        .await
        .expect_error(401, "login_required");
    // Whether an index exists is told only to those who may search it.
    anon.get("/search/v1/no-such-index?q=plain")
        .await
        .expect_error(401, "login_required");
    alice
        .get("/search/v1/closed?q=plain")
        .await
        .expect_error(403, "forbidden");
}
