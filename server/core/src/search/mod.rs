//! Search indexes (`/search/v1`), the pure parts: an index's declaration and
//! its checks, a search request parsed from a query string or a JSON body,
//! the PostgreSQL backend's statement ([`pg`]) and the Meilisearch backend's
//! filters and document ids ([`meili`]).

pub mod meili;
pub mod pg;
#[cfg(test)]
mod tests;

use crate::errors::{ErrorCode, Problem};
use crate::filter::{self, Expr};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Backends an index may use.
pub const BACKENDS: &[&str] = &["postgres", "meilisearch"];

/// Searchable columns an index may have (each is one weighted part of the
/// document, and one bound in every statement).
pub const MAX_SEARCHABLE: usize = 32;

/// The longest `q`, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;

/// The most hits a request may page through (`offset + limit`), and the cap
/// of the total a reply counts; Meilisearch's `maxTotalHits` is set to it.
pub const MAX_TOTAL_HITS: u64 = 1000;

/// The largest `limit`.
pub const MAX_LIMIT: u64 = 100;

/// The `limit` when none is given.
pub const DEFAULT_LIMIT: u64 = 20;

/// Distinct values a facet reports (the most frequent first).
pub const MAX_FACET_VALUES: u64 = 100;

/// Meilisearch's built-in ranking rules.
pub const RANKING_RULES: &[&str] = &[
    "words",
    "typo",
    "proximity",
    "attribute",
    "sort",
    "exactness",
];

/// An index as declared through the admin API or in the config file
/// (`[[search.indexes]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    /// `[a-z][a-z0-9_-]*`, at most 40 bytes: also the Meilisearch index uid.
    pub name: String,
    /// `schema.table`, or a table (or view) of `rest.schema`.
    pub table: String,
    /// The columns that identify a row; empty takes the table's primary key
    /// (a view has none, so it must say).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Columns searched, most important first (weights A, B, C, then D).
    pub searchable: Vec<String>,
    /// Weights (`A` to `D`) that replace the order's for some columns.
    #[serde(default)]
    pub weights: BTreeMap<String, String>,
    /// Columns a search may filter on (the data API's operators).
    #[serde(default)]
    pub filterable: Vec<String>,
    #[serde(default)]
    pub sortable: Vec<String>,
    /// Columns whose value counts a search may ask for.
    #[serde(default)]
    pub facets: Vec<String>,
    /// PostgreSQL's text search configuration (`english`, `simple`, `french`, …).
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Words a letter or two off still match (PostgreSQL: `pg_trgm`;
    /// Meilisearch: its typo tolerance, on when this is).
    #[serde(default)]
    pub typo_tolerance: bool,
    /// Accents are folded: `café` matches `cafe` (PostgreSQL: `unaccent`;
    /// Meilisearch always folds).
    #[serde(default)]
    pub unaccent: bool,
    /// Meilisearch's ranking rules; empty keeps its default order.
    #[serde(default)]
    pub ranking_rules: Vec<String>,
}

fn default_language() -> String {
    "english".into()
}

fn default_backend() -> String {
    "postgres".into()
}

