//! SQL for a read: one statement that returns the rows as a JSON array, with
//! embedded resources as correlated subqueries aggregated to JSON (so one
//! request is one statement, never N+1), and the count of the same rows.

use super::error::QueryError;
use super::query::{json_path, Embed, Nulls, Order, ReadQuery, SelectItem};
use super::schema::{ForeignKey, Relationship, Schema};
use crate::filter::sql::{to_sql, Caller, Column, Columns, Param};
use crate::filter::{Expr, FilterError};
use std::collections::BTreeMap;

/// A table or view as the schema cache knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `(name, type)` in column order.
    pub columns: Vec<(String, String)>,
    pub primary_key: Vec<String>,
    /// The column sets of the primary key and unique constraints, each sorted.
    pub unique_keys: Vec<Vec<String>>,
    /// Computed fields: `(function, result type)` of the exposed schema's
    /// functions taking this table's row and returning one value, read like
    /// columns (`select=full_name`, filters, `order`) but not part of `*`.
    pub computed: Vec<(String, String)>,
    /// Default expressions, as the catalog prints them.
    pub defaults: BTreeMap<String, String>,
    /// Whether the database itself may hide rows from the caller: row-level
    /// security is enabled, or it is a view (whose query may). The planner's
    /// estimates cover hidden rows too, so they are not given for it.
    pub hides_rows: bool,
}

pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|(name, _)| name.clone()).collect()
    }

    fn column(&self, name: &str) -> Result<&(String, String), FilterError> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .ok_or_else(|| {
                let columns = self.column_names();
                FilterError::UnknownColumn {
                    table: self.name.clone(),
                    column: name.into(),
                    suggestion: crate::config::suggestion(name, columns.iter().map(String::as_str))
                        .map(str::to_owned),
                    columns,
                }
            })
    }
}

/// A table under an alias in a statement: resolves `column` and
/// `column->key->>key` (JSON path keys are bound parameters).
pub struct Scope<'a> {
    pub table: &'a Table,
    pub alias: Option<&'a str>,
}

impl Scope<'_> {
    fn qualify(&self, column: &str) -> String {
        match self.alias {
            Some(alias) => format!("{}.{}", quote(alias), quote(column)),
            None => quote(column),
        }
    }
}

impl Columns for Scope<'_> {
    fn resolve(&self, name: &str, params: &mut Vec<Param>) -> Result<Column, FilterError> {
        let (base, path) = json_path(name);
        // A computed field: the function over the whole row.
        if let (Some((function, type_name)), true) = (
            self.table.computed.iter().find(|(f, _)| f == base),
            path.is_empty(),
        ) {
            // Cast to the table's type: a function's rows come as records.
            let row = quote(self.alias.unwrap_or(&self.table.name));
            return Ok(Column {
                sql: format!(
                    "{}.{}({row}::{})",
                    quote(&self.table.schema),
                    quote(function),
                    self.table.qualified()
                ),
                type_name: type_name.clone(),
            });
        }
        let (column, type_name) = self.table.column(base)?;
        if path.is_empty() {
            return Ok(Column {
                sql: self.qualify(column),
                type_name: type_name.clone(),
            });
        }
        if !matches!(type_name.as_str(), "json" | "jsonb") {
            return Err(FilterError::NotJson {
                column: base.into(),
                type_name: type_name.clone(),
                path: name.into(),
            });
        }
        let mut sql = self.qualify(column);
        let mut result_type = type_name.clone();
        for (arrow, key) in &path {
            if key.is_empty() {
                return Err(FilterError::EmptyJsonKey { path: name.into() });
            }
            params.push(Param::Text(Some(key.clone())));
            let index = key.parse::<i64>().is_ok();
            let cast = if index { "::text::int" } else { "::text" };
            sql = format!("{sql}{arrow}${}{cast}", params.len());
            if *arrow == "->>" {
                result_type = "text".into();
            }
        }
        Ok(Column {
            sql: format!("({sql})"),
            type_name: result_type,
        })
    }
}

/// Decides, for the caller, reads of tables other than the one requested
/// (embedded resources and junctions): the row condition, or a refusal.
pub trait Access {
    type Error: From<QueryError> + From<FilterError>;
    fn select(&self, table: &Table, columns: &[String]) -> Result<Option<Expr>, Self::Error>;
    /// Whether the caller may call `function` of `schema` (a computed
    /// relationship runs it), or a refusal.
    fn execute(&self, schema: &str, function: &str) -> Result<(), Self::Error>;
}

