//! The floor of `bench/run`: the least a server can do to answer the data
//! API's benchmark requests over HTTP from PostgreSQL in Rust, to measure
//! Basalt's generic layer against. Three routes on `public.posts` (row by id,
//! a filtered ordered page of 20, insert one row), each one statement prepared
//! once per connection (PostgreSQL builds the JSON, as Basalt's reads do), a
//! deadpool of connections, no authentication, no policy, no transaction
//! beyond the statement's own.
//!
//!     floor ADDRESS 'host=/path/to/socket user=… password=… dbname=…' [POOL_SIZE]

use actix_web::{get, post, web, App, HttpResponse, HttpServer};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

const PAGE: &str = "SELECT coalesce(json_agg(p), '[]')::text FROM (SELECT * FROM public.posts WHERE score > $1 ORDER BY score DESC, id LIMIT 20) p";
const INSERT: &str = "INSERT INTO public.posts (title, score) VALUES ($1, $2)";
const ROW_BY_ID: &str = "SELECT row_to_json(p)::text FROM public.posts p WHERE p.id = $1";

/// A connection and `sql` prepared on it (once per connection), or the
/// answer when there is none.
async fn prepared(
    pool: &Pool,
    sql: &str,
) -> Result<(deadpool_postgres::Object, tokio_postgres::Statement), HttpResponse> {
    let client = pool
        .get()
        .await
        .map_err(|_| HttpResponse::ServiceUnavailable().finish())?;
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(|_| HttpResponse::InternalServerError().finish())?;
    Ok((client, statement))
}

#[get("/posts/{id}")]
async fn row_by_id(pool: web::Data<Pool>, id: web::Path<i64>) -> HttpResponse {
    let (client, statement) = match prepared(&pool, ROW_BY_ID).await {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal,
    };
    match client.query_opt(&statement, &[&id.into_inner()]).await {
        Ok(Some(row)) => {
            let json: &str = row.get(0);
            let mut body = String::with_capacity(json.len() + 2);
            body.push('[');
            body.push_str(json);
            body.push(']');
            HttpResponse::Ok()
                .content_type("application/json")
                .body(body)
        }
        Ok(None) => HttpResponse::Ok()
            .content_type("application/json")
            .body("[]"),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[derive(serde::Deserialize)]
struct PageQuery {
    score_gt: i32,
}

#[get("/posts")]
async fn page(pool: web::Data<Pool>, query: web::Query<PageQuery>) -> HttpResponse {
    let (client, statement) = match prepared(&pool, PAGE).await {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal,
    };
    match client.query_one(&statement, &[&query.score_gt]).await {
        Ok(row) => HttpResponse::Ok()
            .content_type("application/json")
            .body(row.get::<_, String>(0)),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[derive(serde::Deserialize)]
struct NewPost {
    title: String,
    score: i32,
}

#[post("/posts")]
async fn insert(pool: web::Data<Pool>, post: web::Json<NewPost>) -> HttpResponse {
    let (client, statement) = match prepared(&pool, INSERT).await {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal,
    };
    match client
        .execute(&statement, &[&post.title, &post.score])
        .await
    {
        Ok(_) => HttpResponse::Created().finish(),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(database)) = (args.next(), args.next()) else {
        eprintln!("usage: floor ADDRESS CONNECTION_STRING [POOL_SIZE]");
        std::process::exit(2);
    };
    let pool_size = args.next().and_then(|n| n.parse().ok()).unwrap_or(16);
    let config: tokio_postgres::Config = database
        .parse()
        .unwrap_or_else(|error| panic!("invalid connection string: {error}"));
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(pool_size)
        .build()
        .expect("the pool builds");
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(pool.clone()))
            .service(row_by_id)
            .service(page)
            .service(insert)
    })
    .bind(address)?
    .run()
    .await
}
