//! Parsing a read's query string: `select=` (columns, renames, casts, JSON
//! paths, embedded resources), `order=`, `limit=`, `offset=`, every other
//! parameter as a filter in the PostgREST grammar, and `<embed>.<param>` for
//! the same on an embedded resource.

use super::error::QueryError;
use crate::filter::parse::{closing_quote, split_top_level, unquote_column};
use crate::filter::{parse_param, Expr, FilterError};

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`: every column.
    Star,
    Field(Field),
    Embed(Embed),
}

/// `[alias:]column[->key…][::type]`, or an aggregate of it:
/// `[alias:][column[::type].]count|sum|avg|min|max()[::type]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub alias: Option<String>,
    /// The column, possibly with a JSON path (`data->a->>b`); empty for `count()`.
    pub column: String,
    /// The cast of the value shown (of the aggregate's result, for one).
    pub cast: Option<String>,
    pub aggregate: Option<Aggregate>,
}

/// An aggregate function over a column (PostgREST 12's `col.sum()`), the
/// column cast first if `input_cast` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// `count`, `sum`, `avg`, `min` or `max`.
    pub function: &'static str,
    pub input_cast: Option<String>,
}

const AGGREGATES: [&str; 5] = ["count", "sum", "avg", "min", "max"];

impl Field {
    /// The key in the output: the alias, the aggregate's name, the JSON
    /// path's last key, or the column.
    pub fn output_name(&self) -> String {
        if let Some(alias) = &self.alias {
            return alias.clone();
        }
        if let Some(aggregate) = &self.aggregate {
            return aggregate.function.to_owned();
        }
        match json_path(&self.column).1.last() {
            Some((_, key)) => key.clone(),
            None => self.column.clone(),
        }
    }
}

/// `[alias:]relation[!hint][!inner](select)` with its own filters, order
/// and page, given as `alias.column=…`, `alias.order=…`, `alias.limit=…`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embed {
    pub alias: Option<String>,
    pub relation: String,
    pub hint: Option<String>,
    /// Only parents with at least one related row.
    pub inner: bool,
    /// `...rel(cols)`: the related row's columns spread into the parent's
    /// (to-one relationships only).
    pub spread: bool,
    pub query: ReadQuery,
}

