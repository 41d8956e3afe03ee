//! Configuration: the settings, their defaults, the layering of
//! defaults < config file < `BASALT_*` environment < command-line flags, and the
//! validation that names the setting, the problem and the fix.
//!
//! This module reads nothing itself: the caller passes the file's text, the
//! environment and the flags, so every rule here is tested with plain values.

use crate::rate::RateSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod declared;
mod defaults;
mod load;
mod validate;

pub use load::{env_name, settings, suggestion, Loaded, SettingDoc, Sources};

/// A value that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address of the HTTP server.
    pub http: String,
    /// Where Basalt keeps its embedded PostgreSQL cluster, generated secrets and files.
    pub data_dir: String,
    /// Where the app lives: the default target of links in emails.
    pub site_url: String,
    /// How clients reach this server (links in emails point here); empty
    /// derives `http://<http>`.
    pub public_url: String,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub embedded: EmbeddedConfig,
    pub jwt: JwtConfig,
    pub auth: AuthConfig,
    pub smtp: SmtpConfig,
    pub authz: AuthzConfig,
    pub rest: RestConfig,
    pub realtime: RealtimeConfig,
    pub storage: StorageConfig,
    pub s3: S3Config,
    pub search: SearchConfig,
    pub templates: TemplatesConfig,
    pub jobs: JobsConfig,
    pub server: ServerConfig,
    pub cors: CorsConfig,
    pub security: SecurityConfig,
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `auto` (readable on a terminal, JSON otherwise), `json` or `pretty`.
    pub format: String,
    /// A tracing filter: `info`, `debug`, `basalt_server=debug,info`, ...
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// An external PostgreSQL URL; empty runs the embedded cluster.
    pub url: Secret,
    pub pool_size: u32,
    pub pool_wait_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// `fast` (no check), `verified` (a round trip before reuse) or `clean` (DISCARD ALL).
    pub recycling: String,
    /// A PEM file of CA certificates to verify the server's TLS certificate with.
    pub ca_file: String,
    /// How long start-up waits for the database before giving up.
    pub startup_timeout_ms: u64,
    /// The login role of the data API's pool: it can only become the API
    /// roles (`authz.db_role_*`), never Basalt's own database user.
    pub api_role: String,
    /// Its password. Empty: Basalt creates the role (or resets it) with a
    /// password derived from the JWT secret; set: the operator manages the role.
    pub api_password: Secret,
    /// Maximum connections of the data API's pool per replica.
    pub api_pool_size: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Directory with `initdb`, `pg_ctl` and `postgres`; empty searches the machine.
    pub bin_dir: String,
    /// The system user that runs the cluster when Basalt runs as root.
    pub os_user: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 secret of at least 32 bytes; empty generates one in the data directory.
    pub secret: Secret,
    /// A PEM private key (RSA → RS256, P-256 in PKCS#8 → ES256) to sign users'
    /// access tokens with; its public half is served at the JWKS endpoint.
    /// Empty: access tokens are HS256 with `secret`. API keys are always HS256.
    pub signing_key_file: String,
    /// The `kid` of that key; empty derives one from the public key.
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens (JWTs).
    pub access_token_ttl_secs: u64,
    /// How long a just-rotated refresh token may be presented again (two
    /// concurrent refreshes from one client) and still get the same successor.
    pub refresh_reuse_grace_secs: u64,
    /// A session not refreshed for this long ends; 0 disables.
    pub session_inactivity_timeout_secs: u64,
    /// A session ends this long after sign-in whatever happens; 0 disables.
    pub session_max_lifetime_secs: u64,
    /// Allowance for clocks that disagree when checking `exp` and `nbf`.
    pub clock_skew_secs: u64,
    pub password_min_length: u64,
    pub password_max_length: u64,
    /// Character classes a password must contain: `lower`, `upper`, `digit`, `symbol`.
    pub password_required_classes: Vec<String>,
    /// The lowest zxcvbn score (0–4) a password may have; 0 turns the
    /// check off. 1 refuses the most common passwords.
    pub password_min_score: u64,
    pub argon2_memory_kib: u64,
    pub argon2_iterations: u64,
    pub argon2_parallelism: u64,
    /// `auto` (on when `smtp.host` is set), `on` or `off`.
    pub email_confirmation: String,
    /// Lifetime of the single-use tokens sent by email.
    pub email_token_ttl_secs: u64,
    /// Where links may send users besides `site_url`: exact URLs (paths under
    /// them allowed) or prefixes ending with `*`.
    pub redirect_allow_list: Vec<String>,
    /// Whether `POST /auth/v1/signup` without credentials makes an anonymous
    /// user (supabase-js `signInAnonymously`).
    pub anonymous_sign_ins: bool,
    /// Whether changing the password through `PUT /auth/v1/user` needs the
    /// `nonce` emailed by `GET /auth/v1/reauthenticate` when the session is
    /// older than `reauthentication_window_secs` (GoTrue's secure password
    /// change).
    pub secure_password_change: bool,
    /// How long after signing in a session may change the password without
    /// a nonce (0: never).
    pub reauthentication_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Empty: no email; sign-ups are confirmed automatically.
    pub host: String,
    pub port: u64,
    pub user: String,
    pub password: Secret,
    /// The From address, e.g. `Acme <no-reply@acme.test>`.
    pub sender: String,
    /// `starttls`, `tls` (implicit) or `none`.
    pub tls: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// The schema whose tables `/rest/v1/<table>` serves.
    pub schema: String,
    /// More schemas served when a request names one in `Accept-Profile`
    /// (reads) or `Content-Profile` (writes).
    pub extra_schemas: Vec<String>,
    /// The most rows one read returns (`limit` is capped by it).
    pub max_rows: u64,
    /// The rows a read returns when it gives no `limit` (at most `max_rows`).
    pub default_limit: u64,
    /// Whether `PATCH` and `DELETE` without any filter are allowed.
    pub allow_unfiltered_writes: bool,
    /// Whether `Prefer: tx=rollback` is honoured (the request runs and is
    /// rolled back: for tests and dry runs).
    pub allow_tx_rollback: bool,
    /// Whether `select=` may hold aggregates (`count()`, `amount.sum()`…):
    /// each scans every row the filters keep, so they are off by default.
    pub aggregates: bool,
    /// Who may ask for a read's query plan (`Accept:
    /// application/vnd.pgrst.plan+json`): `off`, `service_role` or `everyone`.
    pub plan: String,
    /// How long a response stored under an `Idempotency-Key` is replayed.
    pub idempotency_ttl_secs: u64,
    /// The most operations one `POST /rest/v1/batch` may hold.
    pub batch_max_operations: u64,
    /// Whether the API roles get privileges on the exposed schemas' tables,
    /// sequences and functions (existing ones at start-up, new ones as they
    /// are created), so that Basalt's policies are the gate.
    pub grant_api_roles: bool,
    /// Whether CSV answers prefix `'` to fields a spreadsheet would run as
    /// a formula.
    pub csv_neutralize_formulas: bool,
    /// The most data API requests one caller (user or anonymous IP) may
    /// have running at once; 0: no limit.
    pub max_concurrent_per_caller: u64,
    /// The statement timeout of anonymous and signed-in callers' data
    /// transactions, in milliseconds; 0: none (the request timeout applies).
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzConfig {
    /// A key of a user's `app_metadata` whose list of role names is added to
    /// the roles assigned through the admin API; empty disables it.
    pub roles_claim: String,
    /// The database role data queries of anonymous callers run as (RLS).
    pub db_role_anon: String,
    /// The database role data queries of signed-in users run as (RLS).
    pub db_role_authenticated: String,
    /// The database role data queries with the service_role key run as.
    pub db_role_service: String,
    /// Roles declared in the config file (`[[authz.roles]]`), reconciled at start-up.
    pub roles: Vec<RoleDecl>,
    /// Policies declared in the config file (`[[authz.policies]]`), reconciled at start-up.
    pub policies: Vec<PolicyDecl>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDecl {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecl {
    pub subject: String,
    pub object: String,
    pub action: String,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub description: String,
}

/// Settings that are lists of tables, set in the config file only (no
/// environment variable).
pub const DECLARATIONS: &[&str] = &[
    "authz.roles",
    "authz.policies",
    "storage.buckets",
    "search.indexes",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesConfig {
    pub confirmation: EmailTemplate,
    pub recovery: EmailTemplate,
    pub magic_link: EmailTemplate,
    pub email_change: EmailTemplate,
    /// The code of `GET /auth/v1/reauthenticate` (`{{ token }}`).
    pub reauthentication: EmailTemplate,
}

/// An email: subject, HTML and text bodies with `{{ link }}`, `{{ token }}`
/// (a reauthentication code), `{{ email }}`, `{{ new_email }}` and
/// `{{ site_url }}` placeholders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Tables whose changes are captured into the change feed (`schema.table`,
    /// or `table` in `rest.schema`), in addition to those enabled through
    /// the admin API.
    pub tables: Vec<String>,
    /// How long the change feed keeps a change.
    pub retention_secs: u64,
    /// Open WebSocket connections per replica.
    pub max_connections: u64,
    /// Channels (topics) one connection may join.
    pub max_channels_per_connection: u64,
    /// The largest message a client may send, in bytes.
    pub max_message_bytes: u64,
    /// Messages waiting to be sent to one connection; a connection that
    /// falls this far behind is cut off (`slow_consumer`).
    pub send_buffer: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// How often idle workers look for due jobs (they are also woken at once
    /// when this replica enqueues one).
    pub poll_interval_ms: u64,
    pub max_attempts: u64,
    /// Retry delay after the first failure; it doubles each time up to the max.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub body_limit_bytes: u64,
    pub request_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub keep_alive_secs: u64,
    pub max_connections_per_worker: u64,
    pub workers: u64,
    pub shutdown_timeout_ms: u64,
    pub shutdown_drain_ms: u64,
    /// Peers (IP or CIDR) whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://app.example.com`) allowed to call the APIs; `*` allows any.
    pub allowed_origins: Vec<String>,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Sent as Strict-Transport-Security on requests that arrived over TLS; 0 disables.
    pub hsts_max_age_secs: u64,
    /// `DENY` or `SAMEORIGIN`, sent as X-Frame-Options and CSP frame-ancestors.
    pub frame_options: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per email address and action: sign-up, sign-in, recovery, magic links,
    /// email changes (verification is limited per IP only).
    pub auth_per_email: String,
    pub auth: RateLimitGroup,
    pub rest: RateLimitGroup,
    pub storage: RateLimitGroup,
    pub realtime: RateLimitGroup,
    pub search: RateLimitGroup,
    pub admin: RateLimitGroup,
    /// Every other path except `/health/*` and `/metrics`.
    pub default: RateLimitGroup,
}

/// Limits of one route group: `<count>/<period>` or `off`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitGroup {
    pub per_ip: String,
    pub per_key: String,
}

/// Settings whose values are secret: redacted by [`Config::redacted_toml`].
pub const SECRET_SETTINGS: &[&str] = &[
    "jwt.secret",
    "database.url",
    "smtp.password",
    "s3.secret_access_key",
    "search.meilisearch_key",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (files under `<data_dir>/storage`) or `s3` (the `[s3]` settings).
    pub backend: String,
    /// The largest object, in bytes; a bucket's `file_size_limit` may lower it.
    pub max_file_size_bytes: u64,
    /// The longest expiry a signed URL may ask for.
    pub signed_url_max_expiry_secs: u64,
    /// A resumable (TUS) upload not finished within this time is discarded.
    pub resumable_ttl_secs: u64,
    /// A stored blob no object refers to is removed once it is this old (an
    /// upload in flight has written its blob but not yet its metadata).
    pub orphan_grace_secs: u64,
    /// How often the cleanup task looks for orphaned blobs and expired uploads.
    pub cleanup_interval_secs: u64,
    /// Time limit of one upload or download (instead of `server.request_timeout_ms`).
    pub transfer_timeout_secs: u64,
    /// Buckets declared in the config file (`[[storage.buckets]]`), created or
    /// updated at start-up.
    pub buckets: Vec<BucketDecl>,
}

/// A bucket declared in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketDecl {
    pub name: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub file_size_limit: Option<u64>,
    #[serde(default)]
    pub allowed_mime_types: Vec<String>,
}

