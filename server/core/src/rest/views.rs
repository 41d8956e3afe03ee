//! Relationships through views (as PostgREST infers them): a view's column
//! that is a base table's column carries that column's foreign keys and
//! unique keys, so views embed, and are embedded, like their tables. Views
//! of views resolve down to the table; the base tables may live in schemas
//! that are not exposed.
//!
//! Which base column a view column shows comes from the view's rule (its
//! query tree, as `pg_rewrite.ev_action` prints it): each output column of
//! the top-level query names its origin table and column (`resorigtbl`,
//! `resorigcol`), renames included. A computed column, or one of a `UNION`,
//! has no origin and carries no key.

use super::schema::{ForeignKey, Schema};
use std::collections::BTreeMap;

/// A relation by schema and name.
pub type Relation = (String, String);

/// A foreign key between any two tables of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseForeignKey {
    pub name: String,
    pub table: Relation,
    pub columns: Vec<String>,
    pub foreign_table: Relation,
    pub foreign_columns: Vec<String>,
}

/// A view column and the base column it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub view: Relation,
    pub column: String,
    pub base: Relation,
    pub base_column: String,
}

/// An output column of a view's rule: its position (the view's attribute
/// number: names in the rule go stale when a view column is renamed), and
/// the table (by oid) and column (by number) it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub position: i16,
    pub table: u32,
    pub column: i16,
}

/// A node of PostgreSQL's printed query trees: `{TYPE :field value …}`,
/// `(…)` lists, and atoms (backslash escapes undone).
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Vec<Node>)>),
    List(Vec<Node>),
    Atom(String),
}

/// How deep a rule's tree may nest before it is not read (a long chain of
/// operators nests deeply; the reader must not run out of stack).
const MAX_DEPTH: usize = 256;

/// What PostgreSQL's printer separates tokens with (and escapes in names).
fn separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n')
}

fn skip_separators(text: &[char], at: &mut usize) {
    while text.get(*at).copied().is_some_and(separator) {
        *at += 1;
    }
}

/// Reads one node at `at` (after leading separators), `depth` levels down.
fn node(text: &[char], at: &mut usize, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    skip_separators(text, at);
    match text.get(*at)? {
        '{' => {
            *at += 1;
            let _type = atom(text, at);
            let mut fields: Vec<(String, Vec<Node>)> = Vec::new();
            loop {
                skip_separators(text, at);
                match text.get(*at)? {
                    '}' => {
                        *at += 1;
                        return Some(Node::Map(fields));
                    }
                    ':' => fields.push((atom(text, at), Vec::new())),
                    _ => {
                        let value = node(text, at, depth + 1)?;
                        fields.last_mut()?.1.push(value);
                    }
                }
            }
        }
        '(' => {
            *at += 1;
            let mut items = Vec::new();
            loop {
                skip_separators(text, at);
                if *text.get(*at)? == ')' {
                    *at += 1;
                    return Some(Node::List(items));
                }
                items.push(node(text, at, depth + 1)?);
            }
        }
        '}' | ')' => None,
        _ => Some(Node::Atom(atom(text, at))),
    }
}

/// A token up to a separator or a bracket, with `\x` read as `x`.
fn atom(text: &[char], at: &mut usize) -> String {
    let mut token = String::new();
    while let Some(&c) = text.get(*at) {
        match c {
            '\\' => {
                token.extend(text.get(*at + 1));
                *at += 2;
            }
            c if separator(c) || "{}()".contains(c) => break,
            c => {
                token.push(c);
                *at += 1;
            }
        }
    }
    token
}

/// The output columns of a view's rule (`pg_rewrite.ev_action`) that come
/// from a table's column: the top-level query's target list, junk entries
/// left out, each at its position.
pub fn origins(rule: &str) -> Vec<Origin> {
    let text: Vec<char> = rule.chars().collect();
    let mut at = 0;
    let Some(Node::List(queries)) = node(&text, &mut at, 0) else {
        return Vec::new();
    };
    let Some(Node::Map(query)) = queries.first() else {
        return Vec::new();
    };
    let field = |fields: &[(String, Vec<Node>)], name: &str| -> Option<String> {
        match fields.iter().find(|(n, _)| n == name)?.1.first()? {
            Node::Atom(value) => Some(value.clone()),
            _ => None,
        }
    };
    let Some((_, target_list)) = query.iter().find(|(name, _)| name == ":targetList") else {
        return Vec::new();
    };
    let Some(Node::List(entries)) = target_list.first() else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| match entry {
            Node::Map(fields) if field(fields, ":resjunk").as_deref() != Some("true") => {
                Some(fields)
            }
            _ => None,
        })
        .enumerate()
        .filter_map(|(at, fields)| {
            Some(Origin {
                position: i16::try_from(at + 1).ok()?,
                table: field(fields, ":resorigtbl")?.parse().ok()?,
                column: field(fields, ":resorigcol")?.parse().ok()?,
            })
        })
        .filter(|origin| origin.table != 0 && origin.column > 0)
        .collect()
}

