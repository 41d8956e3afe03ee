//! Gathers the configuration's inputs (file, environment, flags) and hands them
//! to `basalt_core::config`, which layers and validates them.

use basalt_core::config::{Config, ConfigError, Loaded, Sources};
use std::path::Path;

pub fn load(
    file: Option<&Path>,
    flags: Vec<(String, String, String)>,
) -> Result<Loaded, ConfigError> {
    let file = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
                setting: "config file".into(),
                origin: format!("--config / BASALT_CONFIG = {}", path.display()),
                problem: format!("it cannot be read: {error}"),
                fix: "pass the path of a readable TOML file, or omit --config".into(),
            })?;
            Some((path.display().to_string(), text))
        }
        None => None,
    };
    let env = std::env::vars()
        .filter(|(name, _)| name.starts_with("BASALT_") || name == "DATABASE_URL")
        .collect();
    let loaded = Config::load(&Sources { file, env, flags })?;
    if let Err(problem) = tracing_subscriber::EnvFilter::try_new(&loaded.config.log.level) {
        return Err(ConfigError {
            setting: "log.level".into(),
            origin: loaded
                .origins
                .get("log.level")
                .cloned()
                .unwrap_or_else(|| "the default".into()),
            problem: format!("`{}` is not a log filter: {problem}", loaded.config.log.level),
            fix: "use a level (error, warn, info, debug, trace) or directives like basalt_server=debug,info".into(),
        });
    }
    let url = loaded.config.database.url.expose();
    if !url.is_empty() {
        if let Err(problem) = crate::db::pool::parse_url(url) {
            return Err(ConfigError {
                setting: "database.url".into(),
                origin: loaded
                    .origins
                    .get("database.url")
                    .cloned()
                    .unwrap_or_else(|| "the default".into()),
                problem: format!("it is not a valid connection string: {problem}"),
                fix:
                    "use postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable|prefer|require"
                        .into(),
            });
        }
    }
    Ok(loaded)
}
