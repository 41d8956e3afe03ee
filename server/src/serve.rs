//! The lifecycle of the subcommands that need the database: open it (embedded
//! or external), migrate, serve HTTP, and shut down gracefully.

use crate::auth::passwords::Passwords;
use crate::background::Background;
use crate::db::{self, migrate};
use crate::embedded::EmbeddedPostgres;
use crate::http::rate_limit::RateLimiter;
use crate::identity::jwt::{self, Jwt, SigningKey};
use crate::jobs;
use crate::mail::Mailer;
use crate::secrets;
use crate::state::{AppState, Lifecycle, Services};
use actix_web::http::KeepAlive;
use actix_web::HttpServer;
use anyhow::Context;
use basalt_core::config::Config;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// The database Basalt works on, and the embedded cluster if it runs one.
struct Database {
    pg: tokio_postgres::Config,
    tls: db::pool::Tls,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    async fn open(config: &Config) -> anyhow::Result<Database> {
        let tls = db::pool::tls(&config.database)?;
        if !config.database.url.is_empty() {
            return Ok(Database {
                pg: db::pool::external_config(&config.database)?,
                tls,
                embedded: None,
            });
        }
        let data_dir = Path::new(&config.data_dir);
        let secrets = secrets::load_or_create(data_dir)?;
        let embedded =
            EmbeddedPostgres::start(&config.embedded, data_dir, &secrets.postgres_password).await?;
        Ok(Database {
            pg: embedded.connection_config(&secrets.postgres_password),
            tls,
            embedded: Some(embedded),
        })
    }

    async fn close(self) {
        if let Some(embedded) = self.embedded {
            embedded.stop().await;
        }
    }

    /// A dedicated connection (not from the pool), retried until `deadline`.
    async fn connect(&self, deadline: Instant) -> anyhow::Result<tokio_postgres::Client> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.pg.connect(self.tls.clone()).await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!("migration connection closed: {error}");
                        }
                    });
                    return Ok(client);
                }
                Err(error) if Instant::now() + delay < deadline => {
                    tracing::warn!(
                        "cannot reach the database yet ({error}); retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(error).context(
                    "cannot reach the database; check DATABASE_URL and that the server is running",
                ),
            }
        }
    }
}

/// Reloads the policy engine whenever a replica announces a change on
/// `basalt_policies` (and after each reconnect of the listener).
async fn reload_policies_on_change(
    state: AppState,
    pg: tokio_postgres::Config,
    tls: db::pool::Tls,
) {
    db::listen::on_notify(pg, tls, "basalt_policies", None, || {
        state.authz().reload(&state.pool)
    })
    .await
}

/// The JWT secret: configured, or generated once and kept in the data directory.
fn jwt_secret(config: &Config) -> anyhow::Result<String> {
    if !config.jwt.secret.is_empty() {
        return Ok(config.jwt.secret.expose().to_owned());
    }
    if !config.database.url.is_empty() {
        tracing::warn!(
            "jwt.secret is not set: using one generated in {}; replicas sharing a database must share BASALT_JWT_SECRET",
            secrets::path(Path::new(&config.data_dir)).display()
        );
    }
    Ok(secrets::load_or_create(Path::new(&config.data_dir))?.jwt_secret)
}

/// The token signer: HS256 with the secret, plus the asymmetric key if configured.
fn load_jwt(config: &Config, secret: &str) -> anyhow::Result<Jwt> {
    let jwt = Jwt::new(secret, config.auth.clock_skew_secs);
    if config.jwt.signing_key_file.is_empty() {
        return Ok(jwt);
    }
    let pem = std::fs::read_to_string(&config.jwt.signing_key_file).with_context(|| {
        format!(
            "jwt.signing_key_file: cannot read {}",
            config.jwt.signing_key_file
        )
    })?;
    let key = SigningKey::from_pem(&pem, &config.jwt.key_id).with_context(|| {
        format!(
            "jwt.signing_key_file: {} is not a usable key",
            config.jwt.signing_key_file
        )
    })?;
    Ok(jwt.with_signing_key(key))
}

pub fn print_keys(config: &Config) -> anyhow::Result<()> {
    let jwt = Jwt::new(&jwt_secret(config)?, config.auth.clock_skew_secs);
    println!("anon: {}", jwt.mint_key(jwt::ANON));
    println!("service_role: {}", jwt.mint_key(jwt::SERVICE_ROLE));
    Ok(())
}