impl Embed {
    pub fn output_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.relation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub column: String,
    pub descending: bool,
    pub nulls: Option<Nulls>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadQuery {
    /// Empty means `*`.
    pub select: Vec<SelectItem>,
    pub filters: Vec<Expr>,
    pub order: Vec<Order>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// A column reference split into the column and its JSON path:
/// `data->a->>b` is `data` with `[("->", "a"), ("->>", "b")]`.
pub fn json_path(reference: &str) -> (&str, Vec<(&'static str, String)>) {
    let Some(first) = reference.find("->") else {
        return (reference, Vec::new());
    };
    let base = &reference[..first];
    let mut steps = Vec::new();
    let mut rest = &reference[first..];
    while !rest.is_empty() {
        let (arrow, after) = if let Some(after) = rest.strip_prefix("->>") {
            ("->>", after)
        } else if let Some(after) = rest.strip_prefix("->") {
            ("->", after)
        } else {
            break;
        };
        let end = after.find("->").unwrap_or(after.len());
        steps.push((arrow, after[..end].to_owned()));
        rest = &after[end..];
    }
    (base, steps)
}

impl ReadQuery {
    /// Whether the select list has `*` (or is empty).
    pub fn selects_all(&self) -> bool {
        self.select.is_empty() || self.select.contains(&SelectItem::Star)
    }

    pub fn embeds(&self) -> impl Iterator<Item = &Embed> {
        self.select.iter().filter_map(|item| match item {
            SelectItem::Embed(embed) => Some(embed),
            _ => None,
        })
    }

    /// The table's own columns this read names outside `*`: selected,
    /// filtered, ordered (for the column-aware authorization decision);
    /// JSON paths count as their column.
    pub fn named_columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .select
            .iter()
            .filter_map(|item| match item {
                SelectItem::Field(field) if !field.column.is_empty() => {
                    Some(json_path(&field.column).0.to_owned())
                }
                _ => None,
            })
            .collect();
        for filter in &self.filters {
            collect_columns(filter, &mut names);
        }
        names.extend(self.order.iter().map(|o| json_path(&o.column).0.to_owned()));
        names.sort();
        names.dedup();
        names
    }
}

impl ReadQuery {
    /// Every cast's type name in `select=`, embedded resources included.
    pub fn casts(&self) -> Vec<&str> {
        let mut casts = Vec::new();
        for item in &self.select {
            match item {
                SelectItem::Field(field) => {
                    casts.extend(field.cast.as_deref());
                    casts.extend(
                        field
                            .aggregate
                            .as_ref()
                            .and_then(|a| a.input_cast.as_deref()),
                    );
                }
                SelectItem::Embed(embed) => casts.extend(embed.query.casts()),
                _ => {}
            }
        }
        casts
    }

    /// Whether `select=` (or an embed's) holds an aggregate.
    pub fn aggregates(&self) -> bool {
        self.select.iter().any(|item| match item {
            SelectItem::Field(field) => field.aggregate.is_some(),
            SelectItem::Embed(embed) => embed.query.aggregates(),
            SelectItem::Star => false,
        })
    }

    /// The columns the filters read (what a write's `WHERE` reads).
    pub fn filter_columns(&self) -> Vec<String> {
        let mut names = Vec::new();
        for filter in &self.filters {
            collect_columns(filter, &mut names);
        }
        names.sort();
        names.dedup();
        names
    }
}

pub(crate) fn collect_columns(expr: &Expr, into: &mut Vec<String>) {
    match expr {
        Expr::Filter(filter) => into.push(json_path(&filter.column).0.to_owned()),
        Expr::Not(inner) => collect_columns(inner, into),
        Expr::And(items) | Expr::Or(items) => {
            items.iter().for_each(|item| collect_columns(item, into))
        }
    }
}

fn number(name: &str, value: &str) -> Result<u64, QueryError> {
    value.parse().map_err(|_| QueryError::NotWholeNumber {
        name: name.into(),
        value: value.into(),
    })
}

/// Splits `alias:rest` at a single `:` (not `::`) outside double quotes and
/// before any `(` (an embed's own items may be renamed: `a(b:c)`).
fn split_alias(item: &str) -> (Option<String>, &str) {
    let bytes = item.as_bytes();
    let mut quoted = false;
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' if !quoted => return (None, item),
            b':' if !quoted => {
                let doubled = bytes.get(at + 1) == Some(&b':') || at > 0 && bytes[at - 1] == b':';
                if !doubled {
                    let alias = item[..at].trim().trim_matches('"');
                    return (Some(alias.to_owned()), &item[at + 1..]);
                }
                return (None, item);
            }
            _ => {}
        }
    }
    (None, item)
}

fn parse_select(value: &str) -> Result<Vec<SelectItem>, QueryError> {
    let mut items = Vec::new();
    for item in split_top_level(value)? {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if item == "*" {
            items.push(SelectItem::Star);
            continue;
        }
        let (alias, rest) = split_alias(item);
        if let Some(field) = parse_aggregate(&alias, rest)? {
            items.push(SelectItem::Field(field));
            continue;
        }
        let (spread, rest) = match rest.strip_prefix("...") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        if let (Some(open), true) = (rest.find('('), rest.ends_with(')')) {
            let mut head = rest[..open].split('!');
            let relation = unquote_column(head.next().unwrap_or_default().trim())?;
            let mut embed = Embed {
                spread,
                alias,
                relation,
                hint: None,
                inner: false,
                query: ReadQuery::default(),
            };
            for modifier in head {
                match modifier {
                    "inner" => embed.inner = true,
                    "left" => embed.inner = false,
                    hint => embed.hint = Some(hint.to_owned()),
                }
            }
            if embed.relation.is_empty() {
                return Err(QueryError::EmbedWithoutRelation { item: item.into() });
            }
            embed.query.select = parse_select(&rest[open + 1..rest.len() - 1])?;
            let taken = !embed.spread && items.iter().any(|item| {
                matches!(item, SelectItem::Embed(other) if other.output_name() == embed.output_name())
            });
            if taken {
                return Err(QueryError::DuplicateEmbed {
                    name: embed.output_name().to_owned(),
                });
            }
            items.push(SelectItem::Embed(embed));
            continue;
        }
        let (column, cast) = split_cast(rest)?;
        let column = column_of(column, item)?;
        items.push(SelectItem::Field(Field {
            alias,
            column,
            cast,
            aggregate: None,
        }));
    }
    Ok(items)
}

/// `text::type` → (`text`, the checked type), at the last `::` outside quotes.
fn split_cast(text: &str) -> Result<(&str, Option<String>), QueryError> {
    Ok(match text.rfind("::") {
        Some(at) if !text[at..].contains('"') => (
            &text[..at],
            Some(super::ddl::checked_type_name(&text[at + 2..]).map_err(QueryError::Cast)?),
        ),
        _ => (text, None),
    })
}