/// Builds one read statement; parameters are numbered in the order they are pushed.
struct Planner<'a, A: Access> {
    schema: &'a Schema,
    access: &'a A,
    caller: &'a Caller<'a>,
    max_rows: u64,
    params: Vec<Param>,
    aliases: usize,
}

/// The columns of `table` a query reads: named ones, or all with `*`.
/// The columns of `table` a query reads: named ones (all with `*`), and
/// those its embeds join on, so a hidden column cannot be probed by
/// embedding over it (`rel!inner(…)&rel.id=eq.5`).
pub fn read_columns(schema: &Schema, table: &Table, query: &ReadQuery) -> Vec<String> {
    let mut columns = query.named_columns();
    if query.selects_all() {
        columns.extend(table.column_names());
    }
    for embed in query.embeds() {
        let Some((target, hint)) =
            schema.embed_target(&table.name, &embed.relation, embed.hint.as_deref())
        else {
            continue;
        };
        let Ok(relationship) = schema.relationship(&table.name, &target, hint.as_deref()) else {
            continue;
        };
        columns.extend(match relationship {
            Relationship::ToOne(fk) => fk.columns,
            Relationship::ToMany(fk) | Relationship::OneToOne(fk) => fk.foreign_columns,
            Relationship::ManyToMany { to_parent, .. } => to_parent.foreign_columns,
            // Decided like a computed field: a column list must name it.
            Relationship::Computed(computed) => vec![computed.function],
        });
    }
    columns.sort();
    columns.dedup();
    columns
}

impl<'a, A: Access> Planner<'a, A> {
    fn alias(&mut self) -> String {
        let alias = format!("t{}", self.aliases);
        self.aliases += 1;
        alias
    }

    /// The conditions on `table` under `alias`: filters, the row condition,
    /// and `EXISTS` for each `!inner` embed.
    fn conditions(
        &mut self,
        table: &Table,
        alias: &str,
        query: &ReadQuery,
        condition: Option<&Expr>,
    ) -> Result<Vec<String>, A::Error> {
        let scope = Scope {
            table,
            alias: Some(alias),
        };
        let mut parts = Vec::new();
        for filter in query.filters.iter().chain(condition) {
            parts.push(format!(
                "({})",
                to_sql(filter, &scope, self.caller, &mut self.params)?
            ));
        }
        for embed in query.embeds().filter(|embed| embed.inner) {
            let (target, relationship, condition) = self.related(table, embed)?;
            let inner = self.alias();
            let mut clauses = self.join(&relationship, alias, &inner)?;
            clauses.extend(self.conditions(target, &inner, &embed.query, condition.as_ref())?);
            parts.push(format!(
                "EXISTS (SELECT 1 FROM {} AS {}{})",
                self.source_of(&relationship, target, alias),
                quote(&inner),
                where_sql(&clauses)
            ));
        }
        Ok(parts)
    }

    /// The embedded table, how it relates, and the caller's row condition on it.
    fn related(
        &self,
        parent: &Table,
        embed: &Embed,
    ) -> Result<(&'a Table, Relationship, Option<Expr>), A::Error> {
        let schema: &'a Schema = self.schema;
        // No suggestion of other names, and the decision before the
        // relationships are examined: hints name only what the caller may read.
        let nothing = || QueryError::NothingToEmbed {
            relation: embed.relation.clone(),
        };
        let (name, hint) = schema
            .embed_target(&parent.name, &embed.relation, embed.hint.as_deref())
            .ok_or_else(nothing)?;
        let target = schema.tables.get(&name).ok_or_else(nothing)?;
        let condition = self
            .access
            .select(target, &read_columns(schema, target, &embed.query))?;
        let relationship = schema.relationship(&parent.name, &target.name, hint.as_deref())?;
        if let Relationship::Computed(computed) = &relationship {
            self.access.execute(&schema.name, &computed.function)?;
        }
        Ok((target, relationship, condition))
    }

    /// What an embed reads from: the table, or a computed relationship's
    /// function over the parent's row.
    fn source_of(&self, relationship: &Relationship, target: &Table, parent: &str) -> String {
        match relationship {
            Relationship::Computed(computed) => format!(
                "{schema}.{}({}::{schema}.{})",
                quote(&computed.function),
                quote(parent),
                quote(&computed.table),
                schema = quote(&self.schema.name),
            ),
            _ => target.qualified(),
        }
    }

