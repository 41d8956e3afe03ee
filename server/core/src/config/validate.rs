//! Validation: every rule the types cannot express, naming the setting,
//! where its value came from, the problem and the fix.

use super::*;

impl Config {
    /// Checks every rule that types cannot express.
    pub(super) fn validate(&self, origins: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let fail =
            |setting: &str, problem: String, fix: &str| failure(origins, setting, problem, fix);
        self.validate_basics(&fail)?;
        self.validate_database(&fail)?;
        self.validate_auth(&fail)?;
        self.validate_declarations(origins)?;
        self.validate_smtp(&fail)?;
        self.validate_rest_and_realtime(&fail)?;
        self.validate_jobs(&fail)?;
        self.validate_server(&fail)?;
        Ok(())
    }

    /// The rules of the listen address, the data directory and the log.
    fn validate_basics<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        if self.http.parse::<std::net::SocketAddr>().is_err() {
            return Err(fail(
                "http",
                format!("`{}` is not an IP address with a port", self.http),
                "use IP:PORT, for example 127.0.0.1:8000 or 0.0.0.0:8000",
            ));
        }
        if self.data_dir.trim().is_empty() {
            return Err(fail(
                "data_dir",
                "it is empty".into(),
                "name a directory Basalt may create and write, for example ./basalt-data",
            ));
        }
        if !["auto", "json", "pretty"].contains(&self.log.format.as_str()) {
            return Err(fail(
                "log.format",
                format!("`{}` is not a log format", self.log.format),
                "use auto, json or pretty",
            ));
        }
        if self.log.level.trim().is_empty() {
            return Err(fail(
                "log.level",
                "it is empty".into(),
                "use a level such as info or debug",
            ));
        }
        Ok(())
    }

    /// The rules of the database and the embedded cluster.
    fn validate_database<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let url = self.database.url.expose();
        let url_shaped = url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains('=');
        if !url_shaped {
            return Err(fail(
                "database.url",
                "it is neither a postgres:// URL nor a key=value connection string".into(),
                "use postgres://USER:PASSWORD@HOST:PORT/DATABASE, or leave it empty for the embedded PostgreSQL",
            ));
        }
        range(
            fail,
            "database.pool_size",
            self.database.pool_size.into(),
            1,
            1000,
        )?;
        range(
            fail,
            "database.api_pool_size",
            self.database.api_pool_size.into(),
            1,
            1000,
        )?;
        range(
            fail,
            "database.pool_wait_timeout_ms",
            self.database.pool_wait_timeout_ms,
            1,
            600_000,
        )?;
        range(
            fail,
            "database.connect_timeout_ms",
            self.database.connect_timeout_ms,
            100,
            600_000,
        )?;
        range(
            fail,
            "database.startup_timeout_ms",
            self.database.startup_timeout_ms,
            0,
            3_600_000,
        )?;
        if !["fast", "verified", "clean"].contains(&self.database.recycling.as_str()) {
            return Err(fail(
                "database.recycling",
                format!("`{}` is not a recycling method", self.database.recycling),
                "use fast, verified or clean",
            ));
        }
        if self.embedded.os_user.trim().is_empty() {
            return Err(fail(
                "embedded.os_user",
                "it is empty".into(),
                "name an unprivileged system user, such as postgres",
            ));
        }
        Ok(())
    }

    /// The rules of the JWT secret, auth and the site and public URLs.
    fn validate_auth<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let secret = self.jwt.secret.expose();
        if !secret.is_empty() && secret.len() < 32 {
            return Err(fail(
                "jwt.secret",
                format!("it is {} bytes long; HS256 needs at least 32", secret.len()),
                "generate one with `openssl rand -hex 32`, or leave it empty to have Basalt generate and keep one in the data directory",
            ));
        }
        let auth = &self.auth;
        range(
            fail,
            "auth.access_token_ttl_secs",
            auth.access_token_ttl_secs,
            30,
            7 * 86_400,
        )?;
        range(
            fail,
            "auth.refresh_reuse_grace_secs",
            auth.refresh_reuse_grace_secs,
            0,
            300,
        )?;
        range(
            fail,
            "auth.session_inactivity_timeout_secs",
            auth.session_inactivity_timeout_secs,
            0,
            10 * 365 * 86_400,
        )?;
        range(
            fail,
            "auth.session_max_lifetime_secs",
            auth.session_max_lifetime_secs,
            0,
            10 * 365 * 86_400,
        )?;
        range(fail, "auth.clock_skew_secs", auth.clock_skew_secs, 0, 300)?;
        range(
            fail,
            "auth.password_min_length",
            auth.password_min_length,
            6,
            1024,
        )?;
        range(
            fail,
            "auth.password_max_length",
            auth.password_max_length,
            auth.password_min_length,
            4096,
        )?;
        for class in &auth.password_required_classes {
            if !["lower", "upper", "digit", "symbol"].contains(&class.as_str()) {
                return Err(fail(
                    "auth.password_required_classes",
                    format!("`{class}` is not a character class"),
                    "list any of lower, upper, digit, symbol",
                ));
            }
        }
        range(
            fail,
            "auth.password_min_score",
            auth.password_min_score,
            0,
            4,
        )?;
        range(
            fail,
            "auth.argon2_memory_kib",
            auth.argon2_memory_kib,
            8 * auth.argon2_parallelism.max(1),
            4 * 1024 * 1024,
        )?;
        range(
            fail,
            "auth.argon2_iterations",
            auth.argon2_iterations,
            1,
            100,
        )?;
        range(
            fail,
            "auth.argon2_parallelism",
            auth.argon2_parallelism,
            1,
            64,
        )?;
        if !["auto", "on", "off"].contains(&auth.email_confirmation.as_str()) {
            return Err(fail(
                "auth.email_confirmation",
                format!("`{}` is not auto, on or off", auth.email_confirmation),
                "use auto (on when smtp.host is set), on or off",
            ));
        }
        if auth.email_confirmation == "on" && self.smtp.host.is_empty() {
            return Err(fail(
                "auth.email_confirmation",
                "it is on but no SMTP server is configured".into(),
                "set smtp.host (BASALT_SMTP_HOST), or use auto",
            ));
        }
        range(
            fail,
            "auth.email_token_ttl_secs",
            auth.email_token_ttl_secs,
            60,
            7 * 86_400,
        )?;
        for entry in &auth.redirect_allow_list {
            if !entry.contains("://") || entry.contains(char::is_whitespace) {
                return Err(fail(
                    "auth.redirect_allow_list",
                    format!("`{entry}` is not a URL"),
                    "list URLs such as https://app.example.com/welcome or myapp://callback/*",
                ));
            }
        }
        for (setting, url) in [
            ("site_url", &self.site_url),
            ("public_url", &self.public_url),
        ] {
            let ok = (url.is_empty() && setting == "public_url")
                || ((url.starts_with("http://") || url.starts_with("https://"))
                    && !url.contains(char::is_whitespace));
            if !ok {
                return Err(fail(
                    setting,
                    format!("`{url}` is not an http(s) URL"),
                    "use a URL such as https://app.example.com",
                ));
            }
        }
        Ok(())
    }

    /// The rules of SMTP.
    fn validate_smtp<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let smtp = &self.smtp;
        if !["starttls", "tls", "none"].contains(&smtp.tls.as_str()) {
            return Err(fail(
                "smtp.tls",
                format!("`{}` is not starttls, tls or none", smtp.tls),
                "use starttls (port 587), tls (port 465) or none (local relays only)",
            ));
        }
        range(fail, "smtp.port", smtp.port, 1, 65_535)?;
        range(fail, "smtp.timeout_secs", smtp.timeout_secs, 1, 600)?;
        if !smtp.host.is_empty() && !smtp.sender.contains('@') {
            return Err(fail(
                "smtp.sender",
                format!("`{}` is not an email address", smtp.sender),
                "use an address such as `Acme <no-reply@acme.test>`",
            ));
        }
        Ok(())
    }

    /// The rules of the data API, realtime and storage.
    fn validate_rest_and_realtime<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        range(fail, "rest.max_rows", self.rest.max_rows, 1, 1_000_000)?;
        range(
            fail,
            "rest.default_limit",
            self.rest.default_limit,
            1,
            1_000_000,
        )?;
        range(
            fail,
            "rest.idempotency_ttl_secs",
            self.rest.idempotency_ttl_secs,
            60,
            30 * 86_400,
        )?;
        range(
            fail,
            "rest.batch_max_operations",
            self.rest.batch_max_operations,
            1,
            10_000,
        )?;
        for (setting, schema) in std::iter::once(("rest.schema", &self.rest.schema)).chain(
            self.rest
                .extra_schemas
                .iter()
                .map(|schema| ("rest.extra_schemas", schema)),
        ) {
            if schema.is_empty() || schema.len() > 63 || schema.contains(['"', '\0', ',']) {
                return Err(fail(
                    setting,
                    format!("`{schema}` is not a schema name"),
                    "use a schema such as public",
                ));
            }
        }
        range(
            fail,
            "realtime.retention_secs",
            self.realtime.retention_secs,
            60,
            90 * 86_400,
        )?;
        range(
            fail,
            "realtime.max_connections",
            self.realtime.max_connections,
            1,
            1_000_000,
        )?;
        range(
            fail,
            "realtime.max_channels_per_connection",
            self.realtime.max_channels_per_connection,
            1,
            10_000,
        )?;
        range(
            fail,
            "realtime.max_message_bytes",
            self.realtime.max_message_bytes,
            256,
            16 * 1024 * 1024,
        )?;
        range(
            fail,
            "realtime.send_buffer",
            self.realtime.send_buffer,
            1,
            1_000_000,
        )?;
        self.validate_storage(fail)?;
        for table in &self.realtime.tables {
            let ok = !table.is_empty()
                && table.split('.').count() <= 2
                && !table.contains(['"', '\0', ',']);
            if !ok {
                return Err(fail(
                    "realtime.tables",
                    format!("`{table}` is not a table name"),
                    "write tables as posts or public.posts",
                ));
            }
        }
        Ok(())
    }

    /// The rules of the job queue and the per-address auth rate.
    fn validate_jobs<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        range(
            fail,
            "jobs.poll_interval_ms",
            self.jobs.poll_interval_ms,
            10,
            600_000,
        )?;
        range(fail, "jobs.max_attempts", self.jobs.max_attempts, 1, 1000)?;
        range(
            fail,
            "jobs.retry_base_ms",
            self.jobs.retry_base_ms,
            10,
            86_400_000,
        )?;
        range(
            fail,
            "jobs.retry_max_ms",
            self.jobs.retry_max_ms,
            self.jobs.retry_base_ms,
            86_400_000,
        )?;
        if let Err(problem) = RateSpec::parse(&self.rate_limit.auth_per_email) {
            return Err(fail(
                "rate_limit.auth_per_email",
                problem,
                "write `<count>/<period>` such as 5/1h, or `off`",
            ));
        }
        Ok(())
    }

    /// The rules of the HTTP server, proxies, CORS, security headers and rate limits.
    fn validate_server<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let server = &self.server;
        range(
            fail,
            "server.body_limit_bytes",
            server.body_limit_bytes,
            1024,
            1 << 40,
        )?;
        range(
            fail,
            "server.request_timeout_ms",
            server.request_timeout_ms,
            100,
            86_400_000,
        )?;
        range(
            fail,
            "server.header_read_timeout_ms",
            server.header_read_timeout_ms,
            100,
            600_000,
        )?;
        range(
            fail,
            "server.keep_alive_secs",
            server.keep_alive_secs,
            0,
            3600,
        )?;
        range(
            fail,
            "server.max_connections_per_worker",
            server.max_connections_per_worker,
            1,
            1_000_000,
        )?;
        range(fail, "server.workers", server.workers, 0, 1024)?;
        range(
            fail,
            "server.shutdown_timeout_ms",
            server.shutdown_timeout_ms,
            0,
            3_600_000,
        )?;
        range(
            fail,
            "server.shutdown_drain_ms",
            server.shutdown_drain_ms,
            0,
            3_600_000,
        )?;
        if let Err(entry) = self.trusted_proxies() {
            return Err(fail(
                "server.trusted_proxies",
                format!("`{entry}` is neither an IP address nor a CIDR network"),
                "list addresses or networks such as 10.0.0.0/8, 127.0.0.1",
            ));
        }
        for origin in &self.cors.allowed_origins {
            if origin != "*" && !is_origin(origin) {
                return Err(fail(
                    "cors.allowed_origins",
                    format!("`{origin}` is not an origin"),
                    "list origins as scheme://host[:port] without a path, for example https://app.example.com, or * for any",
                ));
            }
        }
        if !["DENY", "SAMEORIGIN"].contains(&self.security.frame_options.as_str()) {
            return Err(fail(
                "security.frame_options",
                format!(
                    "`{}` is not DENY or SAMEORIGIN",
                    self.security.frame_options
                ),
                "use DENY (no framing) or SAMEORIGIN",
            ));
        }
        for (group, limits) in self.rate_limit.groups() {
            for (which, text) in [("per_ip", &limits.per_ip), ("per_key", &limits.per_key)] {
                if let Err(problem) = RateSpec::parse(text) {
                    return Err(fail(
                        &format!("rate_limit.{group}.{which}"),
                        problem,
                        "write `<count>/<period>` such as 100/1s, 600/1m or 5000/1h, or `off`",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    pub(super) fn validate_storage<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let storage = &self.storage;
        match storage.backend.as_str() {
            "local" => {}
            "s3" => {
                for (setting, value) in [
                    ("s3.bucket", &self.s3.bucket),
                    ("s3.region", &self.s3.region),
                    ("s3.access_key_id", &self.s3.access_key_id),
                    ("s3.secret_access_key", &self.s3.secret_access_key.0),
                ] {
                    if value.is_empty() {
                        return Err(fail(
                            setting,
                            "it is empty while storage.backend is s3".into(),
                            &format!("set {setting} ({})", env_name(setting)),
                        ));
                    }
                }
                if !self.s3.endpoint.is_empty() && !is_origin(&self.s3.endpoint) {
                    return Err(fail(
                        "s3.endpoint",
                        format!("`{}` is not an http(s) origin", self.s3.endpoint),
                        "use a URL such as http://127.0.0.1:9000, without a path",
                    ));
                }
            }
            other => {
                return Err(fail(
                    "storage.backend",
                    format!("`{other}` is not a storage backend"),
                    "use local or s3",
                ))
            }
        }
        range(
            fail,
            "storage.max_file_size_bytes",
            storage.max_file_size_bytes,
            1,
            5 * 1024 * 1024 * 1024 * 1024,
        )?;
        range(
            fail,
            "storage.signed_url_max_expiry_secs",
            storage.signed_url_max_expiry_secs,
            1,
            365 * 86_400,
        )?;
        range(
            fail,
            "storage.resumable_ttl_secs",
            storage.resumable_ttl_secs,
            60,
            30 * 86_400,
        )?;
        range(
            fail,
            "storage.orphan_grace_secs",
            storage.orphan_grace_secs,
            1,
            30 * 86_400,
        )?;
        range(
            fail,
            "storage.cleanup_interval_secs",
            storage.cleanup_interval_secs,
            1,
            86_400,
        )?;
        range(
            fail,
            "storage.transfer_timeout_secs",
            storage.transfer_timeout_secs,
            1,
            7 * 86_400,
        )?;
        // S3 refuses multipart parts under 5 MiB (except the last) and over 5 GiB.
        range(
            fail,
            "s3.part_size_bytes",
            self.s3.part_size_bytes,
            5 * 1024 * 1024,
            5 * 1024 * 1024 * 1024,
        )?;
        for bucket in &storage.buckets {
            if let Err(problem) = crate::storage::check_bucket_id(&bucket.name) {
                return Err(fail(
                    "storage.buckets",
                    format!("bucket `{}`: {problem}", bucket.name),
                    "use 1-63 lowercase letters, digits, `.`, `_` or `-`",
                ));
            }
            for pattern in &bucket.allowed_mime_types {
                if !crate::storage::valid_mime_pattern(pattern) {
                    return Err(fail(
                        "storage.buckets",
                        format!("bucket `{}`: `{pattern}` is not a MIME type", bucket.name),
                        "write types as image/png, image/* or */*",
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn validate_declarations(
        &self,
        origins: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        use crate::policy::{policy_problem, valid_role_name, BUILTIN_ROLES};
        let fail =
            |setting: &str, problem: String, fix: &str| failure(origins, setting, problem, fix);
        for (setting, role) in [
            ("authz.db_role_anon", &self.authz.db_role_anon),
            (
                "authz.db_role_authenticated",
                &self.authz.db_role_authenticated,
            ),
            ("authz.db_role_service", &self.authz.db_role_service),
            ("database.api_role", &self.database.api_role),
        ] {
            let plain = !role.is_empty()
                && role.len() <= 63
                && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain {
                return Err(fail(
                    setting,
                    format!("`{role}` is not a database role name"),
                    "use a role such as anon or authenticated",
                ));
            }
        }
        let api_roles = [
            &self.authz.db_role_anon,
            &self.authz.db_role_authenticated,
            &self.authz.db_role_service,
        ];
        if api_roles.contains(&&self.database.api_role) {
            return Err(fail(
                "database.api_role",
                format!(
                    "`{}` is also one of the roles it switches to",
                    self.database.api_role
                ),
                "use a login role of its own, such as authenticator",
            ));
        }
        let declared: Vec<&str> = self.authz.roles.iter().map(|r| r.name.as_str()).collect();
        let known = |name: &str| BUILTIN_ROLES.contains(&name) || declared.contains(&name);
        for (index, role) in self.authz.roles.iter().enumerate() {
            if !valid_role_name(&role.name) || BUILTIN_ROLES.contains(&role.name.as_str()) {
                return Err(fail(
                    "authz.roles",
                    format!("entry {} has the name `{}`", index + 1, role.name),
                    "use a-z, 0-9 and _, starting with a letter, and not anon, authenticated or service_role",
                ));
            }
            if declared.iter().filter(|name| **name == role.name).count() > 1 {
                return Err(fail(
                    "authz.roles",
                    format!("`{}` is declared twice", role.name),
                    "declare each role once",
                ));
            }
            if let Some(parent) = role
                .parents
                .iter()
                .find(|p| !known(p) || *p == &role.name || *p == "service_role")
            {
                return Err(fail(
                    "authz.roles",
                    format!(
                        "`{}` inherits from `{parent}`, which is not a built-in or declared role",
                        role.name
                    ),
                    "declare the parent role too, or remove it",
                ));
            }
        }
        for (index, policy) in self.authz.policies.iter().enumerate() {
            if let Some((field, problem)) = policy_problem(
                &policy.subject,
                &policy.object,
                &policy.action,
                policy.condition.as_deref(),
                policy.columns.as_deref(),
            ) {
                return Err(fail(
                    "authz.policies",
                    format!("entry {}: {field}: {problem}", index + 1),
                    "fix that field of the [[authz.policies]] entry",
                ));
            }
            if !policy.subject.starts_with("user:") && !known(&policy.subject) {
                return Err(fail(
                    "authz.policies",
                    format!(
                        "entry {}: the subject `{}` is not a built-in or declared role",
                        index + 1,
                        policy.subject
                    ),
                    "declare it with [[authz.roles]]",
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn failure(
    origins: &BTreeMap<String, String>,
    setting: &str,
    problem: String,
    fix: &str,
) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        origin: origins
            .get(setting)
            .cloned()
            .unwrap_or_else(|| "the default".into()),
        problem,
        fix: fix.into(),
    }
}

pub(super) fn range<F>(
    fail: &F,
    setting: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), ConfigError>
where
    F: Fn(&str, String, &str) -> ConfigError,
{
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(fail(
            setting,
            format!("{value} is outside the allowed range {min}..={max}"),
            &format!("choose a value from {min} to {max}"),
        ))
    }
}

pub(super) fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' ', '@'])
}