/// A selected column's name (unquoted), refusing what is not one.
fn column_of(raw: &str, item: &str) -> Result<String, QueryError> {
    let raw = raw.trim();
    let column = unquote_column(raw)?;
    if column.is_empty() || !raw.starts_with('"') && raw.contains(['(', ')']) {
        return Err(QueryError::NotAColumn { item: item.into() });
    }
    Ok(column)
}

/// `[column[::type].]function()[::type]` for one of [`AGGREGATES`]; `None`
/// when `item` is not an aggregate.
fn parse_aggregate(alias: &Option<String>, item: &str) -> Result<Option<Field>, QueryError> {
    let (body, cast) = match item.rfind(")::") {
        Some(at) => (&item[..=at], split_cast(item)?.1),
        None => (item, None),
    };
    let Some(call) = body.strip_suffix("()") else {
        return Ok(None);
    };
    let (column, function) = match call.rsplit_once('.') {
        Some((column, function)) => (column, function),
        None => ("", call),
    };
    let Some(function) = AGGREGATES.iter().find(|f| **f == function) else {
        return Ok(None);
    };
    let (column, input_cast) = match column {
        "" if *function == "count" => (String::new(), None),
        "" => return Err(QueryError::NotAColumn { item: item.into() }),
        column => {
            let (column, input_cast) = split_cast(column)?;
            (column_of(column, item)?, input_cast)
        }
    };
    Ok(Some(Field {
        alias: alias.clone(),
        column,
        cast,
        aggregate: Some(Aggregate {
            function,
            input_cast,
        }),
    }))
}

fn parse_order(value: &str) -> Result<Vec<Order>, QueryError> {
    let mut orders = Vec::new();
    for term in split_top_level(value)? {
        if term.is_empty() {
            continue;
        }
        let (column, modifiers) = match term.strip_prefix('"') {
            Some(quoted) => match closing_quote(quoted) {
                Some(end) => (
                    unquote_column(&term[..end + 2])?,
                    quoted[end + 1..].trim_start_matches('.'),
                ),
                None => return Err(FilterError::UnterminatedQuote { text: term.into() }.into()),
            },
            None => match term.split_once('.') {
                Some((column, rest)) => (column.to_owned(), rest),
                None => (term.to_owned(), ""),
            },
        };
        let mut order = Order {
            column,
            descending: false,
            nulls: None,
        };
        for modifier in modifiers.split('.').filter(|m| !m.is_empty()) {
            match modifier {
                "asc" => order.descending = false,
                "desc" => order.descending = true,
                "nullsfirst" => order.nulls = Some(Nulls::First),
                "nullslast" => order.nulls = Some(Nulls::Last),
                other => {
                    return Err(QueryError::NotAnOrderModifier {
                        modifier: other.into(),
                    })
                }
            }
        }
        orders.push(order);
    }
    Ok(orders)
}

/// Applies one parameter to `query`, or to the embedded resource its key's
/// prefix names (`author.name=eq.x`, `comments.order=id.desc`).
fn apply(query: &mut ReadQuery, key: &str, value: &str) -> Result<(), QueryError> {
    if let Some((head, rest)) = key.split_once('.') {
        let embed = query.select.iter_mut().find_map(|item| match item {
            SelectItem::Embed(embed) if embed.output_name() == head => Some(embed),
            _ => None,
        });
        if let Some(embed) = embed {
            return apply(&mut embed.query, rest, value);
        }
    }
    match key {
        "order" => query.order = parse_order(value)?,
        "limit" => query.limit = Some(number("limit", value)?),
        "offset" => query.offset = Some(number("offset", value)?),
        _ => query.filters.push(parse_param(key, value)?),
    }
    Ok(())
}

/// Parameters that are not part of a read (they shape writes and calls).
pub const WRITE_PARAMETERS: &[&str] = &["columns", "on_conflict", "cursor"];