impl IndexDef {
    /// `(schema, table)`, with `default_schema` for an unqualified name.
    pub fn table_name<'a>(&'a self, default_schema: &'a str) -> (&'a str, &'a str) {
        self.table
            .split_once('.')
            .unwrap_or((default_schema, self.table.as_str()))
    }

    /// Each searchable column with its weight (`A`…`D`).
    pub fn weighted(&self) -> Vec<(String, char)> {
        self.searchable
            .iter()
            .enumerate()
            .map(|(at, column)| {
                let weight = self
                    .weights
                    .get(column)
                    .and_then(|w| w.chars().next())
                    .unwrap_or(['A', 'B', 'C', 'D'][at.min(3)]);
                (column.clone(), weight)
            })
            .collect()
    }

    pub fn is_meilisearch(&self) -> bool {
        self.backend == "meilisearch"
    }

    /// Every list of columns, by its field's name.
    fn column_lists(&self) -> [(&'static str, &Vec<String>); 5] {
        [
            ("primary_key", &self.primary_key),
            ("searchable", &self.searchable),
            ("filterable", &self.filterable),
            ("sortable", &self.sortable),
            ("facets", &self.facets),
        ]
    }

    /// The checks that need no table: names, lists, backend, language.
    pub fn check(&self) -> Result<(), SearchError> {
        let bad = |field: &str, problem: String| Err(SearchError::index(field, problem));
        if !valid_index_name(&self.name) {
            return bad(
                "name",
                format!(
                    "`{}` is not an index name: use a-z, 0-9, _ and -, starting with a letter, at most 40 bytes",
                    self.name
                ),
            );
        }
        if self.table.is_empty() || self.table.split('.').count() > 2 {
            return bad("table", "name a table as `table` or `schema.table`".into());
        }
        if self.searchable.is_empty() {
            return bad("searchable", "name at least one column to search".into());
        }
        if self.searchable.len() > MAX_SEARCHABLE {
            return bad(
                "searchable",
                format!("at most {MAX_SEARCHABLE} columns may be searchable"),
            );
        }
        for (field, list) in self.column_lists() {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(twice) = list.iter().find(|c| !seen.insert(c.as_str())) {
                return bad(field, format!("`{twice}` is listed twice"));
            }
        }
        for (column, weight) in &self.weights {
            if !self.searchable.contains(column) {
                return bad(
                    "weights",
                    format!("`{column}` has a weight but is not searchable"),
                );
            }
            if !matches!(weight.as_str(), "A" | "B" | "C" | "D") {
                return bad(
                    "weights",
                    format!("`{column}`: weight `{weight}` is not one of A, B, C, D"),
                );
            }
        }
        if !BACKENDS.contains(&self.backend.as_str()) {
            return bad(
                "backend",
                format!("`{}` is not postgres or meilisearch", self.backend),
            );
        }
        let language_ok = !self.language.is_empty()
            && self.language.len() <= 63
            && self
                .language
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_');
        if !language_ok {
            return bad(
                "language",
                format!(
                    "`{}` is not a text search configuration name such as english or simple",
                    self.language
                ),
            );
        }
        if !self.ranking_rules.is_empty() && !self.is_meilisearch() {
            return bad(
                "ranking_rules",
                "ranking rules are Meilisearch's; the postgres backend ranks with ts_rank_cd and the weights".into(),
            );
        }
        for rule in &self.ranking_rules {
            let custom = rule.split_once(':').is_some_and(|(column, order)| {
                self.sortable.iter().any(|c| c == column) && matches!(order, "asc" | "desc")
            });
            if !RANKING_RULES.contains(&rule.as_str()) && !custom {
                return bad(
                    "ranking_rules",
                    format!(
                        "`{rule}` is not one of {} or `<sortable column>:asc|desc`",
                        RANKING_RULES.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    /// The checks against the table's columns (`(name, type)`) and key.
    pub fn check_columns(
        &self,
        columns: &[(String, String)],
        table_key: &[String],
    ) -> Result<(), SearchError> {
        let known = |c: &String| columns.iter().any(|(name, _)| name == c);
        for (field, list) in self.column_lists() {
            if let Some(unknown) = list.iter().find(|c| !known(c)) {
                return Err(SearchError::index(
                    field,
                    format!("`{}` has no column `{unknown}`", self.table),
                ));
            }
        }
        if self.primary_key.is_empty() && table_key.is_empty() {
            return Err(SearchError::index(
                "primary_key",
                format!(
                    "`{}` has no primary key (a view never has one): name the columns that identify a row",
                    self.table
                ),
            ));
        }
        Ok(())
    }

    /// The key columns: the declared ones, else the table's.
    pub fn key(&self, table_key: &[String]) -> Vec<String> {
        if self.primary_key.is_empty() {
            table_key.to_vec()
        } else {
            self.primary_key.clone()
        }
    }
}

pub fn valid_index_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// What is wrong with an index's declaration or with a search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchError {
    /// A declaration's field and its problem.
    Index { field: String, problem: String },
    /// A request's parameter and its problem.
    Request { parameter: String, problem: String },
    /// A filter (the caller's) the grammar refused.
    Filter(filter::FilterError),
    /// An operator (or a policy's) that this backend cannot run.
    Unsupported { what: String, backend: String },
}

impl SearchError {
    pub fn index(field: &str, problem: String) -> Self {
        SearchError::Index {
            field: field.into(),
            problem,
        }
    }
    pub fn request(parameter: &str, problem: impl Into<String>) -> Self {
        SearchError::Request {
            parameter: parameter.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchError::Index { field, problem } => write!(f, "{field}: {problem}"),
            SearchError::Request { parameter, problem } => write!(f, "{parameter}: {problem}"),
            SearchError::Filter(error) => write!(f, "filter: {error}"),
            SearchError::Unsupported { what, backend } => {
                write!(f, "the {backend} backend cannot filter with {what}")
            }
        }
    }
}

impl Problem for SearchError {
    fn code(&self) -> ErrorCode {
        match self {
            SearchError::Index { .. } => ErrorCode::InvalidSearchIndex,
            SearchError::Unsupported { .. } => ErrorCode::SearchFilterUnsupported,
            _ => ErrorCode::InvalidSearch,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            SearchError::Filter(error) => error.hint(),
            SearchError::Unsupported { .. } => Some(
                "Use eq, neq, gt, gte, lt, lte, in and is (and not, and, or) with this backend."
                    .into(),
            ),
            SearchError::Index { .. } => Some("See docs/search.md for an index's fields.".into()),
            SearchError::Request { .. } => {
                Some("See docs/search.md for the query parameters.".into())
            }
        }
    }
}

impl From<filter::FilterError> for SearchError {
    fn from(error: filter::FilterError) -> Self {
        SearchError::Filter(error)
    }
}

/// One search request, parsed and checked against its index.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub q: String,
    /// The caller's filters, all of which must hold.
    pub filter: Option<Expr>,
    /// `(column, descending)`, after the rank unless a column comes first.
    pub sort: Vec<(String, bool)>,
    pub limit: u64,
    pub offset: u64,
    pub facets: Vec<String>,
    /// Columns returned with the query's words marked.
    pub highlight: Vec<String>,
    pub pre_tag: String,
    pub post_tag: String,
    /// Columns returned; `None`: every column the caller may read.
    pub select: Option<Vec<String>>,
    /// Searchable columns to search; `None`: every one the caller may read.
    pub on: Option<Vec<String>>,
    /// The last word matches as a prefix (search as you type), unless `q`
    /// ends with a space or a quote.
    pub prefix: bool,
}

/// Parameters a search takes; every other query parameter is a filter.
const PARAMETERS: &[&str] = &[
    "q",
    "filter",
    "sort",
    "limit",
    "offset",
    "facets",
    "highlight",
    "highlight_pre_tag",
    "highlight_post_tag",
    "select",
    "on",
    "prefix",
];

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl SearchQuery {
    /// From a `GET`'s query pairs: the parameters above, and filters in the
    /// data API's form (`status=eq.published`, `or=(…)`).
    pub fn from_pairs(pairs: &[(String, String)], index: &IndexDef) -> Result<Self, SearchError> {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        let mut filters = Vec::new();
        for (key, value) in pairs {
            if let Some(known) = PARAMETERS.iter().find(|p| **p == key) {
                if fields.insert(known, value).is_some() {
                    return Err(SearchError::request(key, "is given twice"));
                }
            } else {
                filters.push(filter::parse_param(key, value)?);
            }
        }
        Self::build(&fields, filters, index)
    }

    /// From a `POST`'s JSON body: the same names, lists as arrays or
    /// comma-separated text, `filter` as a condition (`a=eq.1&b=lt.2`).
    pub fn from_json(body: &Value, index: &IndexDef) -> Result<Self, SearchError> {
        let Some(object) = body.as_object() else {
            return Err(SearchError::request("body", "send a JSON object"));
        };
        let mut texts: BTreeMap<&str, String> = BTreeMap::new();
        for (key, value) in object {
            let Some(known) = PARAMETERS.iter().find(|p| **p == key) else {
                return Err(SearchError::request(
                    key,
                    format!("is not a search parameter (use {})", PARAMETERS.join(", ")),
                ));
            };
            let text = match value {
                Value::Null => continue,
                Value::String(text) => text.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) if !text.contains(',') => Ok(text.clone()),
                        _ => Err(SearchError::request(key, "list names without commas")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                Value::Object(_) => {
                    return Err(SearchError::request(key, "takes text, a number or a list"))
                }
            };
            texts.insert(known, text);
        }
        let fields = texts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Self::build(&fields, Vec::new(), index)
    }

    fn build(
        fields: &BTreeMap<&str, &str>,
        mut filters: Vec<Expr>,
        index: &IndexDef,
    ) -> Result<Self, SearchError> {
        let q = fields.get("q").copied().unwrap_or_default();
        if q.len() > MAX_QUERY_BYTES {
            return Err(SearchError::request(
                "q",
                format!(
                    "is {} bytes; at most {MAX_QUERY_BYTES} are searched",
                    q.len()
                ),
            ));
        }
        if let Some((key, _)) = fields.iter().find(|(_, v)| v.contains('\0')) {
            return Err(SearchError::request(key, "contains a NUL character"));
        }
        if let Some(condition) = fields.get("filter").filter(|c| !c.trim().is_empty()) {
            filters.push(filter::parse_condition(condition)?);
        }
        let number = |name: &str, default: u64| -> Result<u64, SearchError> {
            fields.get(name).map_or(Ok(default), |text| {
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| SearchError::request(name, "takes a whole number"))
            })
        };
        let limit = number("limit", DEFAULT_LIMIT)?;
        let offset = number("offset", 0)?;
        if limit > MAX_LIMIT {
            return Err(SearchError::request(
                "limit",
                format!("at most {MAX_LIMIT}"),
            ));
        }
        if offset + limit > MAX_TOTAL_HITS {
            return Err(SearchError::request(
                "offset",
                format!("offset + limit may reach {MAX_TOTAL_HITS} hits at most: narrow the search instead"),
            ));
        }
        let sort = fields
            .get("sort")
            .map(|text| {
                list(text)
                    .into_iter()
                    .map(|item| {
                        let (column, order) = item.split_once(':').unwrap_or((&item, "asc"));
                        let descending = match order {
                            "asc" => false,
                            "desc" => true,
                            _ => {
                                return Err(SearchError::request(
                                    "sort",
                                    format!("`{item}`: write column:asc or column:desc"),
                                ))
                            }
                        };
                        if !index.sortable.iter().any(|c| c == column) {
                            return Err(SearchError::request(
                                "sort",
                                format!("`{column}` is not a sortable column of this index"),
                            ));
                        }
                        Ok((column.to_owned(), descending))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let declared =
            |name: &str, allowed: &[String], what: &str| -> Result<Vec<String>, SearchError> {
                let items = fields.get(name).map(|t| list(t)).unwrap_or_default();
                if let Some(other) = items.iter().find(|c| !allowed.contains(c)) {
                    return Err(SearchError::request(
                        name,
                        format!("`{other}` is not {what} of this index"),
                    ));
                }
                Ok(items)
            };
        let facets = declared("facets", &index.facets, "a facet")?;
        let highlight = declared("highlight", &index.searchable, "a searchable column")?;
        let on = fields
            .get("on")
            .map(|_| declared("on", &index.searchable, "a searchable column"))
            .transpose()?;
        if on.as_ref().is_some_and(Vec::is_empty) {
            return Err(SearchError::request("on", "name at least one column"));
        }
        let select = fields
            .get("select")
            .map(|t| list(t))
            .filter(|s| !(s.len() == 1 && s[0] == "*"));
        let tag = |name: &str, default: &str| -> Result<String, SearchError> {
            let tag = fields.get(name).copied().unwrap_or(default);
            if tag.len() > 64 || tag.contains(['"', ',', '=']) {
                return Err(SearchError::request(
                    name,
                    "at most 64 bytes, without `\"`, `,` or `=`",
                ));
            }
            Ok(tag.to_owned())
        };
        let prefix = match fields.get("prefix").copied() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(SearchError::request("prefix", "takes true or false")),
        };
        for expr in &filters {
            crate::filter::sql::check_literals(expr)?;
        }
        let filter = match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(Expr::And(filters)),
        };
        if let Some(expr) = &filter {
            if let Some(column) = columns_of(expr)
                .into_iter()
                .find(|c| !index.filterable.contains(c))
            {
                return Err(SearchError::request(
                    "filter",
                    format!("`{column}` is not a filterable column of this index"),
                ));
            }
        }
        Ok(SearchQuery {
            q: q.to_owned(),
            filter,
            sort,
            limit,
            offset,
            facets,
            highlight,
            pre_tag: tag("highlight_pre_tag", "<mark>")?,
            post_tag: tag("highlight_post_tag", "</mark>")?,
            select,
            on,
            prefix,
        })
    }

    /// Whether `q` is plain words: no phrase, `or` or `-word`, whose
    /// meaning a near match (typo tolerance) would loosen.
    pub fn plain(&self) -> bool {
        !self.q.contains('"')
            && !self
                .q
                .split_whitespace()
                .any(|word| word.starts_with('-') || word.eq_ignore_ascii_case("or"))
    }

    /// Whether the last word is searched as a prefix.
    pub fn prefix_search(&self) -> bool {
        self.prefix && !self.q.trim().is_empty() && !self.q.ends_with([' ', '"', '\t', '\n'])
    }
}

/// The columns an expression names.
pub fn columns_of(expr: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(expr: &Expr, out: &mut Vec<String>) {
        match expr {
            Expr::Filter(filter) => {
                if !out.contains(&filter.column) {
                    out.push(filter.column.clone())
                }
            }
            Expr::Not(inner) => walk(inner, out),
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|i| walk(i, out)),
        }
    }
    walk(expr, &mut out);
    out
}

/// The columns one search touches, for the policy decision: what it
/// returns, searches, filters on, sorts by, counts and marks.
pub fn touched_columns(
    query: &SearchQuery,
    returned: &[String],
    searched: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |c: &String| {
        if !out.contains(c) {
            out.push(c.clone())
        }
    };
    returned.iter().for_each(&mut add);
    searched.iter().for_each(&mut add);
    if let Some(filter) = &query.filter {
        columns_of(filter).iter().for_each(&mut add);
    }
    query.sort.iter().for_each(|(c, _)| add(c));
    query.facets.iter().for_each(&mut add);
    query.highlight.iter().for_each(&mut add);
    out
}