pub async fn migrate_command(
    config: Config,
    dry_run: bool,
    export: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let database = Database::open(&config).await?;
    let result = async {
        let deadline = Instant::now() + Duration::from_millis(config.database.startup_timeout_ms);
        let mut client = database.connect(deadline).await?;
        if let Some(directory) = export {
            for file in migrate::export_app(&client, &directory).await? {
                println!("wrote: {}", file.display());
            }
        } else if dry_run {
            let pending = migrate::pending(&mut client).await?;
            if pending.is_empty() {
                println!("up to date: no pending migrations");
            }
            for name in pending {
                println!("pending: {name}");
            }
        } else {
            let applied = migrate::apply(&mut client).await?;
            if applied.is_empty() {
                println!("up to date: no pending migrations");
            }
            for name in applied {
                println!("applied: {name}");
            }
        }
        anyhow::Ok(())
    }
    .await;
    database.close().await;
    result
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let secret = jwt_secret(&config)?;
    let jwt = load_jwt(&config, &secret)?;
    let database = Database::open(&config).await?;
    let result = run(config, jwt, secret, &database).await;
    database.close().await;
    result
}

async fn run(
    config: Config,
    jwt: Jwt,
    jwt_secret: String,
    database: &Database,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(config.database.startup_timeout_ms);
    let mut client = database.connect(deadline).await?;
    for name in migrate::apply(&mut client).await? {
        tracing::info!(migration = %name, "applied migration");
    }
    let api_password = db::roles::api_password(&config, &jwt_secret);
    let api_pg = db::roles::api_connection(&database.pg, &config, &api_password);
    db::roles::provision(&client, &config, &api_pg, &database.tls, &api_password).await?;
    drop(client);

    let pool = db::pool::build(
        database.pg.clone(),
        database.tls.clone(),
        &config.database,
        config.database.pool_size,
    )?;
    let api_pool = db::pool::PerThread::new(
        api_pg,
        database.tls.clone(),
        &config.database,
        config
            .database
            .api_pool_size
            .div_ceil(http_workers(&config) as u32),
    );
    check_api_login(&api_pool, &config).await?;
    crate::authz::declared::reconcile(&pool, &config.authz)
        .await
        .context("cannot apply the roles and policies declared in the config file")?;
    crate::feed::reconcile(&pool, &config.rest.schema, &config.realtime.tables).await?;
    crate::storage::reconcile_buckets(&pool, &config.storage.buckets)
        .await
        .context("cannot apply the buckets declared in the config file")?;
    let storage = crate::storage::Storage::open(&config, jwt_secret.as_bytes())
        .await
        .context("cannot open the storage backend")?;
    let revoked = Arc::new(crate::identity::revoked::Revoked::new(token_window(
        &config,
    )));
    revoked
        .refresh(&pool)
        .await
        .context("cannot read the revoked sessions")?;
    let lifecycle = Arc::new(Lifecycle::default());
    lifecycle.set_migrated();
    // Each feature's service, found by type (see `state::Services`).
    let services = Services::default()
        .with(Arc::new(jwt))
        .with(Arc::new(Passwords::new(&config.auth)?))
        .with(revoked.clone())
        .with(Arc::new(RateLimiter::new(&config.rate_limit)))
        .with(Arc::new(
            crate::authz::Engine::load(&pool)
                .await
                .context("cannot load the policies")?,
        ))
        .with(Arc::new(
            crate::rest::cache::SchemaCache::load(
                &pool,
                std::iter::once(config.rest.schema.clone())
                    .chain(config.rest.extra_schemas.iter().cloned())
                    .collect(),
            )
            .await
            .context("cannot read the exposed schema")?,
        ))
        .with(Arc::new(crate::realtime::hub::Hub::new(
            crate::feed::head(&*pool.get().await?).await?,
            config.realtime.send_buffer as usize,
        )))
        .with(Arc::new(crate::rest::fairness::Fairness::default()))
        .with(Arc::new(
            crate::search::Registry::load(&pool)
                .await
                .context("cannot read the search indexes")?,
        ))
        .with(Arc::new(
            crate::search::meili::Meili::new(&config.search)
                .context("cannot make the Meilisearch client")?,
        ))
        .with(Arc::new(storage));
    let state = AppState {
        pool: pool.clone(),
        api_pool: Arc::new(api_pool),
        tls: database.tls.clone(),
        refresh_key: Arc::new(jwt_secret),
        trusted_proxies: Arc::new(config.trusted_proxies().expect("validated at start-up")),
        metrics: crate::telemetry::metrics_handle(),
        lifecycle: lifecycle.clone(),
        embedded: database.embedded.is_some(),
        jobs: jobs::Queue::new(&config.jobs),
        realtime_replica: uuid::Uuid::new_v4(),
        email_enabled: !config.smtp.host.is_empty(),
        config: Arc::new(config.clone()),
        services,
    };
    let mut handlers: HashMap<&'static str, jobs::Handler> = HashMap::new();
    if state.email_enabled {
        let mailer = Arc::new(Mailer::new(&config.smtp)?);
        handlers.insert(
            crate::auth::email::QUEUE,
            crate::auth::email::handler(state.clone(), mailer),
        );
        if config.public_url.is_empty() {
            tracing::warn!(
                "public_url is not set: links in emails point at http://{}; set BASALT_PUBLIC_URL to the address clients use",
                config.http
            );
        }
    } else {
        tracing::info!(
            "no SMTP server is configured (smtp.host): sign-ups are confirmed automatically; password recovery, magic links and email confirmation are off"
        );
    }
    crate::search::reconcile(&state)
        .await
        .context("cannot apply the search indexes declared in the config file")?;
    let mut background = Background::default();
    let (pg, tls) = (&database.pg, &database.tls);
    background.spawn(
        "search indexes",
        crate::search::follow_changes(state.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "search sync",
        crate::search::sync::run(state.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "policy reloader",
        reload_policies_on_change(state.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "schema reloader",
        crate::rest::cache::reload_on_change(
            state.schema().clone(),
            state.pool.clone(),
            pg.clone(),
            tls.clone(),
        ),
    );
    background.spawn(
        "storage cleanup",
        crate::storage::cleanup::run(state.clone()),
    );
    background.spawn(
        "revoked sessions",
        crate::identity::revoked::follow(revoked, state.pool.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "realtime feed",
        crate::realtime::follow_feed(state.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "realtime broadcasts",
        crate::realtime::relay_broadcasts(state.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "realtime sessions",
        crate::realtime::cut_revoked_sessions(state.clone()),
    );
    background.spawn(
        "realtime presence",
        crate::realtime::relay_presence(state.clone(), pg.clone(), tls.clone()),
    );
    background.spawn(
        "presence liveness",
        crate::realtime::keep_presence(state.clone()),
    );
    background.spawn_graceful("job worker", |stop| {
        jobs::run(
            state.pool.clone(),
            state.jobs.clone(),
            config.jobs.clone(),
            handlers,
            (pg.clone(), tls.clone()),
            stop,
        )
    });
    metrics::gauge!("basalt_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);

    let server_config = &config.server;
    let workers = http_workers(&config);
    let keep_alive = match server_config.keep_alive_secs {
        0 => KeepAlive::Disabled,
        secs => KeepAlive::Timeout(Duration::from_secs(secs)),
    };
    let app_state = state.clone();
    let server = HttpServer::new(move || crate::app::app(app_state.clone()))
        .workers(workers)
        .max_connections(server_config.max_connections_per_worker as usize)
        .client_request_timeout(Duration::from_millis(server_config.header_read_timeout_ms))
        .keep_alive(keep_alive)
        .shutdown_timeout(server_config.shutdown_timeout_ms.div_ceil(1000))
        .disable_signals()
        // Responses stream in chunks; without TCP_NODELAY the last small
        // segment of one can wait for a delayed ACK (up to 40 ms).
        .on_connect(|connection, _| {
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .bind(&config.http)
        .with_context(|| format!("cannot listen on {}", config.http))?;
    for address in server.addrs() {
        tracing::info!(
            "Basalt {} listening on http://{address} (API keys: `basalt keys --data-dir {}`)",
            env!("CARGO_PKG_VERSION"),
            config.data_dir
        );
    }
    let server = server.run();
    let handle = server.handle();

    let limiter = state.rate_limiter().clone();
    let pool = state.pool.clone();
    let retention = config.realtime.retention_secs;
    let window = token_window(&config);
    background.spawn("sweeper", async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            limiter.sweep(Instant::now());
            if let Err(error) = crate::rest::prune_idempotency_keys(&pool).await {
                tracing::warn!("cannot prune expired idempotency keys: {error:#}");
            }
            if let Err(error) = crate::feed::prune(&pool, retention).await {
                tracing::warn!("cannot prune the change feed: {error:#}");
            }
            if let Err(error) = crate::identity::revoked::prune(&pool, window).await {
                tracing::warn!("cannot prune the revoked sessions: {error:#}");
            }
        }
    });
    let drain = Duration::from_millis(server_config.shutdown_drain_ms);
    background.spawn("signals", async move {
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name} received: readiness is now false; draining for {drain:?}");
        lifecycle.set_shutting_down();
        tokio::time::sleep(drain).await;
        tracing::info!("closing the listener; waiting for in-flight requests");
        handle.stop(true).await;
    });

    let served = server.await;
    background.stop().await;
    state.pool.close();
    served.context("the HTTP server failed")?;
    tracing::info!("HTTP server stopped");
    Ok(())
}

/// How long an access token can stay valid: its lifetime and the clock skew.
fn token_window(config: &Config) -> Duration {
    Duration::from_secs(config.auth.access_token_ttl_secs + config.auth.clock_skew_secs)
}

/// How many HTTP workers serve requests (`server.workers`, 0: one per core).
fn http_workers(config: &Config) -> usize {
    match config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n as usize,
    }
}

/// The data API's pool can log in (its memberships were made or checked by
/// `db::roles::provision`); otherwise every data request would fail.
async fn check_api_login(api_pool: &db::pool::PerThread, config: &Config) -> anyhow::Result<()> {
    api_pool.check().await.with_context(|| {
        format!(
            "cannot log in as database.api_role `{}`",
            config.database.api_role
        )
    })
}