pub fn parse_read(pairs: &[(String, String)]) -> Result<ReadQuery, QueryError> {
    let mut query = ReadQuery::default();
    if let Some((key, _)) = pairs
        .iter()
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
    {
        return Err(QueryError::NulInParameter {
            key: key.replace('\0', "\\0"),
        });
    }
    // `select` first, so embedded resources are known whatever the order.
    for (_, value) in pairs.iter().filter(|(key, _)| key == "select") {
        crate::filter::parse::check_nesting(value)?;
        query.select = parse_select(value)?;
    }
    for (key, value) in pairs {
        if key != "select" && !WRITE_PARAMETERS.contains(&key.as_str()) {
            apply(&mut query, key, value)?;
        }
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(alias: Option<&str>, column: &str, cast: Option<&str>) -> SelectItem {
        SelectItem::Field(Field {
            aggregate: None,
            alias: alias.map(str::to_owned),
            column: column.into(),
            cast: cast.map(str::to_owned),
        })
    }

    #[test]
    fn select_grammar() {
        let query = parse_read(&[
            (
                "select".into(),
                "id,heading:title,price::text,data->a->>b,\"we,ird\",writer:users!author_id!inner(name,posts(id)),*".into(),
            ),
            ("writer.name".into(), "eq.Ann".into()),
            ("writer.posts.limit".into(), "2".into()),
            ("writer.order".into(), "name.desc".into()),
            ("id".into(), "gt.1".into()),
        ])
        .unwrap();
        assert_eq!(query.select[0], field(None, "id", None));
        assert_eq!(query.select[1], field(Some("heading"), "title", None));
        assert_eq!(query.select[2], field(None, "price", Some("text")));
        assert_eq!(query.select[3], field(None, "data->a->>b", None));
        assert_eq!(query.select[4], field(None, "we,ird", None));
        let SelectItem::Embed(embed) = &query.select[5] else {
            panic!("an embed")
        };
        assert_eq!(
            (
                embed.output_name(),
                embed.relation.as_str(),
                embed.hint.as_deref(),
                embed.inner
            ),
            ("writer", "users", Some("author_id"), true)
        );
        assert_eq!(embed.query.filters.len(), 1);
        assert!(embed.query.order[0].descending);
        let SelectItem::Embed(posts) = &embed.query.select[1] else {
            panic!("nested")
        };
        assert_eq!(posts.query.limit, Some(2));
        assert_eq!(query.select[6], SelectItem::Star);
        assert_eq!(query.filters.len(), 1);
        assert_eq!(
            query.named_columns(),
            vec!["data", "id", "price", "title", "we,ird"]
        );
        assert_eq!(
            json_path("data->a->>b"),
            ("data", vec![("->", "a".into()), ("->>", "b".into())])
        );
        assert!(parse_read(&[("select".into(), "id::text;drop".into())]).is_err());
        assert!(parse_read(&[("select".into(), "author(name".into())]).is_err());
        assert!(parse_read(&[("order".into(), "id.sideways".into())]).is_err());
        assert!(parse_read(&[("limit".into(), "ten".into())]).is_err());
        // Deep nesting and NUL are refused before anything recurses or binds.
        let deep = format!("{}id{}", "a(".repeat(17), ")".repeat(17));
        assert!(parse_read(&[("select".into(), deep)]).is_err());
        let deep = format!("({}id.eq.1{})", "or(".repeat(20), ")".repeat(20));
        assert!(parse_read(&[("or".into(), deep)]).is_err());
        assert!(parse_read(&[("name".into(), "eq.a\0b".into())]).is_err());
        let fine = format!("{}id{}", "a(".repeat(3), ")".repeat(3));
        assert!(parse_read(&[("select".into(), fine)]).is_ok());
    }

    #[test]
    fn aggregates() {
        let query = parse_read(&[(
            "select".into(),
            "kind,count(),total:amount::numeric.sum()::text,orders(id.max())".into(),
        )])
        .unwrap();
        let SelectItem::Field(count) = &query.select[1] else {
            panic!("a field")
        };
        assert_eq!(
            (count.output_name(), count.column.as_str()),
            ("count".into(), "")
        );
        assert_eq!(
            query.select[2],
            SelectItem::Field(Field {
                alias: Some("total".into()),
                column: "amount".into(),
                cast: Some("text".into()),
                aggregate: Some(Aggregate {
                    function: "sum",
                    input_cast: Some("numeric".into()),
                }),
            })
        );
        assert!(query.aggregates());
        assert_eq!(query.named_columns(), vec!["amount", "kind"]);
        assert_eq!(query.casts(), vec!["text", "numeric"]);
        // Not aggregates: an embed named like none, a function needing a column.
        let plain = parse_read(&[("select".into(), "id,total()".into())]).unwrap();
        assert!(!plain.aggregates());
        assert!(parse_read(&[("select".into(), "sum()".into())]).is_err());
    }
}
