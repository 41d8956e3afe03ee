//! Loading: the layering of defaults < config file < `BASALT_*`
//! environment < command-line flags, with every value's origin, then the
//! validation (`validate.rs`).

use super::*;

/// Everything the layering reads, gathered by the caller.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The config file's display path and its text.
    pub file: Option<(String, String)>,
    /// The process environment (only `BASALT_*` and `DATABASE_URL` are read).
    pub env: BTreeMap<String, String>,
    /// Flags given on the command line: (setting path, flag name, value).
    pub flags: Vec<(String, String, String)>,
}

/// One setting as documented: its path, environment name and default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    pub path: String,
    pub env: String,
    pub default: String,
}

/// The environment variable name of a setting path.
pub fn env_name(path: &str) -> String {
    format!("BASALT_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Every setting with its environment name and default, in file order.
pub fn settings() -> Vec<SettingDoc> {
    leaves(&defaults_table())
        .into_iter()
        .filter(|(path, _)| !DECLARATIONS.contains(&path.as_str()))
        .map(|(path, value)| SettingDoc {
            env: env_name(&path),
            default: render_value(&value),
            path,
        })
        .collect()
}

/// What layering produced: the config and warnings worth logging.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Where each setting that is not a default came from.
    pub origins: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Layers defaults < file < environment < flags, then validates.
    pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
        let defaults = defaults_table();
        let known: BTreeMap<String, toml::Value> = leaves(&defaults).into_iter().collect();
        let mut merged = known.clone();
        let mut origins = BTreeMap::new();
        let mut warnings = Vec::new();

        if let Some((path, text)) = &sources.file {
            let origin = format!("config file {path}");
            let table: toml::Table =
                text.parse().map_err(|error: toml::de::Error| ConfigError {
                    setting: "config file".into(),
                    origin: origin.clone(),
                    problem: format!("it is not valid TOML: {}", error.message()),
                    fix: format!(
                        "correct the TOML syntax{}",
                        error
                            .span()
                            .map(|span| format!(" near line {}", line_of(text, span.start)))
                            .unwrap_or_default()
                    ),
                })?;
            for (key, value) in leaves(&table) {
                let Some(default) = known.get(&key) else {
                    return Err(unknown_setting(&key, &origin, &known));
                };
                let value = if DECLARATIONS.contains(&key.as_str()) {
                    declarations(&key, value, &origin)?
                } else {
                    coerce_file_value(&key, value, default, &origin)?
                };
                merged.insert(key.clone(), value);
                origins.insert(key, origin.clone());
            }
        }

        for key in known
            .keys()
            .filter(|key| !DECLARATIONS.contains(&key.as_str()))
        {
            let name = env_name(key);
            let (name, raw) = match sources.env.get(&name) {
                Some(raw) => (name, raw),
                None if key == "database.url" => match sources.env.get("DATABASE_URL") {
                    Some(raw) => ("DATABASE_URL".to_owned(), raw),
                    None => continue,
                },
                None => continue,
            };
            let origin = format!("environment variable {name}");
            merged.insert(key.clone(), parse_text(key, raw, &known[key], &origin)?);
            origins.insert(key.clone(), origin);
        }
        let recognised: Vec<String> = known.keys().map(|key| env_name(key)).collect();
        for name in sources.env.keys() {
            if name.starts_with("BASALT_") && name != "BASALT_CONFIG" && !recognised.contains(name)
            {
                warnings.push(format!(
                    "environment variable {name} is not a Basalt setting and was ignored{}",
                    suggestion(name, recognised.iter().map(String::as_str))
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default()
                ));
            }
        }

        for (key, flag, raw) in &sources.flags {
            let origin = format!("flag {flag}");
            let Some(default) = known.get(key) else {
                return Err(unknown_setting(key, &origin, &known));
            };
            merged.insert(key.clone(), parse_text(key, raw, default, &origin)?);
            origins.insert(key.clone(), origin);
        }

        let table = nest(merged);
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|error: toml::de::Error| ConfigError {
                    setting: "configuration".into(),
                    origin: "the merged layers".into(),
                    problem: error.message().to_owned(),
                    fix: "check the types of the settings in docs/configuration.md".into(),
                })?;
        config.validate(&origins)?;
        Ok(Loaded {
            config,
            origins,
            warnings,
        })
    }
}

