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
        if !["off", "service_role", "everyone"].contains(&self.rest.plan.as_str()) {
            return Err(fail(
                "rest.plan",
                format!("`{}` is not off, service_role or everyone", self.rest.plan),
                "use off, service_role (the service_role key only) or everyone",
            ));
        }
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
        self.validate_search(fail)?;
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
