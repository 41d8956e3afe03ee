//! Search (`/search/v1`) on the PostgreSQL backend, end to end: the admin
//! API, ranking, the websearch syntax, prefixes, highlights, facets,
//! filters, sorting, paging, typos and accents, hostile input, and the
//! permission property (every hit is a row the data API shows the same
//! caller, with the same columns, found through a column they may read).

use basalt_tests::{connect, Basalt};
use serde_json::{json, Value};

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

fn ids(answer: &Value) -> Vec<i64> {
    answer["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {answer}"))
        .iter()
        .map(|hit| hit["id"].as_i64().unwrap())
        .collect()
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort();
    ids
}

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