/// The S3-compatible store used when `storage.backend = "s3"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`;
    /// empty means AWS's endpoint for the region.
    pub endpoint: String,
    pub region: String,
    /// The one bucket of the store that holds every Basalt bucket's blobs.
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`
    /// (most self-hosted stores need it).
    pub force_path_style: bool,
    /// Objects larger than this are sent as a multipart upload in parts of this size.
    pub part_size_bytes: u64,
}

/// Search indexes (`/search/v1`) and the Meilisearch server some of them use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// The Meilisearch server of indexes with `backend = "meilisearch"`,
    /// e.g. `http://127.0.0.1:7700`; empty: such indexes cannot be made.
    pub meilisearch_url: String,
    /// Its API key (the master key, or a key allowed indexes, documents,
    /// settings, tasks and search).
    pub meilisearch_key: Secret,
    /// Changes (and, when rebuilding, rows) sent to Meilisearch per batch.
    pub batch_size: u64,
    /// How long the sync worker waits for Meilisearch to finish a task
    /// before it counts the batch failed and retries it.
    pub task_timeout_secs: u64,
    /// Indexes declared in the config file (`[[search.indexes]]`), created
    /// or updated at start-up.
    pub indexes: Vec<crate::search::IndexDef>,
}

/// A setting that could not be taken, said so that a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path, e.g. `server.request_timeout_ms`, or `config file`.
    pub setting: String,
    /// Where the value came from: a file, an environment variable, a flag, the default.
    pub origin: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid setting `{}` (from {}): {}\n  fix: {}",
            self.setting, self.origin, self.problem, self.fix
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The trusted proxy networks, or the first entry that is not one.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.server
            .trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| entry.to_owned())
            })
            .collect()
    }

    /// The effective configuration as TOML with every secret replaced.
    pub fn redacted_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("config serializes");
        for path in SECRET_SETTINGS {
            let (section, key) = path.split_once('.').expect("secret paths are section.key");
            if let Some(toml::Value::String(text)) =
                value.get_mut(section).and_then(|table| table.get_mut(key))
            {
                if !text.is_empty() {
                    *text = if *path == "database.url" {
                        redact_url(text)
                    } else {
                        "<redacted>".into()
                    };
                }
            }
        }
        toml::to_string_pretty(&value).expect("config renders")
    }
}