/// How one exposed relation shows a base table: the base column → its
/// column there; `joined` when the relation shows more than one base table
/// (a join keeps the base's foreign keys, not its unique keys: a row of the
/// base may appear in several of its rows).
struct Exposure {
    name: String,
    columns: BTreeMap<String, String>,
    joined: bool,
}

/// Each view's columns and the base column each shows.
type Shown<'a> = BTreeMap<&'a Relation, BTreeMap<&'a str, (&'a Relation, &'a str)>>;

fn shown(view_columns: &[ViewColumn]) -> Shown<'_> {
    let mut views: Shown = BTreeMap::new();
    for column in view_columns {
        views
            .entry(&column.view)
            .or_default()
            .insert(&column.column, (&column.base, &column.base_column));
    }
    views
}

/// The base table column `column` of `relation` shows, through views of
/// views (a few levels at most).
fn resolve<'a>(
    views: &Shown<'a>,
    relation: &'a Relation,
    column: &'a str,
) -> Option<(&'a Relation, &'a str)> {
    let (mut current, mut name) = (relation, column);
    for _ in 0..8 {
        match views.get(current) {
            Some(columns) => (current, name) = *columns.get(name)?,
            None => return Some((current, name)),
        }
    }
    None
}

/// Replaces `schema`'s foreign keys with those between its relations, its
/// tables' own and those through its views, and gives views the unique
/// keys of their base tables whose columns they show.
pub fn infer(
    schema: &mut Schema,
    foreign_keys: &[BaseForeignKey],
    view_columns: &[ViewColumn],
    unique_keys: &[(Relation, Vec<String>)],
) {
    let views = shown(view_columns);
    let mut exposures: BTreeMap<Relation, Vec<Exposure>> = BTreeMap::new();
    for table in schema.tables.values() {
        let relation = (schema.name.clone(), table.name.clone());
        let mut by_base: BTreeMap<Relation, BTreeMap<String, String>> = BTreeMap::new();
        // A base shown twice (a self-join: `c.id, p.id AS parent_id`) is
        // ambiguous: which copy is which cannot be told, so it carries no key.
        let mut twice = Vec::new();
        for (column, _) in &table.columns {
            let base = if views.contains_key(&relation) {
                resolve(&views, &relation, column)
            } else {
                Some((&relation, column.as_str()))
            };
            if let Some((base, base_column)) = base {
                let shown = by_base.entry(base.clone()).or_default();
                if shown
                    .insert(base_column.to_owned(), column.clone())
                    .is_some()
                {
                    twice.push(base.clone());
                }
            }
        }
        by_base.retain(|base, _| !twice.contains(base));
        let joined = by_base.len() > 1;
        for (base, columns) in by_base {
            exposures.entry(base).or_default().push(Exposure {
                name: table.name.clone(),
                columns,
                joined,
            });
        }
    }
    let map = |exposure: &Exposure, columns: &[String]| -> Option<Vec<String>> {
        columns
            .iter()
            .map(|column| exposure.columns.get(column).cloned())
            .collect()
    };
    let mut inferred = Vec::new();
    for fk in foreign_keys {
        let (Some(from), Some(to)) = (exposures.get(&fk.table), exposures.get(&fk.foreign_table))
        else {
            continue;
        };
        for a in from {
            for b in to {
                if let (Some(columns), Some(foreign_columns)) =
                    (map(a, &fk.columns), map(b, &fk.foreign_columns))
                {
                    inferred.push(ForeignKey {
                        name: fk.name.clone(),
                        table: a.name.clone(),
                        columns,
                        foreign_table: b.name.clone(),
                        foreign_columns,
                    });
                }
            }
        }
    }
    schema.foreign_keys = inferred;
    for (base, key) in unique_keys {
        for exposure in exposures.get(base).into_iter().flatten() {
            if exposure.joined {
                continue;
            }
            let Some(mut columns) = map(exposure, key) else {
                continue;
            };
            columns.sort();
            if let Some(table) = schema.tables.get_mut(&exposure.name) {
                if !table.unique_keys.contains(&columns) {
                    table.unique_keys.push(columns);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{Relationship, Table};

    fn relation(schema: &str, name: &str) -> Relation {
        (schema.into(), name.into())
    }

    fn table(name: &str, columns: &[&str]) -> Table {
        Table {
            schema: "api".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|c| (c.to_string(), "integer".to_string()))
                .collect(),
            ..Table::default()
        }
    }

    fn shows(view: &str, columns: &[(&str, &str)], base: Relation) -> Vec<ViewColumn> {
        columns
            .iter()
            .map(|(column, base_column)| ViewColumn {
                view: relation("api", view),
                column: column.to_string(),
                base: base.clone(),
                base_column: base_column.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_rules_output_columns_and_their_origins() {
        // `create view renamed as select p.id, p.author_id as writer,
        //  a.name as "who (name)", (select count(*) from posts q
        //  where q.author_id = p.author_id) as n from posts p join authors a
        //  on a.id = p.author_id`, as PostgreSQL 15 printed its rule.
        let rule = include_str!("golden/view_rule.txt");
        let found: Vec<(i16, i16)> = origins(rule)
            .into_iter()
            .map(|o| (o.position, o.column))
            .collect();
        // id, writer (posts.author_id), "who (name)" (authors.name); n has no origin.
        assert_eq!(found, vec![(1, 1), (2, 2), (3, 2)]);
        assert!(origins("not a rule").is_empty());
        assert!(origins("({QUERY :targetList ({TARGETENTRY :resname").is_empty());
        // Nesting past the cap is not read (no stack overflow).
        let deep = format!("({}{})", "(".repeat(100_000), ")".repeat(100_000));
        assert!(origins(&deep).is_empty());
    }

    #[test]
    fn views_carry_their_base_tables_keys() {
        // api.books and api.authors are views over private tables; api.bestsellers a
        // view of api.books renaming its key; api.pairs joins the two.
        let mut schema = Schema {
            name: "api".into(),
            tables: [
                table("books", &["id", "title", "author_id"]),
                table("authors", &["id", "name"]),
                table("bestsellers", &["id", "writer"]),
                table("pairs", &["author_id", "name"]),
            ]
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect(),
            ..Schema::default()
        };
        let books = relation("private", "books");
        let authors = relation("private", "authors");
        let same = |names: &[&'static str]| names.iter().map(|n| (*n, *n)).collect::<Vec<_>>();
        let mut columns = shows("books", &same(&["id", "title", "author_id"]), books.clone());
        columns.extend(shows("authors", &same(&["id", "name"]), authors.clone()));
        // A view of a view, renaming the key it shows.
        columns.extend(shows(
            "bestsellers",
            &[("id", "id"), ("writer", "author_id")],
            relation("api", "books"),
        ));
        // A join: each column from its own table.
        columns.extend(shows("pairs", &[("author_id", "author_id")], books.clone()));
        columns.extend(shows("pairs", &[("name", "name")], authors.clone()));
        let fks = [BaseForeignKey {
            name: "books_author_id_fkey".into(),
            table: books.clone(),
            columns: vec!["author_id".into()],
            foreign_table: authors.clone(),
            foreign_columns: vec!["id".into()],
        }];
        let unique = [(books, vec!["id".to_owned()]), (authors, vec!["id".into()])];
        infer(&mut schema, &fks, &columns, &unique);
        let pairs: Vec<(&str, &str)> = schema
            .foreign_keys
            .iter()
            .map(|fk| (fk.table.as_str(), fk.foreign_table.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("bestsellers", "authors"),
                ("books", "authors"),
                ("pairs", "authors")
            ]
        );
        assert!(matches!(
            schema.relationship("authors", "books", None),
            Ok(Relationship::ToMany(_))
        ));
        let renamed = schema
            .foreign_keys
            .iter()
            .find(|fk| fk.table == "bestsellers")
            .unwrap();
        assert_eq!(renamed.columns, vec!["writer"]);
        assert_eq!(schema.tables["bestsellers"].unique_keys, vec![vec!["id"]]);
        // `pairs` shows no key of either table.
        assert!(schema.tables["pairs"].unique_keys.is_empty());
    }

    #[test]
    fn self_joins_and_joins_keep_only_what_is_certain() {
        let mut schema = Schema {
            name: "api".into(),
            tables: [
                table("nodes", &["id", "parent_id"]),
                table("tree", &["id", "parent_id"]),
                table("titled", &["author_key", "title"]),
            ]
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect(),
            ..Schema::default()
        };
        let nodes = relation("api", "nodes");
        let posts = relation("private", "posts");
        let authors = relation("private", "authors");
        // tree: select c.id, p.id as parent_id from nodes c join nodes p …
        let mut columns = shows("tree", &[("id", "id"), ("parent_id", "id")], nodes.clone());
        // titled: select a.id as author_key, p.title from posts p join authors a …
        columns.extend(shows("titled", &[("author_key", "id")], authors.clone()));
        columns.extend(shows("titled", &[("title", "title")], posts.clone()));
        let fks = [BaseForeignKey {
            name: "nodes_parent_id_fkey".into(),
            table: nodes.clone(),
            columns: vec!["parent_id".into()],
            foreign_table: nodes.clone(),
            foreign_columns: vec!["id".into()],
        }];
        let unique = [(nodes, vec!["id".to_owned()]), (authors, vec!["id".into()])];
        infer(&mut schema, &fks, &columns, &unique);
        assert!(
            schema
                .foreign_keys
                .iter()
                .all(|fk| fk.table != "tree" && fk.foreign_table != "tree"),
            "{:?}",
            schema.foreign_keys
        );
        assert!(schema.tables["tree"].unique_keys.is_empty());
        // A join shows authors.id once per post: not unique there.
        assert!(schema.tables["titled"].unique_keys.is_empty());
    }
}