    /// The conditions joining an embed to its parent (none for a computed
    /// relationship, whose function picks the rows).
    fn join(
        &mut self,
        relationship: &Relationship,
        parent: &str,
        target: &str,
    ) -> Result<Vec<String>, A::Error> {
        let pairs = |fk: &ForeignKey, from: &str, to: &str| -> Vec<String> {
            fk.columns
                .iter()
                .zip(&fk.foreign_columns)
                .map(|(column, foreign)| {
                    format!(
                        "{}.{} = {}.{}",
                        quote(from),
                        quote(column),
                        quote(to),
                        quote(foreign)
                    )
                })
                .collect()
        };
        Ok(match relationship {
            Relationship::Computed(_) => Vec::new(),
            Relationship::ToOne(fk) => pairs(fk, parent, target),
            Relationship::ToMany(fk) | Relationship::OneToOne(fk) => pairs(fk, target, parent),
            Relationship::ManyToMany {
                junction,
                to_parent,
                to_target,
            } => {
                let table = self.schema.table(junction)?;
                let mut columns = to_parent.columns.clone();
                columns.extend(to_target.columns.iter().cloned());
                let condition = self.access.select(table, &columns)?;
                let alias = self.alias();
                let mut clauses = pairs(to_parent, &alias, parent);
                clauses.extend(pairs(to_target, &alias, target));
                clauses.extend(self.conditions(
                    table,
                    &alias,
                    &ReadQuery::default(),
                    condition.as_ref(),
                )?);
                vec![format!(
                    "EXISTS (SELECT 1 FROM {} AS {} WHERE {})",
                    table.qualified(),
                    quote(&alias),
                    clauses.join(" AND ")
                )]
            }
        })
    }
}

impl<'a, A: Access> Planner<'a, A> {
    /// `expr AS "name"` for each selected item of `table` under `alias`,
    /// and, when some are aggregates, ` GROUP BY` the others (and the
    /// columns embeds join on, which their subqueries read).
    fn select_list(
        &mut self,
        table: &Table,
        alias: &str,
        query: &ReadQuery,
    ) -> Result<(Vec<String>, String), A::Error> {
        let aggregated = query
            .select
            .iter()
            .any(|item| matches!(item, SelectItem::Field(field) if field.aggregate.is_some()));
        let mut groups = Vec::new();
        let scope = Scope {
            table,
            alias: Some(alias),
        };
        let mut list = Vec::new();
        let items: Vec<SelectItem> = if query.select.is_empty() {
            vec![SelectItem::Star]
        } else {
            query.select.clone()
        };
        for item in &items {
            match item {
                SelectItem::Star => {
                    for (column, _) in &table.columns {
                        list.push(format!("{} AS {}", scope.qualify(column), quote(column)));
                        groups.push(scope.qualify(column));
                    }
                }
                SelectItem::Field(field) => {
                    let mut expr = match &field.aggregate {
                        Some(aggregate) if field.column.is_empty() => {
                            format!("{}(*)", aggregate.function)
                        }
                        Some(aggregate) => {
                            let column = scope.resolve(&field.column, &mut self.params)?;
                            match &aggregate.input_cast {
                                Some(cast) => {
                                    format!("{}(({})::{cast})", aggregate.function, column.sql)
                                }
                                None => format!("{}({})", aggregate.function, column.sql),
                            }
                        }
                        None => {
                            let column = scope.resolve(&field.column, &mut self.params)?.sql;
                            groups.push(column.clone());
                            column
                        }
                    };
                    if let Some(cast) = &field.cast {
                        expr = format!("({expr})::{cast}");
                    }
                    list.push(format!("{expr} AS {}", quote(&field.output_name())));
                }
                // `rel()`: a join to filter on (with `!inner`), nothing to show.
                SelectItem::Embed(embed) if embed.query.select.is_empty() => {}
                // `...rel(cols)`: the related row's keys, each taken from the
                // embedded object (JSON, so types are kept).
                SelectItem::Embed(embed) if embed.spread => {
                    let (target, relationship, _) = self.related(table, embed)?;
                    if !relationship.to_one() {
                        return Err(QueryError::SpreadNotToOne {
                            relation: embed.relation.clone(),
                        }
                        .into());
                    }
                    let names = self.output_names(target, &embed.query);
                    groups.extend(self.joined_on(&relationship, alias));
                    let sql = self.embed(table, alias, embed)?;
                    for name in names {
                        self.params.push(Param::Text(Some(name.clone())));
                        list.push(format!(
                            "({sql})->${} AS {}",
                            self.params.len(),
                            quote(&name)
                        ));
                    }
                }
                SelectItem::Embed(embed) => {
                    if aggregated {
                        let (_, relationship, _) = self.related(table, embed)?;
                        groups.extend(self.joined_on(&relationship, alias));
                    }
                    let sql = self.embed(table, alias, embed)?;
                    list.push(format!("{sql} AS {}", quote(embed.output_name())));
                }
            }
        }
        let group_by = if aggregated && !groups.is_empty() {
            groups.dedup();
            format!(" GROUP BY {}", groups.join(", "))
        } else {
            String::new()
        };
        Ok((list, group_by))
    }