pub(super) fn defaults_table() -> toml::Table {
    match toml::Value::try_from(Config::default()).expect("defaults serialize") {
        toml::Value::Table(table) => table,
        _ => unreachable!("a struct serializes to a table"),
    }
}

/// Flattens a table to (dotted path, leaf value) pairs in order.
pub(super) fn leaves(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                for (path, leaf) in leaves(inner) {
                    out.push((format!("{key}.{path}"), leaf));
                }
            }
            leaf => out.push((key.clone(), leaf.clone())),
        }
    }
    out
}

/// Rebuilds nested tables from dotted paths.
pub(super) fn nest(flat: BTreeMap<String, toml::Value>) -> toml::Table {
    let mut root = toml::Table::new();
    for (path, value) in flat {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("paths are not empty");
        let mut table = &mut root;
        for part in parts {
            table = table
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("sections are tables");
        }
        table.insert(last.to_owned(), value);
    }
    root
}

pub(super) fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Array(_) => "a list of strings",
        toml::Value::Float(_) => "a number",
        _ => "a table",
    }
}

pub(super) fn declarations(
    key: &str,
    value: toml::Value,
    origin: &str,
) -> Result<toml::Value, ConfigError> {
    match &value {
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => Ok(value),
        _ => Err(ConfigError {
            setting: key.into(),
            origin: origin.into(),
            problem: "it must be a list of tables".into(),
            fix: format!("declare each entry as [[{key}]] with its fields"),
        }),
    }
}

pub(super) fn coerce_file_value(
    key: &str,
    value: toml::Value,
    default: &toml::Value,
    origin: &str,
) -> Result<toml::Value, ConfigError> {
    let wrong = || ConfigError {
        setting: key.into(),
        origin: origin.into(),
        problem: format!(
            "it is {}, but must be {}",
            type_name(&value),
            type_name(default)
        ),
        fix: format!("write {} for `{key}`", type_name(default)),
    };
    match (default, &value) {
        (toml::Value::Integer(_), toml::Value::Integer(n)) if *n < 0 => Err(ConfigError {
            problem: format!("{n} is negative"),
            fix: "use zero or a positive whole number".into(),
            ..wrong()
        }),
        (toml::Value::Array(_), toml::Value::Array(items))
            if items.iter().all(toml::Value::is_str) =>
        {
            Ok(value)
        }
        (toml::Value::Array(_), _) => Err(wrong()),
        (expected, actual) if type_name(expected) == type_name(actual) => Ok(value),
        _ => Err(wrong()),
    }
}

/// Parses an environment variable or flag according to the setting's type.
pub(super) fn parse_text(
    key: &str,
    raw: &str,
    default: &toml::Value,
    origin: &str,
) -> Result<toml::Value, ConfigError> {
    let fail = |problem: String, fix: &str| ConfigError {
        setting: key.into(),
        origin: origin.into(),
        problem,
        fix: fix.into(),
    };
    Ok(match default {
        toml::Value::Integer(_) => {
            let number: u64 = raw.trim().parse().map_err(|_| {
                fail(
                    format!("`{raw}` is not a whole number"),
                    "use digits only, for example 5000",
                )
            })?;
            let number = i64::try_from(number)
                .map_err(|_| fail(format!("{number} is too large"), "use a smaller number"))?;
            toml::Value::Integer(number)
        }
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => {
                return Err(fail(
                    format!("`{raw}` is not true or false"),
                    "use true or false",
                ))
            }
        },
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_owned()),
    })
}

pub(super) fn render_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("\"{text}\""),
        toml::Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(render_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

pub(super) fn unknown_setting(
    key: &str,
    origin: &str,
    known: &BTreeMap<String, toml::Value>,
) -> ConfigError {
    ConfigError {
        setting: key.into(),
        origin: origin.into(),
        problem: "there is no such setting".into(),
        fix: match suggestion(key, known.keys().map(String::as_str)) {
            Some(close) => {
                format!("did you mean `{close}`? All settings are in docs/configuration.md")
            }
            None => "remove it; all settings are listed in docs/configuration.md".into(),
        },
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The known name closest to `name`, if it is close enough to be a typo.
pub fn suggestion<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}