impl Config {
    /// Whether sign-ups must confirm their address by email.
    pub fn email_confirmation(&self) -> bool {
        match self.auth.email_confirmation.as_str() {
            "on" => true,
            "off" => false,
            _ => !self.smtp.host.is_empty(),
        }
    }

    /// The base URL of this server for links in emails.
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.http)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

impl RateLimitConfig {
    /// The groups by name, in a stable order.
    pub fn groups(&self) -> [(&'static str, &RateLimitGroup); 7] {
        [
            ("auth", &self.auth),
            ("rest", &self.rest),
            ("storage", &self.storage),
            ("realtime", &self.realtime),
            ("search", &self.search),
            ("admin", &self.admin),
            ("default", &self.default),
        ]
    }
}

/// Hides the password of a connection URL or key=value string, keeping the rest
/// readable for debugging.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:<redacted>@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => authority.to_owned(),
        };
        let tail = redact_password_params(tail, '&');
        format!("{scheme}://{authority}{tail}")
    } else {
        redact_password_params(url, ' ')
    }
}

fn redact_password_params(text: &str, separator: char) -> String {
    text.split(separator)
        .map(|part| {
            let bare = part.trim_start_matches('?');
            if bare.to_ascii_lowercase().starts_with("password=") {
                format!("{}password=<redacted>", &part[..part.len() - bare.len()])
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

#[cfg(test)]
mod tests;