    /// The parent's columns an embed's subquery reads.
    fn joined_on(&self, relationship: &Relationship, alias: &str) -> Vec<String> {
        let columns = match relationship {
            Relationship::ToOne(fk) => &fk.columns,
            Relationship::ToMany(fk) | Relationship::OneToOne(fk) => &fk.foreign_columns,
            Relationship::ManyToMany { to_parent, .. } => &to_parent.foreign_columns,
            // The whole row: grouped by every column, as `*` would be.
            Relationship::Computed(_) => return vec![quote(alias)],
        };
        columns
            .iter()
            .map(|column| format!("{}.{}", quote(alias), quote(column)))
            .collect()
    }

    /// The keys an embedded row shows for `query` over `table`.
    fn output_names(&self, table: &Table, query: &ReadQuery) -> Vec<String> {
        let mut names = Vec::new();
        for item in &query.select {
            match item {
                SelectItem::Star => names.extend(table.column_names()),
                SelectItem::Field(field) => names.push(field.output_name()),
                SelectItem::Embed(embed) if embed.query.select.is_empty() => {}
                SelectItem::Embed(embed) if embed.spread => {
                    let inner = self
                        .schema
                        .embed_target(&table.name, &embed.relation, embed.hint.as_deref())
                        .and_then(|(name, _)| self.schema.tables.get(&name));
                    if let Some(inner) = inner {
                        names.extend(self.output_names(inner, &embed.query));
                    }
                }
                SelectItem::Embed(embed) => names.push(embed.output_name().to_owned()),
            }
        }
        names
    }

    /// A correlated subquery giving an embedded resource as JSON: an object
    /// (or null) for to-one, an array for to-many.
    fn embed(&mut self, parent: &Table, alias: &str, embed: &Embed) -> Result<String, A::Error> {
        let (target, relationship, condition) = self.related(parent, embed)?;
        let inner = self.alias();
        let mut clauses = self.join(&relationship, alias, &inner)?;
        clauses.extend(self.conditions(target, &inner, &embed.query, condition.as_ref())?);
        let (list, group_by) = self.select_list(target, &inner, &embed.query)?;
        let mut sql = format!(
            "SELECT {} FROM {} AS {}{}{group_by}",
            list.join(", "),
            self.source_of(&relationship, target, alias),
            quote(&inner),
            where_sql(&clauses)
        );
        sql.push_str(&self.order_by(target, &inner, &embed.query.order)?);
        Ok(if relationship.to_one() {
            format!("(SELECT row_to_json(e) FROM ({sql} LIMIT 1) e)")
        } else {
            sql.push_str(&self.page(&embed.query, self.max_rows));
            format!("(SELECT coalesce(json_agg(e), '[]'::json) FROM ({sql}) e)")
        })
    }

    fn order_by(
        &mut self,
        table: &Table,
        alias: &str,
        order: &[Order],
    ) -> Result<String, A::Error> {
        if order.is_empty() {
            return Ok(String::new());
        }
        let scope = Scope {
            table,
            alias: Some(alias),
        };
        let mut terms = Vec::new();
        for order in order {
            let column = scope.resolve(&order.column, &mut self.params)?;
            let direction = if order.descending { "DESC" } else { "ASC" };
            let nulls = match order.nulls {
                Some(Nulls::First) => " NULLS FIRST",
                Some(Nulls::Last) => " NULLS LAST",
                None => "",
            };
            terms.push(format!("{} {direction}{nulls}", column.sql));
        }
        Ok(format!(" ORDER BY {}", terms.join(", ")))
    }

