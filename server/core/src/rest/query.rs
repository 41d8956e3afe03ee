//! Parsing a read's query string: `select=`, `order=`, `limit=`, `offset=`,
//! and every other parameter as a filter in the PostgREST grammar.

use crate::filter::{parse_param, Expr, FilterError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    All,
    Columns(Vec<String>),
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

#[derive(Debug, Clone, PartialEq)]
pub struct ReadQuery {
    pub select: Select,
    pub filters: Vec<Expr>,
    pub order: Vec<Order>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

impl ReadQuery {
    /// Every column the read names outside `select=*`: selected, filtered,
    /// ordered (for the column-aware authorization decision).
    pub fn named_columns(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.select {
            Select::All => Vec::new(),
            Select::Columns(columns) => columns.clone(),
        };
        for filter in &self.filters {
            collect_columns(filter, &mut names);
        }
        names.extend(self.order.iter().map(|o| o.column.clone()));
        names.sort();
        names.dedup();
        names
    }
}

fn collect_columns(expr: &Expr, into: &mut Vec<String>) {
    match expr {
        Expr::Filter(filter) => into.push(filter.column.clone()),
        Expr::Not(inner) => collect_columns(inner, into),
        Expr::And(items) | Expr::Or(items) => {
            items.iter().for_each(|item| collect_columns(item, into))
        }
    }
}

fn number(name: &str, value: &str) -> Result<u64, FilterError> {
    value.parse().map_err(|_| {
        FilterError::new(format!("`{name}={value}` is not a whole number"))
            .with_hint(format!("write {name}=10"))
    })
}

pub fn parse_read(pairs: &[(String, String)]) -> Result<ReadQuery, FilterError> {
    let mut query = ReadQuery {
        select: Select::All,
        filters: Vec::new(),
        order: Vec::new(),
        limit: None,
        offset: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "select" => {
                let items: Vec<String> = value
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect();
                query.select = if items.is_empty() || items == ["*"] {
                    Select::All
                } else if items.iter().any(|c| c.contains(['(', ':', '-', '*'])) {
                    return Err(FilterError::new(format!("`select={value}` uses renames, casts, JSON paths or embedding, which are not available yet"))
                        .with_hint("list plain column names, e.g. select=id,title"));
                } else {
                    Select::Columns(items)
                };
            }
            "order" => {
                for term in value.split(',').filter(|t| !t.is_empty()) {
                    let mut parts = term.split('.');
                    let column = parts.next().unwrap_or_default().to_owned();
                    let mut order = Order {
                        column,
                        descending: false,
                        nulls: None,
                    };
                    for modifier in parts {
                        match modifier {
                            "asc" => order.descending = false,
                            "desc" => order.descending = true,
                            "nullsfirst" => order.nulls = Some(Nulls::First),
                            "nullslast" => order.nulls = Some(Nulls::Last),
                            other => {
                                return Err(FilterError::new(format!(
                                    "`{other}` is not an order modifier"
                                ))
                                .with_hint("write order=column.asc|desc[.nullsfirst|nullslast]"))
                            }
                        }
                    }
                    query.order.push(order);
                }
            }
            "limit" => query.limit = Some(number("limit", value)?),
            "offset" => query.offset = Some(number("offset", value)?),
            _ => query.filters.push(parse_param(key, value)?),
        }
    }
    Ok(query)
}
