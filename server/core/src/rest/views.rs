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

/// An output column of a view's rule: its name, and the table (by oid) and
/// column (by number) it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub name: String,
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

/// Reads one node at `at` (after leading spaces).
fn node(text: &[char], at: &mut usize) -> Option<Node> {
    while text.get(*at).is_some_and(|c| c.is_whitespace()) {
        *at += 1;
    }
    match text.get(*at)? {
        '{' => {
            *at += 1;
            let _type = atom(text, at);
            let mut fields: Vec<(String, Vec<Node>)> = Vec::new();
            loop {
                while text.get(*at).is_some_and(|c| c.is_whitespace()) {
                    *at += 1;
                }
                match text.get(*at)? {
                    '}' => {
                        *at += 1;
                        return Some(Node::Map(fields));
                    }
                    ':' => fields.push((atom(text, at), Vec::new())),
                    _ => {
                        let value = node(text, at)?;
                        fields.last_mut()?.1.push(value);
                    }
                }
            }
        }
        '(' => {
            *at += 1;
            let mut items = Vec::new();
            loop {
                while text.get(*at).is_some_and(|c| c.is_whitespace()) {
                    *at += 1;
                }
                if *text.get(*at)? == ')' {
                    *at += 1;
                    return Some(Node::List(items));
                }
                items.push(node(text, at)?);
            }
        }
        '}' | ')' => None,
        _ => Some(Node::Atom(atom(text, at))),
    }
}

/// A token up to whitespace or a bracket, with `\x` read as `x`.
fn atom(text: &[char], at: &mut usize) -> String {
    let mut token = String::new();
    while let Some(&c) = text.get(*at) {
        match c {
            '\\' => {
                token.extend(text.get(*at + 1));
                *at += 2;
            }
            c if c.is_whitespace() || "{}()".contains(c) => break,
            c => {
                token.push(c);
                *at += 1;
            }
        }
    }
    token
}

/// The output columns of a view's rule (`pg_rewrite.ev_action`) and their
/// origins: the top-level query's target list, junk entries left out.
pub fn origins(rule: &str) -> Vec<Origin> {
    let text: Vec<char> = rule.chars().collect();
    let mut at = 0;
    let Some(Node::List(queries)) = node(&text, &mut at) else {
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
        .filter_map(|entry| {
            let Node::Map(fields) = entry else {
                return None;
            };
            if field(fields, ":resjunk").as_deref() == Some("true") {
                return None;
            }
            Some(Origin {
                name: field(fields, ":resname")?,
                table: field(fields, ":resorigtbl")?.parse().ok()?,
                column: field(fields, ":resorigcol")?.parse().ok()?,
            })
        })
        .filter(|origin| origin.table != 0 && origin.column > 0)
        .collect()
}

/// How one exposed relation shows a base table: the base column → its
/// column there.
struct Exposure {
    name: String,
    columns: BTreeMap<String, String>,
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
        for (column, _) in &table.columns {
            let base = if views.contains_key(&relation) {
                resolve(&views, &relation, column)
            } else {
                Some((&relation, column.as_str()))
            };
            if let Some((base, base_column)) = base {
                by_base
                    .entry(base.clone())
                    .or_default()
                    .insert(base_column.to_owned(), column.clone());
            }
        }
        for (base, columns) in by_base {
            exposures.entry(base).or_default().push(Exposure {
                name: table.name.clone(),
                columns,
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
        let found: Vec<(String, i16)> = origins(rule)
            .into_iter()
            .map(|o| (o.name, o.column))
            .collect();
        assert_eq!(
            found,
            vec![
                ("id".into(), 1),
                ("writer".into(), 2),
                ("who (name)".into(), 2)
            ]
        );
        assert!(origins("not a rule").is_empty());
        assert!(origins("({QUERY :targetList ({TARGETENTRY :resname").is_empty());
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
}