    /// ` LIMIT n [OFFSET m]`: `limit`, else `default` rows, at most `max_rows`.
    /// `LIMIT` as a number in the SQL text (a parsed, capped `u64`; no
    /// request text reaches the SQL):
    /// as a parameter, PostgreSQL would plan a generic statement for an
    /// unknown limit, find it costlier than planning each execution anew,
    /// and so plan every execution (docs/benchmarks.md). `OFFSET` stays a
    /// parameter: its values are many, and a statement text per value would
    /// churn the prepared statements.
    fn page(&mut self, query: &ReadQuery, default: u64) -> String {
        let limit = query.limit.unwrap_or(default).min(self.max_rows);
        let mut sql = format!(" LIMIT {limit}");
        if let Some(offset) = query.offset {
            self.params.push(Param::Text(Some(offset.to_string())));
            sql.push_str(&format!(" OFFSET ${}::text::bigint", self.params.len()));
        }
        sql
    }
}

/// ` WHERE …` over `conditions` (empty when there are none).
fn where_sql(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// A read as SQL: the page of rows as one JSON array (with how many there
/// are), and the `FROM … WHERE …` it reads from, for counts: under the same
/// filters and row conditions, so a count never includes rows the caller
/// may not see.
#[derive(Debug)]
pub struct ReadStatements {
    pub read: (String, Vec<Param>),
    /// The keys of each row, in order.
    pub columns: Vec<String>,
    from: String,
    from_params: Vec<Param>,
}

impl ReadStatements {
    /// `Prefer: count=exact`.
    pub fn count_exact(&self) -> (String, Vec<Param>) {
        (
            format!("SELECT count(*){}", self.from),
            self.from_params.clone(),
        )
    }

    /// `Prefer: count=planned`: the planner's estimate (one JSON row from EXPLAIN).
    pub fn count_planned(&self) -> (String, Vec<Param>) {
        (
            format!("EXPLAIN (FORMAT JSON) SELECT 1{}", self.from),
            self.from_params.clone(),
        )
    }

    /// An exact count that stops at `bound` + 1 rows (for `count=estimated`).
    pub fn count_bounded(&self, bound: u64) -> (String, Vec<Param>) {
        let mut params = self.from_params.clone();
        params.push(Param::Text(Some((bound + 1).to_string())));
        (
            format!(
                "SELECT count(*) FROM (SELECT 1{} LIMIT ${}::text::bigint) c",
                self.from,
                params.len()
            ),
            params,
        )
    }
}

/// A read to plan, beyond its query: where the rows come from and how many.
pub struct Source<'a> {
    pub schema: &'a Schema,
    /// The table (or, for a function's result, the table whose rows it returns).
    pub table: &'a Table,
    /// The `FROM` item when it is not the table itself (a function call),
    /// with its parameters, numbered first, and whether it may write. It is
    /// a CTE that the page and the read's third column (the count of every
    /// row the filters keep) both read: materialized for a function that
    /// may write, so it runs once; inlined for a read-only one, so the
    /// planner can push the filters into it.
    pub call: Option<(String, Vec<Param>, bool)>,
    /// Rows when the query gives no `limit`.
    pub default_rows: u64,
    /// The most rows any page (and any embedded array) holds.
    pub max_rows: u64,
    /// How the rows are answered: an array of objects, or (for functions)
    /// one object, or their one column's values.
    pub shape: Shape<'a>,
}

/// The JSON a read answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape<'a> {
    /// An array of objects.
    #[default]
    Rows,
    /// The first object, or null (a function returning one row).
    Row,
    /// An array of the `pgrst_scalar` column's values (a function returning
    /// a set of scalars).
    Scalars,
    /// The first row's `pgrst_scalar` value, or null (a scalar function).
    Scalar,
    /// A GeoJSON FeatureCollection of the rows, each a Feature whose
    /// geometry is its first geometry column (PostGIS's `ST_AsGeoJSON` of a
    /// row, from the schema PostGIS is installed in).
    GeoJson { postgis: &'a str },
    /// An array of arrays: each row's values in PostgreSQL's text forms (as
    /// its output functions write them: `t`, `{1,2}`, `2024-01-02
    /// 10:00:00+00`), null as null; [`ReadStatements::columns`] names them.
    Text,
}

/// The CTE a function's result is materialized in.
const CALL: &str = "pgrst_call";

/// The column a scalar function's result is read as (PostgREST's name, so
/// `?pgrst_scalar=gt.1` and `order=pgrst_scalar` work as they do there).
pub const SCALAR: &str = "pgrst_scalar";

impl<'a> Source<'a> {
    pub fn table(schema: &'a Schema, table: &'a Table, max_rows: u64) -> Self {
        Source {
            schema,
            table,
            call: None,
            default_rows: max_rows,
            max_rows,
            shape: Shape::Rows,
        }
    }
}

/// Plans a read of `source` as one statement (and its counts).
pub fn read_sql<A: Access>(
    source: Source,
    query: &ReadQuery,
    condition: Option<&Expr>,
    access: &A,
    caller: &Caller,
) -> Result<ReadStatements, A::Error> {
    let table = source.table;
    // A function call runs once: materialized in a CTE that the page, and
    // the count of every row the filters keep, both read.
    let (call_sql, params) = match source.call {
        Some((call, params, writes)) => (Some((call, writes)), params),
        None => (None, Vec::new()),
    };
    let from_item = match call_sql {
        Some(_) => quote(CALL),
        None => table.qualified(),
    };
    let mut planner = Planner {
        schema: source.schema,
        access,
        caller,
        max_rows: source.max_rows,
        params,
        aliases: 1,
    };
    // The conditions come first, so the count can take just their parameters.
    let conditions = planner.conditions(table, "t0", query, condition)?;
    let filter = where_sql(&conditions);
    let from = format!(" FROM {from_item} AS \"t0\"{filter}");
    let from_params = planner.params.clone();
    let (list, group_by) = planner.select_list(table, "t0", query)?;
    let mut sql = format!("SELECT {}{from}{group_by}", list.join(", "));
    sql.push_str(&planner.order_by(table, "t0", &query.order)?);
    sql.push_str(&planner.page(query, source.default_rows));
    let columns = if query.select.is_empty() {
        table.column_names()
    } else {
        planner.output_names(table, query)
    };
    let body = match source.shape {
        Shape::Text => {
            let cells: Vec<String> = columns
                .iter()
                .map(|name| {
                    let value = format!("t.{}", quote(name));
                    format!("CASE WHEN {value} IS NULL THEN NULL ELSE format('%s', {value}) END")
                })
                .collect();
            format!(
                "coalesce(json_agg(ARRAY[{}]::text[]), '[]'::json)",
                cells.join(", ")
            )
        }
        Shape::Rows => "coalesce(json_agg(t), '[]'::json)".to_owned(),
        Shape::GeoJson { postgis } => format!(
            "json_build_object('type', 'FeatureCollection', 'features', \
             coalesce(json_agg({}.ST_AsGeoJSON(t)::json), '[]'::json))",
            quote(postgis)
        ),
        Shape::Row => "coalesce(json_agg(t)->0, 'null'::json)".to_owned(),
        Shape::Scalars => format!("coalesce(json_agg(t.{}), '[]'::json)", quote(SCALAR)),
        Shape::Scalar => format!("coalesce(json_agg(t.{})->0, 'null'::json)", quote(SCALAR)),
    };
    let read = match &call_sql {
        Some((call, writes)) => format!(
            "WITH {} AS {}MATERIALIZED (SELECT * FROM {call} AS \"c\") \
             SELECT {body}::text, count(*), (SELECT count(*){from}) FROM ({sql}) t",
            quote(CALL),
            if *writes { "" } else { "NOT " }
        ),
        None => format!("SELECT {body}::text, count(*) FROM ({sql}) t"),
    };
    Ok(ReadStatements {
        read: (read, planner.params),
        columns,
        from,
        from_params,
    })
}

/// ` WHERE filters AND condition` on the table itself (unqualified), for writes.
pub(super) fn where_clause(
    table: &Table,
    query: &ReadQuery,
    condition: Option<&Expr>,
    caller: &Caller,
    params: &mut Vec<Param>,
) -> Result<String, FilterError> {
    let scope = Scope { table, alias: None };
    let mut conditions = Vec::new();
    for filter in query.filters.iter().chain(condition) {
        conditions.push(format!("({})", to_sql(filter, &scope, caller, params)?));
    }
    Ok(where_sql(&conditions))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
